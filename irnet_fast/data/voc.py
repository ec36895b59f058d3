"""PASCAL VOC 2012 from a local devkit path, and the datasets shared with COCO.

The devkit root is the folder that holds ``JPEGImages/``, ``Annotations/``,
``SegmentationClass/``, ``SegmentationObject/`` and ``ImageSets/`` (``VOCdevkit/VOC2012`` in the
official archive; the synthetic generator writes the same layout).

Readers (:class:`VOC12`): image lists, image-level labels (from the XML annotations, or from a
labels file), semantic and instance ground truth. Datasets (:class:`ClassificationDataset`,
:class:`InferenceDataset`, :class:`AffinityDataset`) work on any *source* with ``ids``,
``num_classes``, ``load_image(name)`` and ``label(name)`` (VOC here, COCO in :mod:`.coco`).

Labels files (``labels_file=``) map image ids to classes, for lists that have no XML (SBD's
``train_aug``). Supported formats:

- ``.txt`` (or any other suffix): one image per line, ``<image_id> [<class> ...]``, where a class is
  a 0-based index (0..19 for VOC) or a class name (``aeroplane``); blank lines and ``#`` comments
  are skipped. ``2007_000032 aeroplane person`` and ``2007_000032 0 14`` are the same line.
- ``.json``: an object ``{image_id: [classes...]}`` (indices or names) or ``{image_id: multi-hot}``.
- ``.npy``: the reference's ``cls_labels.npy`` (a pickled dict ``{image_id: multi-hot float}``;
  keys may be the reference's integer encoding ``2007000032``). Pickle runs code, so it is read
  only with ``allow_pickle=True``.

Randomness: the item ``i`` of a training dataset in epoch ``e`` draws from
``numpy.random.default_rng([seed, e, i])``, so an epoch is the same whatever the number of
workers or processes (call ``set_epoch(e)`` each epoch, like a ``DistributedSampler``).

Bad data: a missing devkit folder raises ``FileNotFoundError`` saying what was expected; a missing
image raises ``FileNotFoundError`` and a corrupt one :class:`CorruptImageError`, both naming the
file. With ``skip_corrupt=True`` (the datasets' default) such an image is reported once
(``warnings.warn`` and the ``irnet_fast.data`` logger), recorded in ``dataset.skipped`` and
replaced by the next readable item, so a long run continues.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .._io import voc_palette
from ..errors import InputFileNotFoundError, InputOSError, InputRuntimeError, InputValueError
from .transforms import AffinityTransform, ClassificationTransform, normalize, hwc_to_chw

__all__ = [
    "VOC_CLASSES", "NUM_VOC_CLASSES", "CorruptImageError", "voc_palette", "load_image",
    "load_label_png", "decode_int_filename", "encode_int_filename", "read_image_list",
    "labels_from_xml", "load_labels_file", "check_devkit", "VOC12", "ClassificationDataset", "InferenceDataset",
    "AffinityDataset", "VOC12ClassificationDataset", "VOC12InferenceDataset",
    "VOC12AffinityDataset",
]

logger = logging.getLogger("irnet_fast.data")

PathLike = Union[str, os.PathLike]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
NUM_VOC_CLASSES = len(VOC_CLASSES)

_DEVKIT_DIRS = ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "ImageSets")


class CorruptImageError(InputOSError):
    """An image file exists but cannot be decoded; the message names the file."""




def load_image(path: PathLike) -> np.ndarray:
    """Read an image as ``uint8 (H, W, 3)`` RGB, fully decoded.

    Raises ``FileNotFoundError`` (missing) or :class:`CorruptImageError` (undecodable, truncated),
    both naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc
    return arr


def load_label_png(path: PathLike) -> np.ndarray:
    """Read a label PNG (palette or grey) as a 2-D ``uint8`` array of indices (255 = void)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"label file not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise InputValueError(f"label {path} has mode {im.mode}; expected a palette (P) or grey (L) PNG")
            arr = np.array(im, dtype=np.uint8)
    except OSError as exc:
        raise CorruptImageError(f"cannot decode label {path}: {exc}") from exc
    return arr


def decode_int_filename(value: int) -> str:
    """The reference's integer image id ``2007000032`` -> ``'2007_000032'``."""
    s = str(int(value))
    return s[:4] + "_" + s[4:]


