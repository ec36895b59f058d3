"""Loads the compiled extension ``irnet_fast._C`` when present and registers its Python side.

``HAS_CPP``: the C++ CPU kernels are loaded. ``HAS_CUDA``: the extension was built with CUDA
kernels (a GPU is still needed to run them). Importing never fails without the extension.
"""
from __future__ import annotations

import os

import torch

HAS_CPP = False
HAS_CUDA = False
BUILD_INFO: dict = {}
LOAD_ERROR = None

if os.environ.get("IRNET_FAST_NO_EXT", "0").lower() in ("1", "true", "yes", "on"):
    LOAD_ERROR = "disabled by IRNET_FAST_NO_EXT=1"
else:
    try:
        from . import _C  # noqa: F401  (registers torch.ops.irnet_fast.*)

        BUILD_INFO = dict(_C.build_info())
        HAS_CPP = True
        HAS_CUDA = bool(BUILD_INFO.get("has_cuda", False))
    except (ImportError, OSError) as exc:  # not built, or built against another torch
        LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def _register_python_side() -> None:
    """Autograd and fake (meta) kernels of the compiled ops."""
    lib = "irnet_fast::"

    def _affinity_setup(ctx, inputs, output):
        edge, paths, lengths, radius_floor = inputs
        ctx.save_for_backward(output[1], paths, lengths)
        ctx.radius_floor = radius_floor
        ctx.size = edge.shape[-2:]
        ctx.mark_non_differentiable(output[1])

    def _affinity_backward(ctx, grad_affinity, _grad_argmax):
        argmax, paths, lengths = ctx.saved_tensors
        # the CPU kernel reads strides (a sum()'s expanded gradient stays unmaterialised)
        grad = grad_affinity if grad_affinity.device.type == "cpu" else grad_affinity.contiguous()
        grad_edge = torch.ops.irnet_fast.path_affinity_backward(
            grad, argmax, paths, lengths, ctx.radius_floor, ctx.size[0], ctx.size[1])
        return grad_edge, None, None, None

    torch.library.register_autograd(lib + "path_affinity", _affinity_backward, setup_context=_affinity_setup)

    def _affinity_fake(edge, paths, lengths, radius_floor):
        shape = (edge.shape[0], paths.shape[0], edge.shape[1] - radius_floor, edge.shape[2] - 2 * radius_floor)
        return edge.new_empty(shape), edge.new_empty(shape, dtype=torch.uint8)

    def _backward_fake(grad, argmax, paths, lengths, radius_floor, height, width):
        return grad.new_empty((grad.shape[0], height, width))

    def _stencil_fake(edge, paths, lengths, beta):
        return (edge.new_empty((edge.shape[0], paths.shape[0], edge.shape[1], edge.shape[2])),
                edge.new_empty(edge.shape))

    for suffix in ("", "_portable"):
        torch.library.register_fake(lib + "path_affinity" + suffix)(_affinity_fake)
        torch.library.register_fake(lib + "path_affinity_backward" + suffix)(_backward_fake)
        torch.library.register_fake(lib + "transition_stencil" + suffix)(_stencil_fake)

    for name in ("random_walk", "random_walk_portable"):
        torch.library.register_fake(lib + name)(lambda x, planes, inv_norm, dirs, steps: torch.empty_like(x))
    for name in ("random_walk_chebyshev", "random_walk_chebyshev_portable"):
        torch.library.register_fake(lib + name)(lambda x, planes, inv_norm, dirs, coefficients: torch.empty_like(x))
    # the explicit-plan walks (CUDA kernels only)
    torch.library.register_fake(lib + "random_walk_tiled")(lambda x, *args: torch.empty_like(x))
    torch.library.register_fake(lib + "random_walk_chebyshev_tiled")(lambda x, *args: torch.empty_like(x))


if HAS_CPP:
    _register_python_side()
