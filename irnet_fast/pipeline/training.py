"""The training loop that CAM, IRNet and Mask R-CNN training share (:func:`fit`) and the final weights.

One process or torchrun (DDP); a checkpoint after every epoch, which ``resume`` continues from.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._io import atomic_write_json, remove_stale_temporaries
from ..errors import InputRuntimeError
from .checkpoint import PolySchedule, atomic_save, build_sgd, load_checkpoint, save_checkpoint, set_rng_state
from .common import Progress
from .config import Config
from .distributed import DistInfo, all_reduce_mean, barrier, make_train_loader

__all__ = ["fit", "save_weights"]

logger = logging.getLogger("irnet_fast.pipeline")


def _freeze_unlisted(model: nn.Module, groups: Sequence[Sequence[nn.Parameter]]) -> None:
    """``requires_grad=False`` on every parameter outside the optimiser groups (DDP then needs
    no ``find_unused_parameters``; those parameters never receive gradients anyway)."""
    listed = {id(p) for g in groups for p in g}
    for p in model.parameters():
        if id(p) not in listed:
            p.requires_grad_(False)


def fit(*, name: str, cfg: Config, info: DistInfo, model: nn.Module,
        groups: Sequence[Tuple[Sequence[nn.Parameter], float]], weight_decay: float, dataset,
        global_batch: int, num_epochs: int, step_fn: Callable[[nn.Module, dict], Dict[str, torch.Tensor]],
        resume: bool, progress: bool, stop_after: Optional[int], collate_fn: Optional[Callable] = None,
        warmup_steps: int = 0, warmup_factor: float = 1.0) -> Tuple[nn.Module, bool]:
    """The training loop shared by CAM, IRNet and Mask R-CNN. Returns ``(model, finished)``.

    ``step_fn(wrapped_model, batch)`` returns the loss terms of one iteration (already scaled for
    DDP), ``"total"`` being the one to minimise. Checkpoint ``<out_dir>/<name>_checkpoint.pt``
    after every epoch (main process); ``resume`` continues from it. ``collate_fn`` makes the
    batches (default: stacking); ``warmup_steps`` / ``warmup_factor``: the schedule's linear warm-up
    (:class:`~.checkpoint.PolySchedule`).
    """
    out_dir = Path(cfg.out_dir)
    ckpt_path = out_dir / f"{name}_checkpoint.pt"
    remove_stale_temporaries(out_dir)
    device = info.device
    _freeze_unlisted(model, [g for g, _ in groups])
    model.to(device)
    optimizer = build_sgd(groups, weight_decay, cfg.momentum)
    loader = make_train_loader(dataset, global_batch, info, cfg.seed, cfg.num_workers,
                               what=f"{name}_batch_size", collate_fn=collate_fn)
    steps_per_epoch = len(loader)
    schedule = PolySchedule(optimizer, steps_per_epoch * num_epochs, cfg.poly_power, warmup_steps=warmup_steps,
                            warmup_factor=warmup_factor)
    start_epoch, history = 0, []
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        set_rng_state(state["rng"])
        logger.info("%s: resumed from %s after epoch %d/%d (step %d)", name, ckpt_path, start_epoch,
                    num_epochs, schedule.step)
    elif resume:
        logger.info("%s: no checkpoint at %s, starting from scratch", name, ckpt_path)
    if start_epoch == 0:
        logger.info("%s: %d images, global batch %d (%d per process x %d), %d epochs, %d iterations, "
                    "lrs %s, momentum %g, weight decay %g, device %s", name, len(dataset), global_batch,
                    global_batch // info.world_size, info.world_size, num_epochs, schedule.max_step,
                    [lr for _, lr in groups], cfg.momentum, weight_decay, device)

    wrapped: nn.Module = model
    if info.distributed:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          broadcast_buffers=False)
    wrapped.train()
    end_epoch = num_epochs if stop_after is None else min(num_epochs, start_epoch + int(stop_after))
    for epoch in range(start_epoch, end_epoch):
        loader.sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        bar = Progress(progress and info.is_main, f"{name} epoch {epoch + 1}/{num_epochs}", steps_per_epoch)
        sums: Dict[str, float] = {}
        t0 = time.time()
        for it, batch in enumerate(loader):
            lrs = schedule.apply()
            terms = step_fn(wrapped, batch)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            schedule.advance()
            keys = sorted(terms)
            values = all_reduce_mean(torch.stack([terms[k].detach().float() for k in keys]), info).tolist()
            if not math.isfinite(values[keys.index("total")]):
                raise InputRuntimeError(f"{name}: the loss is not finite at epoch {epoch + 1} iteration {it + 1} "
                                        f"(the training diverged: lower the learning rate or lengthen the "
                                        f"warm-up); {ckpt_path.name} keeps the last finished epoch")
            for k, v in zip(keys, values):
                sums[k] = sums.get(k, 0.0) + v
            text = " ".join(f"{k} {v:.4f}" for k, v in zip(keys, values) if k != "total")
            text = f"loss {values[keys.index('total')]:.4f} {text} lr {lrs[0]:.3g}".rstrip()
            bar.update(it + 1, text)
            if cfg.log_interval > 0 and ((it + 1) % cfg.log_interval == 0):
                logger.info("%s epoch %d iter %d/%d step %d: %s", name, epoch + 1, it + 1, steps_per_epoch,
                            schedule.step, text)
        bar.close()
        means = {k: v / max(steps_per_epoch, 1) for k, v in sums.items()}
        history.append({"epoch": epoch + 1, **means})
        logger.info("%s epoch %d/%d done in %.1fs: %s", name, epoch + 1, num_epochs, time.time() - t0,
                    " ".join(f"{k} {v:.4f}" for k, v in sorted(means.items())))
        if info.is_main:
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, schedule=schedule, epoch=epoch + 1,
                            history=history, config=cfg.to_dict())
            atomic_write_json(out_dir / f"{name}_history.json", history)
        barrier(info)
    model.eval()
    return model, end_epoch >= num_epochs


def save_weights(model: nn.Module, path: Path, info: DistInfo) -> Path:
    """Final weights (``state_dict``), written atomically by the main process."""
    if info.is_main:
        atomic_save(model.state_dict(), path)
        logger.info("weights written to %s", path)
    barrier(info)
    return path
