"""The compiled backends (cpp on CPU tensors, cuda on CUDA tensors): the dispatcher picks.

Every Python-side registration of the ``torch.ops.irnet_fast`` ops lives here, in one place:
the fake (meta) kernels that torch.compile and torch.export trace with, and the autograd of
``path_affinity``. The schemas are in csrc/schemas.cpp.
"""
import sys

import torch

from .. import _ext
from . import _autograd

# The compiled ops carry their own autograd registration (below).
DIFFERENTIABLE = True
# The CPU backward kernel reads strides: a broadcast gradient need not be materialised.
STRIDED_GRAD = True

_LIB = "irnet_fast::"


def path_affinity(edge, paths, lengths, radius_floor):
    return torch.ops.irnet_fast.path_affinity(edge, paths, lengths, radius_floor)


def path_affinity_backward(grad, argmax, paths, lengths, radius_floor, height, width):
    return torch.ops.irnet_fast._path_affinity_backward(grad, argmax, paths, lengths, radius_floor, height, width)


def transition_stencil(edge, paths, lengths, beta):
    return torch.ops.irnet_fast.transition_stencil(edge, paths, lengths, beta)


def random_walk(x, planes, inv_norm, dirs, steps):
    return torch.ops.irnet_fast.random_walk(x, planes, inv_norm, dirs, steps)


def has_random_walk_chebyshev(device) -> bool:
    """Whether a fused Chebyshev kernel is registered for ``device``'s dispatch key."""
    key = "CUDA" if torch.device(device).type == "cuda" else "CPU"
    return (hasattr(torch.ops.irnet_fast, "random_walk_chebyshev")
            and torch._C._dispatch_has_kernel_for_dispatch_key("irnet_fast::random_walk_chebyshev", key))


def random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients):
    return torch.ops.irnet_fast.random_walk_chebyshev(x, planes, inv_norm, dirs,
                                                      [float(c) for c in coefficients])


def has_walk_states(device) -> bool:
    """Whether the walk that keeps its states (and its reverse pass) exists for ``device`` (CPU only)."""
    return (torch.device(device).type == "cpu" and hasattr(torch.ops.irnet_fast, "_walk_states")
            and torch._C._dispatch_has_kernel_for_dispatch_key("irnet_fast::_walk_states", "CPU"))


def walk_states(x, planes, inv_norm, dirs, pad, alpha, beta, c):
    return torch.ops.irnet_fast._walk_states(x, planes, inv_norm, dirs, pad, alpha, beta, c)


def walk_states_backward(grad, states, planes, inv_norm, dirs, pad, alpha, beta, c):
    return torch.ops.irnet_fast._walk_states_backward(grad, states, planes, inv_norm, dirs, pad, alpha, beta, c)


