"""Training of IRNet (docs/algorithm.md, "Training"), on one process or under torchrun.

``train_irn(cfg, ir_label_dir)`` trains :class:`~irnet_fast.models.IRNet` on ``cfg.irn_split``
with the IR labels ``<ir_label_dir>/<image id>.png`` (0 background, 1..C classes, 255 unsure),
measures the displacement mean shift and writes ``<out_dir>/irn.pth`` (``state_dict``, the
``mean_shift.running_mean`` buffer included; the reference's layout with
:func:`~.checkpoint.export_reference_weights`). Also in ``out_dir``: ``train_irn.log``, ``irn_checkpoint.pt``
(latest end-of-epoch checkpoint) and ``irn_history.json`` (mean of every loss term per epoch).

Mean shift (:func:`displacement_mean`): as the reference, the images of ``cfg.mean_shift_split``
(``train``) are normalised and top-left cropped to ``irn_crop_size`` (smaller images padded
with 0 on the right and bottom, no rescale, no flip), run through the trained network (eval
mode, mean shift not subtracted), and the mean of the displacement field over every pixel of
the stride-4 output of every image (padding included, as the reference) is stored per channel
(dy, dx) in ``mean_shift.running_mean``. The reference averages per-batch means and drops the last
incomplete batch; here every image counts and, all crops being the same size, the result is
the mean over all their pixels (equal to the reference's when the image count is a multiple
of the batch). Accumulated in float64; under torchrun the images are sharded over the
processes and the sums reduced.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.transforms import AffinityTransform, ClassificationTransform
from ..data.voc import AffinityDataset, ClassificationDataset
from ..models import IRNet, irn_loss
from ..models.reference_format import from_reference_state_dict, is_reference_state_dict
from .config import Config
from .distributed import DistInfo, all_reduce_sum, cleanup_distributed, init_distributed
from .common import LogContext, Progress, build_source, load_state_dict_file
from .training import fit, save_weights

__all__ = ["train_irn", "displacement_mean", "global_irn_loss"]

logger = logging.getLogger("irnet_fast.pipeline")


def global_irn_loss(edge: torch.Tensor, disp: torch.Tensor, labels: Sequence[torch.Tensor], radius: int,
                    info: DistInfo) -> Dict[str, torch.Tensor]:
    """:func:`~irnet_fast.models.irn_loss` normalised by the pair counts of the *global* batch.

    Each term of ``irn_loss`` is ``sum over this process's pairs / (count + eps)``; it is scaled
    by ``(count + eps) / (global count + eps) * world_size`` so that DDP's gradient average over
    the processes equals the one-process loss of the whole batch. One process: unchanged.
    """
    terms = irn_loss(edge, disp, labels, radius=radius)
    if not info.distributed:
        return terms
    counts = torch.stack([lab.to(device=edge.device, dtype=torch.float64).sum() for lab in labels])
    total = all_reduce_sum(counts, info)
    n = float(info.world_size)
    eps = 1e-5
    aff_scale = ((counts + eps) / (total + eps) * n).to(edge.dtype)
    dp_scale = ((2 * counts + eps) / (2 * total + eps) * n).to(edge.dtype)
    bg = terms["bg_pos_aff"] * aff_scale[0]
    fg = terms["fg_pos_aff"] * aff_scale[1]
    neg = terms["neg_aff"] * aff_scale[2]
    dp_bg = terms["dp_bg"] * dp_scale[0]
    dp_fg = terms["dp_fg"] * dp_scale[1]
    pos = bg / 2 + fg / 2
    return {"pos_aff": pos, "neg_aff": neg, "dp_fg": dp_fg, "dp_bg": dp_bg,
            "total": (pos + neg) / 2 + (dp_fg + dp_bg) / 2, "bg_pos_aff": bg, "fg_pos_aff": fg}


@torch.no_grad()
def displacement_mean(model: IRNet, dataset, info: DistInfo, batch_size: int = 1, num_workers: int = 0,
                      progress: bool = False) -> torch.Tensor:
    """Mean displacement ``(2,)`` over all output pixels of all images of ``dataset`` (see the module
    docstring); items must be same-size ``{'img': (3, S, S)}``. Sharded over the processes."""
    indices = list(range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=max(1, int(batch_size)), shuffle=False,
                        num_workers=int(num_workers), drop_last=False)
    was_training = model.training
    model.eval()
    acc = torch.zeros(3, dtype=torch.float64, device=info.device)  # sum dy, sum dx, pixel count
    bar = Progress(progress and info.is_main, "irn mean shift", len(loader))
    for i, batch in enumerate(loader):
        _, disp = model(batch["img"].to(info.device), subtract_mean_shift=False)
        disp = disp.double()
        acc[:2] += disp.sum(dim=(0, 2, 3))
        acc[2] += disp.shape[0] * disp.shape[2] * disp.shape[3]
        bar.update(i + 1, "")
    bar.close()
    model.train(was_training)
    acc = all_reduce_sum(acc, info)
    if acc[2] == 0:
        raise ValueError("displacement_mean(): no images")
    return (acc[:2] / acc[2]).float()


def cam_backbone_state(cam_weights: Path) -> Dict[str, torch.Tensor]:
    """The backbone of a trained CAM network (``cam.pth``, either layout) as a torchvision-named
    ResNet state dict without ``fc``."""
    state = load_state_dict_file(cam_weights, "CAM")
    if is_reference_state_dict(state):
        state = from_reference_state_dict(state)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise RuntimeError(f"{cam_weights} holds no backbone.* weights: not a CAM network's weights")
    return backbone


def load_cam_backbone(backbone: nn.Module, cam_weights: Path, key: str = "irn_init_from_cam") -> None:
    """A network's ResNet ``backbone`` (IRNet's, Mask R-CNN's) from a trained CAM network (config
    ``key``): the best features there are when no ImageNet weights exist (the synthetic demo trains
    everything from scratch)."""
    try:
        backbone.load_state_dict(cam_backbone_state(cam_weights))
    except RuntimeError as exc:
        raise RuntimeError(f"{key}: the CAM weights {cam_weights} do not fit the backbone (another backbone "
                           f"kind?): {exc}") from None
    logger.info("%s: backbone initialised from %s", key, cam_weights)


def train_irn(cfg: Config, ir_label_dir=None, *, resume: bool = False, progress: bool = True,
              stop_after: Optional[int] = None) -> Path:
    """Trains IRNet on the IR labels of ``ir_label_dir``; returns ``<out_dir>/irn.pth``.

    Args:
        cfg: the configuration (``irn_*`` keys, ``radius``, data, backbone, runtime).
        ir_label_dir: folder of ``<image id>.png`` IR labels (0 bg, 1..C, 255 unsure); default
            ``<out_dir>/ir_label``.
        resume: continue from ``<out_dir>/irn_checkpoint.pt`` when it exists.
        progress: a progress line and the log on stderr (main process only).
        stop_after: train at most this many epochs in this call (then return the checkpoint
            path without measuring the mean shift; ``resume=True`` continues later).

    After the last epoch the displacement mean shift is measured (module docstring) and stored
    in the model's ``mean_shift.running_mean`` buffer before the weights are saved.
    """
    ir_label_dir = Path(cfg.out_dir) / "ir_label" if ir_label_dir is None else ir_label_dir
    info = init_distributed(cfg.device)
    out_dir = Path(cfg.out_dir)
    log = LogContext(out_dir / "train_irn.log", info, progress)
    try:
        torch.manual_seed(cfg.seed)
        source = build_source(cfg, cfg.irn_split)
        transform = AffinityTransform(rescale=cfg.irn_rescale, hor_flip=True, crop_size=cfg.irn_crop_size,
                                      crop_method="random")
        dataset = AffinityDataset(source, ir_label_dir, crop_size=cfg.irn_crop_size, radius=cfg.radius,
                                  transform=transform, seed=cfg.seed)
        model = IRNet(cfg.backbone, cfg.backbone_weights)
        if cfg.irn_init_from_cam:
            load_cam_backbone(model.backbone, out_dir / "cam.pth")
        edge_params, dp_params = model.trainable_parameter_groups()
        groups = [(edge_params, cfg.irn_learning_rate), (dp_params, cfg.irn_learning_rate * cfg.irn_dp_lr_mult)]

        def step(net: nn.Module, batch: dict) -> Dict[str, torch.Tensor]:
            img = batch["img"].to(info.device, non_blocking=True)
            labels = [batch[k].to(info.device, non_blocking=True)
                      for k in ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label")]
            edge, disp = net(img)
            return global_irn_loss(edge, disp, labels, cfg.radius, info)

        model, finished = fit(name="irn", cfg=cfg, info=info, model=model, groups=groups,
                              weight_decay=cfg.irn_weight_decay, dataset=dataset,
                              global_batch=cfg.irn_batch_size, num_epochs=cfg.irn_num_epochs, step_fn=step,
                              resume=resume, progress=progress, stop_after=stop_after)
        if not finished:
            return out_dir / "irn_checkpoint.pt"

        ms_source = source if cfg.mean_shift_split == cfg.irn_split else build_source(cfg, cfg.mean_shift_split)
        ms_transform = ClassificationTransform(resize_long=None, rescale=None, hor_flip=False,
                                               crop_size=cfg.irn_crop_size, crop_method="top_left")
        ms_dataset = ClassificationDataset(ms_source, ms_transform, seed=cfg.seed)
        per_process = max(1, cfg.irn_batch_size // info.world_size)
        mean = displacement_mean(model, ms_dataset, info, per_process, cfg.num_workers, progress)
        model.mean_shift.running_mean.copy_(mean.to(model.mean_shift.running_mean))
        logger.info("irn: displacement mean shift over %d images of %r: dy %.6f dx %.6f", len(ms_dataset),
                    cfg.mean_shift_split, mean[0].item(), mean[1].item())
        return save_weights(model, out_dir / "irn.pth", info)
    finally:
        log.close()
        cleanup_distributed(info)
