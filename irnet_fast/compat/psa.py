"""Drop-in pieces for code copied from AffinityNet (psa): ``from irnet_fast.compat import psa``.

Same names, signatures and arrays as its ``get_indices_of_pairs`` (``tool/pyutils``),
``get_indices_in_radius`` (``infer_aff.py``) and its label extraction (``ExtractAffinityLabelInRadius``); ``affinity``
is the affinity head's forward after the features (``aff`` or, with ``to_dense``, the dense matrix),
``propagate`` the walk of ``infer_aff.py`` (``cam @ T ** (2 ** logt)``) without the dense matrix, and
``infer_labels`` its whole per-image block (CAMs + features -> labels).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_radius, check_tensor
from ..ops.affinity import path_affinity_labels
from ..ops.feature_affinity import feature_affinity
from ..ops.path_index import geometry
from ..ops.random_walk import random_walk

__all__ = ["get_indices_of_pairs", "get_indices_in_radius", "affinity", "propagate", "infer_labels",
           "ExtractAffinityLabelInRadius", "psa_order"]


def psa_order(radius: int) -> np.ndarray:
    """Index into irnet_fast's directions of each of AffinityNet's (its order: row by row)."""
    dst = geometry(check_radius(radius, op="psa_order")).search_dst.tolist()
    position = {tuple(d): k for k, d in enumerate(dst)}
    psa = [(0, x) for x in range(1, radius)] + [(y, x) for y in range(1, radius)
                                                for x in range(-radius + 1, radius) if x * x + y * y < radius * radius]
    return np.asarray([position[d] for d in psa], dtype=np.int64)


def _crop(radius: int, height: int, width: int, *, op: str) -> Tuple[int, int, int]:
    rf = geometry(radius).radius_floor
    if height <= rf or width <= 2 * rf:
        raise ValueError(f"{op}(): size expected more than {rf} x {2 * rf} for radius {radius}, got {height} x {width}")
    return rf, height - rf, width - 2 * rf


def get_indices_of_pairs(radius: int, size) -> Tuple[np.ndarray, np.ndarray]:
    """``(indices_from [M], indices_to [D * M])`` int64, AffinityNet's arrays for a ``size = (h, w)`` map:
    sources are the pixels with ``y < h - r + 1`` and ``r - 1 <= x < w - r + 1`` in raster order,
    ``indices_to`` their destinations direction by direction (AffinityNet's order)."""
    op = "get_indices_of_pairs"
    radius = check_radius(radius, op=op)
    height, width = int(size[0]), int(size[1])
    rf, crop_h, crop_w = _crop(radius, height, width, op=op)
    ys, xs = np.meshgrid(np.arange(crop_h), np.arange(rf, rf + crop_w), indexing="ij")
    indices_from = (ys * width + xs).reshape(-1).astype(np.int64)
    dst = geometry(radius).search_dst[psa_order(radius)]
    indices_to = (indices_from[None, :] + (dst[:, 0] * width + dst[:, 1])[:, None]).reshape(-1)
    return indices_from, indices_to.astype(np.int64)


def get_indices_in_radius(height: int, width: int, radius: int) -> np.ndarray:
    """AffinityNet's pair list ``[D * M, 2]`` (``infer_aff.py``): ``(from, to)`` of every pair,
    direction by direction."""
    indices_from, indices_to = get_indices_of_pairs(radius, (height, width))
    return np.stack([np.tile(indices_from, len(indices_to) // max(1, len(indices_from))), indices_to], axis=1)


def affinity(features: Tensor, radius: int = 5, to_dense: bool = False, *, backend: str = "auto") -> Tensor:
    """The affinity head's output from its features ``[B, F, h, w]``: ``aff [B, D, M]`` in
    AffinityNet's pair order (differentiable), or with ``to_dense`` (one image) the symmetric
    ``[N, N]`` matrix with ones on the diagonal (small maps only)."""
    op = "affinity"
    radius = check_radius(radius, op=op)
    check_tensor(features, op=op, name="features", dims=["B", "F", "h", "w"])
    height, width = features.shape[-2:]
    rf, crop_h, crop_w = _crop(radius, height, width, op=op)
    planes = feature_affinity(features, radius, region="psa", backend=backend)
    aff = planes[:, torch.as_tensor(psa_order(radius), device=planes.device), :crop_h, rf:rf + crop_w]
    aff = aff.reshape(aff.shape[0], aff.shape[1], crop_h * crop_w)
    if not to_dense:
        return aff
    if features.shape[0] != 1:
        raise ValueError(f"{op}(): to_dense expected one image (features [1, F, h, w]), got {tuple(features.shape)}")
    indices_from, indices_to = get_indices_of_pairs(radius, (height, width))
    num = height * width
    rows = torch.from_numpy(np.tile(indices_from, aff.shape[1])).to(features.device)
    cols = torch.from_numpy(indices_to).to(features.device)
    dense = torch.eye(num, dtype=aff.dtype, device=features.device)
    values = aff.reshape(-1)
    dense = dense.index_put((rows, cols), values, accumulate=True).index_put((cols, rows), values, accumulate=True)
    return dense


def propagate(cam: Tensor, features: Tensor, beta: float = 8, logt: int = 8, radius: int = 5, *,
              backend: str = "auto", method: str = "chebyshev", tol: Optional[float] = None) -> Tensor:
    """``infer_aff.py``'s walk: ``cam [C, h, w]`` on the feature grid, ``features [1, F, h, w]`` ->
    ``(cam.view(C, -1) @ T ** (2 ** logt)).view(C, h, w)`` with ``T = aff ** beta / column sums``.

    ``O(N)`` memory instead of the dense ``N x N`` powers; differentiable in ``cam`` and ``features``.
    ``method`` / ``tol``: as :func:`irnet_fast.ops.random_walk`.
    """
    op = "propagate"
    check_tensor(cam, op=op, name="cam", dims=["C", "h", "w"])
    check_tensor(features, op=op, name="features", dims=["1", "F", "h", "w"])
    if tuple(cam.shape[-2:]) != tuple(features.shape[-2:]):
        raise ValueError(f"{op}(): cam expected the feature grid {tuple(features.shape[-2:])}, got {tuple(cam.shape)}")
    aff = feature_affinity(features.to(cam.dtype), radius, region="psa", backend=backend)
    return random_walk(cam.unsqueeze(0), affinity=aff, radius=radius, beta=beta, exp_times=logt, backend=backend,
                       method=method, tol=tol)[0]


def infer_labels(cams: Tensor, features: Tensor, image_size, keys=None, *, alpha: float = 16, beta: float = 8,
                 logt: int = 8, radius: int = 5, stride: int = 8, backend: str = "auto") -> Tensor:
    """``infer_aff.py``'s per-image block: foreground CAMs ``[K, H, W]`` at image size (the values of
    its CAM dict), their class ids ``keys`` (its keys, 0-based; None: ``0 .. K - 1``), features
    ``[1, F, ceil(H / 8), ceil(W / 8)]`` -> int64 labels ``[H, W]`` (0 background, ``key + 1``).

    The background is ``(1 - max_k cam_k) ** alpha``; the maps are zero-padded to a multiple of
    ``stride``, average-pooled by it, walked, upsampled bilinearly to the padded size and cropped.
    """
    op = "infer_labels"
    check_tensor(cams, op=op, name="cams", dims=["K", "H", "W"])
    height, width = int(image_size[0]), int(image_size[1])
    if tuple(cams.shape[-2:]) != (height, width):
        raise ValueError(f"{op}(): cams expected image_size {height} x {width}, got {tuple(cams.shape)}")
    pad_h, pad_w = -height % stride, -width % stride
    fg_max = cams.max(0)[0] if cams.shape[0] else cams.new_zeros((height, width))
    full = torch.cat([((1 - fg_max) ** alpha).unsqueeze(0), cams], 0)
    full = F.pad(full, (0, pad_w, 0, pad_h))
    pooled = F.avg_pool2d(full.unsqueeze(0), stride, stride)[0]
    walked = propagate(pooled, features, beta=beta, logt=logt, radius=radius, backend=backend)
    up = F.interpolate(walked.unsqueeze(0), (height + pad_h, width + pad_w), mode="bilinear", align_corners=False)[0]
    best = up.argmax(0)[:height, :width]
    if keys is None:
        return best
    table = torch.as_tensor([0] + [int(k) + 1 for k in keys], dtype=torch.int64, device=best.device)
    return table[best]


class ExtractAffinityLabelInRadius:
    """AffinityNet's ``tool/data.ExtractAffinityLabelInRadius`` (labels >= 255 ignored): called on a
    label map ``[cropsize, cropsize]``, returns ``(bg_pos, fg_pos, neg)`` float32 ``[D, M]``."""

    def __init__(self, cropsize: int, radius: int = 5):
        self.radius = check_radius(radius, op="ExtractAffinityLabelInRadius")
        self.cropsize = cropsize
        self.order = torch.from_numpy(psa_order(self.radius))

    def __call__(self, label):
        labels = path_affinity_labels(np.asarray(label), self.radius, ignore_from=255)
        return tuple(t[self.order] for t in labels)
