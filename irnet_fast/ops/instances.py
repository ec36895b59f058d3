"""Instance ops of IRNet (docs/algorithm.md, "Instances"): centroid refinement, clustering, instance detection.

Every op takes NumPy arrays or torch tensors and returns the same kind (tensors on the input's
device). ``find_centroids_with_refinement`` runs on every backend and reproduces the reference bit
for bit; the labelling in ``cluster_centroids`` and ``detect_instance`` uses SciPy on the CPU and
min-label propagation in torch on a GPU (or with ``backend="torch"``); both number components
in raster order of their first pixel, as the reference's ``skimage.measure.label`` does.
"""
from __future__ import annotations

import numbers
from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import backends
from .._ext import threads_capped_when_busy
from . import _dispatch
from .._checks import check_array, check_finite, check_number, check_same_kind, describe

__all__ = ["find_centroids_with_refinement", "cluster_centroids", "detect_instance", "separate_score_by_mask"]

Array = Union[np.ndarray, Tensor]
_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _tensor(x: Array) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x.detach()


def _label_on_gpu(backend: str, device: torch.device, *, op: str) -> bool:
    """Whether the connected components come from torch (GPU tensors, or backend="torch") rather
    than SciPy; validates ``backend`` against the device like the other ops."""
    if backend is None or backend == "auto":
        return device.type != "cpu"
    return backends.resolve(backend, device, op=op) == "torch" or device.type != "cpu"


