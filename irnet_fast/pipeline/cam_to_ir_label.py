"""``cam_to_ir_label``: confident foreground / background from the CAMs (docs/algorithm.md, "Training").

Per image, ``<out_dir>/ir_label/<id>.png`` (uint8): 0 confident background, 1..C the class
(1-based), 255 unsure. The CAM file is read and the CRF run in ``num_workers`` worker processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .._io import is_valid_png, save_label_png
from ..crf import CRF_INSTALL_HINT, CRFUnavailableError, crf_available, crf_inference_label
from ..metrics import cam_to_label
from .config import Config
from .distributed import init_distributed
from .make_cam import load_cam_file
from .common import LogContext, StepSummary, infer_source, run_images

__all__ = ["cam_to_ir_label", "ir_label"]


def _confident(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, thres: float, crf: bool) -> np.ndarray:
    """Labels (1-based, 0 background) of argmax over [thres, cams...], refined by the CRF."""
    index = cam_to_label(high_res, np.arange(len(keys)), thres)  # 0 background, k + 1 for channel k
    if crf and len(keys) > 0:
        index = crf_inference_label(image, index, n_labels=len(keys) + 1)
    return np.concatenate([[0], np.asarray(keys, np.int64) + 1])[index]


def ir_label(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, fg_thres: float = 0.30,
             bg_thres: float = 0.05, crf: bool = True) -> np.ndarray:
    """The IR label ``uint8 (H, W)`` of one image from its high-resolution CAMs ``(K, H, W)``.

    Label = the foreground pass (threshold ``fg_thres``); where it says background, 255 (unsure);
    where the background pass (``bg_thres``) says background too, 0.
    """
    high_res = np.asarray(high_res, np.float32)
    if high_res.ndim != 3 or high_res.shape[1:] != image.shape[:2] or len(keys) != high_res.shape[0]:
        raise ValueError(f"ir_label(): high_res expected ({len(keys)}, {image.shape[0]}, {image.shape[1]}) for "
                         f"{len(keys)} keys and image {image.shape[:2]}, got {high_res.shape}")
    fg = _confident(image, high_res, keys, fg_thres, crf)
    bg = _confident(image, high_res, keys, bg_thres, crf)
    out = fg.copy()
    out[fg == 0] = 255
    out[(fg + bg) == 0] = 0
    return out.astype(np.uint8)


def cam_to_ir_label(cfg: Config, *, progress: bool = True, limit: Optional[int] = None) -> StepSummary:
    """Writes ``<out_dir>/ir_label/<id>.png`` for the images of ``infer_split`` and ``irn_split``
    from ``<out_dir>/cam/<id>.npz``. Resumable, sharded by rank, CRF in worker processes."""
    if cfg.crf and not crf_available():
        raise CRFUnavailableError(f"cam_to_ir_label: {CRF_INSTALL_HINT}")
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    cam_dir, label_dir = out / "cam", out / "ir_label"
    with LogContext(out / "cam_to_ir_label.log", info, progress):
        source = infer_source(cfg, with_irn_split=True)

        def load(name: str) -> np.ndarray:  # runs in a worker process: the whole computation
            cams = load_cam_file(cam_dir / f"{name}.npz")
            image = source.load_image(name)
            return ir_label(image, cams["high_res"], cams["keys"], cfg.conf_fg_thres, cfg.conf_bg_thres, cfg.crf)

        def process(items) -> None:
            for name, label in items:
                save_label_png(label_dir / f"{name}.png", label)

        return run_images("cam_to_ir_label", source.ids, label_dir, info,
                          is_done=lambda n: is_valid_png(label_dir / f"{n}.png"), load=load, process=process,
                          progress=progress, num_workers=cfg.num_workers, limit=limit)
