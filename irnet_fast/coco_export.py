"""Instance predictions to a COCO-format JSON, with COCO's compressed RLE (no pycocotools needed).

:func:`encode_rle` writes the ``counts`` string that ``pycocotools.mask.encode`` produces (as
``str``, not ``bytes``), :func:`decode_rle` reads it back (and uncompressed ``counts`` lists).
:func:`export_coco` writes ``images``, ``annotations`` (RLE, area, bbox, ``iscrowd`` 0,
``category_id`` = label + 1, ``score``) and ``categories``; its ``annotations`` list is also what
``COCO.loadRes`` takes as detection results.

The RLE format: the mask is read column by column (Fortran order) as runs of 0s and 1s, starting
with a (possibly empty) run of 0s. Each run length, minus the one two runs back for runs after the
third (pycocotools' ``i > 2``), is written as a signed little-endian sequence of 5-bit groups:
each character is ``48 + group``, with ``0x20`` set when more groups follow; the last group's
``0x10`` bit is the sign.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

import numpy as np

from ._io import atomic_open

__all__ = ["encode_rle", "decode_rle", "mask_area", "mask_bbox", "export_coco"]

PathLike = Union[str, os.PathLike]


def _mask2d(mask, op: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype.kind not in "bui":
        raise ValueError(f"{op}(): mask expected a bool array of shape (H, W), got shape {m.shape} dtype {m.dtype}")
    return m.astype(bool, copy=False)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths, the first one a run of 0s (possibly empty)."""
    flat = mask.ravel(order="F")
    n = flat.size
    if n == 0:
        return np.zeros(1, np.int64)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], edges, [n]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def _counts_to_string(runs: Sequence[int]) -> str:
    out: List[str] = []
    for i, x in enumerate(runs):
        x = int(x)
        if i > 2:  # deltas against the run two back (same value) keep the numbers small
            x -= int(runs[i - 2])
        while True:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            out.append(chr(48 + (c | 0x20 if more else c)))
            if not more:
                break
    return "".join(out)


def _string_to_counts(s: str) -> List[int]:
    counts: List[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        while True:
            if p >= n:
                raise ValueError("decode_rle(): rle['counts'] expected a complete RLE string, it ends inside a run")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"decode_rle(): rle['counts'] expected characters '0'..'o', got {s[p]!r} at {p}")
            x |= (c & 0x1F) << (5 * k)
            p += 1
            k += 1
            if not c & 0x20:
                if c & 0x10:
                    x -= 1 << (5 * k)  # sign-extend
                break
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask) -> Dict:
    """``{'size': [H, W], 'counts': str}``: COCO compressed RLE of a ``bool (H, W)`` mask."""
    m = _mask2d(mask, "encode_rle")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": _counts_to_string(_runs(m))}


def decode_rle(rle: Dict) -> np.ndarray:
    """The ``bool (H, W)`` mask of an RLE dict (compressed ``counts`` str/bytes, or a list)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"decode_rle(): rle expected a dict with 'size' and 'counts', got {type(rle).__name__}")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    counts = _string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"decode_rle(): rle['counts'] expected non-negative runs summing to {h} x {w} = {h * w}, "
                         f"got {len(counts)} runs summing to {sum(counts)}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()


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
        if p < 0 or (p and labels.dtype.kind not in "iu"):
            raise ValueError(f"{where}: labels expected an integer array of shape (P,), got shape {labels.shape} "
                             f"dtype {labels.dtype}")
        h = int(rec.get("height", masks.shape[1] if masks.ndim == 3 else 0))
        w = int(rec.get("width", masks.shape[2] if masks.ndim == 3 else 0))
        if p and (masks.shape != (p, h, w) or masks.dtype.kind not in "bui"):
            raise ValueError(f"{where}: masks expected a bool array of shape ({p}, {h}, {w}), got shape "
                             f"{masks.shape} dtype {masks.dtype}")
        if scores.shape != (p,) or (p and scores.dtype.kind not in "fiu"):
            raise ValueError(f"{where}: scores expected a real array of shape ({p},), got shape {scores.shape} "
                             f"dtype {scores.dtype}")
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
