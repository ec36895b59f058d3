"""MS-COCO 2014 from a local image folder and an instances JSON (the reference never shipped it).

- Image ids are the file stems (``COCO_train2014_000000000009``); the list is the JSON's
  ``images`` sorted by id (optionally only those with at least one annotation).
- 80-class image-level labels: the categories of the image's annotations (crowd ones included by
  default), category ids mapped to ``0..C-1`` in increasing id order (``category_ids[c]`` is the
  JSON's id of class ``c``; ``coco_image_id(name)`` an image's id, which the COCO export keeps).
- Instance masks for evaluation: through ``pycocotools`` when installed (``pip install
  pycocotools``); without it, polygons (PIL rasterisation, close to but not bit-identical with
  pycocotools) are drawn here and RLE, plain or compressed, is decoded by
  :func:`irnet_fast.data.rle.decode_rle` (bit-identical).

:class:`COCO2014` is a *source* for the datasets of :mod:`.voc` (``ClassificationDataset``,
``InferenceDataset``, ``AffinityDataset`` with ``ignore_from=81``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .rle import decode_rle
from .voc import ClassificationDataset, InferenceDataset, load_image

__all__ = ["COCO_NUM_CLASSES", "COCO2014", "COCOClassificationDataset", "COCOInferenceDataset",
           "annotation_to_mask", "has_pycocotools"]

PathLike = Union[str, os.PathLike]

COCO_NUM_CLASSES = 80

_INSTALL = ("use_pycocotools=True needs pycocotools: install it with `pip install pycocotools` "
            "(or `conda install -c conda-forge pycocotools`)")


def _check_file_name(file_name, ann_file: Path) -> None:
    """Refuses file names that would read outside the image folder (absolute, or with ``..``)."""
    if not isinstance(file_name, str) or not file_name:
        raise ValueError(f"{ann_file}: image file_name expected a non-empty string, got {file_name!r}")
    parts = file_name.replace("\\", "/").split("/")
    if os.path.isabs(file_name) or file_name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ValueError(f"{ann_file}: image file_name {file_name!r} leaves the image folder; expected a "
                         "path relative to it without '..'")


def _path_id(file_name: str) -> str:
    return os.path.splitext(file_name.replace("\\", "/"))[0].replace("/", "__")


def has_pycocotools() -> bool:
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        return False
    return True


def annotation_to_mask(segmentation, h: int, w: int, use_pycocotools: Optional[bool] = None) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE) as a ``bool (h, w)`` mask.

    With pycocotools (the default when installed) its decoder is used; without it, polygons are
    drawn with PIL and RLE is decoded by :func:`irnet_fast.data.rle.decode_rle`."""
    if use_pycocotools is None:
        use_pycocotools = has_pycocotools()
    if use_pycocotools:
        try:
            from pycocotools import mask as mask_utils
        except ImportError as exc:
            raise ImportError(_INSTALL) from exc
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            rle = segmentation
        return mask_utils.decode(rle).astype(bool)
    if isinstance(segmentation, list):
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        for poly in segmentation:
            pts = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
            if len(pts) >= 3:
                draw.polygon(pts, fill=1, outline=1)
        return np.asarray(im, dtype=bool)
    if isinstance(segmentation, dict) and "counts" in segmentation:  # RLE, plain or compressed
        return decode_rle({"size": segmentation.get("size", [h, w]), "counts": segmentation["counts"]})
    raise ValueError(f"unsupported COCO segmentation {type(segmentation).__name__}: expected polygons (a list) "
                     f"or RLE (a dict with 'counts' and 'size')")


