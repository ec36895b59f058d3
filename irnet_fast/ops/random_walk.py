"""The random walk of IRNet without the dense N x N matrix (the "stencil" form of docs/algorithm.md).

One step is ``y'(p) = (y(p) + sum_k S_k(p) y(p + o_k) + sum_k S_k(p - o_k) y(p - o_k)) / d(p)``
with ``S_k = affinity ** beta`` and ``d`` the column sums; ``2 ** exp_times`` steps equal the
reference's ``x @ T ** (2 ** exp_times)``. ``method="chebyshev"`` evaluates the same power in
about ``sqrt(2 ** exp_times)`` passes (irnet_fast/ops/chebyshev.py, docs/chebyshev.md).
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import backends
from .._ext import threads_capped_when_busy
from . import _dispatch
from .._checks import (check_beta, check_exp_times, check_finite, check_radius, check_same_device,
                       check_same_dtype, check_tensor, check_unit_interval, constant_result, upcast_half,
                       value_checks_enabled)
from .affinity import path_affinity
from .chebyshev import DEFAULT_TOL, chebyshev_coefficients, chebyshev_walk
from ._walk_grad import WalkFunction, stencil_norm, valid_mask
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


def _check_affinity(affinity, radius: int, *, op: str) -> Tensor:
    num_dirs = len(geometry(radius).search_dst)
    check_tensor(affinity, op=op, name="affinity", dims=["B", str(num_dirs), "h", "w"])
    if affinity.shape[-1] == 0 or affinity.shape[-2] == 0:
        raise ValueError(f"{op}(): affinity expected a non-empty grid (h, w >= 1), got {tuple(affinity.shape)}")
    check_unit_interval(affinity, op=op, name="affinity", boundary=False)
    return affinity


def _source(edge, affinity, *, op: str) -> Tuple[object, str]:
    """The walk's weights: a boundary map (IRNet) or affinity planes (any producer), not both."""
    if (edge is None) == (affinity is None):
        raise ValueError(f"{op}(): expected exactly one of edge (a boundary map) and affinity (planes "
                         f"[B, D, h, w]), got {'both' if edge is not None else 'neither'}")
    return (edge, "edge") if affinity is None else (affinity, "affinity")


def _check_source(source, kind: str, radius: int, *, op: str) -> Tensor:
    return _check_edge(source, op=op) if kind == "edge" else _check_affinity(source, radius, op=op)


