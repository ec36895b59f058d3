"""Training of the CAM classifier (docs/algorithm.md, "Training"), on one process or under torchrun.

``train_cam(cfg)`` trains :class:`~irnet_fast.models.CAMNet` on ``cfg.cam_split`` and writes
``<out_dir>/cam.pth`` (the model's ``state_dict``). Also in ``out_dir``: ``train_cam.log`` (the
log), ``cam_checkpoint.pt`` (the latest end-of-epoch checkpoint, replaced atomically every
epoch) and ``cam_history.json`` (mean losses of every epoch).

The training loop it shares with :mod:`.train_irn` is :func:`.training.fit`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..data.transforms import ClassificationTransform
from ..data.voc import ClassificationDataset
from ..models import CAMNet, classification_loss
from .common import LogContext, build_source
from .config import Config
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .training import fit, save_weights

__all__ = ["train_cam", "build_source"]

logger = logging.getLogger("irnet_fast.pipeline")


def calibrate(model: CAMNet, dataset, cfg: Config, info: DistInfo) -> None:
    """BatchNorm statistics of the randomly initialised backbone from the first training batches
    (the same on every process: DDP then starts from rank 0's model anyway)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.cam_batch_size, shuffle=False,
                                         num_workers=cfg.num_workers)
    batches = (batch["img"].to(info.device) for _, batch in zip(range(cfg.bn_calibration_batches), loader))
    model.to(info.device)
    used = model.backbone.calibrate_batchnorm(batches)
    logger.info("cam: BatchNorm statistics of the randomly initialised backbone measured on %d batches", used)


def train_cam(cfg: Config, *, resume: bool = False, progress: bool = True,
              stop_after: Optional[int] = None) -> Path:
    """Trains the CAM classifier; returns the path of its final weights ``<out_dir>/cam.pth``.

    Args:
        cfg: the configuration (``cam_*`` keys, data, backbone, runtime).
        resume: continue from ``<out_dir>/cam_checkpoint.pt`` when it exists.
        progress: a progress line and the log on stderr (main process only).
        stop_after: train at most this many epochs in this call (then return the checkpoint path;
            a later call with ``resume=True`` continues).

    Runs on one process, or on every process of a ``torchrun`` launch (global batch
    ``cfg.cam_batch_size``, which must be divisible by the number of processes).
    """
    info = init_distributed(cfg.device)
    out_dir = Path(cfg.out_dir)
    log = LogContext(out_dir / "train_cam.log", info, progress)
    try:
        torch.manual_seed(cfg.seed)
        source = build_source(cfg, cfg.cam_split)
        transform = ClassificationTransform(resize_long=cfg.cam_resize_long, hor_flip=True,
                                            crop_size=cfg.cam_crop_size, crop_method="random")
        dataset = ClassificationDataset(source, transform, seed=cfg.seed)
        model = CAMNet(cfg.backbone, source.num_classes, cfg.backbone_weights,
                       train_bn_affine=cfg.cam_train_bn_affine)
        if cfg.bn_calibration_batches > 0 and cfg.backbone_weights is None:
            calibrate(model, dataset, cfg, info)
        backbone, head = model.trainable_parameter_groups()
        groups = [(backbone, cfg.cam_learning_rate), (head, cfg.cam_learning_rate * cfg.cam_head_lr_mult)]

        def step(net: nn.Module, batch: dict) -> Dict[str, torch.Tensor]:
            img = batch["img"].to(info.device, non_blocking=True)
            label = batch["label"].to(info.device, non_blocking=True)
            return {"total": classification_loss(net(img), label)}

        model, finished = fit(name="cam", cfg=cfg, info=info, model=model, groups=groups,
                              weight_decay=cfg.cam_weight_decay, dataset=dataset,
                              global_batch=cfg.cam_batch_size, num_epochs=cfg.cam_num_epochs, step_fn=step,
                              resume=resume, progress=progress, stop_after=stop_after)
        if not finished:
            return out_dir / "cam_checkpoint.pt"
        return save_weights(model, out_dir / "cam.pth", info)
    finally:
        log.close()
        cleanup_distributed(info)
