"""``eval_sem``: the trained DeepLab on a held-out split, scored against its ground truth.

Per image of ``heldout_split`` (``val``): the image rescaled (bicubic) to each of
``deeplab_test_scales`` and, with ``deeplab_test_flip``, mirrored too; the softmax of every pass
resized (bilinear) to the image and averaged (the DeepLab papers' multi-scale + flip test);
optionally the dense CRF (``deeplab_crf``, :func:`irnet_fast.crf.crf_inference_prob`); argmax.
Predictions go to ``<out_dir>/sem_pred/<id>.png`` (resumable per image; a prediction older than
the weights is redone), then the main process writes ``<out_dir>/eval_sem.json``: ``miou``,
``pixel_accuracy`` and per-class ``iou`` (percent), ``split``, ``images``, ``failed``.

The split must be held out: the step refuses a split that shares an image with the training
split ``infer_split`` (the pseudo labels DeepLab learned from). On COCO the held-out images are
``heldout_dataset_root`` with ``heldout_coco_ann_file`` (val2014).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write_json, is_valid_png, save_label_png
from ..crf import crf_inference_prob
from ..data.transforms import pil_rescale
from ..data.voc import InferenceDataset, load_label_png
from ..metrics import ConfusionMatrix
from .common import LogContext, held_out_source, inference_model, run_images
from .config import Config
from .distributed import barrier, init_distributed
from .evaluate import _semantic
from .train_sem import deeplab_model

__all__ = ["eval_sem", "predict_semantic", "load_deeplab"]

logger = logging.getLogger("irnet_fast.pipeline")


def load_deeplab(cfg: Config, num_classes: int, weights, device: torch.device) -> torch.nn.Module:
    """The trained DeepLab (``weights`` or ``<out_dir>/deeplab.pth``), eval mode, on ``device``."""
    path = Path(weights) if weights else Path(cfg.out_dir) / "deeplab.pth"
    return inference_model(lambda: deeplab_model(cfg, num_classes, pretrained=False), path, "DeepLab", device)


@torch.no_grad()
def predict_semantic(model: torch.nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,),
                     flip: bool = False, device=None, crf: bool = False) -> np.ndarray:
    """Class probabilities ``float32 (C + 1, H, W)`` of a raw RGB image: the softmax averaged over
    ``scales`` (and their mirror images with ``flip``), then the dense CRF with ``crf``."""
    device = device if device is not None else next(model.parameters()).device
    height, width = image.shape[:2]
    total, passes = None, 0
    for scale in scales:
        scaled = image if scale == 1.0 else pil_rescale(image, float(scale), 3)
        x = InferenceDataset.normalized(scaled)[None].to(device)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        prob = torch.softmax(model(x)["out"].float(), dim=1)
        if flip:
            prob = torch.stack([prob[0], prob[1].flip(-1)])
        prob = F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=False).sum(0)
        total = prob if total is None else total + prob
        passes += 2 if flip else 1
    probs = (total / passes).cpu().numpy()
    return crf_inference_prob(image, probs) if crf else probs


def eval_sem(cfg: Config, *, weights=None, progress: bool = True, limit: Optional[int] = None) -> dict:
    """Predicts ``heldout_split`` with DeepLab (``weights`` or ``<out_dir>/deeplab.pth``) and
    writes its mIoU against the ground truth to ``<out_dir>/eval_sem.json`` (module docstring)."""
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    pred_dir = out / "sem_pred"
    with LogContext(out / "eval_sem.log", info, progress):
        source = held_out_source(cfg, cfg.heldout_split, "eval_sem")
        weights_path = Path(weights) if weights else out / "deeplab.pth"
        model = load_deeplab(cfg, source.num_classes, weights_path, info.device)
        made_after = weights_path.stat().st_mtime

        def is_done(name: str) -> bool:
            path = pred_dir / f"{name}.png"
            return is_valid_png(path) and path.stat().st_mtime >= made_after

        def process(items) -> None:
            for name, image in items:
                probs = predict_semantic(model, image, cfg.deeplab_test_scales, cfg.deeplab_test_flip,
                                         info.device, cfg.deeplab_crf)
                save_label_png(pred_dir / f"{name}.png", probs.argmax(0).astype(np.uint8))

        summary = run_images("eval_sem", source.ids, pred_dir, info, is_done=is_done, load=source.load_image,
                             process=process, progress=progress, num_workers=cfg.num_workers, limit=limit)
        result = None
        if info.is_main:
            conf = ConfusionMatrix(source.num_classes + 1)
            names = [n for n in source.ids if n not in summary.failed and (pred_dir / f"{n}.png").is_file()]
            for name in names:
                conf.update(load_label_png(pred_dir / f"{name}.png"), source.seg_label(name))
            result = _semantic(conf, source, split=cfg.heldout_split, images=len(names),
                               failed=len(summary.failed))
            atomic_write_json(out / "eval_sem.json", result)
            logger.info("eval_sem: mIoU %.2f on %d images of %r", result["miou"], len(names), cfg.heldout_split)
        barrier(info)
        return result
