"""The random walk of IRNet without the dense N x N matrix (the "stencil" form of docs/algorithm.md).

One step is ``y'(p) = (y(p) + sum_k S_k(p) y(p + o_k) + sum_k S_k(p - o_k) y(p - o_k)) / d(p)``
with ``S_k = affinity ** beta`` and ``d`` the column sums; ``2 ** exp_times`` steps equal the
reference's ``x @ T ** (2 ** exp_times)``. ``method="chebyshev"`` evaluates the same power in
about ``sqrt(2 ** exp_times)`` passes (irnet_fast/ops/chebyshev.py, docs/chebyshev.md).
"""
from __future__ import annotations

import math

import numbers
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import backends
from . import _dispatch
from .._checks import (check_beta, check_exp_times, check_finite, check_radius, check_same_device,
                       check_same_dtype, check_tensor, check_unit_interval, upcast_half, value_checks_enabled)
from .chebyshev import DEFAULT_TOL, chebyshev_coefficients, chebyshev_walk
from .path_index import geometry, geometry_on

METHODS = ("chebyshev", "steps")
_STEPS_PER_CALL = 256

__all__ = ["transition_stencil", "transition_matrix", "random_walk", "propagate_to_edge", "RandomWalk"]


def _stencil(edge: Tensor, radius: int, beta: float, impl) -> Tuple[Tensor, Tensor]:
    paths, lengths = geometry_on(radius, edge.device)
    return impl.transition_stencil(edge, paths, lengths, beta)


def _check_edge(edge, *, op: str) -> Tensor:
    check_tensor(edge, op=op, name="edge", dims=["B", "1", "h", "w"])
    if edge.shape[-1] == 0 or edge.shape[-2] == 0:
        raise ValueError(f"{op}(): edge expected a non-empty grid (h, w >= 1), got {tuple(edge.shape)}")
    check_unit_interval(edge, op=op, name="edge")
    return edge


def transition_stencil(edge: Tensor, radius: int = 5, beta: float = 10, *,
                       backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """The transition in stencil form: ``D`` weight planes and the normaliser.

    Args:
        edge (Tensor[B, 1, h, w]): boundary probability in [0, 1].
        radius (int): search radius (5 for the random walk).
        beta (float): affinity exponent (10).

    Returns:
        ``planes`` (Tensor[B, D, h, w]): ``affinity(p, p + o_k) ** beta``, 0 where ``p + o_k`` is
        off the grid; ``norm`` (Tensor[B, 1, h, w]): column sums ``d(p)`` of ``A ** beta``.
    """
    op = "transition_stencil"
    radius, beta = check_radius(radius, op=op), check_beta(beta, op=op)
    dtype = edge.dtype if isinstance(edge, Tensor) else None
    edge = _check_edge(*upcast_half(edge), op=op)
    impl = _dispatch.implementation(backends.resolve(backend, edge.device, op=op))
    planes, norm = _stencil(edge[:, 0].contiguous(), radius, beta, impl)
    return planes.to(dtype), norm.unsqueeze(1).to(dtype)


def transition_matrix(edge: Tensor, radius: int = 5, beta: float = 10, *, backend: str = "auto") -> Tensor:
    """The column-stochastic ``N x N`` transition ``T`` of one image as a sparse CSR tensor.

    Equal to the reference's ``T`` before its powers (``T = A**beta / A**beta.sum(0)``).

    Args:
        edge (Tensor[1, h, w] or Tensor[h, w]): boundary probability of one image.

    Returns:
        torch sparse CSR tensor ``(h*w, h*w)``; ``x.view(C, N) @ T`` is one walk step.
    """
    op = "transition_matrix"
    if isinstance(edge, Tensor) and edge.dim() == 2:
        edge = edge.unsqueeze(0)
    check_tensor(edge, op=op, name="edge", dims=["1", "h", "w"])
    planes, norm = transition_stencil(edge.unsqueeze(0), radius, beta, backend=backend)
    planes, norm = planes[0], norm[0, 0]
    height, width = edge.shape[-2:]
    num = height * width
    dirs = geometry(radius).search_dst
    index = torch.arange(num, device=edge.device).view(height, width)
    rows, cols, vals = [index.reshape(-1)], [index.reshape(-1)], [torch.ones(num, dtype=edge.dtype, device=edge.device)]
    for k, (dy, dx) in enumerate(dirs.tolist()):
        rows_k, x0, x1 = height - dy, max(0, -dx), min(width, width - dx)
        if rows_k <= 0 or x1 <= x0:
            continue
        src = index[:rows_k, x0:x1].reshape(-1)
        dst = index[dy:, x0 + dx:x1 + dx].reshape(-1)
        weight = planes[k, :rows_k, x0:x1].reshape(-1)
        rows += [src, dst]
        cols += [dst, src]
        vals += [weight, weight]
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    vals = vals / norm.reshape(-1)[cols]  # T[i, j] = S[i, j] / d_j
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (num, num), check_invariants=False).coalesce()
    return coo.to_sparse_csr()


