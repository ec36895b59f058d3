"""Reverse mode of the stencil walk, on every backend's own walk kernel (docs/walk_gradient.md).

The walk is ``y = p(P) v`` with ``P = D^-1 A`` (``A`` symmetric: ones on the diagonal, ``S_k(p)``
at ``(p, p + o_k)`` and ``(p + o_k, p)``) and ``p`` either ``l ** n`` (plain steps) or the
truncated Chebyshev expansion. Both are the recurrence

    w_0 = v,   w_{m+1} = alpha_m P w_m + beta_m w_{m-1},   y = sum_m c_m w_m

(steps: ``alpha = 1, beta = 0, c = e_n``; Chebyshev: ``alpha_0 = 1``, then ``alpha = 2, beta = -1``).

* Gradient for ``v`` alone: ``p(P)^T = p(P^T)`` and ``P^T = A D^-1 = D P D^-1``, so
  ``grad_v = D p(P) (D^-1 g)``: one more forward walk, with the fused kernels.
* Gradient for the weights: reverse mode through the recurrence. The forward keeps the states
  ``w_m``; the backward runs the adjoint recurrence (a Clenshaw sum with ``P^T = A D^-1``) and sums
  the products of the states on the stencil:
  ``grad S_k(p) = sum_m sum_c z_m(p) w_m(p + o_k) + z_m(p + o_k) w_m(p)`` with
  ``z_m = D^-1 (adjoint of the m-th product)``, and ``grad D^-1(p) = sum_m sum_c zbar_m(p) (A w_m)(p)``.
  On the CPU both directions are fused kernels (``_walk_states``, ``_walk_states_backward``: one
  pass per step, states in the input dtype as the fused forward keeps them); on other backends
  the recurrence runs here in float64 over the backend's single-step ``random_walk`` (``A u`` is a
  step with ``D^-1 = 1``) and the products are torch ops.

No dense matrix anywhere.
"""
from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def recurrence(steps: int, coefficients: Optional[Sequence[float]]) -> Tuple[List[float], List[float], List[float]]:
    """``(alpha, beta, c)`` of the walk's three-term recurrence: ``len(alpha) == len(c) - 1`` passes."""
    if coefficients is None:
        return [1.0] * steps, [0.0] * steps, [0.0] * steps + [1.0]
    c = [float(v) for v in coefficients]
    passes = len(c) - 1
    return [1.0] + [2.0] * (passes - 1), [0.0] + [-1.0] * (passes - 1), c


def stencil_windows(dirs: Sequence[Tuple[int, int]], height: int, width: int):
    """Per direction: ``(k, rows, x0, x1, dy, dx)`` of the sources whose ``p + o_k`` is on the grid."""
    for k, (dy, dx) in enumerate(dirs):
        rows, x0, x1 = height - dy, max(0, -dx), min(width, width - dx)
        if rows > 0 and x1 > x0:
            yield k, rows, x0, x1, dy, dx


def valid_mask(dirs: Tensor, height: int, width: int, dtype, device) -> Tensor:
    """``[D, h, w]``: 1 where ``p + o_k`` is on the grid (cached: read only)."""
    return _valid_mask(tuple(map(tuple, dirs.tolist())), height, width, dtype, torch.device(device))


@functools.lru_cache(maxsize=32)
def _valid_mask(dirs, height: int, width: int, dtype, device) -> Tensor:
    mask = torch.zeros((len(dirs), height, width), dtype=dtype, device=device)
    for k, rows, x0, x1, _, _ in stencil_windows(dirs, height, width):
        mask[k, :rows, x0:x1] = 1
    return mask


def stencil_norm(planes: Tensor, dirs: Tensor) -> Tensor:
    """``d(p) = 1 + sum_k S_k(p) + sum_k S_k(p - o_k)`` of planes ``[B, D, h, w]`` -> ``[B, h, w]``
    (out of place; differentiable, to any order)."""
    return _StencilNorm.apply(planes, dirs)


def _shifted_sums(planes: Tensor, dirs_list) -> Tensor:
    """``1 + sum_k S_k(p) + sum_k S_k(p - o_k)``."""
    height, width = planes.shape[-2:]
    pad = reach(dirs_list)
    padded = F.pad(planes, (pad, pad, pad, pad))
    norm = 1 + planes.sum(1)
    for k, (dy, dx) in enumerate(dirs_list):
        norm = norm + padded[:, k, pad - dy:pad - dy + height, pad - dx:pad - dx + width]
    return norm


