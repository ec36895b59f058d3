"""Instance predictions to a COCO-format JSON, with COCO's compressed RLE (no pycocotools needed).

:func:`encode_rle` writes the ``counts`` string that ``pycocotools.mask.encode`` produces (as
``str``, not ``bytes``), :func:`decode_rle` reads it back (and uncompressed ``counts`` lists).
:func:`export_coco` writes ``images``, ``annotations`` (RLE, area, bbox, ``iscrowd`` 0,
``category_id`` = label + 1, ``score``) and ``categories``; its ``annotations`` list is also what
``COCO.loadRes`` takes as detection results.
The RLE codec itself is :mod:`irnet_fast.data.rle`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

import numpy as np

from ._io import atomic_open
from ._checks import check_array
from .data.rle import _mask2d, decode_rle, encode_rle

__all__ = ["encode_rle", "decode_rle", "mask_area", "mask_bbox", "export_coco"]

PathLike = Union[str, os.PathLike]


def mask_area(mask) -> int:
    """Number of pixels of a ``bool (H, W)`` mask."""
    return int(np.count_nonzero(_mask2d(mask, "mask_area")))


def mask_bbox(mask) -> List[float]:
    """COCO box ``[x, y, w, h]`` of the mask's extent (``[0, 0, 0, 0]`` when empty)."""
    m = _mask2d(mask, "mask_bbox")
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(m.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def export_coco(records: Iterable[Dict], categories: Sequence[str], out_path: PathLike) -> Path:
    """Write instance predictions as a COCO-format JSON at ``out_path`` (atomically) and return it.

    Args:
        records: per image ``{'file_name', 'height', 'width', 'image_id' (optional: else
            1, 2, ... by position), 'masks' bool (P, H, W), 'labels' (P,) 0-based, 'scores' (P,)}``.
        categories: class names; class ``i`` becomes category ``{'id': i + 1, 'name': ...}``.
        out_path: the JSON file; written to a temporary file in its folder, then renamed.
    """
    op = "export_coco"
    names = [str(c) for c in categories]
    if not names:
        raise ValueError(f"{op}(): categories expected a non-empty sequence of class names, got {categories!r}")
    images, annotations = [], []
    seen_ids = set()
    for pos, rec in enumerate(records):
        where = f"{op}(): record {pos}"
        for key in ("file_name", "masks", "labels", "scores"):
            if key not in rec:
                raise ValueError(f"{where} expected a {key!r} entry, got keys {sorted(rec)}")
        masks = np.asarray(rec["masks"])
        labels = np.asarray(rec["labels"])
        scores = np.asarray(rec["scores"])
        p = labels.shape[0] if labels.ndim == 1 else -1
        if p:  # an empty record may hold float arrays (np.asarray([]))
            check_array(labels, op=op, name=f"record {pos}: labels", dims=("P",), kind="int")
        h = int(rec.get("height", masks.shape[1] if masks.ndim == 3 else 0))
        w = int(rec.get("width", masks.shape[2] if masks.ndim == 3 else 0))
        if p:
            check_array(masks, op=op, name=f"record {pos}: masks", dims=(p, h, w), kind="bool")
        if p or scores.shape != (0,):
            check_array(scores, op=op, name=f"record {pos}: scores", dims=(p,), kind="real")
        if p and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{where}: labels expected 0-based class ids in [0, {len(names)}), got values in "
                             f"[{labels.min()}, {labels.max()}]")
        if p and not np.isfinite(scores.astype(np.float64)).all():
            raise ValueError(f"{where}: scores expected finite values")
        image_id = int(rec["image_id"]) if rec.get("image_id") is not None else pos + 1
        if image_id in seen_ids:
            raise ValueError(f"{where}: image_id expected to be unique, got {image_id} twice")
        seen_ids.add(image_id)
        images.append({"id": image_id, "file_name": str(rec["file_name"]), "height": h, "width": w})
        for k in range(p):
            m = masks[k].astype(bool, copy=False)
            annotations.append({
                # ids from 1: COCOeval treats an annotation id 0 as "unmatched"
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(labels[k]) + 1,
                "segmentation": encode_rle(m), "area": mask_area(m), "bbox": mask_bbox(m),
                "iscrowd": 0, "score": float(scores[k]),
            })
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_path) as fh:
        fh.write(json.dumps(data, separators=(",", ":")).encode())
    return out_path
