"""The random walk alone on a generated scene (``irnet-fast walk-demo``): boundary map + CAMs -> propagated labels, all backends.

The scene is a stride-4 label map with a few objects; the boundary map marks object contours
(blurred, noisy); the CAMs peak inside each object but cover only part of it, as real CAMs do.
The random walk spreads them to the boundaries. Writes a PNG panel and a JSON summary.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from . import backends, ops
from ._io import atomic_write_json, save_rgb_png
from .metrics import ConfusionMatrix, cam_to_label
from .visualize import colorize_labels, panel

def make_scene(height: int = 94, width: int = 125, num_classes: int = 3, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A stride-4 scene: ``labels (h, w)``, ``edge (1, h, w)``, ``cams (K, h, w)``, class ``keys``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    labels = np.zeros((height, width), dtype=np.int64)
    centres = []
    for cls in range(1, num_classes + 1):
        cy, cx = rng.uniform(0.25, 0.75) * height, (cls - 0.5) / num_classes * width
        ry, rx = rng.uniform(0.18, 0.3) * height, rng.uniform(0.35, 0.45) * width / num_classes
        angle = rng.uniform(0, math.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
        v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
        wobble = 1 + 0.15 * np.sin(3 * np.arctan2(v, u) + rng.uniform(0, 6))
        labels[u * u + v * v < wobble ** 2] = cls
        centres.append((cy, cx, ry, rx))
    # boundary: where the label changes, blurred, plus weak texture noise
    lab = torch.from_numpy(labels).float()[None, None]
    change = (F.max_pool2d(lab, 3, 1, 1) != -F.max_pool2d(-lab, 3, 1, 1)).float()
    edge = F.avg_pool2d(change, 3, 1, 1, count_include_pad=False)
    noise = F.avg_pool2d(torch.from_numpy(rng.random((1, 1, height, width))).float(), 5, 1, 2,
                         count_include_pad=False)
    edge = (1.6 * edge + 0.25 * noise).clamp(0, 1)[0]
    # CAMs: a peak on the most discriminative part of each object, decaying with distance
    cams = []
    for cls, (cy, cx, ry, rx) in enumerate(centres, start=1):
        py, px = cy + rng.uniform(-0.3, 0.3) * ry, cx + rng.uniform(-0.3, 0.3) * rx
        dist2 = ((yy - py) / (0.6 * ry)) ** 2 + ((xx - px) / (0.6 * rx)) ** 2
        cam = np.exp(-dist2) * (0.6 + 0.4 * (labels == cls)) + 0.05 * rng.random((height, width))
        cams.append(cam / cam.max())
    return {"labels": torch.from_numpy(labels), "edge": edge,
            "cams": torch.from_numpy(np.stack(cams)).float(), "keys": torch.arange(num_classes + 1)}


def semantic_labels(scores: torch.Tensor, bg_threshold: float) -> np.ndarray:
    """The semantic post-processing (docs/algorithm.md, "Random walk") at the score stride: / max,
    background channel, argmax."""
    scores = scores / scores.max().clamp_min(1e-5)
    return cam_to_label(scores.numpy(), np.arange(scores.shape[0]), bg_threshold)


def miou(pred: np.ndarray, gt: torch.Tensor, num_classes: int) -> float:
    return 100.0 * ConfusionMatrix(num_classes, ignore_index=None).update(pred, gt.numpy()).miou()


def _grey(values: torch.Tensor) -> np.ndarray:
    v = (values.clamp(0, 1).numpy() * 255).astype(np.uint8)
    return np.stack([v, v, v], -1)


def run(out_dir: str = "demo_out", height: int = 94, width: int = 125, seed: int = 0,
        reference: bool = False) -> dict:
    """Runs the demo, writes ``random_walk_demo.png`` and ``summary.json``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = make_scene(height, width, seed=seed)
    cams, edge, gt = scene["cams"], scene["edge"], scene["labels"]
    num_classes = cams.shape[0] + 1
    summary = {"size": [height, width], "backends": {}}
    results = {}
    for name in backends.available_backends():
        ops.propagate_to_edge(cams, edge, backend=name)  # warm-up (JIT, caches)
        start = time.perf_counter()
        rw = ops.propagate_to_edge(cams, edge, backend=name)[:, 0]
        summary["backends"][name] = {"ms": round(1000 * (time.perf_counter() - start), 2)}
        results[name] = rw
    if reference and height * width <= 64 * 64:
        from .ops import _reference
        start = time.perf_counter()
        results["reference"] = _reference.propagate_to_edge(cams, edge)[:, 0]
        summary["backends"]["reference"] = {"ms": round(1000 * (time.perf_counter() - start), 2)}
    first = next(iter(results))
    base = results[first]
    for name, rw in results.items():
        summary["backends"][name]["max_rel_diff_vs_" + first] = float((rw - base).abs().max() / base.abs().max())
    cam_labels = semantic_labels(cams, 0.15)
    rw_labels = semantic_labels(base, 0.25)
    summary["cam_miou"] = round(miou(cam_labels, gt, num_classes), 2)
    summary["rw_miou"] = round(miou(rw_labels, gt, num_classes), 2)
    tiles = [("ground truth", colorize_labels(gt.numpy().astype(np.uint8))), ("boundary map", _grey(edge[0])),
             ("CAM (max)", _grey(cams.max(0).values)), (f"CAM labels {summary['cam_miou']:.1f}", colorize_labels(cam_labels)),
             (f"random walk {summary['rw_miou']:.1f}", colorize_labels(rw_labels))]
    save_rgb_png(out / "random_walk_demo.png", panel(tiles, height=3 * height))
    atomic_write_json(out / "summary.json", summary)
    return summary
