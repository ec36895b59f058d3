"""The whole method as a sequence of steps, or any range of it: :func:`run_pipeline`.

Steps in order (each reads the files of the ones before it from ``out_dir``):
train_cam, make_cam, eval_cam, cam_to_ir_label, eval_ir_label, train_irn, make_sem_seg,
eval_sem_seg, make_ins_seg, eval_ins_seg; ``tune`` and ``export_coco`` run only when asked for.
A finished step is not redone: training steps whose weights exist are skipped (an interrupted
training resumes from its checkpoint), per-image steps skip images whose outputs exist.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .cam_to_ir_label import cam_to_ir_label
from .config import Config
from .evaluate import eval_cam, eval_ins_seg, eval_ir_label, eval_sem_seg, export_coco, tune
from .make_cam import make_cam
from .make_ins_seg import make_ins_seg
from .make_sem_seg import make_sem_seg
from .runner import is_valid_weights
from .train_cam import train_cam
from .train_irn import train_irn

__all__ = ["STEPS", "EXTRA_STEPS", "run_pipeline", "select_steps", "run_step"]

logger = logging.getLogger("irnet_fast.pipeline")

STEPS = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "eval_ir_label", "train_irn", "make_sem_seg",
         "eval_sem_seg", "make_ins_seg", "eval_ins_seg")
EXTRA_STEPS = ("tune", "export_coco")


def select_steps(steps: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 stop: Optional[str] = None) -> List[str]:
    """``steps`` as given (any of STEPS + EXTRA_STEPS), or STEPS from ``start`` to ``stop`` inclusive."""
    known = STEPS + EXTRA_STEPS
    for name in list(steps or []) + [s for s in (start, stop) if s]:
        if name.replace("-", "_") not in known:
            raise ValueError(f"unknown step {name!r}: expected one of {', '.join(known)}")
    if steps:
        if start or stop:
            raise ValueError("give either a list of steps or a start/stop range, not both")
        return [s.replace("-", "_") for s in steps]
    order = list(STEPS)
    if any(s and s.replace("-", "_") in EXTRA_STEPS for s in (start, stop)):
        raise ValueError(f"--from/--to must be one of {', '.join(STEPS)} ({', '.join(EXTRA_STEPS)} run only "
                         f"when listed with --steps)")
    first = order.index(start.replace("-", "_")) if start else 0
    last = order.index(stop.replace("-", "_")) if stop else len(order) - 1
    if first > last:
        raise ValueError(f"start step {start!r} comes after stop step {stop!r}")
    return order[first:last + 1]


def run_step(name: str, cfg: Config, *, resume: bool = True, progress: bool = True):
    """Runs one step; returns its result (a summary, a metrics dict or a weights path)."""
    out = Path(cfg.out_dir)
    name = name.replace("-", "_")
    if name == "train_cam":
        if resume and is_valid_weights(out / "cam.pth"):
            logger.info("train_cam: %s exists, skipped (delete it or resume=False to retrain)", out / "cam.pth")
            return out / "cam.pth"
        return train_cam(cfg, resume=resume, progress=progress)
    if name == "train_irn":
        if resume and is_valid_weights(out / "irn.pth"):
            logger.info("train_irn: %s exists, skipped (delete it or resume=False to retrain)", out / "irn.pth")
            return out / "irn.pth"
        return train_irn(cfg, out / "ir_label", resume=resume, progress=progress)
    per_image: Dict[str, Callable] = {"make_cam": make_cam, "cam_to_ir_label": cam_to_ir_label,
                                      "make_sem_seg": make_sem_seg, "make_ins_seg": make_ins_seg}
    if name in per_image:
        return per_image[name](cfg, progress=progress)
    evals: Dict[str, Callable] = {"eval_cam": eval_cam, "eval_ir_label": eval_ir_label, "eval_sem_seg": eval_sem_seg,
                                  "eval_ins_seg": eval_ins_seg, "tune": tune, "export_coco": export_coco}
    if name in evals:
        return evals[name](cfg)
    raise ValueError(f"unknown step {name!r}: expected one of {', '.join(STEPS + EXTRA_STEPS)}")


def run_pipeline(cfg: Config, steps: Optional[Sequence[str]] = None, *, start: Optional[str] = None,
                 stop: Optional[str] = None, resume: bool = True, progress: bool = True,
                 on_step: Optional[Callable[[str, object, float], None]] = None) -> Dict[str, Dict]:
    """Runs the selected steps in order; returns ``{step: {"result": ..., "seconds": ...}}``.

    ``on_step(name, result, seconds)`` is called after each step (the CLI prints from it).
    """
    results: Dict[str, Dict] = {}
    for name in select_steps(steps, start, stop):
        t0 = time.time()
        result = run_step(name, cfg, resume=resume, progress=progress)
        seconds = time.time() - t0
        results[name] = {"result": result, "seconds": seconds}
        if on_step is not None:
            on_step(name, result, seconds)
    return results
