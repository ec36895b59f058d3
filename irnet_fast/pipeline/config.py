"""All hyper-parameters of the pipeline in one dataclass, with the paper's defaults.

``Config()`` holds the defaults of the reference implementation (docs/algorithm.md, "Training"). A TOML
file (:meth:`Config.from_toml`) and CLI overrides (:meth:`Config.override`) change them, with
type checking and clear errors for unknown keys.

Key names are flat (``cam_batch_size``). Sections are accepted as a spelling of the prefix: the
TOML table ``[cam]`` with ``batch_size = 8`` and the CLI override ``cam.batch_size=8`` both set
``cam_batch_size``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..errors import InputFileNotFoundError, InputValueError
from .._limits import MAX_EXP_TIMES, MAX_RADIUS

__all__ = ["Config", "ConfigError"]


class ConfigError(InputValueError):
    """An unknown key or a value of the wrong type in a config override / TOML file."""


@dataclass
class Config:
    """The pipeline configuration. Defaults are the reference implementation's (docs/algorithm.md, "Training").

    Data:
        dataset: ``"voc12"`` (a VOC 2012 devkit; the synthetic data is one too), ``"coco"`` or
            ``"cityscapes"`` (the official layout; splits are folders of ``leftImg8bit/``).
        dataset_root: the VOC devkit folder (holding ``JPEGImages``); for COCO the image folder;
            for Cityscapes the folder holding ``leftImg8bit/`` and ``gtFine/``.
        coco_ann_file: COCO only: the instances JSON of ``dataset_root``.
        labels_file: optional image-level labels file (e.g. for the SBD ``train_aug`` list). For
            Cityscapes, without one, each split's labels are extracted once from its ``gtFine``
            masks into ``<out_dir>/cityscapes_labels/<split>_min<N>.json``.
        cityscapes_min_pixels: Cityscapes only: a class is in an image's image-level label when it
            covers at least this many pixels of ``gtFine`` (1000, about a 32 x 32 patch).
        cam_split / irn_split: the training lists (``train_aug`` in the paper).
        mean_shift_split: the list the displacement mean shift is measured on after IRNet
            training (the reference's ``infer_list``, ``train``).
        heldout_split: the split of ``dataset_root`` the final models (``eval_sem``, ``eval_ins``)
            are evaluated on (``val``); refused when it shares an image with ``infer_split``, the
            split they train on.
        heldout_dataset_root / heldout_coco_ann_file: COCO only: the held-out images the final
            models are evaluated on instead (val2014 and its instances JSON).
        out_dir: checkpoints, logs and weights go here.

    Model: backbone (``resnet50`` in the paper), backbone_weights (a local torchvision ImageNet
    checkpoint; None = random init, for the synthetic data only), cam_train_bn_affine (True, the
    reference: the BatchNorm scale/shift of layer3-4 train with their convolutions, the statistics
    stay fixed; False freezes them too),
    bn_calibration_batches (0; for a backbone without pretrained weights, the BatchNorm statistics
    are first measured on this many training batches and then frozen, see
    ``ResNetBackbone.calibrate_batchnorm``).

    Optimisation (both networks): SGD with ``momentum`` and ``*_weight_decay`` on every group; the
    learning rate of every group follows ``lr * (1 - step / max_step) ** poly_power``, updated
    before each iteration (step 0 uses the full rate), with ``max_step = (len(dataset) //
    batch_size) * num_epochs``. Note: the reference's ``PolyOptimizer`` passes its weight decay
    as SGD's third positional argument, which is *momentum*, so the reference actually trains
    with momentum 1e-4 (and 0.9 is only the poly power). The default here is 0.9 as the paper
    describes; ``momentum = 1e-4`` reproduces the reference's behaviour.

    CAM: batch 16, 5 epochs, lr 0.1 for layer3-4 and ``cam_head_lr_mult`` (10) x lr for the
    classifier, weight decay 1e-4, long side resized to 320..640, flip, crop 512.
    AffinityNet walk (steps on request): a head of ``aff_feature_dim`` (>= 4) channels on the four
    stages of the frozen CAM backbone, trained ``aff_num_epochs`` (8) with batch ``aff_batch_size``
    (8), lr 0.1, weight decay 5e-4 (AffinityNet's) on IRNet's crops (``irn_crop_size``,
    ``irn_rescale``) at ``aff_radius`` (5); its walk uses ``aff_beta`` (8) and ``2 ** aff_logt`` (8) steps.
    IRNet: ``irn_init_from_cam`` (False; True starts IRNet's frozen backbone from the trained CAM
    network's backbone, for data without ImageNet weights such as the synthetic demo), batch 32, 3 epochs, lr 0.1 for the boundary branch and ``irn_dp_lr_mult`` (10) x lr
    for the displacement branch, weight decay 1e-4, rescale 0.5..1.5, flip, crop 512, radius 10.

    Label generation and evaluation run on ``infer_split`` (the reference's ``infer_list``,
    ``train``); make_cam and cam_to_ir_label also cover ``irn_split`` so that IRNet has its labels.
    cam_scales (multi-scale CAMs), cam_eval_thres (background threshold of CAM evaluation, 0.15),
    conf_fg_thres / conf_bg_thres (IR labels), crf (the dense CRF of the IR labels; False skips
    it, which departs from the paper), walk_radius / beta / exp_times (random walk at inference:
    5, 10, 8), sem_seg_bg_thres / ins_seg_bg_thres (0.25), sem_seg_scale (1.0, the paper: make_sem_seg
    runs IRNet on the image rescaled by this factor and walks the CAMs resized to its boundary map,
    a finer grid for small images), centroid_iterations (300),
    centroid_thres (2.5, the displacement norm below which a pixel is a centroid candidate),
    min_instance_fraction (segments below this fraction of the image area score 0),
    irn_pad_to (512, the reference: IRNet inference zero-pads an image side of at most this
    size to exactly this size, as the reference's ``EdgeDisplacement`` pads to its 512 crop, and a
    longer side, which the reference cannot handle, to the next multiple of 16; 0 pads every side
    only to the multiple of 16; Cityscapes images, 2048 x 1024, are multiples of 16 and larger
    than 512, so either value leaves them unpadded: full resolution, no 512 padding), walk_batch (images per random-walk call), save_rw_scores (keep the float16 random-walk maps
    for the ``tune`` step), backend (ops backend: auto, cuda, cupy, cpp, numba, torch).

    DeepLab, the final semantic network (``train_sem`` / ``eval_sem``; torchvision's DeepLabV3,
    defaults of the DeepLabV3 paper): deeplab_backbone (``resnet50``; ``resnet101``, ``resnet34``,
    ``resnet18``), deeplab_backbone_weights (a local torchvision ImageNet checkpoint; None takes
    ``backbone_weights`` when ``deeplab_backbone == backbone``, else random init with a warning),
    deeplab_init_from_cam (False; True starts the backbone from the trained CAM network's, for data
    without ImageNet weights), deeplab_output_stride (8, torchvision's; 16), trained on the
    ``sem_seg/`` pseudo labels of ``infer_split`` (make them for ``train_aug`` to train as the
    paper) with batch 16, ``deeplab_num_epochs`` 45 (about the paper's 30k iterations on
    ``train_aug``), lr 0.007 for the backbone and ``deeplab_head_lr_mult`` (1) x lr for the
    head, weight decay 1e-4, the same poly schedule and momentum as above, random rescale
    ``deeplab_rescale`` 0.5..2.0, flip, crop 513. Evaluated on ``heldout_split`` at ``deeplab_test_scales`` (0.5 .. 1.75) with flips
    (``deeplab_test_flip``), softmax averaged, then the dense CRF if ``deeplab_crf`` (False).
    Mask R-CNN (``train_ins`` / ``eval_ins``, the final instance model trained on the instance
    pseudo labels ``ins_seg/`` of ``infer_split``): torchvision's Mask R-CNN with a
    ``maskrcnn_backbone`` (``resnet50``) FPN, the ResNet from the local ImageNet checkpoint
    ``maskrcnn_backbone_weights`` (None: ``backbone_weights`` when ``maskrcnn_backbone`` is
    ``backbone``, else random initialisation with BatchNorm statistics measured on
    ``bn_calibration_batches`` batches), or ``maskrcnn_init_from_cam`` (False; True: the trained CAM
    network's backbone, for data without ImageNet weights); ``maskrcnn_trainable_layers`` (None:
    torchvision's 3 with ImageNet weights, all 5 otherwise). Detectron's recipe: batch 16, lr 0.02
    with a linear warm-up from 1/3 over 500 iterations (``maskrcnn_warmup_iters``,
    ``maskrcnn_warmup_factor``), weight decay 1e-4, horizontal flips, images resized to a short
    side of 800 and a long side of at most 1333 (``maskrcnn_min_size``, ``maskrcnn_max_size``),
    512 sampled RoIs per image (``maskrcnn_box_batch_size``), 12 epochs; the learning rate then
    follows the poly schedule of the other networks instead of Detectron's steps. Head widths:
    ``maskrcnn_fpn_channels`` (256), ``maskrcnn_box_head_size`` (1024), ``maskrcnn_mask_head_layers``
    (four 256-channel convolutions), torchvision's; smaller ones are for CPU runs. Pseudo-label
    instances with a score <= ``maskrcnn_min_score`` (0: the fragments) or fewer than
    ``maskrcnn_min_instance_pixels`` (16) pixels are left out. ``eval_ins`` evaluates on the ground
    truth of ``heldout_split`` (COCO: ``heldout_dataset_root`` and ``heldout_coco_ann_file``).

    Runtime: num_workers (DataLoader workers per process), seed (data order, augmentation,
    initialisation), device (``"auto"``: CUDA when available, else CPU), log_interval (iterations
    between log lines).
    """

    # --- data ----------------------------------------------------------------------------------
    dataset: str = "voc12"
    dataset_root: str = "VOC2012"
    coco_ann_file: Optional[str] = None
    labels_file: Optional[str] = None
    cityscapes_min_pixels: int = 1000
    cam_split: str = "train_aug"
    irn_split: str = "train_aug"
    mean_shift_split: str = "train"
    infer_split: str = "train"
    heldout_split: str = "val"
    heldout_dataset_root: Optional[str] = None
    heldout_coco_ann_file: Optional[str] = None
    out_dir: str = "result"
    # --- model ---------------------------------------------------------------------------------
    backbone: str = "resnet50"
    backbone_weights: Optional[str] = None
    cam_train_bn_affine: bool = True
    bn_calibration_batches: int = 0
    # --- optimisation --------------------------------------------------------------------------
    momentum: float = 0.9
    poly_power: float = 0.9
    # --- CAM training --------------------------------------------------------------------------
    cam_batch_size: int = 16
    cam_num_epochs: int = 5
    cam_learning_rate: float = 0.1
    cam_head_lr_mult: float = 10.0
    cam_weight_decay: float = 1e-4
    cam_crop_size: int = 512
    cam_resize_long: Tuple[int, int] = (320, 640)
    cam_scales: Tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    cam_eval_thres: float = 0.15
    # --- IR labels -----------------------------------------------------------------------------
    conf_fg_thres: float = 0.30
    conf_bg_thres: float = 0.05
    crf: bool = True
    # --- IRNet training ------------------------------------------------------------------------
    irn_batch_size: int = 32
    irn_num_epochs: int = 3
    irn_learning_rate: float = 0.1
    irn_dp_lr_mult: float = 10.0
    irn_weight_decay: float = 1e-4
    irn_crop_size: int = 512
    irn_rescale: Tuple[float, float] = (0.5, 1.5)
    irn_init_from_cam: bool = False
    radius: int = 10
    # --- AffinityNet walk (on request: train_aff, make_sem_seg_aff) ----------------------------
    aff_batch_size: int = 8
    aff_num_epochs: int = 8
    aff_learning_rate: float = 0.1
    aff_weight_decay: float = 5e-4
    aff_feature_dim: int = 64
    aff_radius: int = 5
    aff_beta: float = 8.0
    aff_logt: int = 8
    # --- inference -----------------------------------------------------------------------------
    walk_radius: int = 5
    beta: float = 10.0
    exp_times: int = 8
    sem_seg_bg_thres: float = 0.25
    sem_seg_scale: float = 1.0
    ins_seg_bg_thres: float = 0.25
    centroid_iterations: int = 300
    centroid_thres: float = 2.5
    min_instance_fraction: float = 0.01
    irn_pad_to: int = 512
    walk_batch: int = 4
    save_rw_scores: bool = False
    backend: str = "auto"
    # --- DeepLab (final semantic network) -------------------------------------------------------
    deeplab_backbone: str = "resnet50"
    deeplab_backbone_weights: Optional[str] = None
    deeplab_init_from_cam: bool = False
    deeplab_output_stride: int = 8
    deeplab_batch_size: int = 16
    deeplab_num_epochs: int = 45
    deeplab_learning_rate: float = 0.007
    deeplab_head_lr_mult: float = 1.0
    deeplab_weight_decay: float = 1e-4
    deeplab_crop_size: int = 513
    deeplab_rescale: Tuple[float, float] = (0.5, 2.0)
    deeplab_test_scales: Tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    deeplab_test_flip: bool = True
    deeplab_crf: bool = False
    # --- Mask R-CNN on the instance pseudo labels ---------------------------------------------
    maskrcnn_backbone: str = "resnet50"
    maskrcnn_backbone_weights: Optional[str] = None
    maskrcnn_init_from_cam: bool = False
    maskrcnn_trainable_layers: Optional[int] = None
    maskrcnn_batch_size: int = 16
    maskrcnn_num_epochs: int = 12
    maskrcnn_learning_rate: float = 0.02
    maskrcnn_weight_decay: float = 1e-4
    maskrcnn_warmup_iters: int = 500
    maskrcnn_warmup_factor: float = 1.0 / 3.0
    maskrcnn_min_size: int = 800
    maskrcnn_max_size: int = 1333
    maskrcnn_hflip: bool = True
    maskrcnn_box_batch_size: int = 512
    maskrcnn_fpn_channels: int = 256
    maskrcnn_box_head_size: int = 1024
    maskrcnn_mask_head_layers: Tuple[int, ...] = (256, 256, 256, 256)
    maskrcnn_min_score: float = 0.0
    maskrcnn_min_instance_pixels: int = 16
    # --- runtime -------------------------------------------------------------------------------
    num_workers: int = 4
    seed: int = 0
    device: str = "auto"
    log_interval: int = 50

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        hints = _hints()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name], from_string=False))
        self.validate()

    def validate(self) -> "Config":
        """Checks every value against its range (:data:`_RULES`) before any work starts.

        Raises:
            ConfigError: naming the key, the expected range and the value.
        """
        for name, (ok, expected) in _RULES.items():
            value = getattr(self, name)
            if value is None:
                continue
            items = value if isinstance(value, tuple) else (value,)
            if not all(_check_value(ok, v) for v in items) or not _check_pair(name, value):
                raise ConfigError(f"config key {name!r}: expected {expected}, got {_show(value)}")
        return self

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of every key (tuples as lists, TOML- and JSON-friendly; None kept)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def override(self, overrides: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> "Config":
        """A new Config with some keys changed (``self`` is left unchanged).

        ``overrides`` may use dotted or nested keys (``{"cam.batch_size": "8"}``,
        ``{"cam": {"batch_size": 8}}``); string values (from a CLI) are parsed as TOML values
        (``8``, ``0.5``, ``true``, ``[320, 640]``; anything unparsable stays a string); ``"none"``
        or ``"null"`` sets an optional key to None. Keyword arguments use the flat names.

        Raises:
            ConfigError: unknown key (with suggestions) or a value of the wrong type.
        """
        flat: Dict[str, Any] = {}
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise ConfigError(f"config overrides must be a mapping, got {type(overrides).__name__}")
            flat.update(_flatten(overrides))
        flat.update(kwargs)
        hints = _hints()
        values = dataclasses.asdict(self)
        for key, value in flat.items():
            name = _resolve(key)
            values[name] = _coerce(name, value, hints[name], from_string=isinstance(value, str))
        return Config(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Defaults overridden by ``data`` (as :meth:`override`)."""
        return cls().override(data)

    @classmethod
    def from_toml(cls, path: Union[str, "os.PathLike[str]"], overrides: Optional[Mapping[str, Any]] = None) -> "Config":
        """Defaults, then the TOML file ``path`` (flat keys or ``[cam]``-style tables), then ``overrides``."""
        path = Path(path)
        if not path.is_file():
            raise InputFileNotFoundError(f"config file not found: {path}")
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path}: not a UTF-8 text file (TOML expected): {exc}") from exc
        try:
            cfg = cls().override(data)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        return cfg.override(overrides) if overrides else cfg

    @staticmethod
    def parse_cli(items) -> Dict[str, str]:
        """``["cam.batch_size=8", "seed=1"]`` -> ``{"cam.batch_size": "8", "seed": "1"}``."""
        out = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"config override {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
        return out


# ----------------------------------------------------------------------------------------------
# Value ranges. Thresholds apply to CAMs normalised to a maximum of 1, hence [0, 1].

def _finite(v) -> bool:
    return math.isfinite(v)


def _positive(v) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v) -> bool:
    return math.isfinite(v) and v >= 0


def _unit(v) -> bool:
    return math.isfinite(v) and 0.0 <= v <= 1.0


def _at_least(low):
    return lambda v: v >= low


def _between(low, high):
    return lambda v: low <= v <= high


def _one_of(*choices):
    return lambda v: v in choices


def _device(v) -> bool:
    return v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())



_RULES: Dict[str, Tuple[Any, str]] = {
    "dataset": (_one_of("voc12", "coco", "cityscapes"), "one of 'voc12', 'coco', 'cityscapes'"),
    "cityscapes_min_pixels": (_at_least(1), "an integer >= 1"),
    "bn_calibration_batches": (_at_least(0), "an integer >= 0"),
    "momentum": (lambda v: math.isfinite(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
    "poly_power": (_non_negative, "a finite number >= 0"),
    "cam_batch_size": (_at_least(1), "an integer >= 1"),
    "cam_num_epochs": (_at_least(1), "an integer >= 1"),
    "cam_learning_rate": (_non_negative, "a finite number >= 0"),
    "cam_head_lr_mult": (_non_negative, "a finite number >= 0"),
    "cam_weight_decay": (_non_negative, "a finite number >= 0"),
    "cam_crop_size": (_at_least(16), "an integer >= 16 (the network's stride)"),
    "cam_resize_long": (_at_least(1), "two integers 1 <= low <= high"),
    "cam_scales": (_positive, "finite numbers > 0"),
    "cam_eval_thres": (_unit, "a number in [0, 1]"),
    "conf_fg_thres": (_unit, "a number in [0, 1]"),
    "conf_bg_thres": (_unit, "a number in [0, 1]"),
    "irn_batch_size": (_at_least(1), "an integer >= 1"),
    "irn_num_epochs": (_at_least(1), "an integer >= 1"),
    "irn_learning_rate": (_non_negative, "a finite number >= 0"),
    "irn_dp_lr_mult": (_non_negative, "a finite number >= 0"),
    "irn_weight_decay": (_non_negative, "a finite number >= 0"),
    "irn_crop_size": (_at_least(16), "an integer >= 16 (the network's stride)"),
    "irn_rescale": (_positive, "two finite numbers 0 < low <= high"),
    "radius": (_between(1, MAX_RADIUS), f"an integer in [1, {MAX_RADIUS}]"),
    "aff_batch_size": (_at_least(1), "an integer >= 1"),
    "aff_num_epochs": (_at_least(1), "an integer >= 1"),
    "aff_learning_rate": (_non_negative, "a finite number >= 0"),
    "aff_weight_decay": (_non_negative, "a finite number >= 0"),
    "aff_feature_dim": (_at_least(4), "an integer >= 4 (a channel per backbone stage at least)"),
    "aff_radius": (_between(1, MAX_RADIUS), f"an integer in [1, {MAX_RADIUS}]"),
    "aff_beta": (_positive, "a finite number > 0"),
    "aff_logt": (_between(0, MAX_EXP_TIMES), f"an integer in [0, {MAX_EXP_TIMES}]"),
    "walk_radius": (_between(1, MAX_RADIUS), f"an integer in [1, {MAX_RADIUS}]"),
    "beta": (_positive, "a finite number > 0"),
    "exp_times": (_between(0, MAX_EXP_TIMES), f"an integer in [0, {MAX_EXP_TIMES}]"),
    "sem_seg_bg_thres": (_unit, "a number in [0, 1]"),
    "sem_seg_scale": (_positive, "a finite number > 0"),
    "ins_seg_bg_thres": (_unit, "a number in [0, 1]"),
    "centroid_iterations": (_at_least(0), "an integer >= 0"),
    "centroid_thres": (_positive, "a finite number > 0"),
    "min_instance_fraction": (_unit, "a number in [0, 1]"),
    "irn_pad_to": (_at_least(0), "an integer >= 0 (0: pad to multiples of 16 only)"),
    "walk_batch": (_at_least(1), "an integer >= 1"),
    "backend": (_one_of("auto", "cuda", "cupy", "cpp", "numba", "torch"),
                "one of 'auto', 'cuda', 'cupy', 'cpp', 'numba', 'torch'"),
    "deeplab_backbone": (_one_of("resnet18", "resnet34", "resnet50", "resnet101"),
                         "one of 'resnet18', 'resnet34', 'resnet50', 'resnet101'"),
    "deeplab_output_stride": (_one_of(8, 16), "8 or 16"),
    "deeplab_batch_size": (_at_least(1), "an integer >= 1"),
    "deeplab_num_epochs": (_at_least(1), "an integer >= 1"),
    "deeplab_learning_rate": (_non_negative, "a finite number >= 0"),
    "deeplab_head_lr_mult": (_non_negative, "a finite number >= 0"),
    "deeplab_weight_decay": (_non_negative, "a finite number >= 0"),
    "deeplab_crop_size": (_at_least(16), "an integer >= 16"),
    "deeplab_rescale": (_positive, "two finite numbers 0 < low <= high"),
    "deeplab_test_scales": (_positive, "finite numbers > 0"),
    "maskrcnn_backbone": (_one_of("resnet18", "resnet34", "resnet50", "resnet101"),
                          "one of 'resnet18', 'resnet34', 'resnet50', 'resnet101'"),
    "maskrcnn_trainable_layers": (_between(0, 5), "an integer in [0, 5] (or none)"),
    "maskrcnn_batch_size": (_at_least(1), "an integer >= 1"),
    "maskrcnn_num_epochs": (_at_least(1), "an integer >= 1"),
    "maskrcnn_learning_rate": (_non_negative, "a finite number >= 0"),
    "maskrcnn_weight_decay": (_non_negative, "a finite number >= 0"),
    "maskrcnn_warmup_iters": (_at_least(0), "an integer >= 0"),
    "maskrcnn_warmup_factor": (_unit, "a number in [0, 1]"),
    "maskrcnn_min_size": (_at_least(16), "an integer >= 16"),
    "maskrcnn_max_size": (_at_least(16), "an integer >= 16"),
    "maskrcnn_box_batch_size": (_at_least(1), "an integer >= 1"),
    "maskrcnn_fpn_channels": (_at_least(1), "an integer >= 1"),
    "maskrcnn_box_head_size": (_at_least(1), "an integer >= 1"),
    "maskrcnn_mask_head_layers": (_at_least(1), "integers >= 1"),
    "maskrcnn_min_score": (_finite, "a finite number"),
    "maskrcnn_min_instance_pixels": (_at_least(1), "an integer >= 1"),
    "num_workers": (_at_least(0), "an integer >= 0"),
    "seed": (_at_least(0), "an integer >= 0"),
    "device": (_device, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "log_interval": (_at_least(0), "an integer >= 0 (0: no periodic log lines)"),
}

_ORDERED_PAIRS = ("cam_resize_long", "irn_rescale", "deeplab_rescale")


def _check_value(ok, value) -> bool:
    try:
        return bool(ok(value))
    except (TypeError, ValueError):
        return False


def _check_pair(name: str, value) -> bool:
    return name not in _ORDERED_PAIRS or value[0] <= value[1]


def _show(value) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _hints() -> Dict[str, Any]:
    return typing.get_type_hints(Config, globalns=sys.modules[__name__].__dict__)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        key = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _resolve(key: str) -> str:
    if not isinstance(key, str):
        raise ConfigError(f"config key must be a string, got {key!r}")
    name = key.strip().replace(".", "_").replace("-", "_")
    names = Config.keys()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint} (known keys: {', '.join(names)})")
    return name


def _parse_string(text: str) -> Any:
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, value: Any, tp: Any, *, from_string: bool) -> Any:
    """Checks ``value`` against the annotation ``tp`` (int, float, bool, str, Optional, Tuple)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if from_string and isinstance(value, str) and tp is not str:
        if not (origin is Union and str in args):
            value = _parse_string(value)
        elif value.strip().lower() in ("none", "null"):
            value = None
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0], from_string=False)
    bad = ConfigError(f"config key {name!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            elem = [args[0]] * len(value)
            if not value:
                raise ConfigError(f"config key {name!r}: expected a non-empty list")
        else:
            elem = list(args)
            if len(value) != len(elem):
                raise ConfigError(f"config key {name!r}: expected {len(elem)} values, got {list(value)!r}")
        return tuple(_coerce(f"{name}[{i}]", v, t, from_string=False) for i, (v, t) in enumerate(zip(value, elem)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise bad
        return value
    return value  # pragma: no cover - no other annotations in Config
