"""Instance masks to COCO format: the JSON export, and ground truth as COCO records.

:func:`encode_rle` writes the ``counts`` string that ``pycocotools.mask.encode`` produces (as
``str``, not ``bytes``), :func:`decode_rle` reads it back (and uncompressed ``counts`` lists); the
codec itself is :mod:`irnet_fast.data.rle`. :func:`coco_dataset` builds, and :func:`export_coco`
writes, ``images``, ``annotations`` (RLE, area, bbox, ``iscrowd`` 0, ``category_id``, ``score``
for predictions) and ``categories``; its ``annotations`` list is also what ``COCO.loadRes`` takes
as detection results. The masks are encoded by pycocotools when it is installed (its C encoder;
the own one is the fallback, bit-identical and much slower on fragmented masks).

Ids (:func:`source_image_id`, :func:`source_category_ids`): a COCO source keeps the ids of its
annotation file, so the export loads with ``COCO(instances.json).loadRes(...)``. A VOC-layout
source (PASCAL VOC, the synthetic data) has no ids of its own: an image ``YYYY_NNNNNN`` gets the
reference's integer form ``YYYYNNNNNN`` (``2007_000032`` -> 2007000032), an all-digit name its
value, any other name ``crc32(name) % (2**31 - 1) + 1``; class ``i`` (0-based) is category
``i + 1``, its value in the VOC label PNGs. The same image always gets the same id, whatever the
list it is in.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from ._io import atomic_open
from ._checks import check_array
from .data.coco import has_pycocotools
from .data.instances import mask_boxes
from .data.rle import _mask2d, decode_rle, encode_rle

__all__ = ["encode_rle", "decode_rle", "encode_masks", "mask_area", "mask_bbox", "coco_dataset", "export_coco",
           "voc_image_id", "source_image_id", "source_category_ids", "source_file_name", "ground_truth_records"]

PathLike = Union[str, os.PathLike]

_VOC_NAME = re.compile(r"^\d{4}_\d+$")


def mask_area(mask) -> int:
    """Number of pixels of a ``bool (H, W)`` mask."""
    return int(np.count_nonzero(_mask2d(mask, "mask_area")))


def mask_bbox(mask) -> List[float]:
    """COCO box ``[x, y, w, h]`` of the mask's extent (``[0, 0, 0, 0]`` when empty)."""
    x0, y0, x1, y1 = (float(v) for v in mask_boxes(_mask2d(mask, "mask_bbox")[None])[0])
    return [x0, y0, x1 - x0, y1 - y0]


def _use_pycocotools(use: Optional[bool]) -> bool:
    if use is None:
        return has_pycocotools()
    if use and not has_pycocotools():
        raise ImportError("use_pycocotools=True needs pycocotools: pip install pycocotools "
                          "(or pip install 'irnet_fast[coco]')")
    return bool(use)


