"""``irnet-fast demo --dataset cityscapes``: the whole method on generated street scenes.

Generates the synthetic Cityscapes-layout dataset (:mod:`irnet_fast.data.synthetic_cityscapes`),
then runs every step with ``dataset = "cityscapes"``: the reader, the image-level labels extracted
once from ``gtFine``, images at their full size (no padding to 512), the mIoU over the 19
classes and the Cityscapes instance AP. Training from scratch as in :mod:`irnet_fast.demo`
(ResNet-18, BatchNorm calibration, IRNet's backbone from the CAM network). Writes
``OUT/summary.json``: ``cam_miou`` (the CAMs at their best background threshold),
``ir_label_precision``, ``ir_label_coverage``, ``sem_miou``, ``ins_ap`` (AP over IoU 0.5:0.95),
``ins_ap50`` (percent) and ``seconds`` per step.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from ._io import atomic_write_json
from .data.synthetic_cityscapes import generate
from . import demo as _demo
from .demo import CAM_THRESHOLDS
from .models import PretrainedWeightsWarning
from .pipeline import Config, eval_cam
from .pipeline.run import STEPS, run_step

# the generated scenes have no held-out split: the demo stops at the pseudo labels and their scores
PSEUDO_LABEL_STEPS = STEPS[:STEPS.index("eval_ins_seg") + 1]

__all__ = ["demo_config", "run", "format_table", "METRICS"]

METRICS = (("cam_miou", "CAM mIoU (19 classes)"), ("ir_label_precision", "IR-label precision"),
           ("ir_label_coverage", "IR-label coverage"), ("sem_miou", "random-walk semantic mIoU"),
           ("ins_ap", "instance AP (0.5:0.95)"), ("ins_ap50", "instance AP50"))

# (number of training images, image size (H, W), CAM epochs, IRNet epochs)
_FULL = (192, (96, 192), 16, 8)
_QUICK = (96, (64, 128), 24, 8)


def demo_config(out: Path, *, quick: bool = False, device: str = "cpu", size: Optional[Tuple[int, int]] = None,
                epochs: Optional[Tuple[int, int]] = None) -> Config:
    """The demo's configuration (departures from the paper's defaults as :func:`irnet_fast.demo.demo_config`
    explains); for these small scenes a class needs 20 pixels to be in an image's label and IRNet
    inference pads to multiples of 16 only (``irn_pad_to = 0``, which is also what full-size
    Cityscapes images get). Cityscapes has no background class, so the semantic labels' background
    threshold is low (0.05: a pixel takes the class of its highest walked score unless all are near
    0); the instance step keeps 0.5, since there only the instance classes are walked and the rest
    of the scene is background.

    More departures, measured on the quick demo's training images (mIoU over the 8 classes; 2-core
    AMD EPYC, one thread):

    - The CAM network trains on the scene upscaled 2-3x (long side 2-3 W) in W x W crops, 24 epochs
      in the quick demo, and its CAMs are computed at scales (2.0, 3.0) instead of the paper's
      (1.0, 0.5, 1.5, 2.0). At 1x a 64 x 128 scene is 4 x 8 stride-16 cells, half of each square
      crop is padding and every cell sees the whole scene: after 12 epochs the classifier was near
      chance (loss 0.20, chance 0.29) and its CAMs put the building over 38% of the road. Upscaled
      crops: CAM 41.2 -> 45.4 (12 epochs, scales 3-4, the earlier scenes); 24 epochs at scales
      2-3: CAM 48.8, IR labels 87% precise (69% before), make_cam's time halved.
    - IRNet's ``radius`` 5 instead of 10: its stride-4 maps of a 1x scene are 16 x 32 cells, and
      pairs 10 cells apart pin a boundary nowhere in particular (median boundary on the region
      edges 0.21 -> 0.32, inside the regions 0.03 both; walk 55.5 -> 56.6 with IRNet at 1x).
    - IRNet, too, at a finer grid: it trains on the scenes rescaled 1.5-2.5x (``irn_rescale``,
      W x W crops) and make_sem_seg runs it on the scene at 2x (``sem_seg_scale`` 2), so that its
      boundary map is 32 x 64 cells and the CAMs are walked resized to it. With IRNet at 1x the
      boundaries bounded the gain (the ground truth's edges as the boundary map walked CAMs of 54.5
      to 69.6, IRNet's to 54.1) and the walk had to be short and sharp (8 steps at beta 30: 56.6;
      256 at beta 10: 23.9). At 2x the paper's walk (beta 10, 256 steps) works and is kept: 61.8; at 2x
      also 8 steps at beta 30 56.4, 32 at beta 30 57.7, 64 at beta 20 60.4, 64 at beta 10 62.1,
      128 at beta 10 62.1. Here: CAM 48.8 -> walk 61.8 (+12.9); make_sem_seg 5 -> 13 s, the
      instance AP 0.9 -> 0.1 (AP50 3.3 -> 1.1; the instance step walks with the same settings)."""
    _, default_size, cam_epochs, irn_epochs = _QUICK if quick else _FULL
    h, w = size or default_size
    cam_epochs, irn_epochs = epochs or (cam_epochs, irn_epochs)
    return Config(
        dataset="cityscapes", dataset_root=str(out / "data"), out_dir=str(out), backbone="resnet18",
        cityscapes_min_pixels=20, cam_split="train", irn_split="train", infer_split="train",
        mean_shift_split="train", bn_calibration_batches=8, cam_batch_size=16, cam_num_epochs=cam_epochs,
        cam_crop_size=w, cam_resize_long=(2 * w, 3 * w), cam_scales=(2.0, 3.0),
        conf_fg_thres=0.5, conf_bg_thres=0.2, sem_seg_bg_thres=0.05, ins_seg_bg_thres=0.5, sem_seg_scale=2.0,
        radius=5, irn_batch_size=16, irn_num_epochs=irn_epochs, irn_crop_size=w, irn_rescale=(1.5, 2.5),
        irn_init_from_cam=True, irn_pad_to=0, num_workers=1, device=device, log_interval=0, seed=0)


def run(out, *, quick: bool = False, images: Optional[int] = None, progress: bool = True, device: str = "cpu",
        size: Optional[Tuple[int, int]] = None, epochs: Optional[Tuple[int, int]] = None,
        cfg_overrides: Optional[Dict] = None) -> Dict:
    """Runs the demo into ``out`` and returns the summary (also ``out/summary.json``). ``size``,
    ``epochs`` (CAM, IRNet) and ``cfg_overrides`` shrink it further (the tests)."""
    out = Path(out)
    torch.manual_seed(0)
    seconds: Dict[str, float] = {}
    t0 = time.time()
    num, default_size = (_QUICK if quick else _FULL)[:2]
    num = images or num
    generate(out / "data", num_train=num, num_val=0, size=size or default_size, seed=0)
    seconds["make_synthetic"] = time.time() - t0
    cfg = demo_config(out, quick=quick, device=device, size=size, epochs=epochs)
    if cfg_overrides:
        cfg = cfg.override(cfg_overrides)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)  # from scratch on purpose
        for step in PSEUDO_LABEL_STEPS:
            t0 = time.time()
            if step == "eval_cam":  # the CAMs at their best threshold: the walk's gain is not flattered
                results[step] = eval_cam(cfg, CAM_THRESHOLDS)
            else:
                results[step] = run_step(step, cfg, resume=True, progress=progress)
            seconds[step] = time.time() - t0
    best_cam = max(results["eval_cam"]["sweep"], key=lambda r: -1.0 if math.isnan(r["miou"]) else r["miou"])
    summary = {
        "cam_miou": best_cam["miou"], "cam_threshold": best_cam["threshold"],
        "ir_label_precision": results["eval_ir_label"]["precision"],
        "ir_label_coverage": results["eval_ir_label"]["coverage"],
        "sem_miou": results["eval_sem_seg"]["miou"],
        "ins_ap": results["eval_ins_seg"]["map"], "ins_ap50": results["eval_ins_seg"]["map50"],
        "ins_evaluator": results["eval_ins_seg"]["evaluator"],
        "images": num, "image_size": list(size or default_size), "backbone": cfg.backbone, "device": cfg.device,
        "threads": torch.get_num_threads(),
    }
    summary["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    summary["seconds"]["total"] = round(sum(seconds.values()), 2)
    atomic_write_json(out / "summary.json", summary)
    return summary


def format_table(summary: Dict) -> str:
    """The Cityscapes demo's result table (:func:`irnet_fast.demo.format_table` with its metrics)."""
    return _demo.format_table(summary, METRICS)
