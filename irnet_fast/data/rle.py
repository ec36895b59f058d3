"""COCO's compressed RLE of binary masks, without pycocotools: :func:`encode_rle` writes the
``counts`` string that ``pycocotools.mask.encode`` produces (as ``str``), :func:`decode_rle` reads
it back (and uncompressed ``counts`` lists).

The RLE format: the mask is read column by column (Fortran order) as runs of 0s and 1s, starting
with a (possibly empty) run of 0s. Each run length, minus the one two runs back for runs after the
third (pycocotools' ``i > 2``), is written as a signed little-endian sequence of 5-bit groups:
each character is ``48 + group``, with ``0x20`` set when more groups follow; the last group's
``0x10`` bit is the sign.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .._checks import check_array

__all__ = ["encode_rle", "decode_rle"]


def _mask2d(mask, op: str) -> np.ndarray:
    return check_array(mask, op=op, name="mask", dims=("H", "W"), kind="bool").astype(bool, copy=False)


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
