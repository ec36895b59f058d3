"""The training transforms of the reference (docs/algorithm.md, "Training"), on numpy arrays.

Every random choice is drawn from a ``numpy.random.Generator`` passed in, so a transform is a
pure function of its inputs and the generator state. Images are ``uint8`` (or float) arrays of
shape ``(H, W, 3)``; label maps are 2-D integer arrays that follow the image geometrically
(nearest-neighbour resampling, flipped and cropped with the same box, filled with 255).

The reference's order, kept here: resize (long side / rescale) on the ``uint8`` image, then
ImageNet normalisation, then flip, then crop (so the crop fill 0 of the image is 0 in the
*normalised* space, i.e. the mean colour), then HWC -> CHW.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "pil_resize", "pil_rescale", "random_resize_long",
    "random_scale", "random_lr_flip", "random_crop_box", "random_crop", "top_left_crop",
    "normalize", "hwc_to_chw", "ClassificationTransform", "AffinityTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {0: Image.NEAREST, 1: Image.BILINEAR, 3: Image.BICUBIC}


def pil_resize(arr: np.ndarray, size: Tuple[int, int], order: int) -> np.ndarray:
    """Resize ``arr`` to ``size = (height, width)`` with PIL (order 0 nearest, 1 bilinear, 3 bicubic).

    Returns ``arr`` itself when the size is unchanged (as the reference does).
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"pil_resize(): target size must be at least 1 x 1, got {height} x {width}")
    if arr.shape[0] == height and arr.shape[1] == width:
        return arr
    if order not in _RESAMPLE:
        raise ValueError(f"pil_resize(): order must be 0, 1 or 3, got {order}")
    return np.asarray(Image.fromarray(arr).resize((width, height), _RESAMPLE[order]))


def pil_rescale(arr: np.ndarray, scale: float, order: int) -> np.ndarray:
    """Rescale by ``scale``; the target size is ``round(H * scale) x round(W * scale)``."""
    height, width = arr.shape[:2]
    size = (max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale))))
    return pil_resize(arr, size, order)


def random_resize_long(img: np.ndarray, min_long: int, max_long: int, rng: np.random.Generator,
                       label: Optional[np.ndarray] = None):
    """Resize so that the long side is a random integer in ``[min_long, max_long]`` (inclusive).

    The image is resampled bicubically; ``label`` (optional) with nearest neighbour. Returns the
    image, or ``(image, label)`` when a label is given.
    """
    target_long = int(rng.integers(int(min_long), int(max_long) + 1))
    height, width = img.shape[:2]
    scale = target_long / (height if width < height else width)
    out = pil_rescale(img, scale, 3)
    if label is None:
        return out
    return out, pil_rescale(label, scale, 0)


