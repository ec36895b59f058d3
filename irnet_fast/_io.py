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
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Union

import numpy as np
from PIL import Image

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_json", "save_npz", "load_npz", "save_label_png", "save_rgb_png",
           "is_valid_npz", "is_valid_png", "remove_stale_temporaries", "voc_palette"]

_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temporaries(folder: PathLike) -> int:
    """Deletes the ``.<name>.tmp<pid>`` files that :func:`atomic_open` leaves behind when its
    process is killed mid-write (SIGKILL skips the clean-up). Files of a process that is still
    running (another rank writing now) are kept. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.iterdir():
        match = _TMP_NAME.match(entry.name)
        if match and entry.is_file() and not _pid_alive(int(match["pid"])):
            try:
                entry.unlink()
                removed += 1
            except FileNotFoundError:  # removed by a concurrent rank
                pass
    return removed


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
    """True when ``path`` is an ``.npz`` holding ``keys`` whose every array reads back: each
    member is read in full, so a bad CRC, a truncated member or an object (pickle) array fails."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not all(k in data.files for k in keys):
                return False
            for k in data.files:
                data[k]  # reading checks the member's CRC-32 and refuses object arrays
        return True
    except Exception:
        return False


def is_valid_png(path: PathLike) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False
