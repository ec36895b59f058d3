"""``make_sem_seg``: semantic pseudo labels by the random walk (docs/algorithm.md, "Random walk").

Per image: IRNet inference (boundary map at stride 4; with ``sem_seg_scale`` != 1 of the image
rescaled by it, the CAMs then resized to that map), the CAMs ``cam`` of ``make_cam`` propagated by
the random walk (radius ``walk_radius``, ``beta``, ``2 ** exp_times`` steps, several images per
call), upsampled x4 (bilinear), cropped to the image (resized back to it with ``sem_seg_scale``),
divided by the global max, a background channel of ``sem_seg_bg_thres`` put first, argmax, mapped
to class ids (1-based): :func:`irnet_fast.metrics.cam_to_label`, the rule that also scores the CAMs.
Writes ``<out_dir>/sem_seg/<id>.png``; with ``save_rw_scores`` also ``<out_dir>/rw/<id>.npz``
(``keys`` int64, ``rw`` float16 (K, h, w) at stride 4 of the image as IRNet saw it) for
:func:`~.evaluate.tune`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .._io import is_valid_npz, is_valid_png, save_label_png, save_npz
from ..metrics import cam_to_label
from .common import LogContext, StepSummary, infer_source, run_images
from .config import Config
from .distributed import init_distributed
from .inference import irn_and_cam, load_edge_displacement, upsample_scores, walk
from .make_cam import load_cam_file

__all__ = ["make_sem_seg"]


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
                edge, _, cam = irn_and_cam(model, image, cams, info.device, cfg.sem_seg_scale)
                edges.append(edge)
                scores.append(cam)
            for (name, (image, cams)), rw in zip(items, walk(cfg, scores, edges)):
                if cfg.save_rw_scores:
                    save_npz(rw_dir / f"{name}.npz", {"keys": cams["keys"], "rw": rw.cpu().numpy().astype(np.float16)})
                up = upsample_scores(rw, image.shape[:2], cfg.sem_seg_scale)
                save_label_png(sem_dir / f"{name}.png", cam_to_label(up.cpu().numpy(), cams["keys"],
                                                                      cfg.sem_seg_bg_thres))

        return run_images("make_sem_seg", source.ids, sem_dir, info, is_done=is_done, load=load, process=process,
                          progress=progress, num_workers=cfg.num_workers, chunk=cfg.walk_batch,
                          limit=limit)