def random_scale(img: np.ndarray, scale_range: Sequence[float], rng: np.random.Generator,
                 label: Optional[np.ndarray] = None):
    """Rescale by a factor drawn uniformly from ``scale_range = (lo, hi)`` (0.5..1.5 for IRNet)."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    scale = lo + float(rng.random()) * (hi - lo)
    out = pil_rescale(img, scale, 3)
    if label is None:
        return out
    return out, pil_rescale(label, scale, 0)


def random_lr_flip(img: np.ndarray, rng: np.random.Generator, label: Optional[np.ndarray] = None):
    """Flip left-right with probability 1/2 (image and label together)."""
    flip = bool(rng.integers(0, 2))
    if flip:
        img = np.ascontiguousarray(img[:, ::-1])
        if label is not None:
            label = np.ascontiguousarray(label[:, ::-1])
    return img if label is None else (img, label)


def random_crop_box(size: Tuple[int, int], crop_size: int, rng: np.random.Generator) -> Tuple[int, ...]:
    """The reference's crop box for an image of ``size = (H, W)``.

    Returns ``(cont_top, cont_bottom, cont_left, cont_right, img_top, img_bottom, img_left,
    img_right)``: the window ``img[img_top:img_bottom, img_left:img_right]`` goes to
    ``out[cont_top:cont_bottom, cont_left:cont_right]`` of a ``crop_size x crop_size`` canvas.
    When the image is larger than the crop, the image offset is random; when smaller, the
    position of the image inside the canvas is random.
    """
    height, width = int(size[0]), int(size[1])
    ch, cw = min(crop_size, height), min(crop_size, width)
    w_space, h_space = width - crop_size, height - crop_size
    if w_space > 0:
        cont_left, img_left = 0, int(rng.integers(0, w_space + 1))
    else:
        cont_left, img_left = int(rng.integers(0, -w_space + 1)), 0
    if h_space > 0:
        cont_top, img_top = 0, int(rng.integers(0, h_space + 1))
    else:
        cont_top, img_top = int(rng.integers(0, -h_space + 1)), 0
    return (cont_top, cont_top + ch, cont_left, cont_left + cw,
            img_top, img_top + ch, img_left, img_left + cw)


def _paste(arr: np.ndarray, box: Tuple[int, ...], crop_size: int, fill) -> np.ndarray:
    out = np.full((crop_size, crop_size) + arr.shape[2:], fill, dtype=arr.dtype)
    out[box[0]:box[1], box[2]:box[3]] = arr[box[4]:box[5], box[6]:box[7]]
    return out


def random_crop(img: np.ndarray, crop_size: int, rng: np.random.Generator,
                label: Optional[np.ndarray] = None, fill: Tuple[float, int] = (0, 255)):
    """Random ``crop_size`` square crop; padding is ``fill[0]`` for the image, ``fill[1]`` for labels.

    The same box is used for image and label.
    """
    crop_size = int(crop_size)
    if crop_size < 1:
        raise ValueError(f"random_crop(): crop_size must be positive, got {crop_size}")
    if label is not None and label.shape[:2] != img.shape[:2]:
        raise ValueError(f"random_crop(): image {img.shape[:2]} and label {label.shape[:2]} differ in size")
    box = random_crop_box(img.shape[:2], crop_size, rng)
    out = _paste(img, box, crop_size, fill[0])
    if label is None:
        return out
    return out, _paste(label, box, crop_size, fill[1])


def top_left_crop(img: np.ndarray, crop_size: int, fill=0) -> np.ndarray:
    """Deterministic crop of the top-left ``crop_size`` square (padding with ``fill``)."""
    height, width = img.shape[:2]
    ch, cw = min(crop_size, height), min(crop_size, width)
    return _paste(img, (0, ch, 0, cw, 0, ch, 0, cw), crop_size, fill)


def normalize(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """``(img / 255 - mean) / std`` per channel, float32, HWC."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return ((arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def hwc_to_chw(img: np.ndarray) -> np.ndarray:
    """``(H, W, C) -> (C, H, W)``, contiguous."""
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1)))


class ClassificationTransform:
    """CAM training transform: random long side, optional rescale, normalise, flip, crop, CHW.

    Defaults are the reference's CAM training (long side 320..640, flip, crop 512). Set an
    argument to ``None`` (or ``False`` for ``hor_flip``) to disable that step.
    """

    def __init__(self, resize_long: Optional[Tuple[int, int]] = (320, 640),
                 rescale: Optional[Tuple[float, float]] = None, hor_flip: bool = True,
                 crop_size: Optional[int] = 512, crop_method: str = "random"):
        if crop_method not in ("random", "top_left"):
            raise ValueError(f"crop_method must be 'random' or 'top_left', got {crop_method!r}")
        self.resize_long, self.rescale, self.hor_flip = resize_long, rescale, hor_flip
        self.crop_size, self.crop_method = crop_size, crop_method

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.resize_long:
            img = random_resize_long(img, self.resize_long[0], self.resize_long[1], rng)
        if self.rescale:
            img = random_scale(img, self.rescale, rng)
        img = normalize(img)
        if self.hor_flip:
            img = random_lr_flip(img, rng)
        if self.crop_size:
            if self.crop_method == "random":
                img = random_crop(img, self.crop_size, rng)
            else:
                img = top_left_crop(img, self.crop_size, 0)
        return hwc_to_chw(img)


class AffinityTransform:
    """IRNet training transform on (image, IR label): rescale 0.5..1.5, normalise, flip, crop 512.

    Returns ``(img CHW float32, label (crop, crop) uint8)``; crop fill 0 (image), 255 (label).
    """

    def __init__(self, rescale: Optional[Tuple[float, float]] = (0.5, 1.5), hor_flip: bool = True,
                 crop_size: int = 512, crop_method: str = "random"):
        if crop_method not in ("random", "top_left"):
            raise ValueError(f"crop_method must be 'random' or 'top_left', got {crop_method!r}")
        self.rescale, self.hor_flip = rescale, hor_flip
        self.crop_size, self.crop_method = crop_size, crop_method

    def __call__(self, img: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        if self.rescale:
            img, label = random_scale(img, self.rescale, rng, label=label)
        img = normalize(img)
        if self.hor_flip:
            img, label = random_lr_flip(img, rng, label=label)
        if self.crop_method == "random":
            img, label = random_crop(img, self.crop_size, rng, label=label)
        else:
            img, label = top_left_crop(img, self.crop_size, 0), top_left_crop(label, self.crop_size, 255)
        return hwc_to_chw(img), label