class _StencilNorm(torch.autograd.Function):
    """``d(q)`` takes ``S_k(p)`` at ``q = p`` and ``q = p + o_k``, so ``grad S_k(p) = g(p) + g(p + o_k)``
    (``g`` 0 off the grid): one padded copy of ``g`` instead of autograd's zero-filled plane stack
    per direction."""

    @staticmethod
    def forward(ctx, planes, dirs):
        ctx.dirs_list = dirs.tolist()
        return _shifted_sums(planes, ctx.dirs_list)

    @staticmethod
    def backward(ctx, grad):
        dirs_list = ctx.dirs_list
        height, width = grad.shape[-2:]
        pad = reach(dirs_list)
        padded = F.pad(grad, (pad, pad, pad, pad))
        shifted = [padded[:, pad + dy:pad + dy + height, pad + dx:pad + dx + width] for dy, dx in dirs_list]
        if not shifted:
            return grad.new_zeros((grad.shape[0], 0, height, width)), None
        return grad.unsqueeze(1) + torch.stack(shifted, 1), None


def pair_products(z: Tensor, w: Tensor, dirs: Tensor) -> Tensor:
    """``G_k(p) = sum_c z(c, p) w(c, p + o_k) + z(c, p + o_k) w(c, p)`` for ``z, w [B, C, h, w]``
    -> ``[B, D, h, w]``, 0 where ``p + o_k`` is off the grid (the gradient of the walk's planes)."""
    batch, _, height, width = z.shape
    out = z.new_zeros((batch, len(dirs), height, width))
    for k, rows, x0, x1, dy, dx in stencil_windows(dirs.tolist(), height, width):
        src_z, src_w = z[:, :, :rows, x0:x1], w[:, :, :rows, x0:x1]
        dst_z, dst_w = z[:, :, dy:, x0 + dx:x1 + dx], w[:, :, dy:, x0 + dx:x1 + dx]
        out[:, k, :rows, x0:x1] = (src_z * dst_w).sum(1) + (dst_z * src_w).sum(1)
    return out


def reach(dirs) -> int:
    """The largest ``|dy|``, ``|dx|`` of the directions (``[D, 2]`` tensor or list of pairs): the
    padding of the shifted sums and of the CPU kernels' rows."""
    pairs = dirs.tolist() if isinstance(dirs, Tensor) else dirs
    return max([max(abs(dy), abs(dx)) for dy, dx in pairs], default=0)


def _has_fused_states(impl, device) -> bool:
    has = getattr(impl, "has_walk_states", None)
    return has is not None and has(device)


def _apply_a(impl, v: Tensor, planes: Tensor, ones: Tensor, dirs: Tensor) -> Tensor:
    return impl.random_walk(v.contiguous(), planes, ones, dirs, 1)


def _safe_div(num: Tensor, inv: Tensor) -> Tensor:
    """``num / inv`` where ``inv > 0`` (padding of list batches has ``inv = 0``: gradient 0)."""
    return torch.where(inv > 0, num / torch.where(inv > 0, inv, torch.ones_like(inv)), torch.zeros_like(num))


