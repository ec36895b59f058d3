"""The backward of ``path_affinity``, written once: the compiled op's autograd registration
(:mod:`._compiled`) and the ``autograd.Function`` of the numba and cupy backends both use it."""
from __future__ import annotations

import torch


def save_affinity(ctx, impl, edge: torch.Tensor, argmax: torch.Tensor, paths: torch.Tensor,
                  lengths: torch.Tensor, radius_floor: int) -> None:
    ctx.save_for_backward(argmax, paths, lengths)
    ctx.impl, ctx.radius_floor, ctx.size = impl, radius_floor, tuple(edge.shape[-2:])


def affinity_backward(ctx, grad: torch.Tensor) -> torch.Tensor:
    """``grad [B, D, crop_h, crop_w]`` -> ``grad_edge [B, H, W]``: each affinity's gradient, negated,
    lands on the arg-max point of its path (a gather, so deterministic)."""
    argmax, paths, lengths = ctx.saved_tensors
    # the compiled CPU kernel reads strides (a sum()'s expanded gradient stays unmaterialised)
    if not (getattr(ctx.impl, "STRIDED_GRAD", False) and grad.device.type == "cpu"):
        grad = grad.contiguous()
    return ctx.impl.path_affinity_backward(grad, argmax, paths, lengths, ctx.radius_floor, *ctx.size)
