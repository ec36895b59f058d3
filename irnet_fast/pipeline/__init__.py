"""The IRNet pipeline: one module per step, one config, one step registry.

Training (one process or torchrun/DDP): :func:`train_cam`, :func:`train_irn`, and the final
semantic network :func:`train_sem` (DeepLab on the pseudo labels, scored by :func:`eval_sem` on a
held-out split) and instance model :func:`train_ins` (Mask R-CNN on the pseudo labels, evaluated
by :func:`eval_ins`).
Per-image steps (resumable, sharded by rank): :func:`make_cam`, :func:`cam_to_ir_label`,
:func:`make_sem_seg`, :func:`make_ins_seg`. Evaluation: :func:`eval_cam`, :func:`eval_ir_label`,
:func:`eval_sem_seg`, :func:`eval_ins_seg`, :func:`tune`; export: :func:`export_coco`.
:func:`run_pipeline` runs any range of them; :mod:`.steps` lists them. See :mod:`.config` for
every hyper-parameter. Names are imported on first use, so ``irnet_fast.pipeline.steps`` and the
CLI's parser load without torch.
"""
import importlib
import sys
import types

_NAMES = {
    "Config": "config", "ConfigError": "config",
    "poly_lr": "checkpoint", "PolySchedule": "checkpoint", "build_sgd": "checkpoint",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "DistInfo": "distributed", "init_distributed": "distributed",
    "train_cam": "train_cam", "train_irn": "train_irn", "displacement_mean": "train_irn",
    "make_cam": "make_cam", "cam_to_ir_label": "cam_to_ir_label", "make_sem_seg": "make_sem_seg",
    "make_ins_seg": "make_ins_seg", "eval_cam": "evaluate", "eval_ir_label": "evaluate",
    "eval_sem_seg": "evaluate", "eval_ins_seg": "evaluate", "tune": "evaluate", "export_coco": "evaluate",
    "train_sem": "train_sem", "eval_sem": "eval_sem",
    "train_ins": "train_ins", "eval_ins": "train_ins",
    "run_pipeline": "run", "run_step": "run", "STEPS": "run", "EXTRA_STEPS": "run",
    "StepSummary": "common", "StepFailed": "common",
}

__all__ = list(_NAMES)


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))


class _Package(types.ModuleType):
    """Step functions keep their names when their module of the same name is imported (the import
    system would otherwise set ``pipeline.make_cam`` to the module)."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _NAMES.get(name) == name:
            return  # the module stays reachable through sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
