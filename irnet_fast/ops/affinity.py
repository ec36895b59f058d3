"""Inter-pixel affinities from boundary maps, affinity labels and pair displacements.

``path_affinity`` is the kernel form of the reference's ``edge_to_affinity``: the same
``(B, D, M)`` affinities, computed without index arrays, differentiable on every backend.
"""
from __future__ import annotations

import numbers

from typing import Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .. import backends
from .._ext import threads_capped_when_busy
from .._checks import check_radius, check_tensor, check_unit_interval, upcast_half
from . import _autograd, _dispatch, _reference
from .path_index import PathIndex, geometry, geometry_on, path_geometry, radius_floor

__all__ = ["edge_to_affinity", "path_affinity", "PathAffinity", "affinity_labels",
           "path_affinity_labels", "to_pair_displacement"]


def edge_to_affinity(edge: Tensor, paths_indices: Sequence) -> Tensor:
    """The reference's index-array form: ``1 - max`` of ``edge`` gathered along each path.

    Args:
        edge (Tensor[B, ...]): boundary probabilities, flattened per image to ``H * W``.
        paths_indices (list): ``PathIndex(...).path_indices`` (int64 ``(n_dirs, L, M)`` arrays).

    Returns:
        Tensor[B, D, M]. Runs on ``edge``'s device (the reference always moved to CUDA).
        Prefer :func:`path_affinity`, which needs no index arrays and is much faster.
    """
    if not isinstance(edge, Tensor) or edge.dim() < 2 or not edge.is_floating_point():
        got = f"{edge.dtype} {tuple(edge.shape)}" if isinstance(edge, Tensor) else type(edge).__name__
        raise TypeError(f"edge_to_affinity(): edge expected a floating tensor [B, ...], got {got}")
    _check_path_indices(paths_indices, edge[0].numel(), edge.shape[-1] if edge.dim() >= 3 else None,
                        op="edge_to_affinity")
    return _reference.edge_to_affinity(edge, paths_indices)


