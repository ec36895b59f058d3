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
