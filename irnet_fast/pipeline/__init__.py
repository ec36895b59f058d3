"""The IRNet pipeline: one module per step, one config, one runner.

Training (one process or torchrun/DDP): :func:`train_cam`, :func:`train_irn`.
Per-image steps (resumable, sharded by rank): :func:`make_cam`, :func:`cam_to_ir_label`,
:func:`make_sem_seg`, :func:`make_ins_seg`. Evaluation: :func:`eval_cam`, :func:`eval_ir_label`,
:func:`eval_sem_seg`, :func:`eval_ins_seg`, :func:`tune`; export: :func:`export_coco`.
:func:`run_pipeline` runs any range of them. See :mod:`.config` for every hyper-parameter.
"""
from .cam_to_ir_label import cam_to_ir_label
from .checkpoint import PolySchedule, build_sgd, load_checkpoint, poly_lr, save_checkpoint
from .config import Config, ConfigError
from .distributed import DistInfo, init_distributed
from .evaluate import eval_cam, eval_ins_seg, eval_ir_label, eval_sem_seg, export_coco, tune
from .make_cam import make_cam
from .make_ins_seg import make_ins_seg
from .make_sem_seg import make_sem_seg
from .run import EXTRA_STEPS, STEPS, run_pipeline, run_step
from .common import StepFailed, StepSummary
from .train_cam import train_cam
from .train_irn import displacement_mean, train_irn

__all__ = ["Config", "ConfigError", "poly_lr", "PolySchedule", "build_sgd", "save_checkpoint",
           "load_checkpoint", "DistInfo", "init_distributed", "train_cam", "train_irn", "displacement_mean",
           "make_cam", "cam_to_ir_label", "make_sem_seg", "make_ins_seg", "eval_cam", "eval_ir_label",
           "eval_sem_seg", "eval_ins_seg", "tune", "export_coco", "run_pipeline", "run_step", "STEPS",
           "EXTRA_STEPS", "StepSummary", "StepFailed"]
