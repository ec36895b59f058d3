"""Optimiser, poly learning-rate schedule, checkpoints (atomic) and RNG states.

Schedule (the reference's ``PolyOptimizer``): before iteration ``step`` (0-based) every
parameter group gets ``lr = initial_lr * (1 - step / max_step) ** power`` (power 0.9), so the
first iteration uses the full rate and the rate never reaches 0 within ``max_step``
iterations; past ``max_step`` the rate is 0. An optional linear warm-up (Detectron's, for Mask
R-CNN; none for CAM and IRNet) multiplies that rate by ``f + (1 - f) * step / warmup_steps``
during the first ``warmup_steps`` iterations, ``f`` being ``warmup_factor``. The optimiser is plain ``torch.optim.SGD`` with
momentum and weight decay on every group; the schedule is applied by hand per iteration
(:class:`PolySchedule`), so the checkpoint only needs its step.

Checkpoints are written by :func:`save_checkpoint` to a temporary file in the same folder and
renamed over the target (``os.replace``), so a killed run never leaves half a file. They hold
only tensors and plain Python values (RNG states included) and load with
``torch.load(weights_only=True)``.

Trained weights (:func:`load_weights`, used by every step that reads ``cam.pth`` / ``irn.pth`` or
``--weights``) are read in either layout: irnet_fast's (``state_dict()`` of
:class:`~irnet_fast.models.CAMNet` / :class:`~irnet_fast.models.IRNet`, or a training
checkpoint) or the reference implementation's (``res50_cam.pth``, ``res50_irn.pth``, converted by
:mod:`irnet_fast.models.reference_format`). :func:`export_reference_weights` writes the other way.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np
import torch

from .._io import atomic_open
from ..errors import InputFileNotFoundError, InputRuntimeError
from ..models.backbone import _short
from ..models.reference_format import (ReferenceFormatError, from_reference_state_dict,
                                       is_reference_state_dict, to_reference_state_dict)

__all__ = ["poly_lr", "PolySchedule", "build_sgd", "atomic_save", "save_checkpoint", "load_checkpoint",
           "get_rng_state", "set_rng_state", "read_state_dict", "load_weights", "export_reference_weights"]

PathLike = Union[str, "os.PathLike[str]"]


def poly_lr(base_lr: float, step: int, max_step: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step / max_step) ** power`` (0 from ``max_step`` on)."""
    if max_step <= 0:
        raise ValueError(f"max_step must be > 0, got {max_step}")
    frac = 1.0 - float(step) / float(max_step)
    return float(base_lr) * (frac ** float(power)) if frac > 0 else 0.0


class PolySchedule:
    """Per-iteration poly schedule of an optimiser's groups (``group['initial_lr']`` each).

    Call :meth:`apply` before ``optimizer.step()`` of every iteration, then :meth:`advance`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_step: int, power: float = 0.9, step: int = 0,
                 warmup_steps: int = 0, warmup_factor: float = 1.0):
        if max_step <= 0:
            raise ValueError(f"max_step must be > 0 (no complete batch?), got {max_step}")
        self.optimizer, self.max_step, self.power, self.step = optimizer, int(max_step), float(power), int(step)
        self.warmup_steps, self.warmup_factor = int(warmup_steps), float(warmup_factor)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def lrs(self) -> List[float]:
        warm = 1.0
        if self.step < self.warmup_steps:
            warm = self.warmup_factor + (1.0 - self.warmup_factor) * self.step / self.warmup_steps
        return [warm * poly_lr(g["initial_lr"], self.step, self.max_step, self.power)
                for g in self.optimizer.param_groups]

    def apply(self) -> List[float]:
        lrs = self.lrs()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs

    def advance(self) -> None:
        self.step += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "max_step": self.max_step, "power": self.power}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state["max_step"]) != self.max_step:
            raise ValueError(f"checkpoint schedule has max_step {state['max_step']}, this run {self.max_step}: "
                             f"the dataset size, batch size or number of epochs changed since the checkpoint")
        self.step, self.power = int(state["step"]), float(state["power"])


def build_sgd(groups: Sequence[Tuple[Iterable[torch.nn.Parameter], float]], weight_decay: float,
              momentum: float = 0.9) -> torch.optim.SGD:
    """``SGD`` over ``[(params, lr), ...]``, the same momentum and weight decay for every group."""
    param_groups = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        if params:
            param_groups.append({"params": params, "lr": float(lr), "initial_lr": float(lr),
                                 "weight_decay": float(weight_decay)})
    if not param_groups:
        raise ValueError("no trainable parameters")
    return torch.optim.SGD(param_groups, lr=param_groups[0]["lr"], momentum=float(momentum),
                           weight_decay=float(weight_decay))


# --- RNG states (as plain tensors / tuples, loadable with weights_only=True) -------------------

def get_rng_state() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(np.asarray(keys, np.int64)), int(pos), int(has_gauss), float(cached))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# --- files ------------------------------------------------------------------------------------

def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` to a temporary file, fsync, then ``os.replace`` onto ``path``."""
    with atomic_open(path, fsync=True) as fh:
        torch.save(obj, fh)
    return Path(path)


