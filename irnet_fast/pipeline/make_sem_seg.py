"""``make_sem_seg``: semantic pseudo labels by the random walk (REFERENCE.md section 3).

Per image: IRNet inference (boundary map at stride 4), the CAMs ``cam`` of ``make_cam``
propagated by the random walk (radius ``walk_radius``, ``beta``, ``2 ** exp_times`` steps, several
images per call), upsampled x4 (bilinear), cropped to the image, divided by the global max, a
background channel of ``sem_seg_bg_thres`` put first, argmax, mapped to class ids (1-based):
:func:`irnet_fast.metrics.cam_to_label`, the rule that also scores the CAMs.
Writes ``<out_dir>/sem_seg/<id>.png``; with ``save_rw_scores`` also ``<out_dir>/rw/<id>.npz``
(``keys`` int64, ``rw`` float16 (K, h, w) at stride 4) for :func:`~.evaluate.tune`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .._io import is_valid_npz, is_valid_png, save_label_png, save_npz
from ..data.voc import InferenceDataset
from ..metrics import cam_to_label
from ..models import IRNet
from ..models.irn import EdgeDisplacement
from ..ops import random_walk
from .config import Config
from .distributed import init_distributed
from .make_cam import load_cam_file
from .runner import LogContext, StepSummary, inference_model, infer_source, run_images

__all__ = ["make_sem_seg", "load_edge_displacement", "irn_and_cam", "upsample_scores", "walk"]


def load_edge_displacement(cfg: Config, weights, device: torch.device) -> EdgeDisplacement:
    """The trained IRNet (``weights`` or ``<out_dir>/irn.pth``) in its inference wrapper."""
    path = Path(weights) if weights else Path(cfg.out_dir) / "irn.pth"
    return EdgeDisplacement(inference_model(lambda: IRNet(cfg.backbone), path, "IRNet", device)).eval()


@torch.no_grad()
def boundary_and_displacement(model: EdgeDisplacement, image: np.ndarray, device: torch.device):
    """``(boundary (1, h, w), displacement (2, h, w))`` of a raw RGB image, float32 on ``device``."""
    x = InferenceDataset.normalized(image)[None].to(device)
    edge, disp = model(x)
    return edge.float(), disp.float()


def irn_and_cam(model: EdgeDisplacement, image: np.ndarray, cams, device: torch.device):
    """``(boundary, displacement, cam)`` of one image: IRNet's outputs and its stride-4 CAMs (from
    ``make_cam``) on ``device``, checked to be the same size."""
    edge, disp = boundary_and_displacement(model, image, device)
    cam = torch.from_numpy(cams["cam"]).to(device)
    if cam.shape[1:] != edge.shape[1:]:
        raise ValueError(f"CAM size {tuple(cam.shape[1:])} does not match the boundary map "
                         f"{tuple(edge.shape[1:])} (CAM file from another image size?)")
    return edge, disp, cam


def walk(cfg: Config, scores: Sequence[torch.Tensor], edges: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The random walk of several images in one call; images without channels pass through."""
    idx = [i for i, s in enumerate(scores) if s.shape[0] > 0]
    out = list(scores)
    if idx:
        done = random_walk([scores[i] for i in idx], [edges[i] for i in idx], radius=cfg.walk_radius,
                           beta=cfg.beta, exp_times=cfg.exp_times, backend=cfg.backend)
        for i, r in zip(idx, done):
            out[i] = r
    return out


def upsample_scores(rw: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Stride-4 scores ``(C, h, w)`` upsampled x4 (bilinear, align_corners False), cropped to
    ``size``, divided by their global max (left at 0 when the max is 0: the reference would divide
    by zero)."""
    if rw.shape[0] == 0:
        return rw.new_zeros((0,) + tuple(size))
    up = F.interpolate(rw[None].float(), scale_factor=4, mode="bilinear", align_corners=False)[0]
    up = up[:, :size[0], :size[1]]
    peak = up.max()
    return up / peak if peak > 0 else up


def make_sem_seg(cfg: Config, *, weights=None, progress: bool = True, limit: Optional[int] = None) -> StepSummary:
    """Writes ``<out_dir>/sem_seg/<id>.png`` (and ``rw/<id>.npz`` with ``save_rw_scores``) for
    ``infer_split`` from the CAM files and IRNet (``weights`` or ``<out_dir>/irn.pth``)."""
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    cam_dir, sem_dir, rw_dir = out / "cam", out / "sem_seg", out / "rw"
    with LogContext(out / "make_sem_seg.log", info, progress):
        source = infer_source(cfg)
        model = load_edge_displacement(cfg, weights, info.device)

        def is_done(name: str) -> bool:
            return is_valid_png(sem_dir / f"{name}.png") and (
                not cfg.save_rw_scores or is_valid_npz(rw_dir / f"{name}.npz", ("keys", "rw")))

        def load(name: str):
            return source.load_image(name), load_cam_file(cam_dir / f"{name}.npz")

        def process(items) -> None:
            edges, scores = [], []
            for _, (image, cams) in items:
                edge, _, cam = irn_and_cam(model, image, cams, info.device)
                edges.append(edge)
                scores.append(cam)
            for (name, (image, cams)), rw in zip(items, walk(cfg, scores, edges)):
                if cfg.save_rw_scores:
                    save_npz(rw_dir / f"{name}.npz", {"keys": cams["keys"], "rw": rw.cpu().numpy().astype(np.float16)})
                up = upsample_scores(rw, image.shape[:2])
                save_label_png(sem_dir / f"{name}.png", cam_to_label(up.cpu().numpy(), cams["keys"],
                                                                      cfg.sem_seg_bg_thres))

        return run_images("make_sem_seg", source.ids, sem_dir, info, is_done=is_done, load=load, process=process,
                          progress=progress, num_workers=cfg.num_workers, chunk=cfg.walk_batch,
                          limit=limit, upstream=("make_cam",))
