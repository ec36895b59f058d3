"""The compiled backends (cpp on CPU tensors, cuda on CUDA tensors): the dispatcher picks."""
import torch

from .. import _ext  # noqa: F401  (loads the ops)


def path_affinity(edge, paths, lengths, radius_floor):
    return torch.ops.irnet_fast.path_affinity(edge, paths, lengths, radius_floor)


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


# The compiled ops carry their own autograd registration (irnet_fast/_ext.py).
DIFFERENTIABLE = True


def find_centroids(displacement, iterations):
    return torch.ops.irnet_fast.find_centroids(displacement, iterations)


def _register_instances_fake() -> None:
    """The fake (meta) kernel of find_centroids for torch.compile."""
    if not _ext.HAS_CPP or not hasattr(torch.ops.irnet_fast, "find_centroids"):
        return
    try:
        torch.library.register_fake("irnet_fast::find_centroids")(
            lambda displacement, iterations: displacement.new_empty(displacement.shape, dtype=torch.int32))
    except RuntimeError:  # already registered (module reloaded)
        pass


_register_instances_fake()
