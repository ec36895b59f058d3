"""The compiled backends (cpp on CPU tensors, cuda on CUDA tensors): the dispatcher picks."""
import torch

from .. import _ext  # noqa: F401  (loads the ops)


def path_affinity(edge, paths, lengths, radius_floor):
    return torch.ops.irnet_fast.path_affinity(edge, paths, lengths, radius_floor)


def transition_stencil(edge, paths, lengths, beta):
    return torch.ops.irnet_fast.transition_stencil(edge, paths, lengths, beta)


def random_walk(x, planes, inv_norm, dirs, steps):
    return torch.ops.irnet_fast.random_walk(x, planes, inv_norm, dirs, steps)


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
