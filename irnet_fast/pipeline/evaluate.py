"""Evaluation steps (docs/algorithm.md, "Evaluation"), threshold tuning and the COCO export.

All read the outputs of the earlier steps for the images of ``infer_split`` and the ground
truth of the dataset, print nothing themselves, and write ``<out_dir>/<step>.json``:

- :func:`eval_cam`: mIoU of the high-resolution CAMs with a background threshold (0.15).
- :func:`eval_ir_label`: precision of the confident IR-label pixels and their coverage.
- :func:`eval_sem_seg`: mIoU of the semantic pseudo labels (:func:`eval_sem_seg_aff`: of AffinityNet's walk).
- :func:`eval_ins_seg`: PASCAL VOC instance mask AP at IoU 0.5 and 0.7.
- :func:`tune`: the background threshold of the semantic labels swept on the saved random-walk
  scores (``save_rw_scores``), without re-running the walk.
- :func:`export_coco`: the instance pseudo labels as a COCO-format JSON (RLE masks).

Under torchrun the main process evaluates; the others wait.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._io import atomic_write_json, load_npz
from ..coco_export import export_coco as write_coco_json
from ..coco_export import source_category_ids, source_file_name, source_image_id
from ..data.instances import instance_masks, load_instances
from ..data.voc import load_label_png
from ..errors import InputFileNotFoundError
from ..metrics import ConfusionMatrix, InstanceAP, cam_to_label
from .config import Config
from . import steps
from .distributed import barrier, init_distributed
from .inference import upsample_scores
from .make_cam import load_cam_file
from .common import Progress, failed_images, infer_source

__all__ = ["eval_cam", "eval_ir_label", "eval_sem_seg", "eval_sem_seg_aff", "eval_ins_seg", "tune", "export_coco"]

logger = logging.getLogger("irnet_fast.pipeline")


def _inputs(cfg: Config, folder: Path, names: Sequence[str], suffix: str, step: str,
            producer: str) -> Tuple[List[str], List[Path], List[str]]:
    """The ids and files to evaluate. Images that a step producing them (:func:`.steps.producers`)
    reported as failed are left out with a warning (their count goes in the result); any other
    missing file is an error that says to run ``producer``."""
    failed = {}
    for name in steps.producers(step):
        failed.update(failed_images(Path(cfg.out_dir), name))
    kept, paths, excluded, missing = [], [], [], []
    for name in names:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            kept.append(name)
            paths.append(path)
        elif name in failed:
            excluded.append(name)
        else:
            missing.append(path)
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise InputFileNotFoundError(f"{step}: {len(missing)} of {len(names)} input files missing (e.g. {shown}); "
                                     f"run {producer} first")
    if excluded:
        logger.warning("%s: %d of %d images left out: earlier steps reported them as failed (see their "
                       "summary.json), e.g. %s", step, len(excluded), len(names), ", ".join(excluded[:3]))
    if not kept:
        raise InputFileNotFoundError(f"{step}: no image to evaluate: every one failed in an earlier step")
    return kept, paths, excluded


def _miou(conf: ConfusionMatrix, source) -> float:
    """mIoU over the classes; with background for a dataset that has one (VOC, COCO), over the
    classes alone for one that has none (Cityscapes: a pixel left at 0 is a miss of its class)."""
    if getattr(source, "has_background", True):
        return conf.miou()
    iou = conf.iou()[1:]
    return float(np.mean(iou[~np.isnan(iou)])) if (~np.isnan(iou)).any() else float("nan")


def _semantic(conf: ConfusionMatrix, source, **extra) -> Dict:
    iou = conf.iou()
    names = ["background"] + list(source.class_names)
    if not getattr(source, "has_background", True):
        names, iou = names[1:], iou[1:]
    return {"miou": 100 * _miou(conf, source), "pixel_accuracy": 100 * conf.pixel_accuracy(),
            "iou": {n: (None if np.isnan(v) else 100 * float(v)) for n, v in zip(names, iou)}, **extra}


def _main_only(cfg: Config, step: str, fn):
    info = init_distributed(cfg.device)
    result = None
    if info.is_main:
        result = fn()
        atomic_write_json(Path(cfg.out_dir) / f"{step}.json", result)
        logger.info("%s: %s", step, {k: v for k, v in result.items() if not isinstance(v, (dict, list))})
    barrier(info)
    return result


def eval_cam(cfg: Config, thresholds: Optional[Sequence[float]] = None, progress: bool = False) -> Dict:
    """mIoU (percent) of ``cam/<id>.npz`` (``high_res``) at each background threshold
    (default ``cfg.cam_eval_thres``); ``miou`` is that of the first threshold."""
    thresholds = [float(t) for t in (thresholds or [cfg.cam_eval_thres])]

    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / "cam", source.ids, ".npz", "eval_cam", "make_cam")
        confs = [ConfusionMatrix(source.num_classes + 1) for _ in thresholds]
        bar = Progress(progress, "eval_cam", len(paths))
        for i, (name, path) in enumerate(zip(names, paths)):
            cams = load_cam_file(path)
            gt = source.seg_label(name)
            for conf, t in zip(confs, thresholds):
                conf.update(cam_to_label(cams["high_res"], cams["keys"], t), gt)
            bar.update(i + 1)
        bar.close()
        per = [{"threshold": t, "miou": 100 * _miou(c, source)} for t, c in zip(thresholds, confs)]
        return _semantic(confs[0], source, threshold=thresholds[0], images=len(paths),
                         failed_upstream=len(excluded), sweep=per)
    return _main_only(cfg, "eval_cam", run)


def eval_ir_label(cfg: Config, progress: bool = False) -> Dict:
    """``precision``: percent of confident IR-label pixels (not 255) whose class is right;
    ``coverage``: percent of the labelled ground-truth pixels that are confident. GT void excluded."""
    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / "ir_label", source.ids, ".png", "eval_ir_label",
                                         "cam_to_ir_label")
        correct = confident = valid = 0
        conf = ConfusionMatrix(source.num_classes + 1)
        bar = Progress(progress, "eval_ir_label", len(paths))
        for i, (name, path) in enumerate(zip(names, paths)):
            label, gt = load_label_png(path), source.seg_label(name)
            keep = gt != 255
            sure = keep & (label != 255)
            valid += int(keep.sum())
            confident += int(sure.sum())
            correct += int((label[sure] == gt[sure]).sum())
            conf.update(label[sure], gt[sure])
            bar.update(i + 1)
        bar.close()
        return _semantic(conf, source, images=len(paths), failed_upstream=len(excluded),
                         precision=100 * correct / max(confident, 1), coverage=100 * confident / max(valid, 1))
    return _main_only(cfg, "eval_ir_label", run)


def eval_sem_seg(cfg: Config, progress: bool = False, *, folder: str = "sem_seg") -> Dict:
    """mIoU (percent) of ``<folder>/<id>.png`` (``sem_seg``: IRNet's walk) against the ground truth,
    written as ``eval_<folder>.json``."""
    step, producer = f"eval_{folder}", f"make_{folder}"

    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / folder, source.ids, ".png", step, producer)
        conf = ConfusionMatrix(source.num_classes + 1)
        bar = Progress(progress, step, len(paths))
        for i, (name, path) in enumerate(zip(names, paths)):
            conf.update(load_label_png(path), source.seg_label(name))
            bar.update(i + 1)
        bar.close()
        return _semantic(conf, source, images=len(paths), failed_upstream=len(excluded))
    return _main_only(cfg, step, run)


def eval_sem_seg_aff(cfg: Config, progress: bool = False) -> Dict:
    """mIoU (percent) of AffinityNet's walk, ``sem_seg_aff/<id>.png`` (:func:`eval_sem_seg`)."""
    return eval_sem_seg(cfg, progress, folder="sem_seg_aff")


def eval_ins_seg(cfg: Config, progress: bool = False) -> Dict:
    """Instance mask AP (percent) at IoU 0.5 and 0.7 of ``ins_seg/<id>.npz``, per class and mean.

    Cityscapes: its own AP instead (:mod:`irnet_fast.cityscapes_eval`): ``map`` over IoU
    0.5:0.95 and ``map50`` over the 8 instance classes, per class ``ap`` and ``ap50``, by the
    official ``cityscapesscripts`` evaluator when it is installed (``evaluator`` says which)."""
    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / "ins_seg", source.ids, ".npz", "eval_ins_seg",
                                         "make_ins_seg")
        if cfg.dataset == "cityscapes":
            return _cityscapes_ins(source, names, paths, excluded, progress)
        ap = InstanceAP(source.num_classes, (0.5, 0.7))
        bar = Progress(progress, "eval_ins_seg", len(paths))
        for i, (name, path) in enumerate(zip(names, paths)):
            pred = load_instances(path)
            gt_masks, gt_labels = source.instance_label(name)
            ap.update(instance_masks(pred["label"], len(pred["score"])), pred["class"], pred["score"], gt_masks,
                      gt_labels)
            bar.update(i + 1)
        bar.close()
        res = ap.compute()

        def per_class(values):
            return {n: (None if np.isnan(v) else 100 * float(v)) for n, v in zip(source.class_names, values)}
        return {"map50": 100 * res["map"][0.5], "map70": 100 * res["map"][0.7], "images": len(paths),
                "failed_upstream": len(excluded),
                "ap50": per_class(res["ap"][0.5]), "ap70": per_class(res["ap"][0.7])}
    return _main_only(cfg, "eval_ins_seg", run)