class COCO2014:
    """Reader of one COCO split: ``image_dir`` (e.g. ``train2014/``) and its instances JSON.

    Args:
        image_dir: folder of the images named by the JSON's ``file_name``.
        ann_file: ``instances_train2014.json`` or the like.
        drop_unlabeled: keep only images with at least one (counted) annotation.
        include_crowd: whether crowd annotations count for the image-level labels.
        use_pycocotools: mask decoding backend (``None``: pycocotools when installed).
    """

    ignore_from = COCO_NUM_CLASSES + 1

    def __init__(self, image_dir: PathLike, ann_file: PathLike, drop_unlabeled: bool = False,
                 include_crowd: bool = True, use_pycocotools: Optional[bool] = None):
        self.image_dir = Path(image_dir)
        ann_file = Path(ann_file)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder not found: {self.image_dir} (expected e.g. train2014/ "
                                    "holding the images named in the instances JSON)")
        if not ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {ann_file} (expected e.g. "
                                    "annotations/instances_train2014.json)")
        try:
            data = json.loads(ann_file.read_text())
        except ValueError as exc:
            raise ValueError(f"cannot parse COCO annotation file {ann_file}: {exc}") from exc
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ValueError(f"COCO annotation file {ann_file} has no {key!r} entry")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in cats]
        self.class_names = tuple(str(c["name"]) for c in cats)
        self.num_classes = len(cats)
        self.ignore_from = self.num_classes + 1
        self._cat_index = {cid: i for i, cid in enumerate(self.category_ids)}
        self.use_pycocotools = use_pycocotools
        images = sorted(data["images"], key=lambda im: im["id"])
        for im in images:
            _check_file_name(im.get("file_name"), ann_file)
        stems = [os.path.splitext(os.path.basename(im["file_name"]))[0] for im in images]
        repeated = {stem for stem in stems if stems.count(stem) > 1} if len(set(stems)) < len(stems) else set()
        self._images: Dict[str, dict] = {}
        by_image_id: Dict[int, str] = {}
        for im, stem in zip(images, stems):
            # The stem is the id (COCO's file names are unique); images in different sub-folders
            # sharing a stem get their relative path as id, so none takes another's annotations.
            name = _path_id(im["file_name"]) if stem in repeated else stem
            if int(im["id"]) in by_image_id:
                raise ValueError(f"{ann_file}: image id {im['id']} appears twice ({by_image_id[int(im['id'])]!r} "
                                 f"and {im['file_name']!r})")
            if name in self._images:
                raise ValueError(f"{ann_file}: file name {im['file_name']!r} appears twice")
            self._images[name] = im
            by_image_id[int(im["id"])] = name
        self._anns: Dict[str, List[dict]] = {n: [] for n in self._images}
        for ann in data["annotations"]:
            name = by_image_id.get(int(ann["image_id"]))
            if name is None:
                raise ValueError(f"{ann_file}: annotation {ann.get('id')} refers to unknown image id {ann['image_id']}")
            if int(ann["category_id"]) not in self._cat_index:
                raise ValueError(f"{ann_file}: annotation {ann.get('id')} has unknown category id {ann['category_id']}")
            self._anns[name].append(ann)
        self._labels: Dict[str, np.ndarray] = {}
        for name, anns in self._anns.items():
            lab = np.zeros(self.num_classes, np.float32)
            for ann in anns:
                if include_crowd or not ann.get("iscrowd", 0):
                    lab[self._cat_index[int(ann["category_id"])]] = 1.0
            self._labels[name] = lab
        self.ids: List[str] = [n for n in self._images if not drop_unlabeled or self._labels[n].any()]

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, name: str) -> Path:
        return self.image_dir / self._images[name]["file_name"]

    def load_image(self, name: str) -> np.ndarray:
        return load_image(self.image_path(name))

    def coco_image_id(self, name: str) -> int:
        """The image's id in the annotation file."""
        return int(self._images[name]["id"])

    def coco_file_name(self, name: str) -> str:
        """The image's ``file_name`` in the annotation file (relative to ``image_dir``)."""
        return str(self._images[name]["file_name"])

    def label(self, name: str) -> np.ndarray:
        """Multi-hot ``float32 (80,)`` (0-based classes in sorted category id order)."""
        return self._labels[name]

    def labels(self) -> Dict[str, np.ndarray]:
        return {n: self._labels[n] for n in self.ids}

    def annotations(self, name: str) -> List[dict]:
        return list(self._anns[name])

    def instance_label(self, name: str, include_crowd: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """``(masks bool (N, H, W), classes int64 (N,))`` in annotation order, classes 0-based."""
        im = self._images[name]
        h, w = int(im["height"]), int(im["width"])
        anns = [a for a in self._anns[name] if include_crowd or not a.get("iscrowd", 0)]
        masks = np.zeros((len(anns), h, w), bool)
        for k, ann in enumerate(anns):
            masks[k] = annotation_to_mask(ann["segmentation"], h, w, self.use_pycocotools)
        classes = np.array([self._cat_index[int(a["category_id"])] for a in anns], np.int64)
        return masks, classes

    def seg_label(self, name: str) -> np.ndarray:
        """Semantic map ``uint8 (H, W)``: 0 background, 1..80 classes (later annotations on top),
        255 where a crowd region is."""
        masks, classes = self.instance_label(name, include_crowd=True)
        crowd = [bool(a.get("iscrowd", 0)) for a in self._anns[name]]
        im = self._images[name]
        out = np.zeros((int(im["height"]), int(im["width"])), np.uint8)
        for m, c, is_crowd in zip(masks, classes, crowd):
            out[m] = 255 if is_crowd else c + 1
        return out


def COCOClassificationDataset(image_dir: PathLike, ann_file: PathLike, transform=None, seed: Optional[int] = 0,
                              skip_corrupt: bool = True, drop_unlabeled: bool = True):
    """CAM training set of COCO (the VOC transforms; images without labels dropped by default)."""
    return ClassificationDataset(COCO2014(image_dir, ann_file, drop_unlabeled), transform, seed, skip_corrupt)


def COCOInferenceDataset(image_dir: PathLike, ann_file: PathLike, skip_corrupt: bool = True,
                         drop_unlabeled: bool = False):
    """Raw images with names and 80-class labels, for inference."""
    return InferenceDataset(COCO2014(image_dir, ann_file, drop_unlabeled), skip_corrupt)
