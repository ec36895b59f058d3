"""``irnet-fast demo``: the whole method on generated data, on the CPU, in minutes.

Generates the synthetic VOC-layout dataset (:data:`DATA_STYLE`: objects recognisable by a small
part only, several instances per image, some touching or of the same class, and clutter), a
training split and a held-out ``val`` split, then runs every default step of the pipeline exactly
as for PASCAL VOC, with ResNet-18 networks trained from scratch (no pretrained weights exist
offline; IRNet's frozen backbone and the final DeepLab's backbone start from the trained CAM
network's, ``irn_init_from_cam``, ``deeplab_init_from_cam``).
Pseudo labels are made and evaluated on the training images, as the paper does; the final models,
trained on them, are evaluated on the held-out images. Writes ``OUT/summary.json`` (keys
``cam_miou``, ``ir_label_precision``, ``ir_label_coverage``, ``sem_miou``, ``ins_map50``,
``ins_map70`` on the training images, ``val_sem_miou`` (DeepLab) and, when the registry has the
instance network's evaluation ``eval_ins``, ``val_ins_map50`` / ``val_ins_map70`` on the held-out
images, all in percent, and ``seconds`` per step) and ``OUT/report.md`` with PNG panels of training
images (every stage) and of held-out images (the final models beside the ground truth).
``cam_miou`` is the CAMs' mIoU at their best background threshold (swept 0.05 .. 0.95 against the
ground truth), so the random walk's gain over the CAMs is measured against the most favourable CAM
baseline. Re-running with the same ``OUT`` reuses what is already there.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch

from ._io import atomic_write_json
from .data import generate_synthetic
from .models import PretrainedWeightsWarning
from .pipeline import Config, eval_cam
from .pipeline.run import STEPS, run_step
from .pipeline.common import infer_source

__all__ = ["demo_config", "run", "format_table", "METRICS"]

METRICS = (("cam_miou", "CAM mIoU"), ("ir_label_precision", "IR-label precision"),
           ("ir_label_coverage", "IR-label coverage"), ("sem_miou", "random-walk semantic mIoU"),
           ("aff_sem_miou", "AffinityNet-walk sem. mIoU"),
           ("ins_map50", "instance mAP@0.5"), ("ins_map70", "instance mAP@0.7"),
           ("val_sem_miou", "val: DeepLab mIoU"), ("val_ins_map50", "val: Mask R-CNN mAP@0.5"),
           ("val_ins_map70", "val: Mask R-CNN mAP@0.7"))

CAM_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))

# The generator's "part" style: classes told apart by a small part that fades into a body of its
# class's hue, so the CAMs cover a fraction of each object, as in photos (the "texture" style, where
# each class differs over its whole area, leaves the walk less to do).
DATA_STYLE = "part"

# (training images, held-out images, image size, CAM epochs, IRNet epochs, DeepLab epochs, DeepLab crop)
_FULL = (256, 64, (128, 160), 12, 8, 20, 112)
_QUICK = (128, 32, (128, 160), 8, 10, 6, 96)


def demo_config(out: Path, *, quick: bool = False, device: str = "cpu") -> Config:
    """The demo's configuration: the paper's pipeline, sized for a CPU and for from-scratch training.

    Departures from the paper's defaults, all because there are no ImageNet weights offline:
    ResNet-18 from random initialisation with its BatchNorm statistics measured on the first
    batches (``bn_calibration_batches``); IRNet's frozen backbone taken from the trained CAM network
    (``irn_init_from_cam``); small crops and more epochs for small images; and thresholds for CAMs
    that are broader than an ImageNet network's (the paper's 0.30 / 0.05 / 0.25 assume CAMs near 0
    on the background). The IR labels keep the paper's foreground threshold 0.30, but their
    background threshold is 0.2: on 128 x 160 images the stride-16 CAMs are 8 x 10 cells, blurred a
    cell beyond each object, so 0.05 left half the background unsure, IRNet learnt weak
    boundaries from the rest and the walk leaked out of the objects (on the full demo's CAMs: walk
    69.0 mIoU at its best background threshold against 83.6). The semantic and instance pseudo
    labels' background threshold is 0.45, the walk's best on the training images (the CAM baseline
    is scored at its best threshold too). One more for
    speed: IRNet inference pads only to multiples of 16 (``irn_pad_to=0``; the images are
    128 x 160, and the reference's 512 x 512 padding would be 13 times the work). The final
    DeepLab is a ResNet-18 at output stride 16 whose backbone starts from the CAM network's
    (``deeplab_init_from_cam``), trained on small crops with a 10x head learning
    rate and tested at three scales with flips.
    """
    _, _, size, cam_epochs, irn_epochs, deeplab_epochs, deeplab_crop = _QUICK if quick else _FULL
    crop = max(size)
    return Config(
        dataset="voc12", dataset_root=str(out / "data"), out_dir=str(out), backbone="resnet18",
        cam_split="train", irn_split="train", infer_split="train", mean_shift_split="train",
        bn_calibration_batches=8, cam_batch_size=16, cam_num_epochs=cam_epochs, cam_crop_size=crop,
        cam_resize_long=(int(crop * 0.8), int(crop * 1.2)),
        conf_fg_thres=0.3, conf_bg_thres=0.2, sem_seg_bg_thres=0.45, ins_seg_bg_thres=0.45,
        irn_batch_size=16, irn_num_epochs=irn_epochs, irn_crop_size=crop, irn_rescale=(0.75, 1.25),
        irn_init_from_cam=True, irn_pad_to=0,
        deeplab_backbone="resnet18", deeplab_init_from_cam=True, deeplab_output_stride=16, deeplab_batch_size=16,
        deeplab_num_epochs=deeplab_epochs, deeplab_learning_rate=0.01, deeplab_head_lr_mult=10.0,
        deeplab_crop_size=deeplab_crop, deeplab_rescale=(0.75, 1.25), deeplab_test_scales=(0.75, 1.0, 1.25),
        maskrcnn_backbone="resnet18", maskrcnn_init_from_cam=True, maskrcnn_min_size=min(size), maskrcnn_max_size=max(size),
        maskrcnn_fpn_channels=64, maskrcnn_box_head_size=256, maskrcnn_mask_head_layers=(64, 64), maskrcnn_box_batch_size=64,
        maskrcnn_batch_size=8, maskrcnn_learning_rate=0.01, maskrcnn_warmup_factor=0.1 if quick else 0.01,
        maskrcnn_warmup_iters=10 if quick else 25, maskrcnn_num_epochs=2 if quick else 3,
        num_workers=1, device=device, log_interval=0, seed=0, save_rw_scores=True)


def _summary_value(results: Dict, step: str, key: str, name: str, summary: Dict) -> None:
    """``summary[name] = results[step][key]`` when that step ran (a step missing from the registry
    gives no key)."""
    if isinstance(results.get(step), dict) and key in results[step]:
        summary[name] = results[step][key]


def run(out, *, quick: bool = False, images: Optional[int] = None, progress: bool = True,
        device: str = "cpu", panels: int = 6, affinitynet: bool = False) -> Dict:
    """Runs the demo into ``out``; returns the summary (also written to ``out/summary.json``).
    ``affinitynet``: also AffinityNet's walk on the same CAMs (``aff_sem_miou``)."""
    from . import visualize
    from .pipeline.common import build_source
    from .pipeline.panels import render_panels
    out = Path(out)
    torch.manual_seed(0)
    seconds: Dict[str, float] = {}
    t0 = time.time()
    num, num_val, size = (_QUICK if quick else _FULL)[:3]
    num = images or num
    generate_synthetic(out / "data", num_train=num, num_val=num_val, size=size, seed=0, style=DATA_STYLE)
    seconds["make_synthetic"] = time.time() - t0
    cfg = demo_config(out, quick=quick, device=device)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)  # from scratch on purpose
        for step in STEPS + (("train_aff", "make_sem_seg_aff", "eval_sem_seg_aff") if affinitynet else ()):
            t0 = time.time()
            if step == "eval_cam":  # the CAMs at their best threshold: the walk's gain is not flattered
                results[step] = eval_cam(cfg, CAM_THRESHOLDS)
            else:
                results[step] = run_step(step, cfg, resume=True, progress=progress)
            seconds[step] = time.time() - t0
    best_cam = max(results["eval_cam"]["sweep"], key=lambda r: r["miou"])
    summary = {
        "cam_miou": best_cam["miou"],
        "cam_threshold": best_cam["threshold"],
        "ir_label_precision": results["eval_ir_label"]["precision"],
        "ir_label_coverage": results["eval_ir_label"]["coverage"],
        "sem_miou": results["eval_sem_seg"]["miou"],
        **({"aff_sem_miou": results["eval_sem_seg_aff"]["miou"]} if affinitynet else {}),
        "ins_map50": results["eval_ins_seg"]["map50"],
        "ins_map70": results["eval_ins_seg"]["map70"],
    }
    _summary_value(results, "eval_sem", "miou", "val_sem_miou", summary)
    _summary_value(results, "eval_ins", "map50", "val_ins_map50", summary)
    _summary_value(results, "eval_ins", "map70", "val_ins_map70", summary)
    summary.update({"images": num, "val_images": num_val, "image_size": list(size), "backbone": cfg.backbone,
                    "device": cfg.device, "threads": torch.get_num_threads()})
    t0 = time.time()
    names = infer_source(cfg).ids[:panels]
    paths = render_panels(cfg, names, out / "panels", device=device)
    val_source = build_source(cfg, cfg.heldout_split)
    val_paths = render_panels(cfg, val_source.ids[:panels], out / "panels_val", device=device, source=val_source,
                              titles=visualize.VAL_TILE_TITLES)
    seconds["report"] = time.time() - t0
    summary["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    summary["seconds"]["total"] = round(sum(seconds.values()), 2)
    visualize.write_report(out, summary, paths, val_panel_paths=val_paths)
    atomic_write_json(out / "summary.json", summary)
    return summary


def format_table(summary: Dict, metrics=METRICS) -> str:
    """The demo's result table (``metrics``: (key, label) pairs, then the time of every step)."""
    def fmt(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.1f}"
    lines = [f"{'metric':<30}{'value':>8}", "-" * 38]
    lines += [f"{label:<30}{fmt(summary.get(key)):>8}" for key, label in metrics
              if key in summary or key != "aff_sem_miou"]  # that one only when run
    lines += ["", f"{'step':<30}{'seconds':>8}", "-" * 38]
    lines += [f"{step:<30}{sec:8.1f}" for step, sec in summary.get("seconds", {}).items()]
    return "\n".join(lines)