def _check_walk_pair(x, edge, *, op: str) -> None:
    check_tensor(x, op=op, name="x", dims=["B", "C", "h", "w"])
    check_tensor(edge, op=op, name="edge", dims=["B", "1", "h", "w"])
    if x.shape[0] != edge.shape[0] or x.shape[2:] != edge.shape[2:]:
        raise ValueError(f"{op}(): edge expected shape [{x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}] to match "
                         f"x {tuple(x.shape)}, got {tuple(edge.shape)}")
    check_same_device(("x", x), ("edge", edge), op=op)
    check_same_dtype(("x", x), ("edge", edge), op=op)
    _check_edge(edge, op=op)
    check_finite(x, op=op, name="x")


def random_walk(x: Union[Tensor, Sequence[Tensor]], edge: Union[Tensor, Sequence[Tensor]], radius: int = 5,
                beta: float = 10, exp_times: int = 8, *, backend: str = "auto", method: str = "chebyshev",
                tol: Optional[float] = None) -> Union[Tensor, List[Tensor]]:
    r"""Propagate scores ``x`` along the boundary-aware random walk of IRNet.

    Computes ``(x * (1 - edge)) @ T ** (2 ** exp_times)`` per image, as the reference's
    ``propagate_to_edge``, in ``O(passes * D * N * C)`` time and ``O(D * N)`` memory.
    ``method="steps"`` makes ``2 ** exp_times`` passes; ``"chebyshev"`` evaluates the same power
    by its truncated Chebyshev expansion in about ``sqrt(2 * 2**exp_times * log(1 / tol))``
    passes (78 instead of 256 for float32 at exp_times 8, see :func:`chebyshev_coefficients`),
    and falls back to steps where that saves nothing (exp_times <= 4 for float32, <= 5 for
    float64 at the default tol). The weights of float32 inputs are computed in float64 and
    rounded once; float32 results are closer to float64 than the reference's own float32 walk
    (about 1e-5 against 7e-5 of the max at 94x125, either method). docs/chebyshev.md has the
    derivation.

    Args:
        x (Tensor[B, C, h, w] or list of Tensor[C_i, h_i, w_i]): scores (CAMs) at the boundary stride;
            float16 and bfloat16 are computed in float32 and returned in their own dtype.
        edge (Tensor[B, 1, h, w] or list of Tensor[1, h_i, w_i]): boundary probability in [0, 1].
        radius (int): search radius (5). beta (float): affinity exponent (10).
        exp_times (int): the transition is squared this many times: ``2**exp_times`` steps.
        backend (str): "auto" | "cuda" | "cupy" | "cpp" | "numba" | "torch".
        method (str): "chebyshev" (default) or "steps" (the literal ``2**exp_times`` passes).
        tol (float or None): Chebyshev truncation bound on ``||error||_2 / ||x * (1 - edge)||_2``;
            None: 1e-5 for float32 (below the rounding noise of the steps), 1e-12 for float64.

    Returns:
        Tensor[B, C, h, w], or a list of Tensor[C_i, h_i, w_i] for list inputs (one batched call).
        Not differentiable.
    """
    return _random_walk(x, edge, radius, beta, exp_times, backend, method, tol, op="random_walk")


def _random_walk(x, edge, radius, beta, exp_times, backend, method, tol, *, op: str):
    """:func:`random_walk`, its errors naming the public op ``op`` that was called."""
    radius, beta, exp_times = check_radius(radius, op=op), check_beta(beta, op=op), check_exp_times(exp_times, op=op)
    method, tol = _check_method(method, tol, op=op)
    if isinstance(x, (list, tuple)):
        return _random_walk_list(list(x), edge, radius, beta, exp_times, backend, method, tol, op)
    dtype = x.dtype if isinstance(x, Tensor) else None
    x, edge = upcast_half(x, edge)
    _check_walk_pair(x, edge, op=op)
    impl = _dispatch.implementation(backends.resolve(backend, x.device, op=op))
    if x.shape[0] == 0 or x.shape[1] == 0:
        return x.new_zeros(x.shape, dtype=dtype)
    with torch.no_grad():
        planes, inv_norm = _weights(edge[:, 0].contiguous(), radius, beta, impl)
        values, scale = _scaled((x * (1 - edge)).contiguous())
        out = _walk(impl, values, planes, inv_norm, _dirs(radius, x.device), 2 ** exp_times, method, tol)
    return _unscaled(out, scale).to(dtype)


