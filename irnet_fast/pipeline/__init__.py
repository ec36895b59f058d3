"""Training steps of the pipeline: config, CAM and IRNet training (one process or torchrun).

See :mod:`.config` (all hyper-parameters), :mod:`.train_cam`, :mod:`.train_irn`,
:mod:`.distributed` (torchrun / DDP and the one-process equivalence) and :mod:`.checkpoint`
(poly schedule, optimiser, atomic checkpoints).
"""
from .checkpoint import PolySchedule, build_sgd, load_checkpoint, poly_lr, save_checkpoint
from .config import Config, ConfigError
from .distributed import DistInfo, init_distributed
from .train_cam import train_cam
from .train_irn import displacement_mean, train_irn

__all__ = ["Config", "ConfigError", "poly_lr", "PolySchedule", "build_sgd", "save_checkpoint",
           "load_checkpoint", "DistInfo", "init_distributed", "train_cam", "train_irn", "displacement_mean"]
