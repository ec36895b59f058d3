"""Search geometry of IRNet: directions, paths and index arrays (docs/algorithm.md, "Geometry")."""
from __future__ import annotations

import functools
import math
import numbers
from typing import Any, List, NamedTuple, Sequence, Tuple

import numpy as np
import torch

from .._checks import check_radius, constant_result

__all__ = ["PathIndex", "Geometry", "geometry", "path_geometry"]


def _search_paths_dst(radius: int) -> Tuple[List[np.ndarray], np.ndarray]:
    """Directions grouped by path length, exactly in the reference's order."""
    directions = [(0, x) for x in range(1, radius)]
    directions += [(y, x) for y in range(1, radius) for x in range(-radius + 1, radius)
                   if x * x + y * y < radius * radius]
    by_length: dict = {}
    for dy, dx in directions:
        ys = np.arange(min(0, dy), max(0, dy) + 1)
        xs = np.arange(min(0, dx), max(0, dx) + 1)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")  # y outer, x inner, as the reference scans
        yy, xx = yy.ravel(), xx.ravel()
        # (dy*x - dx*y)^2 / |d|^2 < 1, in exact integer arithmetic
        on_line = (dy * xx - dx * yy) ** 2 < dy * dy + dx * dx
        path = np.stack([yy[on_line], xx[on_line]], axis=1)
        path = path[np.argsort(-(np.abs(path[:, 0]) + np.abs(path[:, 1])), kind="stable")]
        by_length.setdefault(len(path), []).append(path)
    search_paths = [np.asarray(by_length[n], dtype=np.int64) for n in sorted(by_length)]
    if not search_paths:
        return [], np.zeros((0, 2), dtype=np.int64)
    search_dst = np.concatenate([p[:, 0] for p in search_paths], axis=0)
    return search_paths, search_dst


class Geometry(NamedTuple):
    """Flat, kernel-friendly form of the search paths of one radius.

    Attributes:
        radius (int): search radius.
        radius_floor (int): ``ceil(radius) - 1``.
        search_paths (list[np.ndarray]): per length group, ``(n_dirs, L, 2)`` int64.
        search_dst (np.ndarray): ``(D, 2)`` destinations in grouped order.
        paths (Tensor[D, L_max, 2] int32): every path, padded with its last point.
        lengths (Tensor[D] int32): points on each path.
    """
    radius: int
    radius_floor: int
    search_paths: List[np.ndarray]
    search_dst: np.ndarray
    paths: torch.Tensor
    lengths: torch.Tensor


@functools.lru_cache(maxsize=None)
def geometry(radius: int) -> Geometry:
    """The cached search geometry for ``radius`` (CPU tensors; see :func:`geometry_on`)."""
    search_paths, search_dst = _search_paths_dst(radius)
    num_dirs = len(search_dst)
    max_len = max((p.shape[1] for p in search_paths), default=1)
    paths = np.zeros((num_dirs, max_len, 2), dtype=np.int32)
    lengths = np.zeros(num_dirs, dtype=np.int32)
    row = 0
    for group in search_paths:
        n, length = group.shape[:2]
        paths[row:row + n, :length] = group
        paths[row:row + n, length:] = group[:, -1:]
        lengths[row:row + n] = length
        row += n
    return Geometry(radius, int(math.ceil(radius) - 1), search_paths, search_dst,
                    torch.from_numpy(paths), torch.from_numpy(lengths))


def radius_floor(radius: int) -> int:
    """``ceil(radius) - 1``: rows and columns of the margin the search window needs."""
    return int(math.ceil(radius)) - 1