def _scaled(values: Tensor) -> Tuple[Tensor, Optional[Tuple[float, float]]]:
    """Scores near the dtype's maximum scaled down by a power of two (exact), so that the sums of a
    pass, up to ``1 + 2 D`` times the largest score, stay finite; ``(values, None)`` otherwise.
    The walk averages, so no output exceeds the largest input: scaling back stays finite."""
    if not value_checks_enabled() or values.numel() == 0:
        return values, None
    peak = float(values.abs().amax())
    info = torch.finfo(values.dtype)
    if peak <= info.max / 2 ** 12:
        return values, None
    exponent = math.ceil(math.log2(peak)) - (math.frexp(info.max)[1] - 28)  # scaled peak <= max / 2**27
    return values * 2.0 ** -exponent, (2.0 ** exponent, peak)


def _unscaled(out: Tensor, scale: Optional[Tuple[float, float]]) -> Tensor:
    if scale is None:
        return out
    factor, peak = scale
    return (out * factor).clamp_(-peak, peak)


def _dirs(radius: int, device: torch.device) -> Tensor:
    return geometry_on(radius, device)[0][:, 0].contiguous()


def _check_method(method, tol, *, op: str):
    if method not in METHODS:
        raise ValueError(f"{op}(): method expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= float(tol) < float("inf")):
            raise ValueError(f"{op}(): tol expected None or a finite number >= 0, got {tol!r}")
        tol = float(tol)
    return method, tol


def walk_coefficients(steps: int, num_dirs: int, dtype: torch.dtype, method: str = "chebyshev",
                      tol=None):
    """The Chebyshev coefficients ``random_walk`` uses for ``steps`` steps, or None for plain steps.

    Every weight is in [0, 1], so the column sums ``d(p)`` lie in [1, 1 + 2 num_dirs]: that bound
    is the ``spread`` (one degree for every image, so a batch equals its images one by one).
    """
    if method == "steps":
        return None
    if tol is None:
        tol = DEFAULT_TOL["float64" if dtype == torch.float64 else "float32"]
    coefficients = _coefficients(int(steps), float(tol), 1.0 + 2 * int(num_dirs))
    return None if len(coefficients) - 1 >= steps else coefficients


@torch.compiler.assume_constant_result
def _coefficients(steps: int, tol: float, spread: float) -> list:
    """Plain floats from Python arguments: a constant for torch.compile, not a traced computation."""
    return [float(c) for c in chebyshev_coefficients(steps, tol, spread=spread)]


def _walk(impl, values: Tensor, planes: Tensor, inv_norm: Tensor, dirs: Tensor, steps: int, method: str,
          tol) -> Tensor:
    """``P ** steps`` of ``values`` on one backend: plain steps or the Chebyshev expansion."""
    coefficients = walk_coefficients(steps, planes.shape[1], values.dtype, method, tol)
    if coefficients is None:
        # in chunks, so that Ctrl-C (handled between Python calls) stops even 2**16 steps promptly
        done = 0
        while True:
            chunk = min(steps - done, _STEPS_PER_CALL)
            values = impl.random_walk(values, planes, inv_norm, dirs, chunk)
            done += chunk
            if done >= steps:
                return values
    fused = getattr(impl, "random_walk_chebyshev", None)
    has_fused = getattr(impl, "has_random_walk_chebyshev", lambda device: fused is not None)
    if fused is not None and has_fused(values.device):
        return fused(values, planes, inv_norm, dirs, coefficients)
    # no fused kernel on this backend: the recurrence over its single-step op, in float64 as the
    # fused kernels sum (the recurrence amplifies float32 rounding)
    planes64, inv64 = planes.double(), inv_norm.double()
    out = chebyshev_walk(lambda v: impl.random_walk(v, planes64, inv64, dirs, 1), values.double(), coefficients)
    return out.to(values.dtype)


def _weights(edge_hw: Tensor, radius: int, beta: float, impl) -> Tuple[Tensor, Tensor]:
    """Planes and inverse norm of a walk. float32 inputs get float64 weights (power and
    normaliser), rounded once: float32 ``A ** beta`` leaves row sums ~1e-6 off 1, and hundreds
    of passes compound that."""
    planes, norm = _stencil(edge_hw.double() if edge_hw.dtype == torch.float32 else edge_hw, radius, beta, impl)
    return planes.to(edge_hw.dtype), torch.reciprocal(norm).to(edge_hw.dtype)


def _random_walk_list(xs, edges, radius, beta, exp_times, backend, method, tol, op) -> List[Tensor]:
    if not isinstance(edges, (list, tuple)) or len(edges) != len(xs):
        got = f"{len(edges)} items" if isinstance(edges, (list, tuple)) else type(edges).__name__
        raise ValueError(f"{op}(): edge expected a list of {len(xs)} boundary maps (one per x), got {got}")
    if not xs:
        return []
    dtypes = [x.dtype if isinstance(x, Tensor) else None for x in xs]
    pairs = [upcast_half(x, edge) for x, edge in zip(xs, edges)]
    xs, edges = [p[0] for p in pairs], [p[1] for p in pairs]
    for i, (x, edge) in enumerate(zip(xs, edges)):
        check_tensor(x, op=op, name=f"x[{i}]", dims=["C", "h", "w"])
        check_tensor(edge, op=op, name=f"edge[{i}]", dims=["1", "h", "w"])
        _check_walk_pair(x.unsqueeze(0), edge.unsqueeze(0), op=f"{op}() item {i}: random_walk")
    check_same_device(*[(f"x[{i}]", x) for i, x in enumerate(xs)], op=op)
    check_same_dtype(*[(f"x[{i}]", x) for i, x in enumerate(xs)], op=op)
    channels = {x.shape[0] for x in xs}
    device = xs[0].device
    impl = _dispatch.implementation(backends.resolve(backend, device, op=op))
    max_h = max(x.shape[1] for x in xs)
    max_w = max(x.shape[2] for x in xs)
    num_dirs = len(geometry(radius).search_dst)
    num_channels = max(channels)
    # Zero planes and a zero inverse norm outside each image keep the padded batch exact.
    batch = len(xs)
    values = xs[0].new_zeros((batch, num_channels, max_h, max_w))
    planes = xs[0].new_zeros((batch, num_dirs, max_h, max_w))
    inv_norm = xs[0].new_zeros((batch, max_h, max_w))
    with torch.no_grad():
        for i, (x, edge) in enumerate(zip(xs, edges)):
            c, h, w = x.shape
            planes_i, inv_i = _weights(edge.contiguous(), radius, beta, impl)
            planes[i, :, :h, :w] = planes_i[0]
            inv_norm[i, :h, :w] = inv_i[0]
            values[i, :c, :h, :w] = x * (1 - edge)
        values, scale = _scaled(values)
        out = _unscaled(_walk(impl, values, planes, inv_norm, _dirs(radius, device), 2 ** exp_times, method, tol),
                        scale)
    return [out[i, :x.shape[0], :x.shape[1], :x.shape[2]].to(dtypes[i], copy=True) for i, x in enumerate(xs)]


def propagate_to_edge(x: Tensor, edge: Tensor, radius: int = 5, beta: float = 10, exp_times: int = 8, *,
                      backend: str = "auto", method: str = "chebyshev", tol: Optional[float] = None) -> Tensor:
    """Drop-in replacement of the reference's ``propagate_to_edge``.

    Args:
        x (Tensor[C, h, w] or Tensor[K, I, h, w]): CAM scores at stride 4 (viewed as ``(C, h, w)``).
        edge (Tensor[1, h, w]): boundary probability in [0, 1].
        method, tol: as :func:`random_walk` ("chebyshev" by default; "steps" for literal passes).

    Returns:
        Tensor[C, 1, h, w], equal to the reference up to float rounding (and ``tol``).
    """
    op = "propagate_to_edge"
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"propagate_to_edge(): x expected a tensor [C, h, w], got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    height, width = x.shape[-2:]
    if isinstance(edge, Tensor) and edge.dim() == 2:
        edge = edge.unsqueeze(0)
    check_tensor(edge, op=op, name="edge", dims=["1", "h", "w"])
    if tuple(edge.shape[-2:]) != (height, width):
        raise ValueError(f"{op}(): edge expected shape [1, {height}, {width}] to match x {tuple(x.shape)}, "
                         f"got {tuple(edge.shape)}")
    channels = x.shape[:-2].numel()
    rw = _random_walk(x.reshape(1, channels, height, width), edge.unsqueeze(0), radius, beta, exp_times,
                      backend, method, tol, op=op)
    return rw.reshape(channels, 1, height, width)


class RandomWalk(nn.Module):
    """Module twin of :func:`random_walk`."""

    def __init__(self, radius: int = 5, beta: float = 10, exp_times: int = 8, *, backend: str = "auto",
                 method: str = "chebyshev", tol: Optional[float] = None):
        super().__init__()
        self.radius = check_radius(radius, op="RandomWalk")
        self.beta = check_beta(beta, op="RandomWalk")
        self.exp_times = check_exp_times(exp_times, op="RandomWalk")
        self.method, self.tol = _check_method(method, tol, op="RandomWalk")
        self.backend = backend

    def forward(self, x, edge):
        return random_walk(x, edge, self.radius, self.beta, self.exp_times, backend=self.backend,
                           method=self.method, tol=self.tol)

    def extra_repr(self) -> str:
        return (f"radius={self.radius}, beta={self.beta}, exp_times={self.exp_times}, backend={self.backend!r}, "
                f"method={self.method!r}, tol={self.tol}")
