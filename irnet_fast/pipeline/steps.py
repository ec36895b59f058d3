"""The one list of pipeline steps: name, function, inputs, outputs, CLI help and extra arguments.

The CLI's commands (:mod:`irnet_fast.cli`), :func:`~irnet_fast.pipeline.run.run_pipeline` and the
step table of docs/pipeline.md are all generated from :data:`STEPS`. Importing this module is cheap
(no torch): each step's function is imported only when the step runs.

A step's function takes the :class:`~irnet_fast.pipeline.config.Config` first, then keywords:
``resume`` and ``progress`` for ``kind="train"``, ``progress`` for ``kind="images"``, none for
``kind="eval"``, plus the ``dest`` of each of its :class:`Arg`. Paths in ``inputs`` and ``outputs``
are relative to ``cfg.out_dir``; ``<id>`` stands for every image of the step's split
(``infer_split``, or the held-out ``heldout_split`` for ``eval_sem``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import InputValueError

__all__ = ["Arg", "Step", "STEPS", "DEFAULT_ORDER", "EXTRA", "get", "producers", "step_table"]


def _floats(text: str) -> List[float]:
    return [float(t) for t in text.split(",") if t.strip()]


@dataclass(frozen=True)
class Arg:
    """One extra command-line argument of a step, passed to its function as ``dest=value``."""

    flag: str
    dest: str
    help: str
    metavar: Optional[str] = None
    type: Optional[Callable[[str], Any]] = None
    default: Any = None

    def add_to(self, parser) -> None:
        parser.add_argument(self.flag, dest=self.dest, help=self.help, metavar=self.metavar, type=self.type,
                            default=self.default)


@dataclass(frozen=True)
class Step:
    """A pipeline step (see the module docstring for the calling convention)."""

    name: str
    function: str  # "module:function", imported when the step runs
    kind: str  # "train" | "images" | "eval"
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    help: str
    args: Tuple[Arg, ...] = field(default=())
    default: bool = True  # part of the default run (else only when listed with --steps)

    @property
    def command(self) -> str:
        """The CLI command: the name with dashes."""
        return self.name.replace("_", "-")

    def load(self) -> Callable:
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)


_WEIGHTS = Arg("--weights", "weights", "trained weights (default OUT/cam.pth or OUT/irn.pth)", metavar="PATH")
_THRESHOLDS = Arg("--thresholds", "thresholds", "background thresholds to evaluate", metavar="T1,T2,...",
                  type=_floats)
_P = "irnet_fast.pipeline."

STEPS: Tuple[Step, ...] = (
    Step("train_cam", _P + "train_cam:train_cam", "train", (), ("cam.pth",),
         "train the CAM classifier (writes OUT/cam.pth)"),
    Step("make_cam", _P + "make_cam:make_cam", "images", ("cam.pth",), ("cam/<id>.npz",),
         "multi-scale CAMs of every image (OUT/cam/<id>.npz)", (_WEIGHTS,)),
    Step("eval_cam", _P + "evaluate:eval_cam", "eval", ("cam/<id>.npz",), ("eval_cam.json",),
         "mIoU of the CAMs at a background threshold (OUT/eval_cam.json)", (_THRESHOLDS,)),
    Step("cam_to_ir_label", _P + "cam_to_ir_label:cam_to_ir_label", "images", ("cam/<id>.npz",),
         ("ir_label/<id>.png",), "confident fg/bg labels with the dense CRF (OUT/ir_label/<id>.png)"),
    Step("eval_ir_label", _P + "evaluate:eval_ir_label", "eval", ("ir_label/<id>.png",), ("eval_ir_label.json",),
         "precision and coverage of the IR labels (OUT/eval_ir_label.json)"),
    Step("train_irn", _P + "train_irn:train_irn", "train", ("ir_label/<id>.png", "cam.pth"), ("irn.pth",),
         "train IRNet on the IR labels (writes OUT/irn.pth)"),
    Step("make_sem_seg", _P + "make_sem_seg:make_sem_seg", "images", ("cam/<id>.npz", "irn.pth"),
         ("sem_seg/<id>.png", "rw/<id>.npz (with save_rw_scores)"),
         "semantic pseudo labels by the random walk (OUT/sem_seg/<id>.png)",
         (_WEIGHTS,)),
    Step("eval_sem_seg", _P + "evaluate:eval_sem_seg", "eval", ("sem_seg/<id>.png",), ("eval_sem_seg.json",),
         "mIoU of the semantic pseudo labels (OUT/eval_sem_seg.json)"),
    Step("make_ins_seg", _P + "make_ins_seg:make_ins_seg", "images", ("cam/<id>.npz", "irn.pth"),
         ("ins_seg/<id>.npz",), "instance pseudo labels (OUT/ins_seg/<id>.npz)", (_WEIGHTS,)),
    Step("eval_ins_seg", _P + "evaluate:eval_ins_seg", "eval", ("ins_seg/<id>.npz",), ("eval_ins_seg.json",),
         "instance mask AP at IoU 0.5 and 0.7 (OUT/eval_ins_seg.json)"),
    Step("train_sem", _P + "train_sem:train_sem", "train", ("sem_seg/<id>.png",), ("deeplab.pth",),
         "train DeepLab, the final semantic network, on the semantic pseudo labels (writes OUT/deeplab.pth)"),
    Step("eval_sem", _P + "eval_sem:eval_sem", "images", ("deeplab.pth",), ("sem_pred/<id>.png", "eval_sem.json"),
         "DeepLab's multi-scale + flip predictions of the held-out split (heldout_split) and their mIoU "
         "(OUT/eval_sem.json)",
         (Arg("--weights", "weights", "trained DeepLab weights (default OUT/deeplab.pth)", metavar="PATH"),)),
    Step("tune", _P + "evaluate:tune", "eval", ("rw/<id>.npz",), ("tune.json",),
         "sweep the semantic background threshold on saved random-walk scores (OUT/tune.json)", (_THRESHOLDS,),
         default=False),
    Step("train_aff", _P + "train_aff:train_aff", "train", ("ir_label/<id>.png", "cam.pth"), ("aff.pth",),
         "train an AffinityNet head on the frozen CAM backbone with the IR labels (writes OUT/aff.pth)",
         default=False),
    Step("make_sem_seg_aff", _P + "train_aff:make_sem_seg_aff", "images", ("cam/<id>.npz", "aff.pth"),
         ("sem_seg_aff/<id>.png",), "semantic pseudo labels by AffinityNet's walk (OUT/sem_seg_aff/<id>.png)",
         (Arg("--weights", "weights", "trained weights (default OUT/aff.pth)", metavar="PATH"),), default=False),
    Step("eval_sem_seg_aff", _P + "evaluate:eval_sem_seg_aff", "eval", ("sem_seg_aff/<id>.png",),
         ("eval_sem_seg_aff.json",), "mIoU of AffinityNet's semantic pseudo labels (OUT/eval_sem_seg_aff.json)",
         default=False),
    Step("export_coco", _P + "evaluate:export_coco", "eval", ("ins_seg/<id>.npz",), ("instances_coco.json",),
         "instance pseudo labels to a COCO-format JSON with RLE masks",
         (Arg("--output", "out_path", "output file (default OUT/instances_coco.json)", metavar="JSON"),
          Arg("--min-score", "min_score", "leave out instances scoring <= this (default 0: drops fragments)",
              type=float, default=0.0)),
         default=False),
    Step("train_ins", _P + "train_ins:train_ins", "train", ("ins_seg/<id>.npz",), ("maskrcnn.pth",),
         "train Mask R-CNN on the instance pseudo labels (writes OUT/maskrcnn.pth)"),
    Step("eval_ins", _P + "train_ins:eval_ins", "eval", ("maskrcnn.pth",), ("eval_ins.json",),
         "Mask R-CNN's mask AP on the held-out split heldout_split (OUT/eval_ins.json)",
         (Arg("--weights", "weights", "trained Mask R-CNN weights (default OUT/maskrcnn.pth)", metavar="PATH"),)),
)

_BY_NAME: Dict[str, Step] = {s.name: s for s in STEPS}
DEFAULT_ORDER: Tuple[str, ...] = tuple(s.name for s in STEPS if s.default)
EXTRA: Tuple[str, ...] = tuple(s.name for s in STEPS if not s.default)


def get(name: str) -> Step:
    """The step called ``name`` (dashes or underscores); ValueError listing the steps otherwise."""
    step = _BY_NAME.get(str(name).replace("-", "_"))
    if step is None:
        raise InputValueError(f"unknown step {name!r}: expected one of {', '.join(_BY_NAME)}")
    return step


def producers(name: str) -> Tuple[str, ...]:
    """The per-image steps that write the per-image files ``name`` reads (``make_cam`` for
    ``cam_to_ir_label``): whose failures on an image explain a missing input of that image. None
    for a name outside the registry."""
    step = _BY_NAME.get(str(name).replace("-", "_"))
    reads = {p for p in step.inputs if "<id>" in p} if step else set()
    return tuple(s.name for s in STEPS if s.kind == "images" and reads & {o.split()[0] for o in s.outputs})


def step_table() -> str:
    """The Markdown table of the steps (docs/pipeline.md carries it; a test keeps them equal)."""
    rows = ["| step | kind | reads (in OUT) | writes (in OUT) | extra CLI arguments | what |",
            "|---|---|---|---|---|---|"]
    for s in STEPS:
        extra = ", ".join(f"`{a.flag}`" for a in s.args) or "-"
        reads = ", ".join(f"`{p}`" for p in s.inputs) or "the dataset"
        name = f"`{s.name}`" if s.default else f"`{s.name}` (on request)"
        what = s.help.replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| {name} | {s.kind} | {reads} | {', '.join(f'`{p}`' for p in s.outputs)} | {extra} | "
                    f"{what} |")
    return "\n".join(rows)
