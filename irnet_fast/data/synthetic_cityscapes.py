"""Synthetic street scenes in the Cityscapes layout (the Cityscapes demo and tests).

``generate(root)`` writes, under ``root`` (read by :class:`irnet_fast.data.cityscapes.Cityscapes`)::

    leftImg8bit/<split>/<city>/<city>_000000_<frame>_leftImg8bit.png    RGB
    gtFine/<split>/<city>/<city>_000000_<frame>_gtFine_labelIds.png     label ids (uint8)
    gtFine/<split>/<city>/<city>_000000_<frame>_gtFine_instanceIds.png  16-bit instance ids
    synthetic_cityscapes.json                                          the parameters

Each scene is wide (2:1 by default, like Cityscapes): sky at the top (in about half), a band of
buildings and trees with a random skyline, a sidewalk strip (often) and the ground below it: road
(lane marks), terrain, or both side by side; the ego vehicle's bonnet (void) in the last rows of
some. Cars (1-3 in about half of the scenes, apart from each other) stand on the ground and persons
(1-3 in about half) on the sidewalk or the ground; both are instances (label id * 1000 + k); now
and then a group of persons is labelled as a group (the id 24 alone), as Cityscapes does for crowds. Every class has its own colours and
texture with per-scene jitter (brick buildings whose windows are a darker brick, not the road's
grey; cars blue, teal or violet, persons red) and the void clutter is near-neutral light grey, so
no class's colour appears in another's region. Where two regions meet the image shows a dark line
two pixels wide, as a photo shows an edge there (the boundaries IRNet learns; it tells no class).
Each class is in about half of the scenes, independently of the others: a band that draws none
of its classes shows grey clutter labelled void (``static`` above the horizon,
``ground`` below, ignored by the evaluation), so that the absence of one class never implies
another (with terrain as the only alternative to road, "no terrain" would mean "road" and a
classifier could find the road without looking at it). Persons (30-50% of the height) and cars
(18-30% of the width) span one to two cells of a stride-16 CAM at 64 x 128 (the earlier, smaller
ones fell within one).

Everything is a function of ``seed`` (scene ``i`` of split ``s`` draws from
``default_rng([seed, s, i])``); files are written atomically; a finished dataset with the same
parameters is not rewritten unless ``overwrite=True``.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
from PIL import Image

from .._io import atomic_write_bytes, atomic_write_json

__all__ = ["generate", "CITIES"]

PathLike = Union[str, os.PathLike]

CITIES = ("alphaville", "betatown")

# Cityscapes label ids
ROAD, SIDEWALK, BUILDING, VEGETATION, TERRAIN, SKY, PERSON, CAR, EGO = 7, 8, 11, 21, 22, 23, 24, 26, 1
STATIC, GROUND = 4, 6  # void in the evaluation


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _noise(rng, h, w, scale: float) -> np.ndarray:
    return rng.normal(0, scale, (h, w, 1))


def _smooth(rng, h, w, lo: float, hi: float) -> np.ndarray:
    """Grey-ish clutter: two tinted greys blended by smooth random noise (the void regions)."""
    low = rng.random((h // 16 + 2, w // 16 + 2))
    yi = np.linspace(0, low.shape[0] - 1, h)[:, None]
    xi = np.linspace(0, low.shape[1] - 1, w)[None, :]
    y0, x0 = np.floor(yi).astype(int).clip(0, low.shape[0] - 2), np.floor(xi).astype(int).clip(0, low.shape[1] - 2)
    fy, fx = yi - y0, xi - x0
    smooth = (low[y0, x0] * (1 - fy) * (1 - fx) + low[y0 + 1, x0] * fy * (1 - fx) + low[y0, x0 + 1] * (1 - fy) * fx
              + low[y0 + 1, x0 + 1] * fy * fx)
    a, b = rng.uniform(lo, hi, 2)[:, None] + rng.uniform(-5, 5, (2, 3))  # near-neutral: no class hue
    return a * (1 - smooth[..., None]) + b * smooth[..., None]


def _render(rng: np.random.Generator, size: Tuple[int, int]):
    """One scene: ``(rgb uint8 (H, W, 3), label ids uint8 (H, W), instance ids uint16 (H, W))``."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lab = np.zeros((h, w), np.uint8)
    img = np.zeros((h, w, 3), np.float32)
    horizon = int(h * rng.uniform(0.42, 0.55))
    # each class is in about half of the scenes, independently of the others, so that image-level
    # labels tell the classes apart; where a band has none of its classes it shows void (static in
    # the upper band, ground below): the absence of one class never implies another
    has_sky = rng.random() < 0.55
    kinds = [k for k, p in ((BUILDING, 0.55), (VEGETATION, 0.5)) if rng.random() < p] or [STATIC]
    grounds = [k for k, p in ((ROAD, 0.6), (TERRAIN, 0.45)) if rng.random() < p] or [GROUND]
    # upper band: blocks of the chosen kinds along x, each with its own top
    lab[:horizon] = SKY if has_sky else kinds[0]
    x = 0
    while x < w:
        bw = int(w * rng.uniform(0.15, 0.35))
        top = int(h * rng.uniform(0.05, 0.3)) if has_sky else 0
        lab[top:horizon, x:x + bw] = kinds[int(rng.integers(len(kinds)))]
        x += bw
    sidewalk = int(h * rng.uniform(0.12, 0.2)) if rng.random() < 0.5 else 0
    lab[horizon:horizon + sidewalk] = SIDEWALK
    # lower band: one or two stretches of the chosen ground kinds side by side
    lab[horizon + sidewalk:] = grounds[0]
    if len(grounds) > 1:
        cut = int(w * rng.uniform(0.25, 0.75))
        lab[horizon + sidewalk:, cut:] = grounds[1]
    ego = int(h * 0.06) if rng.random() < 0.4 else 0
    # textures of the stuff classes
    tint = rng.uniform(0.85, 1.15)
    sky = np.stack([90 + 60 * yy / h, 140 + 50 * yy / h, 230 + 0 * yy], -1)
    building = np.array([150, 80, 55]) * tint + 0 * img  # brick; its windows a darker brick, not road grey
    windows = ((xx % 7) < 3) & ((yy % 8) < 4)
    building[windows] = np.array([85, 45, 35]) * tint
    veg = np.array([50, 130, 40]) * tint + _noise(rng, h, w, 25)
    road = np.array([75, 75, 80]) * tint + 0 * img
    road_x = np.flatnonzero(lab[-1] == ROAD)
    lane = road_x.mean() if road_x.size else w / 2  # the lane marks on the road stretch
    road[(np.abs(xx - lane) < max(1, w // 80)) & ((yy % 10) < 5) & (yy > horizon + sidewalk)] = 230
    side = np.array([200, 150, 190]) * tint + 0 * img
    side[((xx.astype(int) // 6 + yy.astype(int) // 6) % 2) == 0] *= 0.85
    terrain = np.array([185, 160, 90]) * tint + _noise(rng, h, w, 20)
    terrain[(yy.astype(int) % 4) == 0] *= 0.8
    clutter = _smooth(rng, h, w, 115, 190)
    for cls, tex in ((SKY, sky), (BUILDING, building), (VEGETATION, veg), (ROAD, road), (SIDEWALK, side),
                     (TERRAIN, terrain), (STATIC, clutter), (GROUND, clutter)):
        img[lab == cls] = tex[lab == cls]
    inst = lab.astype(np.uint16)
    # cars on the road: boxes with windows and wheels, kept apart so each is its own blob
    taken = np.zeros(w, bool)
    base = horizon + sidewalk
    for k in range(int(rng.integers(1, 4)) if rng.random() < 0.55 else 0):
        cw = int(w * rng.uniform(0.18, 0.3))
        ch = max(4, int(cw * rng.uniform(0.45, 0.6)))
        for _ in range(10):
            x0 = int(rng.integers(0, max(1, w - cw)))
            if not taken[max(0, x0 - 3):x0 + cw + 3].any():
                break
        else:
            continue
        taken[x0:x0 + cw] = True
        y1 = int(min(h - ego - 1, base + rng.uniform(0.25, 1.0) * (h - ego - base)))
        y0 = max(0, y1 - ch)
        box = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x0 + cw)
        colour = np.array([[30, 40, 200], [20, 150, 150], [90, 30, 190]][k % 3]) * rng.uniform(0.8, 1.1)
        img[box] = colour
        glass = box & (yy < y0 + (y1 - y0) * 0.4) & (xx > x0 + cw * 0.15) & (xx < x0 + cw * 0.85)
        img[glass] = np.array([40, 60, 70])
        for cx in (x0 + cw * 0.22, x0 + cw * 0.78):
            wheel = ((xx - cx) ** 2 + (yy - y1) ** 2) < (ch * 0.28) ** 2
            img[wheel & (yy < y1)] = 20
            box |= wheel & (yy < y1)
        lab[box] = CAR
        inst[box] = CAR * 1000 + k
    # persons: ellipses with a head, on the sidewalk or the road
    group = rng.random() < 0.1
    for k in range(int(rng.integers(1, 4)) if rng.random() < 0.5 else 0):
        ph = int(h * rng.uniform(0.3, 0.5))
        pw = max(2, int(ph * 0.42))
        x0 = int(rng.integers(0, max(1, w - pw)))
        y1 = int(min(h - ego - 1, horizon + rng.uniform(0.05, 0.6) * (h - ego - horizon)))
        cy, cx = y1 - ph / 2, x0 + pw / 2
        body = ((yy - cy) / (ph / 2)) ** 2 + ((xx - cx) / (pw / 2)) ** 2 < 1
        head = body & (yy < y1 - ph * 0.8)
        img[body] = np.array([220, 40, 60]) * rng.uniform(0.8, 1.1)
        img[head] = np.array([230, 190, 160])
        lab[body] = PERSON
        inst[body] = PERSON if group else PERSON * 1000 + k
    if ego:
        lab[h - ego:] = EGO
        inst[h - ego:] = EGO
        img[h - ego:] = np.array([40, 40, 45])
    # a thin dark line where two regions meet (kerbs, contours, the foot of the buildings): the edges
    # a photo shows there, which IRNet's boundary branch learns to find; no class is told by it
    edge = np.zeros((h, w), bool)
    step = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= step
    edge[:, :-1] |= step
    step = lab[1:] != lab[:-1]
    edge[1:] |= step
    edge[:-1] |= step
    img[edge] *= 0.4
    img += _noise(rng, h, w, 8)
    return np.clip(img, 0, 255).astype(np.uint8), lab, inst


def generate(root: PathLike, num_train: int = 64, num_val: int = 0, size: Tuple[int, int] = (64, 128),
             seed: int = 0, overwrite: bool = False) -> Path:
    """Writes the dataset (module docstring) and returns ``Path(root)``."""
    root = Path(root)
    params: Dict = {"num_train": int(num_train), "num_val": int(num_val), "size": [int(s) for s in size],
                    "seed": int(seed), "version": 4}
    meta = root / "synthetic_cityscapes.json"
    if not overwrite and meta.is_file():
        try:
            if json.loads(meta.read_text()) == params:
                return root
        except ValueError:
            pass
    for s, (split, num) in enumerate((("train", num_train), ("val", num_val))):
        for i in range(int(num)):
            rng = np.random.default_rng([int(seed), s, i])
            rgb, lab, inst = _render(rng, tuple(size))
            city = CITIES[i % len(CITIES)]
            stem = f"{city}_000000_{i:06d}"
            atomic_write_bytes(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _png(rgb))
            gt = root / "gtFine" / split / city
            atomic_write_bytes(gt / f"{stem}_gtFine_labelIds.png", _png(lab))
            atomic_write_bytes(gt / f"{stem}_gtFine_instanceIds.png", _png(inst))
    atomic_write_json(meta, params)
    return root
