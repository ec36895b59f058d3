"""What every pipeline step shares: the image source, logging, progress, and the per-image loop.

:func:`run_images` is the loop of the inference steps (make_cam, cam_to_ir_label, make_sem_seg,
make_ins_seg): it shards the image list by rank (torchrun), skips images whose output exists
and is valid (resume), loads inputs in DataLoader worker processes, processes images in chunks
(one chunk failing is retried image by image so one bad image costs only itself), and ends with
a :class:`StepSummary` (done, skipped, failed with reasons) that is logged and written to
``<out_dir>/<step>.summary.json``.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from .._io import atomic_write_json, remove_stale_temporaries
from ..errors import InputError, InputValueError
from .checkpoint import load_weights
from .checkpoint import read_state_dict as load_state_dict_file
from .config import Config
from . import steps
from .distributed import DistInfo

__all__ = ["build_source", "check_held_out", "held_out_source", "LogContext", "Progress", "StepSummary", "StepFailed", "run_images", "step_ids", "infer_source", "MergedSource", "inference_model",
           "load_state_dict_file", "is_valid_weights", "failed_images"]

logger = logging.getLogger("irnet_fast.pipeline")


def build_source(cfg: Config, split: str):
    """The image source of ``cfg.dataset`` (``VOC12`` or ``Cityscapes`` of ``split``, or ``COCO2014``)."""
    if cfg.dataset == "voc12":
        from ..data.voc import VOC12
        return VOC12(cfg.dataset_root, split, cfg.labels_file)
    if cfg.dataset == "coco":
        from ..data.coco import COCO2014
        if not cfg.coco_ann_file:
            raise InputValueError("dataset 'coco' needs coco_ann_file (the instances JSON of dataset_root)")
        return COCO2014(cfg.dataset_root, cfg.coco_ann_file, drop_unlabeled=True)
    if cfg.dataset == "cityscapes":
        from ..data.cityscapes import Cityscapes
        labels = cfg.labels_file or (Path(cfg.out_dir) / "cityscapes_labels" /
                                     f"{split}_min{cfg.cityscapes_min_pixels}.json")
        return Cityscapes(cfg.dataset_root, split, labels, min_pixels=cfg.cityscapes_min_pixels)
    raise InputValueError(f"unknown dataset {cfg.dataset!r}: expected 'voc12' (also for the synthetic data), "
                          "'coco' or 'cityscapes'")


def check_held_out(cfg: Config, split: str, step: str) -> None:
    """The cheap part of :func:`held_out_source` (no image list read), for a training step to
    refuse early: the held-out split (or COCO annotation file) is not the training one."""
    if cfg.dataset == "coco":
        if cfg.heldout_coco_ann_file and cfg.coco_ann_file and \
                Path(cfg.heldout_coco_ann_file).resolve() == Path(cfg.coco_ann_file).resolve():
            raise InputValueError(f"{step}: heldout_coco_ann_file {cfg.heldout_coco_ann_file} is coco_ann_file, the "
                                  f"annotations of the training images: evaluate on held-out images (e.g. val2014)")
    elif split == cfg.infer_split:
        raise InputValueError(f"{step}: the held-out split {split!r} is the training split (infer_split): "
                              f"evaluate on another split, e.g. val")


def held_out_source(cfg: Config, split: str, step: str):
    """The held-out images a final model is evaluated on, checked to share no image with the
    training split ``cfg.infer_split``: the VOC list ``split`` of ``dataset_root``; for COCO the
    images of ``heldout_dataset_root`` with ``heldout_coco_ann_file`` (val2014), ``split`` unused."""
    check_held_out(cfg, split, step)
    if cfg.dataset == "coco":
        if not (cfg.heldout_dataset_root and cfg.heldout_coco_ann_file):
            raise InputValueError(f"{step} on COCO needs heldout_dataset_root and heldout_coco_ann_file (the "
                                  f"held-out images, e.g. val2014, and their instances JSON)")
        source = build_source(cfg.override(dataset_root=cfg.heldout_dataset_root,
                                           coco_ann_file=cfg.heldout_coco_ann_file), split)
    else:
        source = build_source(cfg, split)
    if not source.ids:
        raise InputValueError(f"{step}: the held-out split {split!r} has no images")
    shared = set(source.ids) & set(build_source(cfg, cfg.infer_split).ids)
    if shared:
        raise InputValueError(f"{step}: the held-out images share {len(shared)} images with the training split "
                              f"{cfg.infer_split!r} (e.g. {sorted(shared)[0]}): not held out")
    return source


def step_ids(source, *more_sources) -> List[str]:
    """Image ids of one or several sources, in order, without repeats."""
    seen, out = set(), []
    for src in (source,) + more_sources:
        for name in src.ids:
            if name not in seen:
                seen.add(name)
                out.append(name)
    return out


def infer_source(cfg: Config, with_irn_split: bool = False):
    """The source of ``cfg.infer_split``; with ``with_irn_split`` also the images of ``cfg.irn_split``
    (the CAM and IR-label steps must cover IRNet's training images)."""
    source = build_source(cfg, cfg.infer_split)
    if with_irn_split and cfg.irn_split != cfg.infer_split:
        return MergedSource([source, build_source(cfg, cfg.irn_split)])
    return source


class MergedSource:
    """Several lists of one dataset seen as one (labels looked up in the list holding the id)."""

    def __init__(self, sources):
        self.sources = sources
        self.num_classes = sources[0].num_classes
        self.class_names = sources[0].class_names
        self.has_background = getattr(sources[0], "has_background", True)
        self.instance_classes = getattr(sources[0], "instance_classes", None)
        self.ids = step_ids(*sources)
        self._owner = {}
        for src in reversed(sources):
            for name in src.ids:
                self._owner[name] = src

    def load_image(self, name):
        return self._owner[name].load_image(name)

    def label(self, name):
        return self._owner[name].label(name)


class LogContext:
    """File log (main process only) and, with ``progress``, console lines on stderr."""

    def __init__(self, path: Path, info: DistInfo, progress: bool):
        self.handlers: List[logging.Handler] = []
        self.old_level, self.old_propagate = logger.level, logger.propagate
        if info.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(path, mode="a", encoding="utf-8")
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.handlers.append(fh)
            if progress:
                sh = logging.StreamHandler(sys.stderr)
                sh.setFormatter(logging.Formatter("%(message)s"))
                self.handlers.append(sh)
        for h in self.handlers:
            logger.addHandler(h)
        if self.handlers:
            logger.setLevel(logging.INFO)
            logger.propagate = not progress  # our console handler replaces the root logger's

    def __enter__(self) -> "LogContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for h in self.handlers:
            logger.removeHandler(h)
            h.close()
        self.handlers = []
        logger.setLevel(self.old_level)
        logger.propagate = self.old_propagate


class Progress:
    """Progress of a loop: a tqdm bar with rate and ETA on a terminal; elsewhere (a log file, CI, a
    pipe) an INFO line every ``interval`` seconds and at the end, on the pipeline logger."""

    def __init__(self, enabled: bool, name: str, total: int, *, interval: float = 30.0):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.name, self.total, self.interval = name, total, interval
        self.start = self.last = time.time()
        self.done, self.text = 0, ""
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=name, file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(self, done: int, text: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if text:
                self.bar.set_postfix_str(text, refresh=False)
            return
        self.done, self.text = done, text
        now = time.time()
        if now - self.last >= self.interval:
            self.last = now
            self._log(now)

    def _log(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = "?" if eta != eta else time.strftime("%H:%M:%S", time.gmtime(eta))
        logger.info("%s %d/%d (%.2f it/s, elapsed %s, ETA %s)%s", self.name, self.done, self.total, rate,
                    time.strftime("%H:%M:%S", time.gmtime(elapsed)), eta_text,
                    f" {self.text}" if self.text else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done and self.last != self.start and self.done != self.total:
            self._log(time.time())


@dataclass
class StepSummary:
    """Outcome of a per-image step over all processes."""

    step: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    out_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        text = (f"{self.step}: {self.total} images, {self.done} done, {self.skipped} skipped (output already "
                f"there), {len(self.failed)} failed, {self.seconds:.1f}s")
        for name, reason in list(self.failed.items())[:10]:
            text += f"\n  failed {name}: {reason}"
        if len(self.failed) > 10:
            text += f"\n  ... {len(self.failed) - 10} more in {self.step}.summary.json"
        return text


class StepFailed(InputError, RuntimeError):
    """Every image of a step failed (a systematic problem: missing inputs, wrong weights...)."""

    def __init__(self, summary: StepSummary):
        super().__init__(summary.line())
        self.summary = summary


class _Loading(Dataset):
    """Runs ``load(name)`` in DataLoader workers; errors travel back as values, not crashes."""

    def __init__(self, names: Sequence[str], load: Callable[[str], Any]):
        self.names, self.load = list(names), load

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Tuple[str, Any, Optional[str]]:
        name = self.names[index]
        try:
            return name, self.load(name), None
        except Exception as exc:  # reported per image by the main loop
            return name, None, f"{type(exc).__name__}: {exc}"


def _first(batch):
    return batch[0]


def failed_images(out_root: Path, step: str) -> Dict[str, str]:
    """The images that ``step`` reported as failed in its last run (``<out_root>/<step>.summary.json``),
    with the reasons; empty when it has no summary or none failed."""
    path = Path(out_root) / f"{step}.summary.json"
    try:
        with open(path, encoding="utf-8") as fh:
            failed = json.load(fh).get("failed", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {}


def run_images(step: str, names: Sequence[str], out_dir: Path, info: DistInfo, *,
               is_done: Callable[[str], bool], load: Callable[[str], Any],
               process: Callable[[List[Tuple[str, Any]]], None], progress: bool = True, num_workers: int = 0,
               chunk: int = 1, limit: Optional[int] = None) -> StepSummary:
    """The per-image loop of a step (module docstring).

    Args:
        names: every image id of the step (all ranks); this process takes ``names[rank::world]``.
        is_done(name): True when the image's output exists and is valid (then it is skipped).
        load(name): reads the inputs of one image (in a worker process when ``num_workers > 0``).
        process([(name, loaded), ...]): does the work of a chunk and writes its outputs atomically.
        chunk: images per ``process`` call (batching across images).
        limit: process at most this many images in this call (the rest stays for a later run).

    An image that fails here and that a step producing its inputs (:func:`.steps.producers`)
    reported as failed is listed with that step's reason, so a failure is carried through the
    pipeline under its cause. Such images are still attempted (the input may have been repaired).

    Returns the summary over all processes. Raises :class:`StepFailed` when images were attempted
    and every one failed.
    """
    start = time.time()
    out_root = Path(out_dir).parent
    for folder in (out_root, Path(out_dir)):
        remove_stale_temporaries(folder)
    earlier: Dict[str, str] = {}
    for producer in steps.producers(step):
        for name, reason in failed_images(out_root, producer).items():
            earlier.setdefault(name, f"failed in {producer}: {reason}")
    mine = list(names)[info.rank::info.world_size]
    pending = [n for n in mine if not is_done(n)]
    skipped = len(mine) - len(pending)
    if limit is not None:
        pending = pending[:max(0, int(limit))]
    failed: Dict[str, str] = {}
    done = 0
    bar = Progress(progress and info.is_main, step, len(pending))
    loader = DataLoader(_Loading(pending, load), batch_size=1, collate_fn=_first, shuffle=False,
                        num_workers=int(num_workers) if len(pending) > 1 else 0)

    def run(items: List[Tuple[str, Any]]) -> None:
        nonlocal done
        if not items:
            return
        try:
            process(items)
            done += len(items)
            return
        except Exception as exc:
            if len(items) == 1:
                failed[items[0][0]] = earlier.get(items[0][0], f"{type(exc).__name__}: {exc}")
                logger.warning("%s: %s failed: %s\n%s", step, items[0][0], failed[items[0][0]],
                               traceback.format_exc(limit=3))
                return
        for item in items:  # isolate the image that broke the chunk
            run([item])

    buffer: List[Tuple[str, Any]] = []
    seen = 0
    for name, loaded, error in loader:
        seen += 1
        if error is not None:
            failed[name] = earlier.get(name, error)
            logger.warning("%s: %s failed to load: %s", step, name, error)
        else:
            buffer.append((name, loaded))
        if len(buffer) >= max(1, int(chunk)):
            run(buffer)
            buffer = []
        bar.update(seen, f"{len(failed)} failed" if failed else "")
    run(buffer)
    bar.close()

    summary = StepSummary(step, total=len(mine), done=done, skipped=skipped, failed=failed,
                          seconds=time.time() - start, out_dir=str(out_dir))
    if info.distributed and dist.is_initialized():
        parts: List[Optional[StepSummary]] = [None] * info.world_size
        dist.all_gather_object(parts, summary)
        summary = StepSummary(step, total=sum(p.total for p in parts), done=sum(p.done for p in parts),
                              skipped=sum(p.skipped for p in parts),
                              failed={k: v for p in parts for k, v in p.failed.items()},
                              seconds=max(p.seconds for p in parts), out_dir=str(out_dir))
    if info.is_main:
        atomic_write_json(Path(out_dir).parent / f"{step}.summary.json", summary.to_dict())
        logger.info("%s", summary.line())
    attempted = summary.total - summary.skipped
    if attempted > 0 and len(summary.failed) >= attempted and summary.done == 0:
        raise StepFailed(summary)
    return summary


def inference_model(factory: Callable[[], torch.nn.Module], weights: Path, what: str,
                    device: torch.device) -> torch.nn.Module:
    """``factory()`` (random init, its no-pretrained-weights warning silenced) loaded with the trained
    ``weights`` (irnet_fast's or the reference's layout: :func:`.checkpoint.load_weights`), in eval
    mode on ``device``."""
    from ..models.backbone import PretrainedWeightsWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        model = factory()
    load_weights(model, weights, what)
    return model.eval().to(device)


def is_valid_weights(path: Path) -> bool:
    """True when ``path`` holds a readable state dict of tensors (a truncated or damaged file is
    not taken as a finished training)."""
    try:
        state = load_state_dict_file(path, "model")
    except (OSError, RuntimeError):
        return False
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())