def _check_path_indices(paths_indices, num_pixels: int, edge_width, *, op: str) -> None:
    """``paths_indices`` must index the grid of ``num_pixels`` pixels it was made for.

    The grid width follows from the two-point paths (offsets (0, 1) and (1, 0) give index steps 1
    and W); the grid must then be ``H x W`` with ``M = (H - rf)(W - 2 rf)``
    sources for some ``radius_floor`` rf. A PathIndex of another size is refused instead of
    reading out of bounds or silently mixing rows.
    """
    if not isinstance(paths_indices, (list, tuple)):
        raise TypeError(f"{op}(): paths_indices expected a list of index arrays (PathIndex.path_indices), got "
                        f"{type(paths_indices).__name__}")
    groups = []
    for i, indices in enumerate(paths_indices):
        arr = torch.as_tensor(np.asarray(indices)) if not isinstance(indices, Tensor) else indices
        if arr.dim() != 3 or arr.is_floating_point() or arr.dtype == torch.bool:
            raise ValueError(f"{op}(): paths_indices[{i}] expected an integer array (n_dirs, L, M), got "
                             f"{arr.dtype} {tuple(arr.shape)}")
        groups.append(arr)
    if not groups or not any(g.numel() for g in groups):
        return
    sources = {g.shape[2] for g in groups}
    if len(sources) != 1:
        raise ValueError(f"{op}(): paths_indices expected the same number of sources M in every group, got "
                         f"{sorted(sources)}")
    lowest, highest = min(int(g.min()) for g in groups if g.numel()), max(int(g.max()) for g in groups if g.numel())
    if lowest < 0 or highest >= num_pixels:
        raise ValueError(f"{op}(): edge expected at least {highest + 1} pixels per image (the grid of the PathIndex "
                         f"that made paths_indices), got {num_pixels}")
    pairs = [g for g in groups if g.shape[1] == 2 and g.shape[2] > 0]
    if not pairs:
        return
    width = int((pairs[0][:, 0, 0] - pairs[0][:, -1, 0]).max())
    m = sources.pop()
    height = num_pixels // width if width > 0 else 0
    fits = width > 0 and height * width == num_pixels and edge_width in (None, width) and any(
        (height - rf) * (width - 2 * rf) == m for rf in range(0, min(height, width // 2) + 1))
    if not fits:
        raise ValueError(f"{op}(): edge expected the grid of the PathIndex that made paths_indices ({width} pixels "
                         f"wide, {m} sources), got {num_pixels} pixels per image; build the PathIndex with "
                         f"default_size=(H, W) of this edge map")


class _AffinityFunction(torch.autograd.Function):
    """Autograd for backends whose kernels are plain functions (numba, cupy)."""

    @staticmethod
    def forward(ctx, edge, impl, paths, lengths, radius_floor):
        affinity, argmax = impl.path_affinity(edge, paths, lengths, radius_floor)
        _autograd.save_affinity(ctx, impl, edge, argmax, paths, lengths, radius_floor)
        return affinity

    @staticmethod
    def backward(ctx, grad):
        return _autograd.affinity_backward(ctx, grad), None, None, None, None


def _as_edge_batch(edge, *, op: str) -> Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` boundary maps -> contiguous ``(B, H, W)``."""
    if isinstance(edge, Tensor) and edge.dim() == 4:
        check_tensor(edge, op=op, name="edge", dims=["B", "1", "H", "W"])
        edge = edge[:, 0]
    else:
        check_tensor(edge, op=op, name="edge", dims=["B", "H", "W"])
    check_unit_interval(edge, op=op, name="edge")
    return edge.contiguous()


@threads_capped_when_busy
def path_affinity(edge: Tensor, radius: int = 10, *, backend: str = "auto") -> Tensor:
    r"""Affinity of every source pixel to each of its ``D`` search destinations.

    Equals ``edge_to_affinity(edge, PathIndex(radius, (H, W)).path_indices)`` without building
    the index arrays. Differentiable: the gradient reaches the arg-max point of each path (the
    first one on ties, destination first), deterministically (a gather, no atomics).

    Args:
        edge (Tensor[B, 1, H, W] or Tensor[B, H, W]): boundary probability in [0, 1]; float16 and
            bfloat16 are computed in float32 and returned in their own dtype.
        radius (int): search radius, >= 1 (IRNet trains with 10).
        backend (str): "auto" | "cuda" | "cupy" | "cpp" | "numba" | "torch".

    Returns:
        Tensor[B, D, M] with ``M = (H - radius_floor) * (W - 2 * radius_floor)``.
    """
    op = "path_affinity"
    radius = check_radius(radius, op=op)
    dtype = edge.dtype if isinstance(edge, Tensor) else None
    edge = _as_edge_batch(*upcast_half(edge), op=op)
    rf = radius_floor(radius)
    height, width = edge.shape[-2:]
    if height < rf or width < 2 * rf:
        raise ValueError(f"{op}(): edge expected at least {rf} x {2 * rf} "
                         f"pixels for radius {radius}, got {height} x {width}")
    name = backends.resolve(backend, edge.device, op=op)
    impl = _dispatch.implementation(name)
    paths, lengths = geometry_on(radius, edge.device)
    if impl.DIFFERENTIABLE:
        affinity = impl.path_affinity(edge, paths, lengths, rf)[0]
    else:
        affinity = _AffinityFunction.apply(edge, impl, paths, lengths, rf)
    return affinity.reshape(*affinity.shape[:2], affinity.shape[2] * affinity.shape[3]).to(dtype)


class PathAffinity(nn.Module):
    """Module twin of :func:`path_affinity`."""

    def __init__(self, radius: int = 10, *, backend: str = "auto"):
        super().__init__()
        self.radius = check_radius(radius, op="PathAffinity")
        self.backend = backend

    def forward(self, edge: Tensor) -> Tensor:
        return path_affinity(edge, self.radius, backend=self.backend)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, backend={self.backend!r}"


def affinity_labels(segm_map, indices_from, indices_to) -> Tuple[Tensor, Tensor, Tensor]:
    """The reference's affinity label extraction from index arrays.

    Args:
        segm_map (array[H, W]): labels, 0 background, 1..20 classes, >= 21 (255) ignored.
        indices_from: ``PathIndex.src_indices``; indices_to: ``PathIndex.dst_indices``.

    Returns:
        ``(bg_pos, fg_pos, neg)``, float32 tensors ``(D, M)``.
    """
    return _reference.affinity_labels(segm_map, indices_from, indices_to)


def path_affinity_labels(segm_map, radius: int = 10, *, ignore_from: int = 21) -> Tuple[Tensor, Tensor, Tensor]:
    """Fast :func:`affinity_labels` from the radius alone (shifted views, any device, batched).

    Args:
        segm_map (Tensor[H, W] or Tensor[B, H, W], integer): label map at the affinity stride.
        radius (int): search radius (10 in IRNet training).
        ignore_from (int): labels >= this value are ignored (21 for VOC, 81 for COCO).

    Returns:
        ``(bg_pos, fg_pos, neg)`` float32 of shape ``(D, M)`` (or ``(B, D, M)`` for a batch),
        equal to :func:`affinity_labels` with ``PathIndex(radius, (H, W))``.
    """
    op = "path_affinity_labels"
    radius = check_radius(radius, op=op)
    if isinstance(ignore_from, bool) or not isinstance(ignore_from, numbers.Integral):
        raise TypeError(f"{op}(): ignore_from expected an integer label (21 for VOC), got {ignore_from!r}")
    if isinstance(segm_map, np.ndarray):  # torch takes neither negative strides nor a foreign byte order
        segm_map = np.ascontiguousarray(segm_map, dtype=segm_map.dtype.newbyteorder("="))
    if not isinstance(segm_map, (Tensor, np.ndarray)):
        raise TypeError(f"{op}(): segm_map expected a tensor or array [H, W] or [B, H, W], got "
                        f"{type(segm_map).__name__}")
    labels = torch.as_tensor(segm_map)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{op}(): segm_map expected an integer label map, got {labels.dtype}")
    batched = labels.dim() == 3
    if labels.dim() not in (2, 3):
        raise ValueError(f"{op}(): segm_map expected shape [H, W] or [B, H, W], got {tuple(labels.shape)}")
    labels = labels.reshape(-1, *labels.shape[-2:]).long()
    geo = geometry(radius)
    rf = geo.radius_floor
    height, width = labels.shape[-2:]
    if height < rf or width < 2 * rf:
        raise ValueError(f"{op}(): segm_map expected at least {rf} x {2 * rf} for radius {radius}, "
                         f"got {height} x {width}")
    crop_h, crop_w = height - rf, width - 2 * rf
    if len(geo.search_dst) == 0:  # radius 1: no directions
        empty = torch.zeros((labels.shape[0], 0, crop_h * crop_w), dtype=torch.float32, device=labels.device)
        return tuple((empty if batched else empty[0]) for _ in range(3))
    src = labels[:, :crop_h, rf:rf + crop_w].unsqueeze(1)
    dst = torch.stack([labels[:, dy:dy + crop_h, rf + dx:rf + dx + crop_w] for dy, dx in geo.search_dst.tolist()], 1)
    valid = (src < ignore_from) & (dst < ignore_from)
    equal = src == dst
    pos = equal & valid
    out = [(pos & (src == 0)), (pos & (src > 0)), (~equal & valid)]
    out = [t.to(torch.float32).reshape(labels.shape[0], len(geo.search_dst), crop_h * crop_w) for t in out]
    return tuple(t if batched else t[0] for t in out)


def to_pair_displacement(path_index: Union[PathIndex, int], disp: Tensor) -> Tensor:
    """``disp(src) - disp(dst)`` for every search direction (IRNet's displacement loss input).

    Args:
        path_index (PathIndex or int): the search geometry, or its radius. Any object with the
            reference's ``PathIndex`` attributes works (``radius_floor`` and ``search_dst`` are
            read), the reference's own ``PathIndex`` included.
        disp (Tensor[B, 2, H, W]): displacement field.

    Returns:
        Tensor[B, 2, D, M]; differentiable (views and a subtraction).
    """
    op = "to_pair_displacement"
    radius_floor, search_dst = path_geometry(path_index, op=op)
    check_tensor(disp, op=op, name="disp", dims=["B", "2", "H", "W"])
    rf = radius_floor
    if disp.shape[2] < rf or disp.shape[3] < 2 * rf:
        raise ValueError(f"{op}(): disp expected at least {rf} x {2 * rf} pixels, got {tuple(disp.shape[2:])}")
    if len(search_dst) == 0:  # radius 1: no directions
        return disp.new_zeros((disp.shape[0], 2, 0, (disp.shape[2] - rf) * (disp.shape[3] - 2 * rf)))
    return _reference.to_pair_displacement(_GeometryView(radius_floor, search_dst), disp)


class _GeometryView:
    """The two attributes of a PathIndex that to_pair_displacement reads."""

    def __init__(self, radius_floor, search_dst):
        self.radius_floor, self.search_dst = radius_floor, search_dst