def encode_int_filename(name: str) -> int:
    """``'2007_000032'`` -> ``2007000032`` (the reference's ``cls_labels.npy`` keys)."""
    return int(name[:4] + name[5:])


def _parse_list_line(line: str) -> Optional[str]:
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    tok = line.split()[0]
    if "/" in tok or "." in os.path.basename(tok):  # "/JPEGImages/2007_000032.jpg /Seg..." lists
        tok = os.path.splitext(os.path.basename(tok))[0]
    return tok


def read_image_list(root: Optional[PathLike], split: Union[str, PathLike]) -> List[str]:
    """Image ids of a list: a path to a list file, or a split name looked up under ``root``.

    A split name ``s`` is searched as ``ImageSets/Segmentation/s.txt``,
    ``ImageSets/SegmentationAug/s.txt``, ``ImageSets/Main/s.txt`` and ``s.txt`` in ``root``. Lines
    hold an id (``2007_000032``) or a path whose file stem is the id; extra columns are ignored.
    """
    split_path = Path(split)
    candidates = []
    if split_path.suffix == ".txt" or split_path.is_file():
        candidates.append(split_path)
    if root is not None:
        root = Path(root)
        for sub in ("ImageSets/Segmentation", "ImageSets/SegmentationAug", "ImageSets/Main", "."):
            candidates.append(root / sub / f"{split}.txt")
    for cand in candidates:
        if cand.is_file():
            ids = [i for i in (_parse_list_line(l) for l in cand.read_text().splitlines()) if i]
            if not ids:
                raise InputValueError(f"image list {cand} is empty")
            return ids
    raise InputFileNotFoundError(f"image list {str(split)!r} not found; looked for: "
                            + ", ".join(str(c) for c in candidates))


def labels_from_xml(path: PathLike, class_names: Sequence[str] = VOC_CLASSES) -> np.ndarray:
    """Multi-hot ``float32 (C,)`` of the ``<object><name>`` entries of a VOC XML annotation.

    Difficult and truncated objects count (as in the reference); ``<part>`` names are not objects.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"annotation file not found: {path}")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise InputValueError(f"cannot parse annotation {path}: {exc}") from exc
    index = {n: i for i, n in enumerate(class_names)}
    out = np.zeros(len(class_names), np.float32)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise InputValueError(f"annotation {path}: unknown class name {name!r}")
        out[index[name]] = 1.0
    return out


def _class_index(tok, class_names: Sequence[str], where: str) -> int:
    if isinstance(tok, str) and not tok.lstrip("-").isdigit():
        if tok not in class_names:
            raise InputValueError(f"{where}: unknown class name {tok!r}")
        return class_names.index(tok)
    idx = int(tok)
    if not 0 <= idx < len(class_names):
        raise InputValueError(f"{where}: class index {idx} out of range 0..{len(class_names) - 1}")
    return idx


def _to_multi_hot(value, class_names: Sequence[str], where: str) -> np.ndarray:
    num = len(class_names)
    arr = np.asarray(value)
    # a multi-hot vector: C numbers, all 0 or 1 (a list of C class indices could not be that)
    if arr.ndim == 1 and arr.shape[0] == num and arr.dtype.kind in "fbiu" and np.isin(arr, (0, 1)).all():
        return arr.astype(np.float32)
    out = np.zeros(num, np.float32)
    for tok in list(value):
        out[_class_index(tok, class_names, where)] = 1.0
    return out


def load_labels_file(path: PathLike, ids: Optional[Sequence[str]] = None,
                     class_names: Sequence[str] = VOC_CLASSES,
                     allow_pickle: bool = False) -> Dict[str, np.ndarray]:
    """Read a labels file (format in the module docstring) into ``{image_id: multi-hot float32}``.

    With ``ids``, every id must be present: otherwise ``ValueError`` naming the missing ids.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"labels file not found: {path}")
    where = str(path)
    labels: Dict[str, np.ndarray] = {}
    if path.suffix == ".npy":
        if not allow_pickle:
            raise InputValueError(f"labels file {path} is a pickled .npy dict; pass allow_pickle=True only "
                             "if you trust it, or convert it to the text format")
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if obj.dtype == object and obj.shape == () else obj
        if not isinstance(obj, dict):
            raise InputValueError(f"labels file {path}: expected a dict of image id -> labels")
        for key, value in obj.items():
            name = decode_int_filename(key) if isinstance(key, (int, np.integer)) else str(key)
            labels[name] = _to_multi_hot(value, class_names, f"{where} [{name}]")
    elif path.suffix == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"labels file {path}: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise InputValueError(f"labels file {path}: expected a JSON object of image id -> labels")
        for name, value in obj.items():
            labels[str(name)] = _to_multi_hot(value, class_names, f"{where} [{name}]")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"labels file {path}: not a UTF-8 text file: {exc}") from exc
        for lineno, line in enumerate(text.splitlines(), 1):
            toks = line.split("#", 1)[0].split()
            if not toks:
                continue
            out = np.zeros(len(class_names), np.float32)
            for tok in toks[1:]:
                out[_class_index(tok, class_names, f"{where}:{lineno}")] = 1.0
            labels[toks[0]] = out
    if ids is not None:
        missing = [i for i in ids if i not in labels]
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise InputValueError(f"labels file {path} has no labels for {len(missing)} of {len(ids)} "
                             f"listed images: {shown}")
    return labels


