"""The ``irnet-fast`` command line (also ``python -m irnet_fast``).

Pipeline commands share one set of options that map onto :class:`~irnet_fast.pipeline.Config`:
paper defaults, then a TOML file (``--config``), then the flags, then ``--set KEY=VALUE``.
Under ``torchrun`` the same commands run distributed (training with DDP, inference sharded).
The step commands are generated from the registry :mod:`irnet_fast.pipeline.steps`; building the
parser imports no torch, so ``--help`` is instant. Errors in the user's input
(:class:`irnet_fast.errors.InputError`) exit with status 2 and one line (``IRNET_FAST_TRACEBACK=1``
shows the traceback instead); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["main", "build_parser", "config_from_args"]

from .errors import InputError, InputFileNotFoundError, InputValueError
from .pipeline import steps as registry

# command -> help, for every step of the registry
PIPELINE_COMMANDS = {step.command: step.help for step in registry.STEPS}


def _is_main() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def _print(*args, **kwargs) -> None:
    if _is_main():
        print(*args, **kwargs)


# --- options ------------------------------------------------------------------------------------

def _pipeline_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("pipeline options (override the config; defaults are the paper's)")
    g.add_argument("--config", metavar="FILE", help="TOML file of config keys (flat or [cam]-style tables)")
    g.add_argument("--dataset", choices=("voc12", "coco", "cityscapes", "synthetic"),
                   help="dataset kind: voc12 (a VOC 2012 devkit), coco (2014 images + instances JSON), "
                        "cityscapes (the folder holding leftImg8bit/ and gtFine/), "
                        "synthetic (a generated VOC-layout folder, see make-synthetic)")
    g.add_argument("--data-root", metavar="PATH", help="VOC devkit folder (holding JPEGImages) or COCO image folder")
    g.add_argument("--coco-ann-file", metavar="JSON", help="COCO instances JSON (dataset coco)")
    g.add_argument("--labels-file", metavar="FILE", help="image-level labels file (e.g. for train_aug)")
    g.add_argument("--backbone", choices=("resnet50", "resnet34", "resnet18"), help="backbone (paper: resnet50)")
    g.add_argument("--backbone-weights", metavar="PATH",
                   help="local torchvision ImageNet checkpoint of the backbone (nothing is downloaded)")
    g.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:1 ...")
    g.add_argument("--workers", type=int, metavar="N", help="data-loading / CRF worker processes per process")
    g.add_argument("--out", metavar="DIR", help="output folder of weights, labels, logs and metrics")
    g.add_argument("--backend", choices=("auto", "cuda", "cupy", "cpp", "numba", "torch"),
                   help="backend of the fast ops (default auto)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set cam.batch_size=8 --set beta=10 (repeatable)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def config_from_args(args: argparse.Namespace):
    """The Config of a pipeline command: defaults < --config < flags < --set."""
    from .pipeline import Config
    flags: Dict[str, object] = {}
    if args.dataset:
        flags["dataset"] = "voc12" if args.dataset == "synthetic" else args.dataset
    for key, attr in (("dataset_root", "data_root"), ("coco_ann_file", "coco_ann_file"),
                      ("labels_file", "labels_file"), ("backbone", "backbone"),
                      ("backbone_weights", "backbone_weights"), ("device", "device"), ("num_workers", "workers"),
                      ("out_dir", "out"), ("backend", "backend")):
        value = getattr(args, attr, None)
        if value is not None:
            flags[key] = value
    cfg = Config.from_toml(args.config) if args.config else Config()
    cfg = cfg.override(flags).override(Config.parse_cli(args.overrides))
    if cfg.backbone_weights and not Path(cfg.backbone_weights).is_file():
        raise InputFileNotFoundError(f"backbone weights file not found: {cfg.backbone_weights}")
    if cfg.dataset == "coco" and not cfg.coco_ann_file:
        raise InputValueError("dataset coco needs --coco-ann-file (the instances JSON of the image folder)")
    if not Path(cfg.dataset_root).exists():
        hint = " (make one with: irnet-fast make-synthetic --out PATH)" if args.dataset == "synthetic" else ""
        raise InputFileNotFoundError(f"data root not found: {cfg.dataset_root}{hint}")
    return cfg


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _report(name: str, result, seconds: Optional[float] = None, *, quiet: bool = True) -> None:
    from .pipeline.common import StepSummary
    took = f" ({seconds:.1f}s)" if seconds is not None else ""
    if isinstance(result, StepSummary):
        if quiet:  # otherwise the step's log line on the console already said it
            _print(result.line() + took)
    elif isinstance(result, dict):
        keys = [k for k in ("miou", "precision", "coverage", "map50", "map70", "best_threshold", "best_miou",
                            "instances", "path") if k in result]
        _print(f"{name}: " + ", ".join(f"{k} {_fmt(result[k])}" for k in keys) + took)
    elif result is not None:
        _print(f"{name}: {result}{took}")


# --- commands -----------------------------------------------------------------------------------

def _cmd_step(args) -> int:
    from .pipeline.run import run_step
    cfg = config_from_args(args)
    step = registry.get(args.command)
    extra = {a.dest: getattr(args, a.dest) for a in step.args if getattr(args, a.dest) is not None}
    if extra.get("weights") and not Path(extra["weights"]).is_file():
        raise InputFileNotFoundError(f"weights file not found: {extra['weights']}")
    result = run_step(step.name, cfg, resume=not getattr(args, "no_resume", False), progress=not args.quiet,
                      **extra)
    _report(step.name, result, quiet=args.quiet)
    return 1 if getattr(result, "failed", None) else 0


def _cmd_run(args) -> int:
    from .pipeline.run import run_pipeline, select_steps
    cfg = config_from_args(args)
    steps = args.steps.split(",") if args.steps else None
    select_steps(steps, args.start, args.stop)  # argument errors before any work
    results = run_pipeline(cfg, steps, start=args.start, stop=args.stop, resume=not args.no_resume,
                           progress=not args.quiet, on_step=functools.partial(_report, quiet=args.quiet))
    return 1 if any(getattr(r["result"], "failed", None) for r in results.values()) else 0


def _cmd_make_synthetic(args) -> int:
    from .data import generate_synthetic
    root = generate_synthetic(args.out, num_train=args.num_train, num_val=args.num_val, size=tuple(args.size),
                              num_classes=args.classes, seed=args.seed, overwrite=args.overwrite, style=args.style)
    _print(f"synthetic VOC-layout dataset in {root} ({args.num_train} train + {args.num_val} val images, "
           f"{args.size[0]}x{args.size[1]}, {args.classes} classes, style {args.style})")
    return 0


def _cmd_demo(args) -> int:
    if args.dataset == "cityscapes":
        if args.affinitynet:
            raise InputValueError("demo --affinitynet runs on the VOC-layout demo only, not with --dataset cityscapes")
        from . import demo_cityscapes as demo
        extra = {}
    else:
        from . import demo
        extra = {"affinitynet": args.affinitynet}
    summary = demo.run(args.out, quick=args.quick, images=args.images, progress=not args.quiet, device=args.device,
                       **extra)
    _print(demo.format_table(summary))
    if args.dataset == "cityscapes":
        _print(f"summary: {Path(args.out) / 'summary.json'}")
    else:
        _print(f"report: {Path(args.out) / 'report.md'}   figures: {Path(args.out) / 'summary.json'}")
    return 0


def _cmd_walk_demo(args) -> int:
    from . import walk_demo
    summary = walk_demo.run(args.out, args.height, args.width, args.seed, reference=args.reference)
    _print(f"random walk on a generated {args.height}x{args.width} scene (stride-4 grid)")
    _print(f"{'backend':<10} {'ms':>9}  max rel diff")
    for name, row in summary["backends"].items():
        diff = next((v for k, v in row.items() if k.startswith("max_rel_diff")), 0.0)
        _print(f"{name:<10} {row['ms']:>9.2f}  {diff:.2e}")
    _print(f"CAM mIoU {summary['cam_miou']:.1f} -> random-walk mIoU {summary['rw_miou']:.1f}")
    _print(f"wrote {args.out}/random_walk_demo.png and {args.out}/summary.json")
    return 0


def _cmd_info(args) -> int:
    from . import backends
    print(json.dumps(backends.info(), indent=2, default=str))
    return 0


def _cmd_bench(args) -> int:
    try:
        from benchmarks import label_generation, report
    except ImportError:
        print("irnet-fast bench: run it from the repository root (the benchmarks/ folder is not installed)",
              file=sys.stderr)
        return 2
    flags = ["--quick"] if args.quick else []
    # the ops benchmarks (RESULTS.md), then the label-generation ones (RESULTS_LABELS.md); both run
    codes = [report.main(list(flags)) or 0]
    codes.append(label_generation.main(list(flags)) or 0)
    return next((code for code in codes if code), 0)


# --- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irnet-fast", description="IRNet (CVPR 2019) with fast inter-pixel relation ops: image-level labels "
        "-> CAMs -> IR labels -> IRNet -> random walk -> semantic and instance pseudo labels.",
        epilog="Distributed: torchrun --nproc_per_node N -m irnet_fast <command> ... (gloo on CPU, nccl on GPU).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _pipeline_options()

    p = sub.add_parser("run", parents=[common], help="the whole pipeline or a range of its steps",
                       description="Runs the pipeline steps in order, skipping work already done in --out: "
                                   + ", ".join(registry.DEFAULT_ORDER)
                                   + f" (and, on request, {', '.join(registry.EXTRA)}).")
    p.add_argument("--steps", metavar="A,B,...", help="exactly these steps, e.g. make_sem_seg,eval_sem_seg")
    p.add_argument("--from", dest="start", metavar="STEP",
                   help=f"first step of the range (default {registry.DEFAULT_ORDER[0]})")
    p.add_argument("--to", dest="stop", metavar="STEP", help=f"last step of the range (default {registry.DEFAULT_ORDER[-1]})")
    p.add_argument("--no-resume", action="store_true", help="retrain even when weights or checkpoints exist")
    p.set_defaults(func=_cmd_run)

    for step in registry.STEPS:
        p = sub.add_parser(step.command, parents=[common], help=step.help,
                           description=step.help[0].upper() + step.help[1:] + ".")
        if step.kind == "train":
            p.add_argument("--no-resume", action="store_true",
                           help="start over instead of skipping (weights exist) or resuming (checkpoint exists)")
        for arg in step.args:
            arg.add_to(p)
        p.set_defaults(func=_cmd_step)

    p = sub.add_parser("make-synthetic", help="generate the synthetic VOC-layout dataset",
                       description="Writes a VOC-layout dataset of shapes (deterministic from --seed): by default "
                                   "bodies of no class recognisable only by a small class-specific part.")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--num-train", type=int, default=128, metavar="N", help="images in train (default 128)")
    p.add_argument("--num-val", type=int, default=32, metavar="N", help="images in val (default 32)")
    p.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"), help="image size")
    p.add_argument("--classes", type=int, default=4, metavar="K", help="number of classes (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("part", "texture"), default="part",
                   help="part (default): classes told apart by a part on a fifth of the object; texture: by "
                        "colours and texture over the whole object")
    p.add_argument("--overwrite", action="store_true", help="rewrite an existing dataset")
    p.set_defaults(func=_cmd_make_synthetic)

    p = sub.add_parser("demo", help="the whole method on generated data, on the CPU, with a visual report",
                       description="Generates the synthetic dataset (training and held-out images), runs every "
                                   "step with ResNet-18 networks trained from scratch, the final models "
                                   "included, prints the metrics table and writes OUT/summary.json and "
                                   "OUT/report.md (PNG panels per image).")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="CI-sized run: few small images, few epochs")
    p.add_argument("--dataset", choices=("voc12", "cityscapes"), default="voc12",
                   help="voc12: generated VOC-layout shapes (default); cityscapes: generated street scenes "
                        "in the Cityscapes layout")
    p.add_argument("--images", type=int, metavar="N", help="number of training images (default 256)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--affinitynet", action="store_true",
                   help="also train AffinityNet's head and walk the same CAMs with it (aff_sem_miou)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("walk-demo", help="the random walk alone on a generated scene, every backend compared")
    p.add_argument("--out", default="walk_demo_out", metavar="DIR", help="output folder (default walk_demo_out)")
    p.add_argument("--height", type=int, default=94, help="grid height at stride 4 (default 94)")
    p.add_argument("--width", type=int, default=125, help="grid width at stride 4 (default 125)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="also run the dense reference (<= 64x64 only)")
    p.set_defaults(func=_cmd_walk_demo)

    p = sub.add_parser("bench", help="run the benchmarks, write benchmarks/RESULTS.md and the plot")
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("info", help="versions, compiled extension and available backends")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "walk-demo" and (args.height < 1 or args.width < 1):
        parser.error("--height and --width expected >= 1")
    if args.command == "demo" and args.images is not None and args.images < 16:
        parser.error(f"--images expected >= 16 (one training batch), got {args.images}")
    if args.command == "make-synthetic" and (args.num_train < 0 or args.num_val < 0 or args.classes < 1):
        parser.error("--num-train/--num-val expected >= 0 and --classes >= 1")
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)  # steps log INFO to their files; the console gets it only with progress
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[console])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"irnet-fast {args.command}: interrupted (run it again to resume)", file=sys.stderr)
        return 130
    except InputError as exc:
        if os.environ.get("IRNET_FAST_TRACEBACK"):
            raise
        from .pipeline.config import ConfigError
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"irnet-fast {args.command}: {kind}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
