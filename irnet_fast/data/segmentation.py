"""Training items of a fully supervised segmentation network: an image and a label map of it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import InputFileNotFoundError, InputValueError
from .transforms import AffinityTransform
from .voc import PathLike, _SourceDataset, load_label_png

__all__ = ["SegmentationDataset"]


class SegmentationDataset(_SourceDataset):
    """Images of ``source`` with the label maps ``label_dir/<id>.png`` (0 background, 1..C, 255
    ignored), transformed together by ``transform(img, label, rng)`` (default: the random rescale,
    flip and crop of :class:`~.transforms.AffinityTransform`; crop fill 0 / 255). Each item:
    ``{'name', 'img' float32 (3, crop, crop), 'label' int64 (crop, crop)}``."""

    def __init__(self, source, label_dir: PathLike, transform: Optional[Callable] = None,
                 seed: Optional[int] = 0, skip_corrupt: bool = True):
        super().__init__(source, seed, skip_corrupt)
        self.label_dir = Path(label_dir)
        if not self.label_dir.is_dir():
            raise InputFileNotFoundError(f"label folder not found: {self.label_dir} (expected <image id>.png files)")
        self.transform = transform if transform is not None else AffinityTransform()

    def __getitem__(self, index: int) -> dict:
        i, name, img = self._load(index)
        path = self.label_dir / f"{name}.png"
        label = load_label_png(path)
        if label.shape != img.shape[:2]:
            raise InputValueError(f"label {path} is {label.shape}, image is {img.shape[:2]}")
        if ((label > self.source.num_classes) & (label != 255)).any():
            raise InputValueError(f"label {path} holds values outside 0..{self.source.num_classes} and 255")
        img, label = self.transform(img, label, self.rng(i))
        return {"name": name, "img": torch.from_numpy(img), "label": torch.from_numpy(label.astype("int64"))}