def walk_states_shape(x_shape, dtype, pad: int, passes: int):
    """The padded states' shape ``[passes + 1, B, C, h + 2 pad, row_stride]`` (csrc/cpu/walk_layout.h:
    rows padded by ``pad`` on the left and to whole 64-byte vectors of columns plus ``pad`` on the right)."""
    batch, channels, height, width = x_shape
    lanes = 64 // dtype.itemsize
    row_stride = 2 * pad + -(-width // lanes) * lanes
    return (passes + 1, batch, channels, height + 2 * pad, row_stride)


def find_centroids(displacement, iterations):
    return torch.ops.irnet_fast.find_centroids(displacement, iterations)


def has_feature_affinity(device) -> bool:
    """Whether the compiled feature_affinity has a kernel for ``device`` (an extension built
    without CUDA has none for CUDA tensors)."""
    key = "CUDA" if torch.device(device).type == "cuda" else "CPU"
    return (hasattr(torch.ops.irnet_fast, "feature_affinity")
            and torch._C._dispatch_has_kernel_for_dispatch_key("irnet_fast::feature_affinity", key))


def feature_affinity(features, dirs):
    return torch.ops.irnet_fast.feature_affinity(features, dirs)


def feature_affinity_backward(grad, features, affinity, dirs):
    return torch.ops.irnet_fast._feature_affinity_backward(grad, features, affinity, dirs)


# --- fake kernels: output shapes and dtypes from input shapes ---------------------------------

def _affinity_fake(edge, paths, lengths, radius_floor):
    shape = (edge.shape[0], paths.shape[0], edge.shape[1] - radius_floor, edge.shape[2] - 2 * radius_floor)
    return edge.new_empty(shape), edge.new_empty(shape, dtype=torch.uint8)


def _affinity_backward_fake(grad, argmax, paths, lengths, radius_floor, height, width):
    return grad.new_empty((grad.shape[0], height, width))


def _stencil_fake(edge, paths, lengths, beta):
    return edge.new_empty((edge.shape[0], paths.shape[0], edge.shape[1], edge.shape[2])), edge.new_empty(edge.shape)


def _walk_fake(x, planes, inv_norm, dirs, steps):
    return torch.empty_like(x)


def _chebyshev_fake(x, planes, inv_norm, dirs, coefficients):
    return torch.empty_like(x)


def _feature_affinity_fake(features, dirs):
    return features.new_empty((features.shape[0], dirs.shape[0], features.shape[2], features.shape[3]))


def _feature_affinity_backward_fake(grad, features, affinity, dirs):
    return torch.empty_like(features)


def _walk_states_fake(x, planes, inv_norm, dirs, pad, alpha, beta, c):
    return torch.empty_like(x), x.new_empty(walk_states_shape(x.shape, x.dtype, pad, len(alpha)))


def _walk_states_backward_fake(grad, states, planes, inv_norm, dirs, pad, alpha, beta, c):
    return torch.empty_like(grad), torch.empty_like(planes), torch.empty_like(inv_norm)


def _tiled_fake(x, *plan):
    return torch.empty_like(x)


def _centroids_fake(displacement, iterations):
    return displacement.new_empty(displacement.shape, dtype=torch.int32)


FAKES = {
    "path_affinity": _affinity_fake, "_path_affinity_portable": _affinity_fake,
    "_path_affinity_backward": _affinity_backward_fake, "_path_affinity_backward_portable": _affinity_backward_fake,
    "transition_stencil": _stencil_fake, "_transition_stencil_portable": _stencil_fake,
    "random_walk": _walk_fake, "_random_walk_portable": _walk_fake,
    "random_walk_chebyshev": _chebyshev_fake, "_random_walk_chebyshev_portable": _chebyshev_fake,
    "find_centroids": _centroids_fake,
    "feature_affinity": _feature_affinity_fake, "_feature_affinity_backward": _feature_affinity_backward_fake,
    "random_walk_tiled": _tiled_fake, "random_walk_chebyshev_tiled": _tiled_fake,
    "_walk_states": _walk_states_fake, "_walk_states_backward": _walk_states_backward_fake,
}
# the explicit-plan walks (random_walk_tiled, random_walk_chebyshev_tiled) have CUDA kernels only
CUDA_ONLY = ("random_walk_tiled", "random_walk_chebyshev_tiled")


# --- autograd of path_affinity ------------------------------------------------------------------

def _affinity_setup(ctx, inputs, output):
    edge, paths, lengths, radius_floor = inputs
    _autograd.save_affinity(ctx, sys.modules[__name__], edge, output[1], paths, lengths, radius_floor)
    ctx.mark_non_differentiable(output[1])


def _affinity_backward(ctx, grad_affinity, _grad_argmax):
    return _autograd.affinity_backward(ctx, grad_affinity), None, None, None


def _register() -> None:
    for name, fake in FAKES.items():
        if not hasattr(torch.ops.irnet_fast, name):  # an extension built before the op existed
            continue
        torch.library.register_fake(_LIB + name)(fake)
    torch.library.register_autograd(_LIB + "path_affinity", _affinity_backward, setup_context=_affinity_setup)


if _ext.HAS_CPP:
    _register()
