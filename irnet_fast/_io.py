"""Atomic file writes and the per-image file formats of the pipeline (``.npz``, label ``.png``).

Every output is written to a temporary file in the target's folder and renamed over the target
(``os.replace``), so a killed run never leaves half a file and a resumed run can trust any file
it finds (:func:`is_valid_npz`, :func:`is_valid_png` catch files damaged by other means).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Union

import numpy as np
from PIL import Image

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_json", "save_npz", "load_npz", "save_label_png", "save_rgb_png",
           "is_valid_npz", "is_valid_png", "voc_palette"]


def voc_palette() -> list:
    """The PASCAL VOC colour map (256 RGB triples, flattened), as in the devkit's label PNGs."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


@contextlib.contextmanager
def atomic_open(path: PathLike, fsync: bool = False) -> Iterator[io.BufferedWriter]:
    """``with atomic_open(path) as fh:`` writes ``fh`` to ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode())


def save_npz(path: PathLike, arrays: Mapping[str, np.ndarray], compress: bool = False) -> Path:
    """Arrays (no pickles) to ``path``, atomically. ``compress`` suits boolean masks."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise ValueError(f"save_npz(): array {key!r} has dtype object; only numeric arrays are stored")
    with atomic_open(path) as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return Path(path)


def load_npz(path: PathLike, keys: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (pickles refused); ``keys`` must all be present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise OSError(f"cannot read {path}: {exc}") from exc
    missing = [k for k in (keys or ()) if k not in out]
    if missing:
        raise KeyError(f"{path}: missing arrays {missing} (has {sorted(out)})")
    return out


def save_label_png(path: PathLike, label: np.ndarray, palette: bool = True) -> Path:
    """A ``uint8 (H, W)`` label map as a PNG (VOC palette by default), atomically."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"save_label_png(): label expected 2-D (H, W), got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"save_label_png(): label values must be in 0..255, got {label.min()}..{label.max()}")
    image = Image.fromarray(label.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(voc_palette())
    return _save_png(path, image)


def save_rgb_png(path: PathLike, rgb: np.ndarray) -> Path:
    """A ``uint8 (H, W, 3)`` picture as a PNG, atomically."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"save_rgb_png(): rgb expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return _save_png(path, Image.fromarray(rgb))


def _save_png(path: PathLike, image: Image.Image) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def is_valid_npz(path: PathLike, keys: Iterable[str] = ()) -> bool:
    """True when ``path`` is a readable ``.npz`` holding ``keys`` (its zip directory is checked,
    not every byte of every array)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return all(k in data.files for k in keys)
    except Exception:
        return False


def is_valid_png(path: PathLike) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False
