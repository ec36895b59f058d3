"""Training items for an instance segmentation network, read straight from instance masks.

:class:`InstanceDataset` reads the instance pseudo labels ``<label_dir>/<id>.npz`` that
``make_ins_seg`` writes (:func:`load_instances`: ``score`` float32 (P,), ``class`` int64 (P,),
0-based, and the instances as one label map ``label`` int32 (H, W)) and gives torchvision's
detection targets: the masks themselves (no polygon round trip), their boxes (:func:`mask_boxes`) and labels ``class + 1`` (0 is the background). Instances with
``score <= min_score`` (``detect_instance`` gives fragments under its size limit 0) or fewer than
``min_pixels`` pixels are left out; an image left without instances stays, as a negative.
Augmentation: a horizontal flip with probability 1/2 drawn from ``(seed, epoch, index)``, as
every dataset of :mod:`.voc` draws.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .._checks import check_array
from .._io import is_valid_npz, load_npz
from .voc import _SourceDataset

__all__ = ["mask_boxes", "InstanceDataset", "collate_detection", "INSTANCE_KEYS", "load_instances", "instance_masks",
           "instance_label_map", "instance_pixels", "is_instance_file"]

PathLike = Union[str, os.PathLike]

# ins_seg/<id>.npz: the instances are disjoint (one argmax), so one label map holds them all:
# instance i is where label == i + 1. Files of the earlier format, one full-size mask per instance
# (LEGACY_INSTANCE_KEYS), are still read.
INSTANCE_KEYS = ("score", "label", "class")
LEGACY_INSTANCE_KEYS = ("score", "mask", "class")


def instance_label_map(masks) -> np.ndarray:
    """``int32 (H, W)`` label map of disjoint ``bool (P, H, W)`` masks: mask ``i`` is ``i + 1``, 0 outside."""
    m = check_array(masks, op="instance_label_map", name="masks", dims=("P", "H", "W"), kind="bool").astype(bool, copy=False)
    if m.shape[0] > 1 and int(m.sum(axis=0, dtype=np.int64).max()) > 1:
        raise ValueError("instance_label_map(): masks expected disjoint masks, got a pixel inside several")
    label = np.zeros(m.shape[1:], np.int32)
    for i, mask in enumerate(m):
        label[mask] = i + 1
    return label


def instance_masks(label, index) -> np.ndarray:
    """``bool (P, H, W)`` masks of the instances ``index`` (0-based ids, or their number P for all of
    ``0 .. P - 1``) of an ``int (H, W)`` label map (instance ``i`` where ``label == i + 1``)."""
    lab = check_array(label, op="instance_masks", name="label", dims=("H", "W"), kind="int")
    index = np.arange(index) if np.ndim(index) == 0 else np.asarray(index, np.int64).reshape(-1)
    return lab[None] == (index + 1).reshape(-1, 1, 1)


def instance_pixels(label, count: int) -> List[np.ndarray]:
    """Flat pixel indices of each of the ``count`` instances of an ``int (H, W)`` label map, in one
    sort (no full-size mask per instance)."""
    flat = np.asarray(label).reshape(-1)
    order = np.argsort(flat, kind="stable")
    ends = np.cumsum(np.bincount(flat, minlength=count + 1))
    return [order[ends[i]:ends[i + 1]] for i in range(count)]


def load_instances(path: PathLike) -> Dict[str, np.ndarray]:
    """An ``ins_seg/<id>.npz``: ``{'score' float32 (P,), 'class' int64 (P,), 'label' int32 (H, W)}``
    (instance ``i`` where ``label == i + 1``); a file of the earlier one-mask-per-instance format is
    converted."""
    data = load_npz(path)
    if all(k in data for k in INSTANCE_KEYS):
        out = {k: data[k] for k in INSTANCE_KEYS}
    elif all(k in data for k in LEGACY_INSTANCE_KEYS):
        try:
            label = instance_label_map(data["mask"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        out = {"score": data["score"], "class": data["class"], "label": label}
    else:
        raise KeyError(f"{path}: expected the arrays {list(INSTANCE_KEYS)}, got {sorted(data)}")
    score, cls, label = out["score"], out["class"], out["label"]
    p = score.shape[0] if score.ndim == 1 else -1
    top = int(label.max()) if label.size and label.dtype.kind in "iu" else 0
    if (p < 0 or cls.shape != (p,) or cls.dtype.kind not in "iu" or label.ndim != 2 or label.dtype.kind not in "iu"
            or top > p or (label.size and label.min() < 0)):
        raise ValueError(f"{path}: score {score.shape}, class {cls.shape} {cls.dtype} and a label map {label.shape} "
                         f"{label.dtype} of values up to {top} do not describe one set of instances (expected P "
                         f"scores, P integer classes and a 2-D integer map of values in [0, P])")
    return out


def is_instance_file(path: PathLike) -> bool:
    """Whether ``path`` is a readable instance file (either format)."""
    return is_valid_npz(path, INSTANCE_KEYS) or is_valid_npz(path, LEGACY_INSTANCE_KEYS)


def mask_boxes(masks) -> np.ndarray:
    """``float32 (P, 4)`` boxes ``[x0, y0, x1, y1]`` of ``bool (P, H, W)`` masks, ``x1``/``y1`` one
    past the last column/row (COCO's ``[x, y, w, h]`` is ``[x0, y0, x1 - x0, y1 - y0]``); an empty
    mask gets ``[0, 0, 0, 0]``."""
    m = check_array(masks, op="mask_boxes", name="masks", dims=("P", "H", "W"), kind="bool").astype(bool, copy=False)
    out = np.zeros((m.shape[0], 4), np.float32)
    rows, cols = m.any(axis=2), m.any(axis=1)  # (P, H), (P, W)
    full = rows.any(axis=1)
    if full.any():
        r, c = rows[full], cols[full]
        h, w = r.shape[1], c.shape[1]
        out[full, 0] = c.argmax(axis=1)
        out[full, 1] = r.argmax(axis=1)
        out[full, 2] = w - c[:, ::-1].argmax(axis=1)
        out[full, 3] = h - r[:, ::-1].argmax(axis=1)
    return out


class InstanceDataset(_SourceDataset):
    """Items ``(image float32 (3, H, W) in [0, 1], target)`` for torchvision's Mask R-CNN, with
    ``target = {'boxes' float32 (P, 4), 'labels' int64 (P,) (1..C), 'masks' uint8 (P, H, W), 'name'}``.

    Args:
        source: the image source (``ids``, ``load_image``).
        label_dir: folder of the ``<id>.npz`` instance labels.
        names: the ids to use (default ``source.ids``).
        hflip: random horizontal flips.
        min_score, min_pixels: instances kept have ``score > min_score`` and at least
            ``min_pixels`` pixels.
        seed: augmentation seed (``None``: not reproducible).
    """

    def __init__(self, source, label_dir: PathLike, names: Optional[Sequence[str]] = None, *, hflip: bool = True,
                 min_score: float = 0.0, min_pixels: int = 1, seed: Optional[int] = 0, skip_corrupt: bool = True):
        super().__init__(source, seed, skip_corrupt)
        if names is not None:
            self.ids = list(names)
        self.label_dir = Path(label_dir)
        self.hflip, self.min_score, self.min_pixels = bool(hflip), float(min_score), int(min_pixels)

    def instances(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """The kept ``(masks bool (P, H, W), labels int64 (P,) 0-based)`` of image ``name``."""
        data = load_instances(self.label_dir / f"{name}.npz")
        count = data["score"].shape[0]
        pixels = np.bincount(data["label"].reshape(-1), minlength=count + 1)[1:]
        keep = np.flatnonzero((data["score"] > self.min_score) & (pixels >= self.min_pixels))
        return instance_masks(data["label"], keep), data["class"][keep].astype(np.int64)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict]:
        i, name, img = self._load(index)
        masks, labels = self.instances(name)
        if masks.shape[1:] != img.shape[:2]:
            raise ValueError(f"{self.label_dir / (name + '.npz')}: masks of size {masks.shape[1:]} for an image of "
                             f"size {img.shape[:2]}: labels of another dataset?")
        if self.hflip and self.rng(i).random() < 0.5:
            img, masks = img[:, ::-1], masks[:, :, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
        masks = np.ascontiguousarray(masks)
        target = {"boxes": torch.from_numpy(mask_boxes(masks)), "labels": torch.from_numpy(labels + 1),
                  "masks": torch.from_numpy(masks.view(np.uint8)), "name": name}
        return image, target


def collate_detection(batch: List[Tuple[torch.Tensor, Dict]]) -> Tuple[List[torch.Tensor], List[Dict]]:
    """A batch of detection items as ``(images, targets)`` lists (images differ in size)."""
    return [b[0] for b in batch], [b[1] for b in batch]
