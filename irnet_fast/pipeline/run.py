"""The whole method as a sequence of steps, or any range of it: :func:`run_pipeline`.

The steps, their order and their files are the registry :data:`irnet_fast.pipeline.steps.STEPS`;
``tune`` and ``export_coco`` run only when asked for. A finished step is not redone: training
steps whose weights exist are skipped (an interrupted training resumes from its checkpoint),
per-image steps skip images whose outputs exist.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import InputValueError
from . import steps as registry
from .common import is_valid_weights

__all__ = ["STEPS", "EXTRA_STEPS", "run_pipeline", "select_steps", "run_step"]

logger = logging.getLogger("irnet_fast.pipeline")

STEPS = registry.DEFAULT_ORDER
EXTRA_STEPS = registry.EXTRA


def select_steps(steps: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 stop: Optional[str] = None) -> List[str]:
    """``steps`` as given (any registered step), or STEPS from ``start`` to ``stop`` inclusive."""
    chosen = [registry.get(name).name for name in steps or []]
    first, last = (registry.get(s).name if s else None for s in (start, stop))
    if chosen:
        if start or stop:
            raise InputValueError("give either a list of steps or a start/stop range, not both")
        return chosen
    if first in EXTRA_STEPS or last in EXTRA_STEPS:
        raise InputValueError(f"--from/--to must be one of {', '.join(STEPS)} ({', '.join(EXTRA_STEPS)} run only "
                              f"when listed with --steps)")
    i = STEPS.index(first) if first else 0
    j = STEPS.index(last) if last else len(STEPS) - 1
    if i > j:
        raise InputValueError(f"start step {start!r} comes after stop step {stop!r}")
    return list(STEPS[i:j + 1])


def run_step(name: str, cfg, *, resume: bool = True, progress: bool = True, **extra):
    """Runs one step; returns its result (a summary, a metrics dict or a weights path).

    ``extra``: the step's own arguments (:attr:`Step.args <irnet_fast.pipeline.steps.Step.args>`
    ``dest`` names, e.g. ``weights`` or ``thresholds``)."""
    step = registry.get(name)
    unknown = set(extra) - {a.dest for a in step.args}
    if unknown:
        raise InputValueError(f"run_step(): {step.name} expected arguments among "
                              f"{sorted(a.dest for a in step.args)}, got {sorted(unknown)}")
    fn = step.load()
    if step.kind == "train":
        weights = Path(cfg.out_dir) / step.outputs[0]
        if resume and is_valid_weights(weights):
            logger.info("%s: %s exists, skipped (delete it or resume=False to retrain)", step.name, weights)
            return weights
        return fn(cfg, resume=resume, progress=progress, **extra)
    if step.kind == "images":
        return fn(cfg, progress=progress, **extra)
    return fn(cfg, **extra)


def run_pipeline(cfg, steps: Optional[Sequence[str]] = None, *, start: Optional[str] = None,
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
