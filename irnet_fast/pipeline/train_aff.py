"""AffinityNet's walk as an alternative to IRNet's boundary walk (steps on request).

``train_aff``: a small affinity head (1x1 convolutions of the four stages of the CAM network's
features, upsampled bilinearly to the stride-4 grid of the CAMs and concatenated) on the frozen
backbone of ``cam.pth``, trained with AffinityNet's loss (:func:`affinity_loss`) on the IR labels
at ``aff_radius``.
Writes ``<out_dir>/aff.pth`` (with ``aff_checkpoint.pt``, ``aff_history.json``, ``train_aff.log``
as ``train_irn``).

``make_sem_seg_aff``: the CAMs of ``make_cam`` walked with the head's feature affinities
(AffinityNet's walk, :func:`irnet_fast.compat.psa.propagate`: ``aff_beta``, ``2 ** aff_logt``
steps), then exactly ``make_sem_seg``'s upsampling and background threshold; writes
``<out_dir>/sem_seg_aff/<id>.png``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._io import is_valid_png, save_label_png
from ..compat.psa import propagate
from ..data.transforms import AffinityTransform
from ..data.voc import AffinityDataset, InferenceDataset
from ..metrics import cam_to_label
from ..models.backbone import build_backbone
from ..ops import feature_affinity, feature_affinity_labels
from .common import LogContext, StepSummary, build_source, infer_source, inference_model, run_images
from .config import Config
from .distributed import cleanup_distributed, init_distributed
from .inference import upsample_scores
from .make_cam import load_cam_file
from .train_irn import load_cam_backbone
from .training import fit, save_weights

__all__ = ["AffinityHead", "affinity_loss", "train_aff", "make_sem_seg_aff"]


class AffinityHead(nn.Module):
    """Frozen CAM backbone (``backbone.*``, BatchNorm statistics fixed) and trainable 1x1
    convolutions of its four stages (``heads``, ``feature_dim / 4`` channels each, the last taking
    the remainder), upsampled to the stride-4 grid and concatenated, as AffinityNet concatenates
    the features of several stages: the deep stages say what belongs together, the early ones where
    the edges are (the stride-16 features alone, upsampled, blur every boundary over four cells).
    ``forward(img [B, 3, H, W])`` gives the features ``[B, F, ceil(H / 4), ceil(W / 4)]`` (the grid
    of the stride-4 CAMs)."""

    def __init__(self, backbone_name: str, feature_dim: int):
        super().__init__()
        self.backbone = build_backbone(backbone_name, None)
        self.backbone.requires_grad_(False)
        feature_dim = int(feature_dim)
        if feature_dim < 4:
            raise ValueError(f"AffinityHead: feature_dim expected >= 4 (one channel per stage at least), got {feature_dim}")
        part = feature_dim // 4
        sizes = (part, part, part, feature_dim - 3 * part)
        self.heads = nn.ModuleList(nn.Conv2d(c, n, 1) for c, n in zip(self.backbone.out_channels[1:], sizes))

    def train(self, mode: bool = True) -> "AffinityHead":
        super().train(mode)
        self.backbone.eval()  # frozen: its BatchNorm statistics never move
        return self

    def forward(self, img: Tensor) -> Tensor:
        height, width = img.shape[-2:]
        pad = (0, -width % 16, 0, -height % 16)
        with torch.no_grad():
            stages = self.backbone(F.pad(img, pad))[1:]  # layer1 .. layer4
        grid = stages[0].shape[-2:]  # stride 4
        size = (-(-height // 4), -(-width // 4))
        out = [F.interpolate(head(x), grid, mode="bilinear", align_corners=False) for head, x in zip(self.heads, stages)]
        return torch.cat(out, 1)[..., :size[0], :size[1]]


def affinity_loss(features: Tensor, label: Tensor, radius: int = 5) -> Dict[str, Tensor]:
    """AffinityNet's loss of features ``[B, F, h, w]`` against a label map ``[B, h, w]`` (0 bg,
    1..C, 255 unsure): ``-log(a + 1e-5)`` averaged over the background-positive and over the
    foreground-positive pairs, ``-log(1 + 1e-5 - a)`` over the negative pairs, each term by its own
    count; ``total = bg / 4 + fg / 4 + neg / 2``."""
    aff = feature_affinity(features, radius, region="psa")
    bg, fg, neg = (t.to(aff) for t in feature_affinity_labels(label.to(aff.device), radius, region="psa"))
    pos_log, neg_log = -torch.log(aff + 1e-5), -torch.log(1 + 1e-5 - aff)
    terms = {"bg_pos_aff": (bg * pos_log).sum() / (bg.sum() + 1e-5),
             "fg_pos_aff": (fg * pos_log).sum() / (fg.sum() + 1e-5),
             "neg_aff": (neg * neg_log).sum() / (neg.sum() + 1e-5)}
    terms["total"] = terms["bg_pos_aff"] / 4 + terms["fg_pos_aff"] / 4 + terms["neg_aff"] / 2
    return terms


def train_aff(cfg: Config, ir_label_dir=None, *, resume: bool = False, progress: bool = True,
              stop_after: Optional[int] = None) -> Path:
    """Trains the affinity head on ``<out_dir>/ir_label`` (or ``ir_label_dir``) over the frozen
    backbone of ``<out_dir>/cam.pth``; returns ``<out_dir>/aff.pth`` (the checkpoint when
    ``stop_after`` ends it early; ``resume=True`` continues)."""
    out_dir = Path(cfg.out_dir)
    ir_label_dir = out_dir / "ir_label" if ir_label_dir is None else ir_label_dir
    info = init_distributed(cfg.device)
    log = LogContext(out_dir / "train_aff.log", info, progress)
    try:
        torch.manual_seed(cfg.seed)
        source = build_source(cfg, cfg.irn_split)
        transform = AffinityTransform(rescale=cfg.irn_rescale, hor_flip=True, crop_size=cfg.irn_crop_size,
                                      crop_method="random")
        dataset = AffinityDataset(source, ir_label_dir, crop_size=cfg.irn_crop_size, radius=cfg.aff_radius,
                                  transform=transform, seed=cfg.seed)
        model = AffinityHead(cfg.backbone, cfg.aff_feature_dim)
        load_cam_backbone(model.backbone, out_dir / "cam.pth", "train_aff")

        def step(net: nn.Module, batch: dict) -> Dict[str, Tensor]:
            img = batch["img"].to(info.device, non_blocking=True)
            return affinity_loss(net(img), batch["reduced_label"].to(info.device).long(), cfg.aff_radius)

        model, finished = fit(name="aff", cfg=cfg, info=info, model=model,
                              groups=[(list(model.heads.parameters()), cfg.aff_learning_rate)],
                              weight_decay=cfg.aff_weight_decay, dataset=dataset, global_batch=cfg.aff_batch_size,
                              num_epochs=cfg.aff_num_epochs, step_fn=step, resume=resume, progress=progress,
                              stop_after=stop_after)
        if not finished:
            return out_dir / "aff_checkpoint.pt"
        return save_weights(model, out_dir / "aff.pth", info)
    finally:
        log.close()
        cleanup_distributed(info)


def make_sem_seg_aff(cfg: Config, *, weights=None, progress: bool = True, limit: Optional[int] = None) -> StepSummary:
    """Writes ``<out_dir>/sem_seg_aff/<id>.png`` for ``infer_split`` from the CAM files and the
    affinity head (``weights`` or ``<out_dir>/aff.pth``)."""
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    cam_dir, sem_dir = out / "cam", out / "sem_seg_aff"
    with LogContext(out / "make_sem_seg_aff.log", info, progress):
        source = infer_source(cfg)
        path = Path(weights) if weights else out / "aff.pth"
        model = inference_model(lambda: AffinityHead(cfg.backbone, cfg.aff_feature_dim), path, "affinity head",
                                info.device)

        def load(name: str):
            return source.load_image(name), load_cam_file(cam_dir / f"{name}.npz")

        @torch.no_grad()
        def process(items) -> None:
            for name, (image, cams) in items:
                cam = torch.from_numpy(cams["cam"]).to(info.device)
                features = model(InferenceDataset.normalized(image)[None].to(info.device)).float()
                if cam.shape[1:] != features.shape[2:]:
                    raise ValueError(f"{name}: CAM size {tuple(cam.shape[1:])} does not match the feature grid "
                                     f"{tuple(features.shape[2:])} (CAM file from another image size?)")
                if cam.shape[0]:
                    cam = propagate(cam, features, beta=cfg.aff_beta, logt=cfg.aff_logt, radius=cfg.aff_radius,
                                    backend=cfg.backend)
                up = upsample_scores(cam, image.shape[:2])
                save_label_png(sem_dir / f"{name}.png", cam_to_label(up.cpu().numpy(), cams["keys"],
                                                                      cfg.sem_seg_bg_thres))

        return run_images("make_sem_seg_aff", source.ids, sem_dir, info,
                          is_done=lambda name: is_valid_png(sem_dir / f"{name}.png"), load=load, process=process,
                          progress=progress, num_workers=cfg.num_workers, limit=limit)
