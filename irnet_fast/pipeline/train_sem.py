"""``train_sem``: the final semantic network, DeepLab, trained on the semantic pseudo labels.

``train_sem(cfg)`` trains torchvision's DeepLabV3 (:func:`~irnet_fast.models.deeplab.build_deeplab`,
``deeplab_*`` keys) on the images of ``cfg.infer_split`` with the labels ``<out_dir>/sem_seg/<id>.png``
of ``make_sem_seg``, fully supervised: per-pixel cross-entropy (255 ignored), SGD with the poly
schedule, random rescale (``deeplab_rescale``), flip and crop (``deeplab_crop_size``, fill 0 / 255)
as DeepLab trains. Writes ``<out_dir>/deeplab.pth`` (the ``state_dict``); also ``train_sem.log``,
``deeplab_checkpoint.pt`` (every epoch, for resume) and ``deeplab_history.json``. The training loop
is :func:`.training.fit`, as for the CAM network and IRNet.

Under torchrun the loss of each process is its sum over labelled pixels divided by the count of
the *global* batch (times the number of processes), so DDP's gradient average is the one-process
loss. BatchNorm trains (batch statistics, as DeepLabV3); on CUDA it becomes ``SyncBatchNorm``
so that the statistics are those of the global batch. On the CPU (gloo) SyncBatchNorm does not
exist: each process normalises with its own part of the batch, the one place where a
multi-process CPU run differs from one process.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.segmentation import SegmentationDataset
from ..data.transforms import AffinityTransform
from ..errors import InputValueError
from ..models.backbone import PretrainedWeightsWarning
from ..models.deeplab import build_deeplab
from .common import LogContext, build_source
from .config import Config
from .distributed import all_reduce_sum, cleanup_distributed, init_distributed
from .train_irn import load_cam_backbone
from .training import fit, save_weights

__all__ = ["train_sem", "deeplab_model", "deeplab_backbone_weights"]

logger = logging.getLogger("irnet_fast.pipeline")


def deeplab_backbone_weights(cfg: Config) -> Optional[str]:
    """``deeplab_backbone_weights``, else ``backbone_weights`` when both networks use the same
    backbone (one ImageNet file for the CAM network, IRNet and DeepLab), else None."""
    if cfg.deeplab_backbone_weights:
        return cfg.deeplab_backbone_weights
    if cfg.backbone_weights and cfg.deeplab_backbone == cfg.backbone:
        return cfg.backbone_weights
    return None


def deeplab_model(cfg: Config, num_classes: int, pretrained: bool = True) -> nn.Module:
    """DeepLab of ``cfg`` with ``num_classes + 1`` outputs (background first); its backbone from
    the ImageNet checkpoint of :func:`deeplab_backbone_weights` when ``pretrained``."""
    weights = deeplab_backbone_weights(cfg) if pretrained else None
    return build_deeplab(num_classes + 1, cfg.deeplab_backbone, weights, output_stride=cfg.deeplab_output_stride)


def train_sem(cfg: Config, *, resume: bool = False, progress: bool = True,
              stop_after: Optional[int] = None) -> Path:
    """Trains DeepLab on the pseudo labels ``<out_dir>/sem_seg/<id>.png`` of ``infer_split``;
    returns ``<out_dir>/deeplab.pth`` (or the checkpoint after ``stop_after`` epochs).

    ``deeplab_init_from_cam`` starts the backbone from ``<out_dir>/cam.pth`` (the CAM network's
    backbone, ``backbone`` must equal ``deeplab_backbone``) instead of ImageNet weights.
    """
    info = init_distributed(cfg.device)
    out_dir = Path(cfg.out_dir)
    log = LogContext(out_dir / "train_sem.log", info, progress)
    try:
        torch.manual_seed(cfg.seed)
        source = build_source(cfg, cfg.infer_split)
        transform = AffinityTransform(rescale=cfg.deeplab_rescale, hor_flip=True, crop_size=cfg.deeplab_crop_size,
                                      crop_method="random")
        dataset = SegmentationDataset(source, out_dir / "sem_seg", transform, seed=cfg.seed)
        if cfg.deeplab_init_from_cam:
            if cfg.backbone != cfg.deeplab_backbone:
                raise InputValueError(f"deeplab_init_from_cam needs deeplab_backbone == backbone, got "
                                      f"{cfg.deeplab_backbone!r} and {cfg.backbone!r}")
            with warnings.catch_warnings():  # the backbone comes from the CAM network instead
                warnings.simplefilter("ignore", PretrainedWeightsWarning)
                model = deeplab_model(cfg, source.num_classes, pretrained=False)
            load_cam_backbone(model.backbone, out_dir / "cam.pth", "deeplab_init_from_cam")
        else:
            model = deeplab_model(cfg, source.num_classes)
        if info.distributed and info.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        groups = [(list(model.backbone.parameters()), cfg.deeplab_learning_rate),
                  (list(model.classifier.parameters()), cfg.deeplab_learning_rate * cfg.deeplab_head_lr_mult)]

        def step(net: nn.Module, batch: dict) -> Dict[str, torch.Tensor]:
            img = batch["img"].to(info.device, non_blocking=True)
            label = batch["label"].to(info.device, non_blocking=True)
            logits = net(img)["out"]
            total = F.cross_entropy(logits, label, ignore_index=255, reduction="sum")
            count = (label != 255).sum().to(torch.float64)
            if info.distributed:
                count = all_reduce_sum(count, info) / info.world_size
            return {"total": total / count.clamp(min=1).to(total.dtype)}

        model, finished = fit(name="deeplab", cfg=cfg, info=info, model=model, groups=groups,
                              weight_decay=cfg.deeplab_weight_decay, dataset=dataset,
                              global_batch=cfg.deeplab_batch_size, num_epochs=cfg.deeplab_num_epochs, step_fn=step,
                              resume=resume, progress=progress, stop_after=stop_after)
        if not finished:
            return out_dir / "deeplab_checkpoint.pt"
        return save_weights(model, out_dir / "deeplab.pth", info)
    finally:
        log.close()
        cleanup_distributed(info)