def check_devkit(root: PathLike, required: Iterable[str] = ("JPEGImages",)) -> Path:
    """Return ``Path(root)`` after checking that it and the ``required`` sub-folders exist."""
    root = Path(root)
    expected = ", ".join(_DEVKIT_DIRS)
    if not root.is_dir():
        raise InputFileNotFoundError(f"VOC devkit folder not found: {root} (expected a folder holding {expected}; "
                                "for the official archive that is VOCdevkit/VOC2012)")
    for sub in required:
        if not (root / sub).is_dir():
            raise InputFileNotFoundError(f"VOC devkit {root} has no {sub}/ folder (expected {expected})")
    return root


class VOC12:
    """Reader of a VOC 2012 devkit folder for one image list.

    Args:
        root: the devkit folder (holding ``JPEGImages`` etc.).
        split: ``'train'``, ``'train_aug'``, ``'val'``, ... or a path to a list file.
        labels_file: optional labels file (see the module docstring); without it, labels come
            from ``Annotations/<id>.xml``.
        allow_pickle: allow a pickled ``.npy`` labels file.
    """

    class_names = VOC_CLASSES
    num_classes = NUM_VOC_CLASSES
    ignore_from = NUM_VOC_CLASSES + 1

    def __init__(self, root: PathLike, split: Union[str, PathLike] = "train",
                 labels_file: Optional[PathLike] = None, allow_pickle: bool = False):
        self.root = check_devkit(root)
        self.split = split
        self.ids: List[str] = read_image_list(self.root, split)
        self._labels: Optional[Dict[str, np.ndarray]] = None
        if labels_file is not None:
            self._labels = load_labels_file(labels_file, self.ids, self.class_names, allow_pickle)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def load_image(self, name: str) -> np.ndarray:
        return load_image(self.image_path(name))

    def label(self, name: str) -> np.ndarray:
        """Multi-hot ``float32 (20,)`` image-level label (0-based classes, no background)."""
        if self._labels is not None:
            return self._labels[name]
        return labels_from_xml(self.root / "Annotations" / f"{name}.xml", self.class_names)

    def labels(self) -> Dict[str, np.ndarray]:
        """All labels of the list, ``{id: multi-hot}`` (reads every XML when no labels file)."""
        return {n: self.label(n) for n in self.ids}

    def seg_label(self, name: str) -> np.ndarray:
        """Semantic GT ``uint8 (H, W)``: 0 background, 1..20 classes, 255 void."""
        return load_label_png(self.root / "SegmentationClass" / f"{name}.png")

    def instance_label(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """Instance GT: ``(masks bool (N, H, W), classes int64 (N,))``, classes 0-based (0..19).

        Instances are the ids 1..254 of ``SegmentationObject`` in increasing order; each takes the
        most frequent non-void class of ``SegmentationClass`` under its mask.
        """
        obj = load_label_png(self.root / "SegmentationObject" / f"{name}.png")
        cls = self.seg_label(name)
        if obj.shape != cls.shape:
            raise InputValueError(f"{name}: SegmentationObject {obj.shape} and SegmentationClass {cls.shape} differ")
        inst_ids = [i for i in np.unique(obj) if 0 < i < 255]
        masks = np.zeros((len(inst_ids),) + obj.shape, bool)
        classes = np.zeros(len(inst_ids), np.int64)
        for k, i in enumerate(inst_ids):
            masks[k] = obj == i
            vals = cls[masks[k]]
            vals = vals[(vals > 0) & (vals < 255)]
            if vals.size == 0:
                raise InputValueError(f"{name}: instance {i} of SegmentationObject has no class in SegmentationClass")
            classes[k] = np.bincount(vals).argmax() - 1
        return masks, classes


# ----------------------------------------------------------------------------------------------
# Datasets (any source with ids, num_classes, load_image(name), label(name))


class _SourceDataset(torch.utils.data.Dataset):
    def __init__(self, source, seed: Optional[int] = 0, skip_corrupt: bool = True):
        if len(source.ids) == 0:
            raise InputValueError("dataset has no images")
        self.source = source
        self.ids = list(source.ids)
        self.seed = seed
        self.epoch = 0
        self.skip_corrupt = skip_corrupt
        self.skipped: set = set()

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch (items are a function of (seed, epoch, index))."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def _load(self, index: int) -> Tuple[int, str, np.ndarray]:
        """(index, name, image) of ``index`` or, when skipping, of the next readable item."""
        n = len(self.ids)
        for step in range(n):
            i = (index + step) % n
            name = self.ids[i]
            try:
                return i, name, self.source.load_image(name)
            except (FileNotFoundError, CorruptImageError) as exc:
                if not self.skip_corrupt:
                    raise
                if name not in self.skipped:
                    self.skipped.add(name)
                    msg = f"skipping unreadable image {name!r}: {exc}"
                    logger.warning(msg)
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
        raise InputRuntimeError(f"no readable image in the dataset ({n} tried); see the warnings above")


class ClassificationDataset(_SourceDataset):
    """CAM training items: ``{'name', 'img' float32 (3, crop, crop), 'label' float32 (C,)}``."""

    def __init__(self, source, transform: Optional[Callable] = None, seed: Optional[int] = 0,
                 skip_corrupt: bool = True):
        super().__init__(source, seed, skip_corrupt)
        self.transform = transform if transform is not None else ClassificationTransform()

    def __getitem__(self, index: int) -> dict:
        i, name, img = self._load(index)
        img = self.transform(img, self.rng(i))
        return {"name": name, "img": torch.from_numpy(img),
                "label": torch.from_numpy(np.asarray(self.source.label(name), np.float32))}


class InferenceDataset(_SourceDataset):
    """Inference items: ``{'name', 'img' uint8 (H, W, 3) raw RGB, 'label' float32 (C,), 'size' (H, W)}``.

    Use with ``batch_size=1`` (images differ in size) or ``collate_fn=lambda b: b[0]``.
    """

    def __init__(self, source, skip_corrupt: bool = True):
        super().__init__(source, None, skip_corrupt)

    def __getitem__(self, index: int) -> dict:
        _, name, img = self._load(index)
        return {"name": name, "img": img, "size": img.shape[:2],
                "label": np.asarray(self.source.label(name), np.float32)}

    @staticmethod
    def normalized(img: np.ndarray) -> torch.Tensor:
        """ImageNet-normalised ``float32 (3, H, W)`` of a raw image."""
        return torch.from_numpy(hwc_to_chw(normalize(img)))


class AffinityDataset(_SourceDataset):
    """IRNet training items from the IR labels (``label_dir/<id>.png``, 0..C, 255 unsure).

    Each item: the image transformed with its IR label (rescale 0.5..1.5, flip, crop with fill
    0/255), the label reduced to 1/4 of the crop (nearest, as the reference's ``pil_rescale``)
    and the affinity labels of the reduced map at ``radius`` through
    :func:`irnet_fast.ops.path_affinity_labels`:
    ``{'name', 'img' (3, crop, crop), 'reduced_label' uint8 (crop/4, crop/4),
    'aff_bg_pos_label', 'aff_fg_pos_label', 'aff_neg_label'}`` each ``float32 (D, M)``.
    """

    def __init__(self, source, label_dir: PathLike, crop_size: int = 512, radius: int = 10,
                 transform: Optional[Callable] = None, seed: Optional[int] = 0,
                 skip_corrupt: bool = True, ignore_from: Optional[int] = None):
        super().__init__(source, seed, skip_corrupt)
        self.label_dir = Path(label_dir)
        if not self.label_dir.is_dir():
            raise InputFileNotFoundError(f"IR label folder not found: {self.label_dir} (expected <image id>.png files)")
        self.crop_size, self.radius = int(crop_size), int(radius)
        reduced = int(np.round(self.crop_size * 0.25))
        rf = int(np.ceil(self.radius)) - 1
        if reduced - 2 * rf < 1:
            raise InputValueError(f"crop_size {self.crop_size} is too small for radius {self.radius}: the label map at "
                             f"1/4 ({reduced} x {reduced}) must be wider than 2 * (radius - 1) = {2 * rf} "
                             f"(crop_size >= {4 * (2 * rf + 1)})")
        self.transform = transform if transform is not None else AffinityTransform(crop_size=self.crop_size)
        self.ignore_from = int(ignore_from if ignore_from is not None else source.num_classes + 1)

    def __getitem__(self, index: int) -> dict:
        from ..ops import path_affinity_labels

        i, name, img = self._load(index)
        label = load_label_png(self.label_dir / f"{name}.png")
        if label.shape != img.shape[:2]:
            raise InputValueError(f"IR label {self.label_dir / (name + '.png')} is {label.shape}, image is {img.shape[:2]}")
        img, label = self.transform(img, label, self.rng(i))
        h, w = label.shape
        size = (max(1, int(np.round(h * 0.25))), max(1, int(np.round(w * 0.25))))
        reduced = np.asarray(Image.fromarray(label).resize(size[::-1], Image.NEAREST))
        bg, fg, neg = path_affinity_labels(torch.from_numpy(reduced.astype(np.int64)), self.radius,
                                           ignore_from=self.ignore_from)
        return {"name": name, "img": torch.from_numpy(img), "reduced_label": torch.from_numpy(reduced.copy()),
                "aff_bg_pos_label": bg, "aff_fg_pos_label": fg, "aff_neg_label": neg}


def VOC12ClassificationDataset(root: PathLike, split="train_aug", labels_file=None, allow_pickle=False,
                               transform=None, seed: Optional[int] = 0, skip_corrupt: bool = True):
    """CAM training set of a VOC devkit (long side 320..640, flip, crop 512 by default)."""
    return ClassificationDataset(VOC12(root, split, labels_file, allow_pickle), transform, seed, skip_corrupt)


def VOC12InferenceDataset(root: PathLike, split="train", labels_file=None, allow_pickle=False,
                          skip_corrupt: bool = True):
    """Raw images with names and labels of a VOC list, for CAM / IRNet inference."""
    return InferenceDataset(VOC12(root, split, labels_file, allow_pickle), skip_corrupt)


def VOC12AffinityDataset(root: PathLike, label_dir: PathLike, split="train_aug", crop_size: int = 512,
                         radius: int = 10, labels_file=None, allow_pickle=False, transform=None,
                         seed: Optional[int] = 0, skip_corrupt: bool = True):
    """IRNet training set of a VOC list with the IR labels of ``label_dir``."""
    return AffinityDataset(VOC12(root, split, labels_file, allow_pickle), label_dir, crop_size, radius,
                           transform, seed, skip_corrupt)