def _cityscapes_ins(source, names, paths, excluded, progress: bool) -> Dict:
    from ..cityscapes_eval import CityscapesInstanceAP, has_cityscapesscripts, official_instance_ap
    official = has_cityscapesscripts()
    ours = CityscapesInstanceAP()
    bar = Progress(progress, "eval_ins_seg", len(paths))

    def predictions():  # one image at a time: a full-resolution label map each
        for i, (name, path) in enumerate(zip(names, paths)):
            pred = load_instances(path)
            yield name, pred["label"], pred["class"], pred["score"]
            bar.update(i + 1)
    if official:
        res = official_instance_ap((source.gt_path(name, "instanceIds"), label, classes, scores)
                                   for name, label, classes, scores in predictions())
    else:
        for name, label, classes, scores in predictions():
            ours.update(label, classes, scores, source.instance_ids(name))
        res = ours.compute()
    bar.close()

    def pct(v):
        return None if np.isnan(v) else 100 * float(v)
    return {"map": pct(res["map"]), "map50": pct(res["map50"]), "images": len(paths),
            "failed_upstream": len(excluded),
            "evaluator": "cityscapesscripts" if official else "irnet_fast (transcription of cityscapesscripts)",
            "ap": {n: pct(v) for n, v in res["ap"].items()}, "ap50": {n: pct(v) for n, v in res["ap50"].items()}}


