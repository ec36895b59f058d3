"""Cityscapes from a local copy of the official layout, at full resolution.

The root holds ``leftImg8bit/`` and ``gtFine/``::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      label ids (uint8)
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   16-bit: label id, or
        label id * 1000 + k for the instance k of a class with instances

Image ids are the file stems without ``_leftImg8bit`` (``aachen_000000_000019``), sorted; a
split is a folder name of ``leftImg8bit/``.

Classes: the 19 evaluation classes (train ids 0..18, :data:`TRAIN_CLASSES`); every other label id
is ignored (255). The 8 instance classes are those with instances that are evaluated (person,
rider, car, truck, bus, train, motorcycle, bicycle: train ids 11..18). The label table is that of
the official ``cityscapesscripts`` package (``helpers/labels.py``) when it is installed, else the
built-in copy :data:`BUILTIN_LABELS` (cityscapesscripts 2.3.0; the table has not changed since
1.0), which a test keeps equal to the package's.

Following the pipeline's convention (0 background, 1..C classes, 255 void), :meth:`Cityscapes.seg_label`
returns train id + 1 and 255; Cityscapes has no background class (``has_background = False``), so
a pixel that a pseudo label leaves at 0 counts as a miss of its true class and the mIoU is taken
over the 19 classes only.

Image-level labels (the only supervision of the method): a class is present when it covers at
least ``min_pixels`` pixels of the image's ``gtFine`` labels. :func:`write_labels_file` reads the
masks once and writes a JSON labels file (``{image id: [class names]}``, the format of
:func:`irnet_fast.data.voc.load_labels_file`); :class:`Cityscapes` reads labels only from such a
file when given one (writing it first when it is missing), so training never reads the masks.

:class:`Cityscapes` is a *source* for the datasets of :mod:`.voc` (``ClassificationDataset``,
``InferenceDataset``, ``AffinityDataset`` with ``ignore_from=20``), with the interface of
:class:`~irnet_fast.data.voc.VOC12` (``ids``, ``num_classes``, ``class_names``, ``ignore_from``,
``image_path``, ``load_image``, ``label``, ``labels``, ``seg_label``, ``instance_label``).
"""
from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .._io import atomic_write_json
from ..errors import InputFileNotFoundError, InputValueError
from .voc import CorruptImageError, load_image, load_labels_file

__all__ = ["Label", "BUILTIN_LABELS", "BUILTIN_VERSION", "labels_table", "label_source", "TRAIN_CLASSES",
           "NUM_CITYSCAPES_CLASSES", "INSTANCE_TRAIN_IDS", "DEFAULT_MIN_PIXELS", "id_to_train_id", "load_id_png",
           "image_labels", "write_labels_file", "Cityscapes"]

PathLike = Union[str, os.PathLike]

Label = namedtuple("Label", ["name", "id", "trainId", "category", "categoryId", "hasInstances", "ignoreInEval",
                             "color"])

BUILTIN_VERSION = "cityscapesscripts 2.3.0 (helpers/labels.py)"