def encode_masks(masks, use_pycocotools: Optional[bool] = None) -> List[Dict]:
    """COCO compressed RLE (``counts`` as ``str``) of each mask of ``bool (P, H, W)``: by
    pycocotools when installed (``None``) or asked for (``True``), else by :func:`encode_rle`."""
    m = check_array(masks, op="encode_masks", name="masks", dims=("P", "H", "W"), kind="bool").astype(bool, copy=False)
    if not m.shape[0]:
        return []
    if not _use_pycocotools(use_pycocotools):
        return [encode_rle(k) for k in m]
    from pycocotools import mask as mask_utils
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def coco_dataset(records: Iterable[Dict], categories: Sequence[str], *, category_ids: Optional[Sequence[int]] = None,
                 use_pycocotools: Optional[bool] = None) -> Dict:
    """The COCO-format dict ``{'images', 'annotations', 'categories'}`` of ``records``.

    Args:
        records: per image ``{'file_name', 'height', 'width', 'image_id' (optional: else
            1, 2, ... by position), 'masks' bool (P, H, W), 'labels' (P,) 0-based, 'scores' (P,)}``;
            without ``'scores'`` (ground truth) the annotations carry no ``score``.
        categories: class names; class ``i`` becomes category ``{'id': category_ids[i], 'name': ...}``.
        category_ids: the COCO id of each class (default ``i + 1``).
        use_pycocotools: RLE encoder, see :func:`encode_masks`.
    """
    op = "export_coco"
    names = [str(c) for c in categories]
    if not names:
        raise ValueError(f"{op}(): categories expected a non-empty sequence of class names, got {categories!r}")
    cat_ids = list(range(1, len(names) + 1)) if category_ids is None else [int(c) for c in category_ids]
    if len(cat_ids) != len(names) or len(set(cat_ids)) != len(cat_ids):
        raise ValueError(f"{op}(): category_ids expected {len(names)} distinct ids (one per category), got {cat_ids}")
    use = _use_pycocotools(use_pycocotools)
    images, annotations = [], []
    seen_ids = set()
    for pos, rec in enumerate(records):
        where = f"{op}(): record {pos}"
        for key in ("file_name", "masks", "labels"):
            if key not in rec:
                raise ValueError(f"{where} expected a {key!r} entry, got keys {sorted(rec)}")
        masks = np.asarray(rec["masks"])
        labels = np.asarray(rec["labels"])
        has_scores = "scores" in rec
        scores = np.asarray(rec["scores"]) if has_scores else None
        p = labels.shape[0] if labels.ndim == 1 else -1
        if p:  # an empty record may hold float arrays (np.asarray([]))
            check_array(labels, op=op, name=f"record {pos}: labels", dims=("P",), kind="int")
        h = int(rec.get("height", masks.shape[1] if masks.ndim == 3 else 0))
        w = int(rec.get("width", masks.shape[2] if masks.ndim == 3 else 0))
        if p:
            check_array(masks, op=op, name=f"record {pos}: masks", dims=(p, h, w), kind="bool")
        if has_scores and (p or scores.shape != (0,)):
            check_array(scores, op=op, name=f"record {pos}: scores", dims=(p,), kind="real")
        if p and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{where}: labels expected 0-based class ids in [0, {len(names)}), got values in "
                             f"[{labels.min()}, {labels.max()}]")
        if p and has_scores and not np.isfinite(scores.astype(np.float64)).all():
            raise ValueError(f"{where}: scores expected finite values")
        image_id = int(rec["image_id"]) if rec.get("image_id") is not None else pos + 1
        if image_id in seen_ids:
            raise ValueError(f"{where}: image_id expected to be unique, got {image_id} twice")
        seen_ids.add(image_id)
        images.append({"id": image_id, "file_name": str(rec["file_name"]), "height": h, "width": w})
        if p <= 0:
            continue
        masks = masks.astype(bool, copy=False)
        for k, rle in enumerate(encode_masks(masks, use)):
            ann = {
                # ids from 1: COCOeval treats an annotation id 0 as "unmatched"
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat_ids[int(labels[k])],
                "segmentation": rle, "area": mask_area(masks[k]), "bbox": mask_bbox(masks[k]), "iscrowd": 0,
            }
            if has_scores:
                ann["score"] = float(scores[k])
            annotations.append(ann)
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in zip(cat_ids, names)]}


def export_coco(records: Iterable[Dict], categories: Sequence[str], out_path: PathLike, *,
                category_ids: Optional[Sequence[int]] = None, use_pycocotools: Optional[bool] = None) -> Path:
    """Writes :func:`coco_dataset` of the arguments as JSON at ``out_path`` (atomically: a
    temporary file in its folder, then renamed) and returns the path."""
    data = coco_dataset(records, categories, category_ids=category_ids, use_pycocotools=use_pycocotools)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_path) as fh:
        fh.write(json.dumps(data, separators=(",", ":")).encode())
    return out_path


# --- the ids of a dataset (see the module docstring) -------------------------------------------

def voc_image_id(name: str) -> int:
    """The COCO image id of a VOC-layout image ``name`` (the module docstring has the rule)."""
    name = str(name)
    if _VOC_NAME.match(name):
        return int(name[:4] + name[5:])
    if name.isdigit():
        return int(name)
    return zlib.crc32(name.encode("utf-8")) % (2 ** 31 - 1) + 1


def source_image_id(source, name: str) -> int:
    """The image id of ``name`` in ``source``: its annotation file's for COCO, else :func:`voc_image_id`."""
    own = getattr(source, "coco_image_id", None)
    return int(own(name)) if own is not None else voc_image_id(name)


def source_category_ids(source) -> List[int]:
    """The category id of each (0-based) class of ``source``: COCO's own, else ``1..C``."""
    own = getattr(source, "category_ids", None)
    return [int(c) for c in own] if own is not None else list(range(1, source.num_classes + 1))


def source_file_name(source, name: str) -> str:
    """The image's path relative to the image folder (COCO's ``file_name``; ``<id>.jpg`` for VOC)."""
    own = getattr(source, "coco_file_name", None)
    return str(own(name)) if own is not None else source.image_path(name).name


def ground_truth_records(source, names: Optional[Sequence[str]] = None) -> Iterator[Dict]:
    """The ground-truth instances of ``names`` (default every id) of ``source`` as records for
    :func:`coco_dataset`, with the source's ids: a COCO-format copy of a VOC-layout dataset."""
    for name in (source.ids if names is None else names):
        masks, classes = source.instance_label(name)
        yield {"file_name": source_file_name(source, name), "image_id": source_image_id(source, name),
               "height": int(masks.shape[1]), "width": int(masks.shape[2]), "masks": masks, "labels": classes}
