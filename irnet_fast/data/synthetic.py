"""A small synthetic dataset in the PASCAL VOC 2012 layout (the default of the demo and the tests).

``generate(root)`` writes, directly under ``root`` (which then plays the part of ``VOC2012/``)::

    JPEGImages/<id>.jpg              RGB images
    Annotations/<id>.xml             VOC XML, one <object> per instance (name, bndbox, ...)
    SegmentationClass/<id>.png       palette PNG: 0 background, 1..K classes, 255 void border
    SegmentationObject/<id>.png      palette PNG: 0 background, 1..N instances, 255 void border
    ImageSets/Segmentation/{train,train_aug,val,trainval}.txt
    ImageSets/Main/{train,val,trainval}.txt
    cls_labels.txt                   image-level labels in the text labels-file format
    synthetic.json                   the generation parameters and each image's instance classes

Classes are the first ``num_classes`` VOC classes (ids 1..K; image-level labels therefore come
from the XML exactly as for real VOC). Two styles:

- ``style="part"`` (the default) shows the problem IRNet solves. In photos a classifier fires on
  the most discriminative part of an object (a face, a wheel) and its CAMs cover a fraction of
  it. Here an object is a body (a random shape, moderately saturated, with smooth shading and a
  dark outline) that carries a class-specific part: a disc of a fifth of the body's area on its
  long axis, towards one end, with the class's pair of saturated colours and texture
  (:data:`CLASS_STYLES`), fading into the body at its rim. The body's hue is drawn around the
  part's, so it is weak evidence of the class, as the rest of an object is in a photo; the part
  is the strong one. Bodies stand out from the background and from their neighbours by their
  outlines; a part has no edge of its own. Backgrounds carry clutter: up to two decoy bodies
  (random hue, no part, no outline) and a few small plain blobs. An occluded instance keeps at
  least 70% of its part visible.
- ``style="texture"`` (the earlier data): each class has its own colours, texture and shape over
  the whole object, so CAMs already cover most of each object.

In both, instances get per-instance jitter of size, rotation, texture period and brightness;
backgrounds are smooth grey-ish noise. Images hold 1 to 4 instances, often two of the same class,
some touching or occluding each other (every instance keeps at least 40% of its area visible).
Instances of one class are kept apart (a gap of 6% of the image side), while instances of
different classes may touch or overlap: from image-level labels IRNet learns class boundaries,
and its displacement field has nothing to separate two touching instances of one class with (a
limitation of the method, not something a demo should hide or dwell on).

Everything is a function of ``seed`` (image ``i`` draws from ``default_rng([seed, i])``), so the
same seed gives the same bytes. Files are written atomically (temporary file + ``os.replace``).
A finished dataset (``synthetic.json`` present with the same parameters) is not rewritten unless
``overwrite=True``.
"""
from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image
from scipy import ndimage

from .._io import atomic_write_bytes, save_label_png
from .voc import VOC_CLASSES

__all__ = ["generate", "load_truth", "CLASS_STYLES"]

PathLike = Union[str, os.PathLike]

# (colour a, colour b, texture, shape, texture period in pixels) for the first VOC classes.
CLASS_STYLES = [
    ((210, 40, 35), (250, 150, 60), "stripes", "ellipse", 7.0),
    ((30, 150, 45), (10, 70, 25), "checks", "rectangle", 9.0),
    ((35, 65, 205), (110, 200, 240), "spots", "diamond", 8.0),
    ((225, 205, 40), (140, 95, 15), "rings", "ellipse", 6.0),
    ((200, 40, 190), (90, 10, 100), "checks", "diamond", 6.0),
    ((30, 200, 200), (10, 90, 110), "stripes", "rectangle", 10.0),
    ((240, 240, 240), (30, 30, 30), "spots", "ellipse", 6.0),
    ((150, 90, 40), (240, 200, 150), "rings", "rectangle", 9.0),
]
_TEXTURES = ("stripes", "checks", "spots", "rings")
_SHAPES = ("ellipse", "rectangle", "diamond")
_MIN_VISIBLE = 0.4
_MIN_PIXELS = 40
_SAME_CLASS_GAP = 0.06  # of min(H, W)
_FORMAT_VERSION = 4
STYLES = ("part", "texture")
# style "part"
_PART_FRACTION = 0.2  # of the body's area
_PART_OFFSET = 0.35  # centre of the part on the long axis, in half-lengths from the body's centre
_MIN_PART_VISIBLE = 0.7  # an occluded instance keeps most of its part, the only sign of its class
_OUTLINE = 1  # pixels of the dark outline of every body
_BODY_NOISE = 4.0
_PART_SOFTNESS = 0.6  # the part's pattern fades into the body over this fraction of its radius
_BODY_HUE_SPREAD = 0.06  # an object's body hue: around its class's part hue, with this spread


