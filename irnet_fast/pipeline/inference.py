"""IRNet inference and the random walk as the label steps use them (make_sem_seg, make_ins_seg,
the evaluation's threshold sweep, the panels and the label-generation benchmarks)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import pil_rescale
from ..data.voc import InferenceDataset
from ..models import IRNet
from ..models.irn import EdgeDisplacement
from ..ops import random_walk
from .common import inference_model
from .config import Config

__all__ = ["load_edge_displacement", "boundary_and_displacement", "irn_and_cam", "walk", "upsampled",
           "upsample_scores", "channel_chunks"]


def load_edge_displacement(cfg: Config, weights, device: torch.device) -> EdgeDisplacement:
    """The trained IRNet (``weights`` or ``<out_dir>/irn.pth``) in its inference wrapper, padding
    as ``cfg.irn_pad_to``."""
    path = Path(weights) if weights else Path(cfg.out_dir) / "irn.pth"
    model = inference_model(lambda: IRNet(cfg.backbone), path, "IRNet", device)
    return EdgeDisplacement(model, pad_to=cfg.irn_pad_to).eval()


@torch.no_grad()
def boundary_and_displacement(model: EdgeDisplacement, image: np.ndarray, device: torch.device):
    """``(boundary (1, h, w), displacement (2, h, w))`` of a raw RGB image, float32 on ``device``."""
    x = InferenceDataset.normalized(image)[None].to(device)
    edge, disp = model(x)
    return edge.float(), disp.float()


def irn_and_cam(model: EdgeDisplacement, image: np.ndarray, cams, device: torch.device, scale: float = 1.0):
    """``(boundary, displacement, cam)`` of one image: IRNet's outputs and its stride-4 CAMs (from
    ``make_cam``) on ``device``, checked to be the same size. With ``scale`` != 1 IRNet sees the
    image rescaled by ``scale`` (PIL bicubic, ``round(H * s) x round(W * s)``, as make_cam's scales)
    and the CAMs are resized (bilinear) to its maps."""
    if scale != 1.0:
        edge, disp = boundary_and_displacement(model, pil_rescale(image, scale, order=3), device)
        cam = torch.from_numpy(cams["cam"]).to(device)
        if cam.shape[0] > 0:
            cam = F.interpolate(cam[None], edge.shape[1:], mode="bilinear", align_corners=False)[0]
        else:
            cam = cam.new_zeros((0,) + tuple(edge.shape[1:]))
        return edge, disp, cam
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


def upsampled(rw: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Stride-4 scores ``(C, h, w)`` upsampled x4 (bilinear, align_corners False), cropped to ``size``."""
    up = F.interpolate(rw[None].float(), scale_factor=4, mode="bilinear", align_corners=False)[0]
    return up[:, :size[0], :size[1]]


def upsample_scores(rw: torch.Tensor, size: Tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """:func:`upsampled`, divided by the global max (left at 0 when the max is 0: the reference
    would divide by zero). ``scale`` != 1: ``rw`` belongs to the image rescaled by ``scale``
    (:func:`irn_and_cam`); upsampled to that size, then resized (bilinear) to ``size``."""
    if rw.shape[0] == 0:
        return rw.new_zeros((0,) + tuple(size))
    if scale != 1.0:
        scaled = (int(round(size[0] * scale)), int(round(size[1] * scale)))
        up = F.interpolate(upsampled(rw, scaled)[None], tuple(size), mode="bilinear", align_corners=False)[0]
    else:
        up = upsampled(rw, size)
    peak = up.max()
    return up / peak if peak > 0 else up


# Full-resolution score planes held at once by the chunked steps (a 2048x1024 plane is 8 MB).
CHUNK_BYTES = 64 << 20


def channel_chunks(channels: int, size: Tuple[int, int], chunk_bytes: Optional[int] = None) -> List[slice]:
    """Slices of ``channels`` whose float32 planes of ``size`` fit ``chunk_bytes`` (at least one
    channel each): the instance step of a Cityscapes image has hundreds of channels, and all of
    them upsampled at once would take gigabytes. ``chunk_bytes``: default :data:`CHUNK_BYTES`."""
    step = max(1, int(CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // (4 * max(1, size[0] * size[1])))
    return [slice(start, min(channels, start + step)) for start in range(0, channels, step)]