class WalkFunction(torch.autograd.Function):
    """``y = p(P) values`` with gradients for ``values``, ``planes`` and ``inv_norm``.

    ``walk(values)`` is the forward without states (the fused kernels, planes bound);
    ``impl`` supplies the single-step ``random_walk`` used for ``A u`` and the stored recurrence.
    """

    @staticmethod
    def forward(ctx, values, planes, inv_norm, impl, dirs, steps, coefficients, walk):
        ctx.impl, ctx.walk, ctx.steps, ctx.coefficients = impl, walk, steps, coefficients
        ctx.weights = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        if not ctx.weights:
            ctx.save_for_backward(inv_norm, dirs)
            return walk(values)
        dtype = values.dtype
        if _has_fused_states(impl, values.device):
            ctx.fused = recurrence(steps, coefficients), reach(dirs)
            (alpha, beta, c), pad = ctx.fused
            result, ctx.states = impl.walk_states(values.contiguous(), planes.contiguous(), inv_norm.contiguous(),
                                                  dirs, pad, alpha, beta, c)
            ctx.save_for_backward(planes, inv_norm, dirs)
            return result
        ctx.fused = None
        work = torch.float64  # the recurrence amplifies float32 rounding (as the fused kernels sum)
        values, planes64, inv64 = values.to(work), planes.to(work), inv_norm.to(work)
        ones = torch.ones_like(inv64)
        alpha, beta, c = recurrence(steps, coefficients)
        scaled = {a: a * inv64.unsqueeze(1) for a in set(alpha)}  # alpha_m D^-1, once per value
        states, applied = [values], []
        result = values * c[0]
        for m in range(len(alpha)):
            au = _apply_a(impl, states[m], planes64, ones, dirs)
            nxt = scaled[alpha[m]] * au
            if beta[m] != 0.0:
                nxt.add_(states[m - 1], alpha=beta[m])
            applied.append(au)
            states.append(nxt)
            if c[m + 1] != 0.0:
                result.add_(nxt, alpha=c[m + 1])
        ctx.states, ctx.applied = states, applied
        ctx.save_for_backward(planes64, inv64, dirs)
        ctx.dtypes = (dtype, planes.dtype, inv_norm.dtype)
        return result.to(dtype)

    @staticmethod
    def backward(ctx, grad):
        none = (None,) * 5
        if not ctx.weights:
            inv_norm, dirs = ctx.saved_tensors
            inv = inv_norm.unsqueeze(1)
            # grad_v = D p(P) D^-1 g
            return (_safe_div(ctx.walk((grad * inv).contiguous()), inv), None, None) + none
        if ctx.fused is not None:
            (alpha, beta, c), pad = ctx.fused
            planes, inv_norm, dirs = ctx.saved_tensors
            grads = ctx.impl.walk_states_backward(grad.contiguous(), ctx.states, planes.contiguous(),
                                                  inv_norm.contiguous(), dirs, pad, alpha, beta, c)
            return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:3])) + none
        planes, inv, dirs = ctx.saved_tensors
        states, applied = ctx.states, ctx.applied
        impl, ones = ctx.impl, torch.ones_like(inv)
        alpha, beta, c = recurrence(ctx.steps, ctx.coefficients)
        g = grad.to(torch.float64)
        inv4 = inv.unsqueeze(1)
        passes = len(alpha)
        # adjoints of w_{passes}, w_{passes - 1}, ... built from the top; entry m complete once the
        # passes m and m + 1 (which read w_m) have been reversed
        adjoint: List[Optional[Tensor]] = [c[m] * g if c[m] != 0.0 else None for m in range(passes + 1)]
        scaled = {a: a * inv4 for a in set(alpha)}  # alpha_m D^-1
        grad_inv = torch.zeros_like(states[0])  # per channel; summed over them at the end
        zs = []
        for m in range(passes - 1, -1, -1):
            above = adjoint[m + 1]  # adjoint of w_{m+1}; zbar = alpha_m * above is that of P w_m
            if above is None:
                above = torch.zeros_like(g)
            grad_inv.addcmul_(above, applied[m], value=alpha[m])
            z = scaled[alpha[m]] * above              # adjoint of A w_m
            zs.append(z)
            back = _apply_a(impl, z, planes, ones, dirs)
            adjoint[m] = back if adjoint[m] is None else adjoint[m].add_(back)
            if beta[m] != 0.0:
                adjoint[m - 1] = beta[m] * above if adjoint[m - 1] is None else adjoint[m - 1].add_(above, alpha=beta[m])
            adjoint[m + 1] = None  # done: free it
        grad_inv = grad_inv.sum(1)
        dtype_v, dtype_p, dtype_i = ctx.dtypes
        grad_planes = None
        if ctx.needs_input_grad[1]:
            # every pass's (z_m, w_m) as channels of one stack: one sweep over the directions
            zs.reverse()
            grad_planes = pair_products(torch.cat(zs, 1), torch.cat(states[:passes], 1), dirs).to(dtype_p) \
                if passes else torch.zeros_like(planes, dtype=dtype_p)
        grad_values = (adjoint[0] if adjoint[0] is not None else torch.zeros_like(g)).to(dtype_v) \
            if ctx.needs_input_grad[0] else None
        grad_inv = grad_inv.to(dtype_i) if ctx.needs_input_grad[2] else None
        return (grad_values, grad_planes, grad_inv) + none