def _style(cls: int) -> Tuple:
    """Style of class ``cls`` (1-based); classes beyond the table get HSV-spaced colours."""
    if cls <= len(CLASS_STYLES):
        return CLASS_STYLES[cls - 1]
    import colorsys
    h = ((cls - 1) * 0.618034) % 1.0
    a = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 0.9))
    b = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((h + 0.08) % 1.0, 0.9, 0.45))
    return a, b, _TEXTURES[cls % 4], _SHAPES[cls % 3], 6.0 + (cls % 5)


def _jpg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    low = rng.random((h // 16 + 2, w // 16 + 2))
    smooth = ndimage.zoom(low, (h / low.shape[0], w / low.shape[1]), order=1, mode="nearest")[:h, :w]
    smooth = np.pad(smooth, ((0, h - smooth.shape[0]), (0, w - smooth.shape[1])), mode="edge")
    grey_a = rng.uniform(60, 120)
    grey_b = rng.uniform(130, 190)
    tint_a = rng.uniform(-15, 15, 3)
    tint_b = rng.uniform(-15, 15, 3)
    col_a, col_b = grey_a + tint_a, grey_b + tint_b
    img = col_a * (1 - smooth[..., None]) + col_b * smooth[..., None]
    return img + rng.normal(0, 6, (h, w, 1)) + rng.normal(0, 3, (h, w, 3))


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    if shape == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= a * 0.85) & (np.abs(v) <= b * 0.85)
    return np.abs(u) / a + np.abs(v) / b <= 1.0  # diamond


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    k = 2 * np.pi / period
    if texture == "stripes":
        return 0.5 + 0.5 * np.sin(k * u)
    if texture == "checks":
        return (np.sin(k * u) * np.sin(k * v) > 0).astype(np.float64)
    if texture == "spots":
        return np.clip((np.cos(k * u) + np.cos(k * v)) - 0.4, 0, 1)
    return 0.5 + 0.5 * np.sin(k * np.sqrt(u * u + v * v))  # rings


def _placement(rng, yy, xx, h, w, shape_names, size_range, classes, centres, cls, turn=np.pi):
    """A random body (mask, u, v, a, b, centre): near an instance of another class half of the
    time (so that instances touch or overlap), anywhere otherwise; rotated by up to ``turn``."""
    scale = min(h, w)
    a = rng.uniform(*size_range) * scale
    b = a * rng.uniform(0.6, 1.0)
    theta = rng.uniform(0, turn)
    others = [j for j, c in enumerate(classes) if c != cls]
    if others and rng.random() < 0.5:
        cy0, cx0, r0 = centres[others[int(rng.integers(len(others)))]]
        ang = rng.uniform(0, 2 * np.pi)
        dist = (r0 + (a + b) / 2) * rng.uniform(0.55, 0.95)
        cy, cx = cy0 + dist * np.sin(ang), cx0 + dist * np.cos(ang)
    else:
        cy, cx = rng.uniform(0.15 * h, 0.85 * h), rng.uniform(0.15 * w, 0.85 * w)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    shape = shape_names if isinstance(shape_names, str) else shape_names[int(rng.integers(len(shape_names)))]
    return _shape_mask(shape, u, v, a, b), u, v, a, b, (cy, cx, (a + b) / 2)


def _plain_body(rng, u, a, h, w, cls: int = 0) -> np.ndarray:
    """The colour of a body: a moderately saturated colour with smooth shading, so that it stands
    out from the grey background. An object's (class ``cls`` > 0) hue is drawn around the hue of
    its class's part: weak evidence of the class over the whole body, as the rest of an object
    gives a classifier in photos; a decoy's (``cls`` 0) hue is random."""
    import colorsys
    if cls > 0:
        hue = (colorsys.rgb_to_hsv(*(np.asarray(_style(cls)[0]) / 255.0))[0] + rng.normal(0, _BODY_HUE_SPREAD)) % 1.0
    else:
        hue = rng.random()
    rgb = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.2, 0.55), rng.uniform(0.45, 0.85))) * 255
    shade = rng.uniform(0.9, 1.1) * (1 + 0.12 * (u / max(a, 1.0)))[..., None]
    return rgb[None, None] * shade + rng.normal(0, _BODY_NOISE, (h, w, 3))


