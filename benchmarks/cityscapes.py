"""Cityscapes at full resolution: time and memory per 2048x1024 image of the label steps (CPU).

    python -m benchmarks.cityscapes [--quick] [--out benchmarks/RESULTS_LABELS.md]

Cases, each in a fresh subprocess with the memory probes of ``benchmarks.report`` (a warm-up
call first, then the resident pages locked and the RSS high-water mark reset; peak = memory above
the model and the inputs):

1. IRNet inference alone (``boundary_and_displacement``: image + flip, ResNet-50 with random
   weights; ``--quick``: ResNet-18): the network's own memory and time.
2. The ``make_sem_seg`` step on one image: IRNet inference, the random walk of ``CLASSES`` CAM
   channels on the 256x512 stride-4 map (cpp, radius 5, beta 10, 256 steps), the upsampling x4,
   normalisation and argmax at 2048x1024. Its peak minus case 1's is what the walk and the rest
   add above the network.
3. The walk alone (the same inputs), and with 3 channels (the case of ``benchmarks.label_generation``,
   for the ratio between the two in one run): its peak above the inputs.
4. ``cam_to_ir_label`` on one image: ``ir_label`` with the dense CRF at 2048x1024 (two passes,
   ``CLASSES`` CAM channels at full resolution; pydensecrf2).
5. The ``make_ins_seg`` step after IRNet: centroids (300 iterations) and clusters of a
   displacement field with ``INSTANCES`` instances (``benchmarks.cases.centroid_field``: a trained
   IRNet's output is not available offline), the per-cluster split of ``INSTANCE_CLASSES`` CAMs,
   the walk of the K x U channels and ``instances_from_walk`` (upsampling, argmax, connected
   segments) at 2048x1024. The whole per-image step is this plus case 1.

The raw figures go to ``<results file stem>.cityscapes.json`` (``--only`` re-measures some cases and
takes the others from it). The section is written into the results file between the markers ``<!-- cityscapes -->`` and
``<!-- end cityscapes -->`` (replacing an earlier one; ``benchmarks.label_generation`` keeps it).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from benchmarks import report
from benchmarks.label_generation import _time_repeated
from benchmarks.report import _lock_resident, _machine, _peak_rss_mb, _reset_peak_rss

HERE = Path(__file__).resolve().parent
IMAGE = (1024, 2048)
CLASSES = 10            # CAM channels of a typical Cityscapes image (classes with >= 1000 pixels)
INSTANCE_CLASSES = 3    # e.g. person, car, bicycle
INSTANCES = 12
START, END = "<!-- cityscapes -->", "<!-- end cityscapes -->"
TARGET_WALK_S, TARGET_WALK_MB = 1.0, 300.0


def _inputs(classes: int):
    import numpy as np
    import torch
    from benchmarks import cases
    h, w = (IMAGE[0] - 1) // 4 + 1, (IMAGE[1] - 1) // 4 + 1
    cam = cases.make_cams(1, classes, h, w)[0]
    edge = torch.sigmoid(6 * torch.nn.functional.avg_pool2d(torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(0)),
                                                             5, 1, 2))[0]
    image = (np.random.default_rng(0).random(IMAGE + (3,)) * 255).astype(np.uint8)
    return image, cam, edge


def _model(backbone: str):
    import warnings
    from irnet_fast.models import IRNet, PretrainedWeightsWarning
    from irnet_fast.models.irn import EdgeDisplacement
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        return EdgeDisplacement(IRNet(backbone), pad_to=0).eval()


def _measure_parts(step, spec) -> Dict[str, Any]:
    """Warm-up, lock and reset, then ``step(parts)`` until the repeat target; medians per part."""
    parts: Dict[str, List[float]] = {}
    if spec.get("warmup", True):
        step({})
    gc.collect()
    locked, reset, base = _lock_resident(), _reset_peak_rss(), _peak_rss_mb()
    while True:
        step(parts)
        runs = len(parts["step"])
        if runs >= spec["min_repeats"] and (sum(parts["step"]) >= spec["target_s"] or runs >= spec["max_repeats"]):
            break
    peak = _peak_rss_mb() - base
    return {"spec": spec, "parts_s": parts, "medians_s": {k: statistics.median(v) for k, v in parts.items()},
            "median_s": statistics.median(parts["step"]), "times_s": parts["step"], "peak_mb": peak,
            "hwm_reset": reset, "mlocked": locked}


def _timed(parts: Dict[str, List[float]], name: str, fn):
    t0 = time.perf_counter()
    out = fn()
    parts.setdefault(name, []).append(time.perf_counter() - t0)
    return out


def _run_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np
    import torch
    from irnet_fast.metrics import cam_to_label
    from irnet_fast.ops import random_walk
    from irnet_fast.pipeline.inference import boundary_and_displacement, upsample_scores
    torch.set_grad_enabled(False)
    dev = torch.device("cpu")
    op = spec["op"]
    image, cam, edge = _inputs(spec.get("channels") or (INSTANCE_CLASSES if op == "ins_seg" else CLASSES))
    keys = np.arange(cam.shape[0], dtype=np.int64)

    def walk(scores, edges):
        return random_walk([scores], [edges], radius=5, beta=10, exp_times=8, backend="cpp")[0]

    if op in ("irnet", "sem_seg"):
        model = _model(spec["backbone"])

        def step(parts):
            t0 = time.perf_counter()
            e, _ = _timed(parts, "irnet", lambda: boundary_and_displacement(model, image, dev))
            if op == "sem_seg":
                rw = _timed(parts, "walk", lambda: walk(cam, e))
                _timed(parts, "rest", lambda: cam_to_label(upsample_scores(rw, IMAGE).numpy(), keys, 0.25))
            parts.setdefault("step", []).append(time.perf_counter() - t0)
    elif op == "walk":
        def step(parts):
            _timed(parts, "step", lambda: walk(cam, edge))
    elif op == "ir_label":
        from irnet_fast.pipeline.cam_to_ir_label import ir_label
        from irnet_fast.pipeline.inference import upsample_scores as up
        high = up(cam, IMAGE).numpy()

        def step(parts):
            _timed(parts, "step", lambda: ir_label(image, high, keys, 0.30, 0.05, crf=True))
    elif op == "ins_seg":
        from benchmarks import cases
        from irnet_fast.ops import cluster_centroids, find_centroids_with_refinement, separate_score_by_mask
        from irnet_fast.pipeline.config import Config
        from irnet_fast.pipeline.make_ins_seg import instances_from_walk
        cfg = Config()
        h, w = cam.shape[1:]
        disp = torch.from_numpy(cases.centroid_field(h, w, "clean", centres=INSTANCES))

        def step(parts):
            t0 = time.perf_counter()
            cent = _timed(parts, "centroids", lambda: find_centroids_with_refinement(disp, 300, backend="cpp"))
            masks = _timed(parts, "clusters", lambda: cluster_centroids(cent, disp, cfg.centroid_thres))
            split = separate_score_by_mask(cam, masks)
            scores = split.reshape(-1, *split.shape[2:])
            rw = _timed(parts, "walk", lambda: walk(scores, edge))
            found = _timed(parts, "instances", lambda: instances_from_walk(rw, keys, masks.shape[0], IMAGE, cfg))
            parts.setdefault("step", []).append(time.perf_counter() - t0)
            parts.setdefault("clusters_n", []).append(float(masks.shape[0]))
            parts.setdefault("instances_n", []).append(float(len(found["score"])))
    else:
        raise ValueError(f"unknown case op {op!r}")
    out = _measure_parts(step, spec)
    out["threads"] = torch.get_num_threads()
    return out


def _label(spec: Dict[str, Any]) -> str:
    return f"cityscapes {spec['op']}" + (f" {spec['backbone']}" if "backbone" in spec else "")


def measure(quick: bool, command: str, only: Sequence[str] = ()) -> Dict[str, Any]:
    import datetime as _dt
    backbone = "resnet18" if quick else "resnet50"
    reps = dict(min_repeats=1 if quick else 2, max_repeats=3 if quick else 5, target_s=5.0 if quick else 20.0)
    specs = [dict(op="irnet", backbone=backbone, **reps), dict(op="sem_seg", backbone=backbone, **reps),
             dict(op="walk", min_repeats=3, max_repeats=10, target_s=3.0),
             dict(op="walk", channels=3, min_repeats=3, max_repeats=10, target_s=3.0),
             # the CRF has no first-call cost to leave out, and one pass at this size takes minutes on a loaded machine
             dict(op="ir_label", warmup=False, min_repeats=1, max_repeats=1 if quick else 2, target_s=0.0),
             dict(op="ins_seg", **reps)]
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    if only:
        specs = [s for s in specs if s["op"] in only]
    results = report.run_cases(specs, _label, "benchmarks.cityscapes")
    return {"command": command, "started": f"{started:%Y-%m-%d %H:%M}", "total_s": time.perf_counter() - t0,
            "machine": _machine(), "load_start": list(load_start), "load_end": list(os.getloadavg()),
            "results": results, "backbone": backbone}


def _ms(v: float) -> str:
    return f"{v * 1e3:.0f}"


def render(run: Dict[str, Any]) -> List[str]:
    res = {r["spec"]["op"] + str(r["spec"].get("channels") or ""): r for r in run["results"]}
    failed = [f"{op}: {r['error']}" for op, r in res.items() if "error" in r]
    ls, le = run["load_start"], run["load_end"]
    lines = [START, "## Cityscapes at full resolution (2048x1024, CPU)", "",
             f"Generated {run['started']} UTC by `{run['command']}` in {run['total_s']:.0f} s. Load average "
             f"{ls[0]:.1f} at the start and {le[0]:.1f} at the end: "
             + ("the machine was shared with other processes, so the times are those of a loaded machine "
                "(each case ran alone in its own process, but not alone on the cores)." if max(ls[0], le[0]) > 1.5
                else "a quiet machine."), "",
             f"Per image, {run['machine'].get('cores', '?')} cores, torch {res.get('walk', {}).get('threads', '?')} "
             f"threads, IRNet {run['backbone']} with random weights (timing only), {CLASSES} CAM channels for the "
             f"semantic steps, {INSTANCE_CLASSES} instance classes and {INSTANCES} instances for the instance step. "
             "Peak = RSS high-water mark above the model and the inputs (method of `benchmarks/report.py`). "
             "Module docstring of `benchmarks/cityscapes.py` for the cases.", ""]
    if failed:
        lines += ["Failed cases: " + "; ".join(failed), ""]
    lines += ["| step / part | median ms | min ms | runs | peak MB above inputs |", "|---|---:|---:|---:|---:|"]

    def row(name, r, part="step"):
        if r is None or "error" in r:
            return
        v = r["parts_s"][part]
        peak = f"{r['peak_mb']:.0f}" if part == "step" else ""
        lines.append(f"| {name} | {_ms(statistics.median(v))} | {_ms(min(v))} | {len(v)} | {peak} |")

    irn, sem, walk, irl, ins = (res.get(k) for k in ("irnet", "sem_seg", "walk", "ir_label", "ins_seg"))
    row("IRNet inference alone (image + flip)", irn)
    row("make_sem_seg: whole step", sem)
    if sem and "error" not in sem:
        for part, text in (("irnet", "IRNet inference"), ("walk", f"random walk ({CLASSES} channels, 256x512)"),
                           ("rest", "upsample x4, normalise, argmax")):
            row(f"&nbsp;&nbsp;{text}", sem, part)
    row(f"random walk alone ({CLASSES} channels, 256x512, cpp)", walk)
    row("random walk alone (3 channels, 256x512, cpp)", res.get("walk3"))
    row(f"cam_to_ir_label: ir_label with the dense CRF ({CLASSES} channels)", irl)
    row("make_ins_seg after IRNet (centroids, clusters, walk, instances)", ins)
    if ins and "error" not in ins:
        for part in ("centroids", "clusters", "walk", "instances"):
            row(f"&nbsp;&nbsp;{part}", ins, part)
    lines.append("")
    if ins and "error" not in ins:
        lines += [f"The instance step's walk ran on {statistics.median(ins['parts_s']['clusters_n']):.0f} clusters x "
                  f"{INSTANCE_CLASSES} classes; it found {statistics.median(ins['parts_s']['instances_n']):.0f} "
                  "segments.", ""]
    if walk and sem and irn and all("error" not in r for r in (walk, sem, irn)):
        wt = statistics.median(sem["parts_s"]["walk"])
        above = sem["peak_mb"] - irn["peak_mb"]
        ok = wt <= TARGET_WALK_S and above < TARGET_WALK_MB
        lines += [f"Target: walk <= {TARGET_WALK_S:.0f} s and < {TARGET_WALK_MB:.0f} MB above the network's memory: "
                  f"{wt:.2f} s in the step ({statistics.median(walk['times_s']):.2f} s alone), the step's peak "
                  f"{sem['peak_mb']:.0f} MB against IRNet's {irn['peak_mb']:.0f} MB: {above:+.0f} MB (the walk alone: "
                  f"{walk['peak_mb']:.0f} MB above its inputs) - **{'met' if ok else 'not met'}**."]
        w3 = res.get("walk3")
        if w3 and "error" not in w3:
            ratio = statistics.median(walk["times_s"]) / statistics.median(w3["times_s"])
            lines += ["", f"Side by side in this run, the walk of {CLASSES} channels took {ratio:.2f}x the time of 3 "
                      "channels (the case `benchmarks.label_generation` measures; see its table above for that "
                      "case's time on its machine and load)."]
        if irl and ins and "error" not in irl and "error" not in ins:
            lines += ["", f"Whole per-image steps: make_sem_seg {statistics.median(sem['times_s']):.1f} s; "
                      f"make_ins_seg {statistics.median(irn['times_s']) + statistics.median(ins['times_s']):.1f} s "
                      f"(IRNet + the rest); cam_to_ir_label {statistics.median(irl['times_s']):.1f} s."]
    lines += ["", END]
    return lines


def write_section(path: Path, lines: List[str]) -> None:
    """Replace (or append) the marked section of ``path``, atomically."""
    from irnet_fast._io import atomic_write_bytes
    text = path.read_text() if path.is_file() else ""
    section = "\n".join(lines)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_bytes(path, text.encode())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cityscapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 and fewer repeats")
    parser.add_argument("--out", default=str(HERE / "RESULTS_LABELS.md"), help="results file (its section)")
    parser.add_argument("--only", default=None, metavar="OPS", help="measure only these cases (irnet, sem_seg, walk, "
                        "ir_label, ins_seg; comma-separated), the others taken from the last run's JSON")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_run_child(json.loads(args.case))))
        return 0
    argv_list = list(sys.argv[1:] if argv is None else argv)
    only = [o for o in (args.only or "").split(",") if o]
    run = measure(args.quick, ("python -m benchmarks.cityscapes " + " ".join(shlex.quote(a) for a in argv_list)).strip(),
                  only)
    raw = Path(args.out).with_suffix(".cityscapes.json")
    if only and raw.is_file():  # the cases not measured again come from the last run
        done = {(r["spec"]["op"], r["spec"].get("channels")) for r in run["results"]}
        kept = [r for r in json.loads(raw.read_text())["results"] if (r["spec"]["op"], r["spec"].get("channels")) not in done]
        run["results"] = kept + run["results"]
    from irnet_fast._io import atomic_write_json
    atomic_write_json(raw, run)
    lines = render(run)
    write_section(Path(args.out), lines)
    print("\n".join(lines))
    return 1 if any("error" in r for r in run["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