# name, id, trainId, category, categoryId, hasInstances, ignoreInEval, color
BUILTIN_LABELS: Tuple[Label, ...] = tuple(Label(*row) for row in (
    ("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    ("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    ("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    ("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    ("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    ("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    ("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    ("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    ("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    ("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    ("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    ("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    ("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    ("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    ("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    ("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    ("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    ("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    ("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    ("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    ("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    ("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    ("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    ("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    ("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    ("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    ("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    ("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    ("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    ("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    ("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    ("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    ("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    ("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
    ("license plate", -1, -1, "vehicle", 7, False, True, (0, 0, 142)),
))

# Classes cover few pixels of a 2048 x 1024 image; below this (about a 32 x 32 patch, four cells of
# the classifier's stride-16 map) a class is not called present in the image-level labels.
DEFAULT_MIN_PIXELS = 1000


def label_source() -> str:
    """Where :func:`labels_table` comes from: the installed package or the built-in copy."""
    try:
        from importlib.metadata import version
        import cityscapesscripts.helpers.labels  # noqa: F401
        return f"cityscapesscripts {version('cityscapesscripts')} (installed)"
    except Exception:  # not installed, or broken: the built-in table
        return f"built-in copy of {BUILTIN_VERSION}"


def labels_table() -> Tuple[Label, ...]:
    """The Cityscapes label definitions: ``cityscapesscripts.helpers.labels.labels`` when the package
    is installed, else :data:`BUILTIN_LABELS`."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except Exception:
        return BUILTIN_LABELS
    return tuple(Label(l.name, l.id, l.trainId, l.category, l.categoryId, l.hasInstances, l.ignoreInEval,
                       tuple(l.color)) for l in labels)


def _train_labels(table: Sequence[Label]) -> List[Label]:
    found = sorted((l for l in table if 0 <= l.trainId < 255), key=lambda l: l.trainId)
    if [l.trainId for l in found] != list(range(len(found))):
        raise InputValueError(f"Cityscapes label table: train ids expected 0..N-1 once each, got "
                              f"{[l.trainId for l in found]}")
    return found


_TRAIN = _train_labels(labels_table())
TRAIN_CLASSES: Tuple[str, ...] = tuple(l.name for l in _TRAIN)
NUM_CITYSCAPES_CLASSES = len(TRAIN_CLASSES)
INSTANCE_TRAIN_IDS: Tuple[int, ...] = tuple(l.trainId for l in _TRAIN if l.hasInstances and not l.ignoreInEval)


def id_to_train_id(table: Optional[Sequence[Label]] = None) -> np.ndarray:
    """Lookup table ``uint8 (256,)``: label id -> train id (255 for ignored and unknown ids)."""
    lut = np.full(256, 255, np.uint8)
    for l in (labels_table() if table is None else table):
        if 0 <= l.id < 256 and 0 <= l.trainId < 255:
            lut[l.id] = l.trainId
    return lut


_LUT = id_to_train_id()


def load_id_png(path: PathLike) -> np.ndarray:
    """Read a grey label PNG of 8 or 16 bits (``labelIds``, ``instanceIds``) as ``int32 (H, W)``."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"Cityscapes ground-truth file not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise InputValueError(f"{path}: mode {im.mode}, expected a grey PNG of label ids (L, I or I;16)")
            return np.array(im).astype(np.int32)
    except OSError as exc:
        raise CorruptImageError(f"cannot decode {path}: {exc}") from exc


def _train_id_map(label_ids: np.ndarray, path) -> np.ndarray:
    if label_ids.min() < 0 or label_ids.max() > 255:
        raise InputValueError(f"{path}: label ids expected in 0..255, got {label_ids.min()}..{label_ids.max()}")
    return _LUT[label_ids]


def image_labels(label_ids: np.ndarray, min_pixels: int = DEFAULT_MIN_PIXELS) -> np.ndarray:
    """Multi-hot ``float32 (19,)`` of a ``labelIds`` map: train ids covering >= ``min_pixels`` pixels."""
    counts = np.bincount(_train_id_map(np.asarray(label_ids), "labelIds").ravel(), minlength=256)
    return (counts[:NUM_CITYSCAPES_CLASSES] >= max(1, int(min_pixels))).astype(np.float32)


def _scan(root: Path, split: str) -> Dict[str, Path]:
    folder = root / "leftImg8bit" / split
    if not folder.is_dir():
        have = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir()) \
            if (root / "leftImg8bit").is_dir() else []
        raise InputFileNotFoundError(f"Cityscapes split folder not found: {folder} (expected leftImg8bit/<split>/"
                                     f"<city>/*_leftImg8bit.png; splits present: {', '.join(have) or 'none'})")
    found: Dict[str, Path] = {}
    for path in sorted(folder.glob("*/*_leftImg8bit.png")):
        name = path.name[:-len("_leftImg8bit.png")]
        if name in found:
            raise InputValueError(f"Cityscapes split {split!r}: image id {name!r} appears in two cities")
        found[name] = path
    if not found:
        raise InputValueError(f"Cityscapes split folder {folder} holds no <city>/*_leftImg8bit.png image")
    return dict(sorted(found.items()))


def write_labels_file(root: PathLike, split: str, path: PathLike, min_pixels: int = DEFAULT_MIN_PIXELS) -> Path:
    """Image-level labels of every image of ``split`` from its ``gtFine`` label ids, written to
    ``path`` as JSON ``{image id: [class names]}`` (atomically). Returns ``path``."""
    source = Cityscapes(root, split, min_pixels=min_pixels)
    labels = {name: [TRAIN_CLASSES[i] for i in np.flatnonzero(source.label(name))] for name in source.ids}
    return atomic_write_json(Path(path), labels)


class Cityscapes:
    """Reader of one split of a Cityscapes root (module docstring).

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: a folder of ``leftImg8bit/`` (``train``, ``val``, ...).
        labels_file: image-level labels file; when it does not exist it is written first from
            the split's ``gtFine`` (:func:`write_labels_file`). Without one, labels are read from
            the masks image by image.
        min_pixels: pixel count from which a class is present (labels made from masks).
    """

    class_names = TRAIN_CLASSES
    num_classes = NUM_CITYSCAPES_CLASSES
    ignore_from = NUM_CITYSCAPES_CLASSES + 1
    has_background = False
    instance_classes = INSTANCE_TRAIN_IDS

    def __init__(self, root: PathLike, split: str = "train", labels_file: Optional[PathLike] = None,
                 min_pixels: int = DEFAULT_MIN_PIXELS):
        self.root = Path(root)
        if not (self.root / "leftImg8bit").is_dir():
            raise InputFileNotFoundError(f"Cityscapes root {self.root} has no leftImg8bit/ folder (expected "
                                         "leftImg8bit/ and gtFine/ of the official archives)")
        if isinstance(min_pixels, bool) or not isinstance(min_pixels, (int, np.integer)) or min_pixels < 1:
            raise InputValueError(f"Cityscapes(): min_pixels expected an integer >= 1, got {min_pixels!r}")
        self.split = str(split)
        self.min_pixels = int(min_pixels)
        self._images = _scan(self.root, self.split)
        self.ids: List[str] = list(self._images)
        self._labels: Optional[Dict[str, np.ndarray]] = None
        if labels_file is not None:
            if not Path(labels_file).is_file():
                write_labels_file(self.root, self.split, labels_file, self.min_pixels)
            self._labels = load_labels_file(labels_file, self.ids, self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, name: str) -> Path:
        return self._images[name]

    def gt_path(self, name: str, kind: str = "labelIds") -> Path:
        """``gtFine/<split>/<city>/<id>_gtFine_<kind>.png`` (kind ``labelIds`` or ``instanceIds``)."""
        city = self._images[name].parent.name
        return self.root / "gtFine" / self.split / city / f"{name}_gtFine_{kind}.png"

    def load_image(self, name: str) -> np.ndarray:
        return load_image(self.image_path(name))

    def label(self, name: str) -> np.ndarray:
        """Multi-hot ``float32 (19,)`` image-level label (train ids)."""
        if self._labels is not None:
            return self._labels[name]
        return image_labels(load_id_png(self.gt_path(name)), self.min_pixels)

    def labels(self) -> Dict[str, np.ndarray]:
        return {n: self.label(n) for n in self.ids}

    def seg_label(self, name: str) -> np.ndarray:
        """Semantic GT ``uint8 (H, W)``: train id + 1 (1..19), 255 ignored; never 0."""
        path = self.gt_path(name)
        train = _train_id_map(load_id_png(path), path)
        return np.where(train == 255, 255, train + 1).astype(np.uint8)

    def instance_ids(self, name: str) -> np.ndarray:
        """The ``instanceIds`` map ``int32 (H, W)`` as stored (what the Cityscapes evaluation reads)."""
        return load_id_png(self.gt_path(name, "instanceIds"))

    def instance_label(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """Instance GT: ``(masks bool (N, H, W), classes int64 (N,))``, classes train ids (0-based).

        The instances (ids >= 1000) of the 8 instance classes, in increasing id order; groups
        (a class id below 1000: a crowd of one class) and ignored classes are left out.
        """
        ids = self.instance_ids(name)
        values = [v for v in np.unique(ids) if v >= 1000 and v // 1000 < 256
                  and _LUT[v // 1000] in self.instance_classes]
        masks = np.zeros((len(values),) + ids.shape, bool)
        for k, v in enumerate(values):
            masks[k] = ids == v
        classes = np.array([_LUT[v // 1000] for v in values], np.int64)
        return masks, classes