def _label_numpy(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    from scipy import ndimage
    labels, count = ndimage.label(mask, structure=_FOUR_CONNECTED)
    return labels, int(count)


# ----------------------------------------------------------------------------------------------
# ops
# ----------------------------------------------------------------------------------------------

@threads_capped_when_busy
def find_centroids_with_refinement(displacement: Array, iterations: int = 300, *, backend: str = "auto") -> Array:
    """Move every pixel along the displacement field to its instance centroid (IRNet, eq. 7).

    Each pixel starts at its own coordinates and ``iterations`` times adds the bilinear sample of
    the field at its current position, clipped to the image; the result is rounded half to even.
    The arithmetic is the reference's, bit for bit: float32 centroids, float64 weights and sums.
    A centroid that stops moving is a fixed point, so the kernels stop early (same result).

    Args:
        displacement (array or Tensor[2, h, w], floating): (dy, dx) per pixel, in pixels (float16 and
            bfloat16 are computed in float32).
        iterations (int): refinement steps (300 in IRNet).
        backend (str): "auto" | "cuda" | "cupy" | "cpp" | "numba" | "torch".

    Returns:
        int32 centroids ``(2, h, w)`` (row, column): a NumPy array for NumPy input, else a tensor on
        the input's device.
    """
    op = "find_centroids_with_refinement"
    check_array(displacement, op=op, name="displacement", dims=("2", "h", "w"), kind="anyfloat", tensors=True)
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or \
            not 0 <= iterations < 2 ** 31:
        raise ValueError(f"{op}(): iterations expected an integer in [0, 2**31), got {iterations!r}")
    as_numpy = isinstance(displacement, np.ndarray)
    field = _tensor(displacement)
    if field.dtype in (torch.float16, torch.bfloat16):  # computed in float32, as the other ops
        field = field.float()
    if max(field.shape[1:]) >= 2 ** 24:  # coordinates must be exact in float32
        raise ValueError(f"{op}(): displacement expected h, w < 2**24, got {describe(field)}")
    check_finite(field, op=op, name="displacement")
    name = backends.resolve(backend, field.device, op=op)
    impl = _dispatch.implementation(name)
    with torch.no_grad():
        out = impl.find_centroids(field.contiguous(), int(iterations))
    return out.numpy() if as_numpy else out


def _cluster_map_numpy(centroids: np.ndarray, displacement: np.ndarray, thres: float) -> np.ndarray:
    height, width = displacement.shape[1:]
    strength = np.sqrt(displacement[1] ** 2 + displacement[0] ** 2)
    labels, _ = _label_numpy(strength < thres)
    clusters = labels.reshape(-1)[centroids[0].astype(np.int64) * width + centroids[1]]
    _, ids = np.unique(clusters, return_inverse=True)  # compress_range: increasing labels -> 0, 1, ...
    return ids.reshape(height, width)


def _cluster_map_torch(centroids: Tensor, displacement: Tensor, thres: float) -> Tensor:
    from . import _torch
    height, width = displacement.shape[1:]
    strength = torch.sqrt(displacement[1] ** 2 + displacement[0] ** 2)
    labels, _ = _torch.label_components(strength < thres)
    clusters = labels.reshape(-1)[centroids[0].long() * width + centroids[1].long()]
    _, ids = torch.unique(clusters, return_inverse=True)
    return ids.reshape(height, width)


def cluster_centroids(centroids: Array, displacement: Array, thres: float = 2.5, *, backend: str = "auto") -> Array:
    """Group pixels by the weak-displacement region their centroid falls in.

    Pixels whose displacement norm is ``< thres`` form a mask; its 4-connected components are
    numbered in raster order of their first pixel (0 outside the mask). Every pixel takes the
    component at its centroid; those numbers are compressed to ``0 .. U-1`` in increasing order.

    Args:
        centroids (int array or Tensor[2, h, w]): from :func:`find_centroids_with_refinement`.
        displacement (array or Tensor[2, h, w], float32 or float64).
        thres (float): displacement norm below which a pixel is a centroid candidate (2.5).
        backend (str): "auto" (SciPy on the CPU, torch on a GPU) or "torch" (torch anywhere); the
            other backends' names are accepted and label with SciPy on the CPU.

    Returns:
        bool one-hot clusters ``(U, h, w)``, same kind and device as the input.
    """
    op = "cluster_centroids"
    check_array(centroids, op=op, name="centroids", dims=("2", "h", "w"), kind="int", tensors=True)
    check_array(displacement, op=op, name="displacement", dims=("2", "h", "w"), kind="float", tensors=True)
    check_same_kind(centroids, displacement, op=op, names=("centroids", "displacement"))
    if tuple(centroids.shape) != tuple(displacement.shape):
        raise ValueError(f"{op}(): displacement expected shape {tuple(centroids.shape)} like centroids, "
                         f"got {describe(displacement)}")
    thres = check_number(thres, op=op, name="thres")
    height, width = displacement.shape[1:]
    if height * width == 0:
        empty = np.zeros((0, height, width), dtype=bool)
        return empty if isinstance(displacement, np.ndarray) else torch.from_numpy(empty).to(displacement.device)
    c = _tensor(centroids)
    if int(c[0].min()) < 0 or int(c[0].max()) >= height or int(c[1].min()) < 0 or int(c[1].max()) >= width:
        raise ValueError(f"{op}(): centroids expected rows in [0, {height - 1}] and columns in [0, {width - 1}], "
                         f"got rows in [{int(c[0].min())}, {int(c[0].max())}] and columns in "
                         f"[{int(c[1].min())}, {int(c[1].max())}]")
    if isinstance(displacement, np.ndarray):
        _label_on_gpu(backend, torch.device("cpu"), op=op)
        ids = _cluster_map_numpy(np.asarray(centroids), displacement, thres)
        return ids[None] == np.arange(int(ids.max()) + 1).reshape(-1, 1, 1)
    if _label_on_gpu(backend, displacement.device, op=op):
        ids = _cluster_map_torch(c, displacement.detach(), thres)
    else:
        ids = torch.from_numpy(_cluster_map_numpy(c.numpy(), displacement.detach().numpy(), thres))
    return ids.unsqueeze(0) == torch.arange(int(ids.max()) + 1, device=ids.device).view(-1, 1, 1)


def _segment_scores_numpy(score: np.ndarray, mask: np.ndarray, max_fragment_size: float):
    """Segments of one mask: (scores float32 [n], component labels int [h, w] (0 outside), n)."""
    from scipy import ndimage
    labels, count = _label_numpy(mask)
    index = np.arange(1, count + 1)
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
    best = np.asarray(ndimage.maximum(score, labels, index), dtype=np.float32).reshape(count)
    # the reference takes max(score * segment) over the whole image: pixels outside count as 0
    best = np.where(sizes < labels.size, np.maximum(best, 0), best)
    best = np.where(sizes < max_fragment_size, 0, best).astype(np.float32)
    return best, labels, count


def _segment_scores_torch(score: Tensor, mask: Tensor, max_fragment_size: float):
    from . import _torch
    labels, count = _torch.label_components(mask)
    flat = labels.reshape(-1)
    sizes = torch.bincount(flat, minlength=count + 1)[1:]
    best = torch.full((count + 1,), -float("inf"), dtype=torch.float32, device=score.device)
    best = best.scatter_reduce(0, flat, score.reshape(-1), reduce="amax")[1:]
    best = torch.where(sizes < flat.numel(), best.clamp_min(0), best)
    best = torch.where(sizes < max_fragment_size, torch.zeros_like(best), best)
    return best, labels, count


def detect_instance(score_map: Array, mask: Array, class_id: Array, max_fragment_size: float = 0, *,
                    label_map: bool = False, backend: str = "auto") -> Dict[str, Array]:
    """Split every instance mask into 4-connected segments and score them (IRNet's detect_instance).

    A segment smaller than ``max_fragment_size`` pixels scores 0; any other scores the maximum of
    ``score_map * segment`` over the image (the segment's max, and at least 0 unless the segment
    covers the whole image), as the reference does. Empty masks give no segment.

    Args:
        score_map (float array or Tensor[N, h, w]): per-mask score map.
        mask (bool array or Tensor[N, h, w]): instance masks (nonzero = inside).
        class_id (int array or Tensor[N]): class of each mask (kept as given: no +1).
        max_fragment_size (float): minimum segment size in pixels for a non-zero score.
        label_map (bool): return the segments as one ``int32 (h, w)`` map (``'label'``: segment
            ``i`` is ``i + 1``, 0 outside every segment) instead of ``M`` full-size masks; needs
            disjoint masks (an argmax's), and holds one plane where the masks would hold ``M``.
        backend (str): "auto" (SciPy on the CPU, torch on a GPU) or "torch".

    Returns:
        ``{'score': float32 (M,), 'mask': bool (M, h, w), 'class': int64 (M,)}`` (with ``label_map``:
        ``'label'`` instead of ``'mask'``), NumPy arrays for NumPy input, else tensors on the
        input's device; ``M = 0`` when no mask has a pixel (where the reference raises). Segments
        are numbered mask by mask, each mask's in raster order of their first pixel.
    """
    op = "detect_instance"
    check_array(score_map, op=op, name="score_map", dims=("N", "h", "w"), kind="anyfloat", tensors=True)
    check_array(mask, op=op, name="mask", dims=("N", "h", "w"), kind="bool", tensors=True)
    check_array(class_id, op=op, name="class_id", dims=("N",), kind="int", tensors=True)
    check_same_kind(score_map, mask, op=op, names=("score_map", "mask"))
    check_same_kind(score_map, class_id, op=op, names=("score_map", "class_id"))
    if tuple(mask.shape) != tuple(score_map.shape):
        raise ValueError(f"{op}(): mask expected shape {tuple(score_map.shape)} like score_map, got {describe(mask)}")
    if class_id.shape[0] != score_map.shape[0]:
        raise ValueError(f"{op}(): class_id expected shape ({score_map.shape[0]},) (one per mask), "
                         f"got {describe(class_id)}")
    max_fragment_size = check_number(max_fragment_size, op=op, name="max_fragment_size", minimum=0)
    if label_map and mask.shape[0] > 1 and mask.shape[1] * mask.shape[2] > 0:
        overlap = int((mask != 0).sum(0).max())
        if overlap > 1:
            raise ValueError(f"{op}(): mask expected disjoint masks with label_map=True, got a pixel inside "
                             f"{overlap} masks")
    height, width = score_map.shape[1:]
    if isinstance(score_map, np.ndarray):
        _label_on_gpu(backend, torch.device("cpu"), op=op)
        scores, classes, masks = [], [], []
        label = np.zeros((height, width), np.int32) if label_map else None
        total = 0
        for score, m, cls in zip(score_map.astype(np.float32, copy=False), mask != 0, class_id):
            if not m.any():
                continue
            best, labels, count = _segment_scores_numpy(score, m, max_fragment_size)
            if label_map:
                inside = labels > 0
                label[inside] = labels[inside] + total
            else:
                masks.append(labels[None] == np.arange(1, count + 1).reshape(-1, 1, 1))
            total += count
            scores.append(best)
            classes.append(np.full(count, cls, dtype=np.int64))
        out = {"score": np.concatenate(scores) if scores else np.zeros(0, np.float32),
               "class": np.concatenate(classes) if classes else np.zeros(0, np.int64)}
        if label_map:
            out["label"] = label
        else:
            out["mask"] = np.concatenate(masks) if masks else np.zeros((0, height, width), bool)
        return out
    device = score_map.device
    if not _label_on_gpu(backend, device, op=op):
        result = detect_instance(score_map.detach().float().numpy(), mask.detach().numpy(),
                                 class_id.detach().numpy(), max_fragment_size, label_map=label_map)
        return {k: torch.from_numpy(v) for k, v in result.items()}
    score_map, mask = score_map.detach().float(), mask.detach() != 0
    scores, classes, masks = [], [], []
    label = torch.zeros((height, width), dtype=torch.int32, device=device) if label_map else None
    total = 0
    for i in torch.nonzero(mask.flatten(1).any(1)).flatten().tolist():
        best, labels, count = _segment_scores_torch(score_map[i], mask[i], max_fragment_size)
        if label_map:
            label = torch.where(labels > 0, (labels + total).to(torch.int32), label)
        else:
            masks.append(labels.unsqueeze(0) == torch.arange(1, count + 1, device=device).view(-1, 1, 1))
        total += count
        scores.append(best)
        classes.append(class_id[i].to(torch.int64).expand(count))
    out = {"score": torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float32, device=device),
           "class": torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64, device=device)}
    if label_map:
        out["label"] = label
    else:
        out["mask"] = torch.cat(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool, device=device)
    return out


def separate_score_by_mask(scores: Array, masks: Array) -> Array:
    """Split per-class scores by instance masks: ``(K, h, w) x (U, h, w) -> (K, U, h, w)``,
    ``scores[:, None] * masks[None]`` in the scores' dtype (the reference's ``instance_cam``)."""
    op = "separate_score_by_mask"
    check_array(scores, op=op, name="scores", dims=("K", "h", "w"), kind="anyfloat", tensors=True)
    check_array(masks, op=op, name="masks", dims=("U", "h", "w"), kind="bool", tensors=True)
    check_same_kind(scores, masks, op=op, names=("scores", "masks"))
    if tuple(masks.shape[1:]) != tuple(scores.shape[1:]):
        raise ValueError(f"{op}(): masks expected shape (U, {scores.shape[1]}, {scores.shape[2]}) like scores, "
                         f"got {describe(masks)}")
    if isinstance(scores, np.ndarray):
        return scores[:, None] * masks[None].astype(scores.dtype)
    return scores.unsqueeze(1) * masks.unsqueeze(0).to(scores.dtype)