@threads_capped_when_busy
def transition_stencil(edge: Optional[Tensor] = None, radius: int = 5, beta: float = 10, *,
                       affinity: Optional[Tensor] = None, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """The transition in stencil form: ``D`` weight planes and the normaliser.

    Args:
        edge (Tensor[B, 1, h, w]): boundary probability in [0, 1] (IRNet's affinities), or
        affinity (Tensor[B, D, h, w]): affinity planes in [0, 1] of any producer,
            ``affinity[:, k, y, x] = a((y, x), (y, x) + o_k)`` for the ``D`` directions ``o_k`` of
            ``radius`` (``PathIndex(radius).search_dst``), e.g. :func:`feature_affinity`.
        radius (int): search radius (5 for the random walk).
        beta (float): affinity exponent (10).

    Returns:
        ``planes`` (Tensor[B, D, h, w]): ``affinity(p, p + o_k) ** beta``, 0 where ``p + o_k`` is
        off the grid; ``norm`` (Tensor[B, 1, h, w]): column sums ``d(p)`` of ``A ** beta``.
        Differentiable with respect to ``edge`` / ``affinity``.
    """
    op = "transition_stencil"
    radius, beta = check_radius(radius, op=op), check_beta(beta, op=op)
    source, kind = _source(edge, affinity, op=op)
    dtype = source.dtype if isinstance(source, Tensor) else None
    source = _check_source(*upcast_half(source), kind, radius, op=op)
    name = backends.resolve(backend, source.device, op=op)
    planes, inv_norm = _weights(source, kind, radius, beta, name)
    return planes.to(dtype), torch.reciprocal(inv_norm).unsqueeze(1).to(dtype)


def transition_matrix(edge: Optional[Tensor] = None, radius: int = 5, beta: float = 10, *,
                      affinity: Optional[Tensor] = None, backend: str = "auto") -> Tensor:
    """The column-stochastic ``N x N`` transition ``T`` of one image as a sparse CSR tensor.

    Equal to the reference's ``T`` before its powers (``T = A**beta / A**beta.sum(0)``).

    Args:
        edge (Tensor[1, h, w] or Tensor[h, w]): boundary probability of one image, or
        affinity (Tensor[D, h, w]): affinity planes of one image (see :func:`transition_stencil`).

    Returns:
        torch sparse CSR tensor ``(h*w, h*w)``; ``x.view(C, N) @ T`` is one walk step.
    """
    op = "transition_matrix"
    source, kind = _source(edge, affinity, op=op)
    if kind == "edge":
        if isinstance(source, Tensor) and source.dim() == 2:
            source = source.unsqueeze(0)
        check_tensor(source, op=op, name="edge", dims=["1", "h", "w"])
    else:
        check_tensor(source, op=op, name="affinity", dims=["D", "h", "w"])
    with torch.no_grad():
        planes, norm = transition_stencil(**{kind: source.unsqueeze(0)}, radius=radius, beta=beta, backend=backend)
    planes, norm = planes[0], norm[0, 0]
    height, width = source.shape[-2:]
    num = height * width
    dirs = geometry(radius).search_dst
    index = torch.arange(num, device=source.device).view(height, width)
    rows, cols = [index.reshape(-1)], [index.reshape(-1)]
    vals = [torch.ones(num, dtype=planes.dtype, device=source.device)]
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


def _check_walk_pair(x, source, kind: str, radius: int, *, op: str) -> None:
    check_tensor(x, op=op, name="x", dims=["B", "C", "h", "w"])
    channels = "1" if kind == "edge" else str(len(geometry(radius).search_dst))
    check_tensor(source, op=op, name=kind, dims=["B", channels, "h", "w"])
    if x.shape[0] != source.shape[0] or x.shape[2:] != source.shape[2:]:
        raise ValueError(f"{op}(): {kind} expected shape [{x.shape[0]}, {channels}, {x.shape[2]}, {x.shape[3]}] "
                         f"to match x {tuple(x.shape)}, got {tuple(source.shape)}")
    check_same_device(("x", x), (kind, source), op=op)
    check_same_dtype(("x", x), (kind, source), op=op)
    _check_source(source, kind, radius, op=op)  # values last: after the device check
    check_finite(x, op=op, name="x")


def random_walk(x: Union[Tensor, Sequence[Tensor]], edge: Union[Tensor, Sequence[Tensor], None] = None,
                radius: int = 5, beta: float = 10, exp_times: int = 8, *,
                affinity: Union[Tensor, Sequence[Tensor], None] = None, backend: str = "auto",
                method: str = "chebyshev", tol: Optional[float] = None) -> Union[Tensor, List[Tensor]]:
    r"""Propagate scores ``x`` along a random walk: IRNet's (from a boundary map) or any affinity's.

    With ``edge``, computes ``(x * (1 - edge)) @ T ** (2 ** exp_times)`` per image, as the
    reference's ``propagate_to_edge``; with ``affinity`` planes (AffinityNet's
    :func:`feature_affinity`, or any other producer), ``x @ T ** (2 ** exp_times)`` with
    ``T = A ** beta / column sums`` of the symmetric ``A`` the planes define (ones on the
    diagonal). Both run the same kernels, in ``O(passes * D * N * C)`` time and ``O(D * N)`` memory.
    ``method="steps"`` makes ``2 ** exp_times`` passes; ``"chebyshev"`` evaluates the same power
    by its truncated Chebyshev expansion in about ``sqrt(2 * 2**exp_times * log(1 / tol))``
    passes (78 instead of 256 for float32 at exp_times 8, see :func:`chebyshev_coefficients`),
    and falls back to steps where that saves nothing (exp_times <= 4 for float32, <= 5 for
    float64 at the default tol). The weights of float32 inputs are computed in float64 and
    rounded once; float32 results are closer to float64 than the reference's own float32 walk
    (about 1e-5 against 7e-5 of the max at 94x125, either method). docs/chebyshev.md has the
    derivation.

    Differentiable with respect to ``x`` and ``edge`` / ``affinity`` on every backend, without a
    dense matrix (docs/walk_gradient.md): the gradient of ``x`` alone costs one more walk; the
    gradient of the weights keeps the recurrence's states (on the CPU ``passes + 1`` copies of
    ``x`` in its dtype, with fused kernels both ways; elsewhere ``2 * passes`` in float64).

    Args:
        x (Tensor[B, C, h, w] or list of Tensor[C_i, h_i, w_i]): scores (CAMs) on the weights' grid;
            float16 and bfloat16 are computed in float32 and returned in their own dtype.
        edge (Tensor[B, 1, h, w] or list of Tensor[1, h_i, w_i]): boundary probability in [0, 1].
        affinity (Tensor[B, D, h, w] or list of Tensor[D, h_i, w_i]): instead of ``edge``, affinity
            planes in [0, 1] for the ``D`` directions of ``radius`` (see :func:`transition_stencil`).
        radius (int): search radius (5). beta (float): affinity exponent (10 for IRNet, 8 for AffinityNet).
        exp_times (int): the transition is squared this many times: ``2**exp_times`` steps.
        backend (str): "auto" | "cuda" | "cupy" | "cpp" | "numba" | "torch".
        method (str): "chebyshev" (default) or "steps" (the literal ``2**exp_times`` passes).
        tol (float or None): Chebyshev truncation bound on ``||error||_2 / ||x * (1 - edge)||_2``;
            None: 1e-5 for float32 (below the rounding noise of the steps), 1e-12 for float64.

    Returns:
        Tensor[B, C, h, w], or a list of Tensor[C_i, h_i, w_i] for list inputs (one batched call).
    """
    return _random_walk(x, edge, affinity, radius, beta, exp_times, backend, method, tol, op="random_walk")


@threads_capped_when_busy
def _random_walk(x, edge, affinity, radius, beta, exp_times, backend, method, tol, *, op: str):
    """:func:`random_walk`, its errors naming the public op ``op`` that was called."""
    radius, beta, exp_times = check_radius(radius, op=op), check_beta(beta, op=op), check_exp_times(exp_times, op=op)
    method, tol = _check_method(method, tol, op=op)
    source, kind = _source(edge, affinity, op=op)
    if isinstance(x, (list, tuple)):
        return _random_walk_list(list(x), source, kind, radius, beta, exp_times, backend, method, tol, op)
    dtype = x.dtype if isinstance(x, Tensor) else None
    x, source = upcast_half(x, source)
    _check_walk_pair(x, source, kind, radius, op=op)
    name = backends.resolve(backend, x.device, op=op)
    impl = _dispatch.implementation(name)
    if x.shape[0] == 0 or x.shape[1] == 0:
        return x.new_zeros(x.shape, dtype=dtype)
    planes, inv_norm = _weights(source, kind, radius, beta, name)
    values, scale = _scaled(_walk_input(x, source, kind).contiguous())
    out = _walk(impl, values, planes, inv_norm, _dirs(radius, x.device), 2 ** exp_times, method, tol)
    return _unscaled(out, scale).to(dtype)


def _walk_input(x: Tensor, source: Tensor, kind: str) -> Tensor:
    """IRNet walks ``x * (1 - edge)``; AffinityNet (any affinity) walks ``x`` itself."""
    return x * (1 - source) if kind == "edge" else x


def _scaled(values: Tensor) -> Tuple[Tensor, Optional[Tuple[float, float]]]:
    """Scores near the dtype's maximum scaled down by a power of two (exact), so that the sums of a
    pass, up to ``1 + 2 D`` times the largest score, stay finite; ``(values, None)`` otherwise.
    The walk averages, so no output exceeds the largest input: scaling back stays finite."""
    if not value_checks_enabled() or values.numel() == 0:
        return values, None
    peak = float(values.detach().abs().amax())
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


@constant_result
def _coefficients(steps: int, tol: float, spread: float) -> tuple:
    """Plain floats from Python arguments: a constant for torch.compile, not a traced computation."""
    return _cached_coefficients(steps, tol, spread)


@functools.lru_cache(maxsize=64)
def _cached_coefficients(steps: int, tol: float, spread: float) -> tuple:
    """0.16 ms per call otherwise, 3% of a VOC-sized walk."""
    return tuple(float(c) for c in chebyshev_coefficients(steps, tol, spread=spread))


def _walk(impl, values: Tensor, planes: Tensor, inv_norm: Tensor, dirs: Tensor, steps: int, method: str,
          tol) -> Tensor:
    """``P ** steps`` of ``values`` on one backend (plain steps or the Chebyshev expansion),
    differentiable through :class:`~._walk_grad.WalkFunction` when an input requires grad."""
    coefficients = walk_coefficients(steps, planes.shape[1], values.dtype, method, tol)
    if torch.is_grad_enabled() and (values.requires_grad or planes.requires_grad or inv_norm.requires_grad):
        fixed_planes, fixed_inv = planes.detach(), inv_norm.detach()
        return WalkFunction.apply(values, planes, inv_norm, impl, dirs, steps, coefficients,
                                  lambda v: _walk_passes(impl, v, fixed_planes, fixed_inv, dirs, steps, coefficients))
    return _walk_passes(impl, values, planes, inv_norm, dirs, steps, coefficients)


def _walk_passes(impl, values: Tensor, planes: Tensor, inv_norm: Tensor, dirs: Tensor, steps: int,
                 coefficients) -> Tensor:
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


def _weights(source: Tensor, kind: str, radius: int, beta: float, backend: str) -> Tuple[Tensor, Tensor]:
    """Planes ``S = a ** beta`` ``[B, D, h, w]`` and inverse norm ``[B, h, w]`` of a walk.

    Every walk goes through here; a boundary map is one producer of affinities (``1 - max`` of the
    boundary along each path, :func:`path_affinity` on the map padded with boundary), computed by
    the fused stencil kernel when no gradient is needed. float32 inputs get float64 weights
    (power and normaliser), rounded once: float32 ``A ** beta`` leaves row sums ~1e-6 off 1, and
    hundreds of passes compound that.
    """
    dtype = source.dtype
    work = torch.float64 if dtype == torch.float32 else dtype
    needs_grad = torch.is_grad_enabled() and source.requires_grad
    if kind == "edge":
        if not needs_grad:
            impl = _dispatch.implementation(backend)
            planes, norm = _stencil(source[:, 0].detach().to(work).contiguous(), radius, beta, impl)
            return planes.to(dtype), torch.reciprocal(norm).to(dtype)
        source = _edge_affinity(source[:, 0].to(work), radius, backend)
    dirs = _dirs(radius, source.device)
    height, width = source.shape[-2:]
    planes = source.to(work).pow(beta) * valid_mask(dirs, height, width, work, source.device)
    inv_norm = torch.reciprocal(stencil_norm(planes, dirs))
    return planes.to(dtype).contiguous(), inv_norm.to(dtype).contiguous()


def _edge_affinity(edge_hw: Tensor, radius: int, backend: str) -> Tensor:
    """IRNet's affinity planes ``[B, D, h, w]`` of a boundary map, off-grid pairs 0 (the
    reference pads the map with boundary 1)."""
    rf = geometry(radius).radius_floor
    height, width = edge_hw.shape[-2:]
    padded = F.pad(edge_hw, (rf, rf, 0, rf), value=1.0)
    affinity = path_affinity(padded, radius, backend=backend)
    return affinity.reshape(affinity.shape[0], affinity.shape[1], height, width)


def _random_walk_list(xs, sources, kind, radius, beta, exp_times, backend, method, tol, op) -> List[Tensor]:
    if not isinstance(sources, (list, tuple)) or len(sources) != len(xs):
        got = f"{len(sources)} items" if isinstance(sources, (list, tuple)) else type(sources).__name__
        what = "boundary maps" if kind == "edge" else "affinity planes"
        raise ValueError(f"{op}(): {kind} expected a list of {len(xs)} {what} (one per x), got {got}")
    if not xs:
        return []
    dtypes = [x.dtype if isinstance(x, Tensor) else None for x in xs]
    pairs = [upcast_half(x, source) for x, source in zip(xs, sources)]
    xs, sources = [p[0] for p in pairs], [p[1] for p in pairs]
    num_dirs = len(geometry(radius).search_dst)
    for i, (x, source) in enumerate(zip(xs, sources)):
        check_tensor(x, op=op, name=f"x[{i}]", dims=["C", "h", "w"])
        check_tensor(source, op=op, name=f"{kind}[{i}]", dims=["1" if kind == "edge" else str(num_dirs), "h", "w"])
        _check_walk_pair(x.unsqueeze(0), source.unsqueeze(0), kind, radius, op=f"{op}() item {i}: random_walk")
    check_same_device(*[(f"x[{i}]", x) for i, x in enumerate(xs)], op=op)
    check_same_dtype(*[(f"x[{i}]", x) for i, x in enumerate(xs)], op=op)
    channels = {x.shape[0] for x in xs}
    device = xs[0].device
    name = backends.resolve(backend, device, op=op)
    impl = _dispatch.implementation(name)
    max_h = max(x.shape[1] for x in xs)
    max_w = max(x.shape[2] for x in xs)
    num_channels = max(channels)
    # Zero planes and a zero inverse norm outside each image keep the padded batch exact.
    batch = len(xs)
    values = xs[0].new_zeros((batch, num_channels, max_h, max_w))
    planes = xs[0].new_zeros((batch, num_dirs, max_h, max_w))
    inv_norm = xs[0].new_zeros((batch, max_h, max_w))
    for i, (x, source) in enumerate(zip(xs, sources)):
        c, h, w = x.shape
        planes_i, inv_i = _weights(source.unsqueeze(0), kind, radius, beta, name)
        planes[i, :, :h, :w] = planes_i[0]
        inv_norm[i, :h, :w] = inv_i[0]
        values[i, :c, :h, :w] = _walk_input(x, source, kind)
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
        Tensor[C, 1, h, w], equal to the reference up to float rounding (and ``tol``);
        differentiable with respect to ``x`` and ``edge``.
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
    rw = _random_walk(x.reshape(1, channels, height, width), edge.unsqueeze(0), None, radius, beta, exp_times,
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

    def forward(self, x, edge=None, *, affinity=None):
        return random_walk(x, edge, self.radius, self.beta, self.exp_times, affinity=affinity, backend=self.backend,
                           method=self.method, tol=self.tol)

    def extra_repr(self) -> str:
        return (f"radius={self.radius}, beta={self.beta}, exp_times={self.exp_times}, backend={self.backend!r}, "
                f"method={self.method!r}, tol={self.tol}")