def save_checkpoint(path: PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    schedule: PolySchedule, epoch: int, history: list, config: Dict[str, Any],
                    extra: Dict[str, Any] = None) -> Path:
    """Writes ``{model, optimizer, schedule, epoch (epochs done), history, config, rng, ...}``."""
    state = {"format": "irnet_fast.checkpoint/1", "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "epoch": int(epoch),
             "history": history, "config": config, "rng": get_rng_state()}
    if extra:
        state.update(extra)
    return atomic_save(state, path)


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputRuntimeError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != "irnet_fast.checkpoint/1":
        raise InputRuntimeError(f"{path} is not an irnet_fast training checkpoint")
    return state


# --- trained weights, in irnet_fast's or the reference's layout --------------------------------

def read_state_dict(path: PathLike, what: str, map_location: Any = "cpu") -> Dict[str, torch.Tensor]:
    """The state dict in ``path`` as written (a training checkpoint gives its model), with a
    leading ``module.`` (DataParallel) stripped; clear errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{what} weights not found: {path} (run the training step first, or pass "
                                f"the weights file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputRuntimeError(f"could not read {what} weights {path}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and "format" in state:
        state = state["model"]  # a training checkpoint
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise InputRuntimeError(f"{what} weights {path}: expected a state_dict (names to tensors), got "
                           f"{type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _as_irnet_fast(state: Dict[str, torch.Tensor], path: PathLike, what: str) -> Dict[str, torch.Tensor]:
    if not is_reference_state_dict(state):
        return state
    try:
        return from_reference_state_dict(state)  # CAM or IRNet, as the keys say
    except ReferenceFormatError as exc:
        raise InputRuntimeError(f"{what} weights {path} are in neither irnet_fast's nor the reference's layout: "
                           f"{exc}") from None


def load_weights(model: torch.nn.Module, path: PathLike, what: str) -> str:
    """Loads trained weights from ``path`` into ``model`` (a CAMNet or an IRNet); returns the layout
    found, ``"irnet_fast"`` or ``"reference"``.

    The reference's files are converted (aliases, training buffers dropped; BatchNorm
    ``num_batches_tracked`` counters, which FixedBatchNorm never reads, kept from ``model`` when
    the file has none). Anything else must match ``model.state_dict()`` key for key.

    Raises:
        RuntimeError: the file is neither layout (naming the unknown and the missing keys) or does
            not fit ``model`` (another backbone or number of classes: naming the shapes).
        FileNotFoundError: no such file.
    """
    state = read_state_dict(path, what)
    layout = "reference" if is_reference_state_dict(state) else "irnet_fast"
    state = _as_irnet_fast(state, path, what)
    expected = model.state_dict()
    if layout == "reference":
        for key, value in expected.items():
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = value
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unknown or missing:
        hint = ("an IRNet written by irnet_fast before its displacement branch became the reference's: train "
                "it again" if "mean_shift" in state else "a file in neither irnet_fast's nor the reference's "
                "layout, or of the other network?")
        raise InputRuntimeError(f"{what} weights {path} ({layout} layout) do not fit this {type(model).__name__}: "
                                f"unknown keys {_short(unknown)}, missing keys {_short(missing)} ({hint})")
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise InputRuntimeError(f"{what} weights {path} do not fit this {type(model).__name__} (backbone or dataset "
                           f"differs from the training run?): {_short(shapes, 4)}")
    model.load_state_dict(state, strict=True)
    return layout


def export_reference_weights(src: Union[PathLike, torch.nn.Module], dst: PathLike) -> Path:
    """Writes trained irnet_fast weights (``cam.pth`` / ``irn.pth``, a training checkpoint or a
    model) to ``dst`` in the reference's layout (its ``res50_cam.pth`` / ``res50_irn.pth``, loadable
    with ``strict=True`` into the reference's ``Net``, ``CAM`` or ``EdgeDisplacement``). ResNet-50
    networks only, as the reference's. Atomic; returns ``dst``."""
    if isinstance(src, torch.nn.Module):
        state = src.state_dict()
    else:
        state = read_state_dict(src, "irnet_fast")
    try:
        out = to_reference_state_dict(state)
    except ReferenceFormatError as exc:
        raise RuntimeError(f"export_reference_weights(): cannot export {src}: {exc}") from None
    return atomic_save(out, dst)