def tune(cfg: Config, thresholds: Optional[Sequence[float]] = None, progress: bool = False) -> Dict:
    """Semantic mIoU for each background threshold (default 0.05 .. 0.95), from ``rw/<id>.npz``."""
    thresholds = [round(float(t), 4) for t in (thresholds if thresholds is not None else np.arange(0.05, 0.96, 0.05))]

    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / "rw", source.ids, ".npz", "tune",
                        "make_sem_seg with save_rw_scores=true")
        confs = [ConfusionMatrix(source.num_classes + 1) for _ in thresholds]
        bar = Progress(progress, "tune", len(paths))
        for i, (name, path) in enumerate(zip(names, paths)):
            saved = load_npz(path, ("keys", "rw"))
            gt = source.seg_label(name)
            up = upsample_scores(torch.from_numpy(saved["rw"].astype(np.float32)), gt.shape, cfg.sem_seg_scale)
            for conf, t in zip(confs, thresholds):
                conf.update(cam_to_label(up.numpy(), saved["keys"], t), gt)
            bar.update(i + 1)
        bar.close()
        sweep = [{"threshold": t, "miou": 100 * _miou(c, source)} for t, c in zip(thresholds, confs)]
        best = max(sweep, key=lambda r: -1.0 if np.isnan(r["miou"]) else r["miou"])
        return {"best_threshold": best["threshold"], "best_miou": best["miou"], "sweep": sweep,
                "current_threshold": cfg.sem_seg_bg_thres, "images": len(paths), "failed_upstream": len(excluded)}
    return _main_only(cfg, "tune", run)


def export_coco(cfg: Config, out_path=None, min_score: float = 0.0) -> Dict:
    """``ins_seg/<id>.npz`` of ``infer_split`` to ``<out_dir>/instances_coco.json`` (or ``out_path``);
    instances with score <= ``min_score`` are left out (fragments under the size limit score 0).
    Image and category ids are the dataset's (:mod:`irnet_fast.coco_export`): COCO's own, so
    ``COCO(coco_ann_file).loadRes(json['annotations'])`` works; fixed ones for VOC and the synthetic data."""
    target = Path(out_path) if out_path else Path(cfg.out_dir) / "instances_coco.json"

    def run():
        source = infer_source(cfg)
        names, paths, excluded = _inputs(cfg, Path(cfg.out_dir) / "ins_seg", source.ids, ".npz", "export_coco",
                                         "make_ins_seg")
        kept = total = 0

        def records():
            nonlocal kept, total
            for name, path in zip(names, paths):
                pred = load_instances(path)
                keep = np.flatnonzero(pred["score"] > min_score)
                total += len(pred["score"])
                kept += len(keep)
                height, width = pred["label"].shape
                yield {"file_name": source_file_name(source, name), "image_id": source_image_id(source, name),
                       "height": int(height), "width": int(width), "masks": instance_masks(pred["label"], keep),
                       "labels": pred["class"][keep], "scores": pred["score"][keep]}
        write_coco_json(records(), source.class_names, target, category_ids=source_category_ids(source))
        return {"path": str(target), "images": len(paths), "failed_upstream": len(excluded), "instances": kept,
                "left_out": total - kept}
    return _main_only(cfg, "export_coco", run)