def geometry_on(radius: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(paths, lengths)`` of :func:`geometry` on ``device``, cached per device.

    While torch.compile / torch.export trace, the same tensors are built from constants (the
    tracer cannot run the NumPy construction of :func:`geometry`)."""
    if torch.compiler.is_compiling():
        paths, lengths = _geometry_constants(radius)
        return (torch.tensor(paths, dtype=torch.int32, device=device),
                torch.tensor(lengths, dtype=torch.int32, device=device))
    return _geometry_on(radius, device)


@functools.lru_cache(maxsize=64)
def _geometry_on(radius: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    geo = geometry(radius)
    return geo.paths.to(device), geo.lengths.to(device)


def path_geometry(path_index: Any, *, op: str) -> Tuple[int, np.ndarray]:
    """``(radius_floor, search_dst (D, 2) int64)`` of a radius or of any PathIndex-like object.

    Duck typed: an object with the reference's ``PathIndex`` attributes (``radius_floor`` and
    ``search_dst``; ``radius``, ``path_indices``, ... are not needed) is used as it is, so the
    reference's own ``PathIndex`` and irnet_fast's are interchangeable; an integer is a radius.
    """
    if hasattr(path_index, "radius_floor") and hasattr(path_index, "search_dst"):
        rf = path_index.radius_floor
        dst = np.asarray(path_index.search_dst)
        if isinstance(rf, bool) or not isinstance(rf, numbers.Integral) or rf < 0:
            raise ValueError(f"{op}(): path_index.radius_floor expected an integer >= 0, got {rf!r}")
        if dst.ndim != 2 or dst.shape[1] != 2 or (dst.size and dst.dtype.kind not in "iu"):
            raise ValueError(f"{op}(): path_index.search_dst expected integer offsets of shape (D, 2), got "
                             f"shape {dst.shape} dtype {dst.dtype}")
        return int(rf), dst.astype(np.int64, copy=False)
    if isinstance(path_index, numbers.Integral) and not isinstance(path_index, bool):
        geo = geometry(check_radius(path_index, op=op))
        return geo.radius_floor, geo.search_dst
    raise ValueError(f"{op}(): path_index expected a PathIndex (any object with radius_floor and search_dst) "
                     f"or a radius >= 1, got {type(path_index).__name__}")


@constant_result
def _geometry_constants(radius: int):
    geo = geometry(radius)
    return geo.paths.tolist(), geo.lengths.tolist()


class PathIndex:
    """Drop-in replacement of the reference's ``PathIndex`` (docs/algorithm.md, "Geometry").

    Args:
        radius (int): search radius (>= 1); 5 for inference, 10 for training.
        default_size (tuple[int, int]): grid ``(H, W)`` the index arrays are built for.

    Attributes match the reference: ``radius``, ``radius_floor``, ``search_paths``,
    ``search_dst``, ``path_indices`` (list of int64 ``(n_dirs, L, M)``), ``src_indices``
    (``(M,)``) and ``dst_indices`` (``(D, M)``), all NumPy arrays.
    """

    def __init__(self, radius: int = 10, default_size: Sequence[int] = (48, 48)):
        check_radius(radius, op="PathIndex")
        geo = geometry(int(radius))
        self.radius = int(radius)
        self.radius_floor = geo.radius_floor
        self.search_paths = geo.search_paths
        self.search_dst = geo.search_dst
        self.path_indices, self.src_indices, self.dst_indices = self.get_path_indices(default_size)

    def get_search_paths_dst(self, max_radius: int = 5) -> Tuple[List[np.ndarray], np.ndarray]:
        """``(search_paths, search_dst)`` for ``max_radius``, as the reference's method of this name:
        the paths grouped by length (int64 ``(n_dirs, L, 2)`` each) and the ``(D, 2)`` destinations."""
        return _search_paths_dst(check_radius(max_radius, op="PathIndex.get_search_paths_dst"))

    @property
    def num_directions(self) -> int:
        return len(self.search_dst)

    def get_path_indices(self, size: Sequence[int]):
        """Index arrays for a grid of ``size``, built by broadcasting (no per-pixel loops)."""
        height, width = _check_size(size, self.radius_floor)
        crop_h, crop_w = height - self.radius_floor, width - 2 * self.radius_floor
        rows = np.arange(crop_h, dtype=np.int64)[:, None]
        cols = np.arange(crop_w, dtype=np.int64)[None, :] + self.radius_floor
        window = (rows * width + cols).reshape(-1)  # flat indices of the sources
        path_indices = []
        for group in self.search_paths:
            shift = group[..., 0:1] * width + group[..., 1:2]  # (n_dirs, L, 1)
            path_indices.append(shift + window[None, None, :])
        dst_indices = (np.concatenate([p[:, 0] for p in path_indices], axis=0) if path_indices
                       else np.zeros((0, window.size), dtype=np.int64))
        return path_indices, window, dst_indices

    def __repr__(self) -> str:
        return f"PathIndex(radius={self.radius}, directions={self.num_directions})"


def _check_size(size: Sequence[int], radius_floor: int) -> Tuple[int, int]:
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"PathIndex(): default_size expected (height, width), got {size!r}") from None
    if height < radius_floor or width < 2 * radius_floor:
        raise ValueError(
            f"PathIndex(): default_size expected at least ({radius_floor}, {2 * radius_floor}) "
            f"for radius_floor {radius_floor}, got ({height}, {width})")
    return height, width