def _darken_outline(colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A dark line along the inside of the mask's outline: the visible edge of every body."""
    colour[mask & ~ndimage.binary_erosion(mask, iterations=_OUTLINE)] *= 0.4
    return colour


def _part_weight(mask: np.ndarray, u: np.ndarray, v: np.ndarray, a: float) -> np.ndarray:
    """How much of the class pattern each pixel shows (0..1): the class-specific part is a disc of
    a fifth of the body's area, centred on the body's long axis towards one end (a compact "head",
    as big as a few cells of the CAM network's grid), fading into the body at its rim."""
    if not mask.any():
        return np.zeros(mask.shape)
    r = np.sqrt(_PART_FRACTION * mask.sum() / np.pi)
    dist = np.sqrt((u - _PART_OFFSET * a) ** 2 + v * v)
    soft = _PART_SOFTNESS * r
    return np.where(mask, np.clip((r + soft / 2 - dist) / soft, 0.0, 1.0), 0.0)


def _render(rng: np.random.Generator, size: Tuple[int, int], num_classes: int, max_instances: int,
            style: str = "part") -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """One image: (RGB uint8, instance map 0..N, class (1-based) of each instance)."""
    h, w = size
    img = _background(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if style == "part":
        _clutter(rng, img, yy, xx)
    inst = np.zeros((h, w), np.int32)
    full_areas: List[int] = []
    part_masks: List[np.ndarray] = []
    classes: List[int] = []
    centres: List[Tuple[float, float, float]] = []
    n = int(rng.integers(1, max_instances + 1))
    gap = max(2, int(round(_SAME_CLASS_GAP * min(h, w))))
    same_class_zone = {c: np.zeros((h, w), bool) for c in range(1, num_classes + 1)}
    for _ in range(n):
        if classes and rng.random() < 0.4:
            cls = int(classes[rng.integers(len(classes))])  # a second instance of a present class
        else:
            cls = int(rng.integers(1, num_classes + 1))
        col_a, col_b, texture, shape, period = _style(cls)
        for _attempt in range(25):
            if style == "part":
                mask, u, v, a, b, centre = _placement(rng, yy, xx, h, w, _SHAPES, (0.16, 0.32), classes, centres, cls,
                                                      turn=2 * np.pi)  # the part may face any way
            else:
                mask, u, v, a, b, centre = _placement(rng, yy, xx, h, w, shape, (0.12, 0.28), classes, centres, cls)
            area = int(mask.sum())
            if area < _MIN_PIXELS / _MIN_VISIBLE:
                continue
            weight = _part_weight(mask, u, v, a) if style == "part" else None
            part = weight >= 0.5 if style == "part" else mask  # pixels showing the part at least half
            if part.sum() < 0.5 * _PART_FRACTION * area:
                continue  # the part would be cut off by the image border
            if same_class_zone[cls].any() and (mask & same_class_zone[cls]).any():
                continue  # instances of one class never touch (see the module docstring)
            cand = inst.copy()
            cand[mask] = len(classes) + 1
            counts = np.bincount(cand.ravel(), minlength=len(classes) + 2)
            if all(counts[j + 1] >= max(_MIN_PIXELS, _MIN_VISIBLE * full_areas[j]) for j in range(len(classes))) \
                    and all((cand[p] == j + 1).mean() >= _MIN_PART_VISIBLE for j, p in enumerate(part_masks)):
                break
        else:
            continue  # no acceptable placement: fewer instances in this image
        p = period * rng.uniform(0.85, 1.15)
        t = _texture(texture, u + rng.uniform(0, p), v + rng.uniform(0, p), p)[..., None]
        pattern = np.asarray(col_a, np.float64) * (1 - t) + np.asarray(col_b, np.float64) * t
        if style == "part":
            colour = _plain_body(rng, u, a, h, w, cls)
            shown = weight[..., None]
            colour = colour * (1 - shown) + (pattern + rng.normal(0, _BODY_NOISE, (h, w, 3))) * shown
            colour = _darken_outline(colour, mask)
        else:
            shade = rng.uniform(0.85, 1.15) * (1 + 0.15 * (u / max(a, 1.0)))[..., None]
            colour = pattern * shade + rng.normal(0, 8, (h, w, 3))
        img[mask] = colour[mask]
        inst = cand
        full_areas.append(area)
        part_masks.append(part)
        classes.append(cls)
        same_class_zone[cls] |= ndimage.binary_dilation(mask, iterations=gap)
        centres.append(centre)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), inst, classes


def _clutter(rng: np.random.Generator, img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> None:
    """Background clutter, drawn before the objects: up to two decoy bodies (the objects' bodies
    without a part, so that a body alone says nothing) and a few small plain blobs."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 3))):
        mask, u, _, a, _, _ = _placement(rng, yy, xx, h, w, _SHAPES, (0.1, 0.22), [], [], 0)
        img[mask] = _plain_body(rng, u, a, h, w)[mask]  # no outline: the objects' outlines are theirs
    for _ in range(int(rng.integers(1, 4))):
        mask, *_ = _placement(rng, yy, xx, h, w, "ellipse", (0.03, 0.06), [], [], 0)
        img[mask] = rng.uniform(40, 220, 3)


def _border(inst: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a pixel with another instance id (VOC's void band)."""
    out = np.zeros(inst.shape, bool)
    h, w = inst.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            if dy == 0 and dx == 0:
                continue
            src = inst[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            dst = inst[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            out[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)] |= src != dst
    return out


def _xml_bytes(name: str, size: Tuple[int, int], inst: np.ndarray, classes: List[int]) -> bytes:
    h, w = size
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC2012"
    ET.SubElement(ann, "filename").text = f"{name}.jpg"
    src = ET.SubElement(ann, "source")
    ET.SubElement(src, "database").text = "irnet_fast synthetic"
    sz = ET.SubElement(ann, "size")
    ET.SubElement(sz, "width").text = str(w)
    ET.SubElement(sz, "height").text = str(h)
    ET.SubElement(sz, "depth").text = "3"
    ET.SubElement(ann, "segmented").text = "1"
    for k, cls in enumerate(classes, 1):
        ys, xs = np.nonzero(inst == k)
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = VOC_CLASSES[cls - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        trunc = ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1
        ET.SubElement(obj, "truncated").text = str(int(trunc))
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, val in (("xmin", xs.min()), ("ymin", ys.min()), ("xmax", xs.max()), ("ymax", ys.max())):
            ET.SubElement(box, tag).text = str(int(val) + 1)  # VOC boxes are 1-based, inclusive
    ET.indent(ann)
    return ET.tostring(ann, encoding="utf-8") + b"\n"


def _params(num_train, num_val, size, num_classes, seed, max_instances, border, style) -> Dict:
    return {"version": _FORMAT_VERSION, "num_train": int(num_train), "num_val": int(num_val),
            "size": [int(size[0]), int(size[1])], "num_classes": int(num_classes), "seed": int(seed),
            "max_instances": int(max_instances), "border": int(border), "style": style}


def generate(root: PathLike, num_train: int = 128, num_val: int = 32, size: Tuple[int, int] = (128, 160),
             num_classes: int = 4, seed: int = 0, max_instances: int = 4, border: int = 1,
             overwrite: bool = False, style: str = "part") -> Path:
    """Write the synthetic VOC-layout dataset under ``root`` and return ``Path(root)``.

    Args:
        root: output folder; it becomes a VOC devkit folder (``VOC12(root, 'train')`` reads it).
        num_train, num_val: images in the ``train`` (also ``train_aug``) and ``val`` lists.
        size: ``(H, W)`` of every image.
        num_classes: K, the classes used are VOC ids 1..K (``aeroplane``, ``bicycle``, ...).
        seed: everything is a function of it.
        max_instances: at most this many instances per image (at least 1).
        border: width of the 255 void band on each side of object outlines (0: none).
        overwrite: rewrite even when a finished dataset with the same parameters is there.
        style: ``"part"`` (classes told apart by a small part only, see the module docstring) or
            ``"texture"`` (every class differs over its whole area).
    """
    if style not in STYLES:
        raise ValueError(f"generate(): style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    if not 1 <= num_classes <= len(VOC_CLASSES):
        raise ValueError(f"generate(): num_classes must be in 1..{len(VOC_CLASSES)}, got {num_classes}")
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"generate(): need at least one image, got num_train={num_train}, num_val={num_val}")
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise ValueError(f"generate(): size must be at least 16 x 16, got {h} x {w}")
    if max_instances < 1:
        raise ValueError(f"generate(): max_instances must be >= 1, got {max_instances}")
    root = Path(root)
    params = _params(num_train, num_val, (h, w), num_classes, seed, max_instances, border, style)
    meta_path = root / "synthetic.json"
    if not overwrite and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("params") == params:
                return root
        except ValueError:
            pass
    dirs = {d: root / d for d in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                                  "ImageSets/Segmentation", "ImageSets/Main")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    names = [f"2012_{i:06d}" for i in range(num_train + num_val)]
    truth = {}
    for i, name in enumerate(names):
        rng = np.random.default_rng([int(seed), i])
        img, inst, classes = _render(rng, (h, w), num_classes, max_instances, style)
        cls_map = np.zeros((h, w), np.uint8)
        for k, c in enumerate(classes, 1):
            cls_map[inst == k] = c
        obj_map = inst.astype(np.uint8)
        if border > 0:
            band = _border(inst, border)
            cls_map[band] = 255
            obj_map[band] = 255
        atomic_write_bytes(dirs["JPEGImages"] / f"{name}.jpg", _jpg_bytes(img))
        save_label_png(dirs["SegmentationClass"] / f"{name}.png", cls_map)
        save_label_png(dirs["SegmentationObject"] / f"{name}.png", obj_map)
        atomic_write_bytes(dirs["Annotations"] / f"{name}.xml", _xml_bytes(name, (h, w), inst, classes))
        truth[name] = {"split": "train" if i < num_train else "val", "instance_classes": [c - 1 for c in classes]}
    train, val = names[:num_train], names[num_train:]
    lists = {"train": train, "val": val, "trainval": names}
    for split, ids in lists.items():
        data = "".join(f"{n}\n" for n in ids).encode()
        atomic_write_bytes(dirs["ImageSets/Segmentation"] / f"{split}.txt", data)
        atomic_write_bytes(dirs["ImageSets/Main"] / f"{split}.txt", data)
    atomic_write_bytes(dirs["ImageSets/Segmentation"] / "train_aug.txt", "".join(f"{n}\n" for n in train).encode())
    lines = ["# image id, then its classes (VOC names); see irnet_fast.data.voc.load_labels_file"]
    for n in names:
        cls = sorted(set(truth[n]["instance_classes"]))
        lines.append(" ".join([n] + [VOC_CLASSES[c] for c in cls]))
    atomic_write_bytes(root / "cls_labels.txt", ("\n".join(lines) + "\n").encode())
    meta = {"params": params, "class_names": list(VOC_CLASSES[:num_classes]), "images": truth}
    atomic_write_bytes(meta_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    return root


def load_truth(root: PathLike) -> Dict[str, Dict]:
    """The generator's record of ``root``: ``{id: {'split', 'instance_classes' (0-based, in
    SegmentationObject id order)}}``."""
    path = Path(root) / "synthetic.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} was not written by irnet_fast.data.synthetic.generate")
    return json.loads(path.read_text())["images"]
