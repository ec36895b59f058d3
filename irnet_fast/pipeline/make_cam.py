"""``make_cam``: multi-scale class activation maps of every image (docs/algorithm.md, "Training").

Per image, ``<out_dir>/cam/<id>.npz`` with
  - ``keys``  int64 (K,): the image's classes (0-based, background excluded);
  - ``cam``   float32 (K, h, w): the sum over scales of the CAMs (image + flip) resized to the
    stride-4 size ``h, w = (H - 1) // 4 + 1, (W - 1) // 4 + 1``, each divided by its max + 1e-5;
  - ``high_res`` float32 (K, H, W): the same at the stride-16-rounded full size, cropped to H, W.
Scales are resized with PIL bicubic (``round(H * s) x round(W * s)``), as the reference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._io import is_valid_npz, load_npz, save_npz
from ..data.transforms import hwc_to_chw, normalize, pil_rescale
from ..models import CAMNet
from .config import Config
from .distributed import init_distributed
from .common import LogContext, StepSummary, inference_model, infer_source, run_images

__all__ = ["make_cam", "compute_cams", "load_cam_file", "strided_size", "CAM_KEYS"]

CAM_KEYS = ("keys", "cam", "high_res")


def strided_size(height: int, width: int, stride: int = 4):
    """``((H - 1) // stride + 1, (W - 1) // stride + 1)``: the size of a stride-``stride`` map."""
    return (height - 1) // stride + 1, (width - 1) // stride + 1


@torch.no_grad()
def compute_cams(model: CAMNet, image: np.ndarray, label: np.ndarray, scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
                 device: torch.device = torch.device("cpu")) -> Dict[str, np.ndarray]:
    """The ``make_cam`` arrays (module docstring) of one raw RGB image ``uint8 (H, W, 3)``."""
    height, width = image.shape[:2]
    keys = np.nonzero(np.asarray(label) > 0)[0].astype(np.int64)
    low_size = strided_size(height, width, 4)
    up_size = (-(-height // 16) * 16, -(-width // 16) * 16)
    cam = torch.zeros((len(keys),) + low_size, device=device)
    high = torch.zeros((len(keys),) + up_size, device=device)
    if len(keys):
        idx = torch.from_numpy(keys).to(device)
        for scale in scales:
            scaled = image if scale == 1.0 else pil_rescale(image, scale, order=3)
            x = torch.from_numpy(np.ascontiguousarray(hwc_to_chw(normalize(scaled))))[None].to(device)
            maps = model.cam(x).index_select(0, idx)[None]  # (1, K, h16, w16)
            cam += F.interpolate(maps, low_size, mode="bilinear", align_corners=False)[0]
            high += F.interpolate(maps, up_size, mode="bilinear", align_corners=False)[0]
    high = high[:, :height, :width]
    cam /= F.adaptive_max_pool2d(cam, (1, 1)) + 1e-5 if len(keys) else 1.0
    high /= F.adaptive_max_pool2d(high, (1, 1)) + 1e-5 if len(keys) else 1.0
    return {"keys": keys, "cam": cam.float().cpu().numpy(), "high_res": high.float().cpu().numpy()}


def load_cam_file(path, allow_pickle: bool = False) -> Dict[str, np.ndarray]:
    """``keys``, ``cam``, ``high_res`` of a ``make_cam`` output.

    ``.npz`` files are ours. A ``.npy`` file is the reference's pickled dict and is read only with
    ``allow_pickle=True`` (unpickling runs code from the file: only for files you trust).
    """
    path = Path(path)
    if path.suffix == ".npy":
        if not allow_pickle:
            raise ValueError(f"{path} is a pickled .npy CAM file of the reference implementation; pass "
                             f"allow_pickle=True to read it (only for files you trust)")
        data = np.load(path, allow_pickle=True).item()
        out = {"keys": np.asarray(data["keys"], np.int64)}
        for key in ("cam", "high_res"):
            if key in data:
                value = data[key]
                out[key] = value.numpy() if torch.is_tensor(value) else np.asarray(value)
        return out
    return load_npz(path, CAM_KEYS)


def make_cam(cfg: Config, *, weights=None, progress: bool = True, limit: Optional[int] = None) -> StepSummary:
    """Writes ``<out_dir>/cam/<id>.npz`` for the images of ``infer_split`` and ``irn_split``.

    Args:
        weights: CAM weights (default ``<out_dir>/cam.pth``).
        limit: at most this many new images in this call (resume does the rest).
    Images whose file exists and is valid are skipped; sharded by rank under torchrun.
    """
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    cam_dir = out / "cam"
    with LogContext(out / "make_cam.log", info, progress):
        source = infer_source(cfg, with_irn_split=True)
        model = inference_model(lambda: CAMNet(cfg.backbone, source.num_classes),
                                Path(weights) if weights else out / "cam.pth", "CAM", info.device)

        def load(name: str):
            return source.load_image(name), np.asarray(source.label(name), np.float32)

        def process(items) -> None:
            for name, (image, label) in items:
                save_npz(cam_dir / f"{name}.npz", compute_cams(model, image, label, cfg.cam_scales, info.device))

        return run_images("make_cam", source.ids, cam_dir, info, is_done=lambda n: is_valid_npz(cam_dir / f"{n}.npz", CAM_KEYS),
                          load=load, process=process, progress=progress, num_workers=cfg.num_workers, limit=limit)
