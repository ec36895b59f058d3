"""Label-generation benchmarks: centroid refinement, the make_sem_seg step, large random walks.

    python -m benchmarks.label_generation [--quick] [--out benchmarks/RESULTS_LABELS.md]

1. ``find_centroids_with_refinement`` at 94x125 (a VOC image at stride 4), 300 iterations: the
   NumPy reference (``irnet_fast.ops._reference``) against every backend present (cpp, numba,
   torch), on the displacement field of ``benchmarks/test_bench_instances.py`` (pixels pointing to
   a few instance centres, plus smooth noise); every backend's result is checked bit for bit.
2. One ``make_sem_seg`` image (375x500, VOC-sized) on the CPU: IRNet inference (ResNet-50 with
   random weights, ``EdgeDisplacement``: image + flip), the random walk (2 class channels, cpp,
   radius 5, beta 10, exp_times 8 on the 94x125 stride-4 map) and the rest (x4 upsampling, max
   normalisation, background channel, argmax); the walk's share of the step. ``--quick``
   (or IRNET_BENCH_QUICK=1) uses ResNet-18 and fewer repeats.
3. The random walk (3 channels, cpp) on a COCO-sized (160x160 map, 640x640 image) and a
   Cityscapes-sized (256x512 map) input: time and peak memory above the inputs, next to the size
   of one dense N x N float32 copy of the reference's transition matrix.

Every case runs in a fresh subprocess with the memory probes of ``benchmarks.report`` (imports,
inputs and a call on a tiny input first; then the RSS high-water mark is reset; peak = memory
above the inputs). The Markdown file is written atomically.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks import report
from benchmarks.report import (_fmt, _lock_resident, _machine, _peak_rss_mb, _ratio, _reset_peak_rss,
                               _run_child as _report_run_child)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASE_TIMEOUT_S = 900

CENTROID_SIZE = (94, 125)
CENTROID_ITERATIONS = 300
CENTROID_METHODS = ("reference", "cpp", "numba", "torch")
IMAGE_SIZE = (375, 500)           # a VOC image; its stride-4 map is 94x125
SEM_SEG_CLASSES = 2               # CAM channels of the walk (classes present in the image)
WALK_SIZES = ((160, 160), (256, 512))   # COCO 640x640 and Cityscapes 1024x2048 at stride 4
WALK_CHANNELS = 3
WALK_NAMES = {(160, 160): "COCO-sized (640x640 image)", (256, 512): "Cityscapes-sized (1024x2048 image)"}

TARGET_CENTROID_SPEEDUP = 100.0
TARGET_WALK_SHARE = 0.05


def _size_label(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def _quick_env() -> bool:
    from benchmarks import cases
    return cases.quick_mode()


# ----------------------------------------------------------------------------- child: one case


def _time_repeated(fn, *, target_s: float, min_repeats: int, max_repeats: int) -> Tuple[List[float], Any]:
    """One untimed warm-up call, then runs until ``target_s`` (at least ``min_repeats``)."""
    result = fn()
    times: List[float] = []
    while len(times) < max_repeats:
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if len(times) >= min_repeats and sum(times) >= target_s:
            break
    return times, result


def _centroid_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks.test_bench_instances import displacement_field
    from irnet_fast.ops import _reference, find_centroids_with_refinement
    method, size, iterations = spec["method"], tuple(spec["size"]), int(spec["iterations"])

    def runner(field):
        if method == "reference":
            return lambda: _reference.find_centroids_with_refinement(field, iterations)
        tensor = torch.from_numpy(field)
        return lambda: find_centroids_with_refinement(tensor, iterations, backend=method)

    runner(displacement_field(8, 10))()                 # compile / initialise on a tiny field
    field = displacement_field(*size)
    gc.collect()
    locked = _lock_resident()
    reset = _reset_peak_rss()
    base = _peak_rss_mb()
    times, result = _time_repeated(runner(field), target_s=spec["target_s"], min_repeats=spec["min_repeats"],
                                   max_repeats=spec.get("max_repeats", 30))
    peak = _peak_rss_mb() - base
    if spec.get("save"):
        np.save(spec["save"], np.asarray(result.numpy() if hasattr(result, "numpy") else result, np.int32))
    return {"spec": spec, "times_s": times, "median_s": statistics.median(times), "peak_mb": peak,
            "hwm_reset": reset, "mlocked": locked}


def _sem_seg_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    import warnings

    import numpy as np
    import torch

    from benchmarks import cases
    from irnet_fast.models import IRNet, PretrainedWeightsWarning
    from irnet_fast.models.irn import EdgeDisplacement
    from irnet_fast.ops import random_walk
    from irnet_fast.metrics import cam_to_label
    from irnet_fast.pipeline.inference import boundary_and_displacement, upsample_scores
    height, width = spec["image"]
    classes = int(spec["classes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        model = EdgeDisplacement(IRNet(spec["backbone"])).eval()
    device = torch.device("cpu")
    image = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    map_h, map_w = (height - 1) // 4 + 1, (width - 1) // 4 + 1
    cam = cases.make_cams(1, classes, map_h, map_w)[0]
    keys = np.arange(classes, dtype=np.int64) * 3 + 1      # any class ids
    parts: Dict[str, List[float]] = {"irnet": [], "walk": [], "rest": [], "step": []}

    def step(record: bool):
        with torch.no_grad():
            t0 = time.perf_counter()
            edge, _ = boundary_and_displacement(model, image, device)
            t1 = time.perf_counter()
            rw = random_walk([cam], [edge], radius=5, beta=10, exp_times=8, backend="cpp")[0]
            t2 = time.perf_counter()
            label = cam_to_label(upsample_scores(rw, (height, width)).numpy(), keys, 0.25)
            t3 = time.perf_counter()
        if record:
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                parts[key].append(value)
        return edge, label

    step(False)                                          # warm-up (first-call costs)
    gc.collect()
    locked = _lock_resident()
    reset = _reset_peak_rss()
    base = _peak_rss_mb()
    edge, label = step(True)
    while len(parts["step"]) < spec["min_repeats"] or (sum(parts["step"]) < spec["target_s"]
                                                       and len(parts["step"]) < spec.get("max_repeats", 10)):
        edge, label = step(True)
    peak = _peak_rss_mb() - base
    medians = {key: statistics.median(values) for key, values in parts.items()}
    # for comparison: the same walk on one thread (the parallel walk synchronises its threads after
    # every step, so on a loaded machine a thread that loses its core stalls every step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        walk1, _ = _time_repeated(lambda: random_walk([cam], [edge], radius=5, beta=10, exp_times=8, backend="cpp"),
                                  target_s=1.0, min_repeats=3, max_repeats=20)
    finally:
        torch.set_num_threads(threads)
    return {"spec": spec, "parts_s": parts, "medians_s": medians, "median_s": medians["step"],
            "times_s": parts["step"], "walk_1thread_s": walk1, "peak_mb": peak, "hwm_reset": reset, "mlocked": locked,
            "map": [int(edge.shape[-2]), int(edge.shape[-1])], "label_shape": list(label.shape),
            "threads": threads}


def _run_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run one case in this (fresh) process."""
    if spec["op"] == "centroids":
        return _centroid_child(spec)
    if spec["op"] == "sem_seg":
        return _sem_seg_child(spec)
    if spec["op"] == "random_walk":                      # benchmarks.report's case, as it measures it
        import torch
        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        out = _report_run_child(spec)
        out["threads"] = torch.get_num_threads()
        return out
    raise ValueError(f"unknown case op {spec['op']!r}")


def _spec_label(spec: Dict[str, Any]) -> str:
    if spec["op"] == "centroids":
        return f"find_centroids {_size_label(spec['size'])} x{spec['iterations']} {spec['method']}"
    if spec["op"] == "sem_seg":
        return f"make_sem_seg {_size_label(spec['image'])} {spec['backbone']}"
    threads = f" {spec['threads']} thread(s)" if spec.get("threads") else ""
    return f"random_walk {_size_label(spec['size'])} {spec['method']}{threads}"


# ----------------------------------------------------------------------------- parent


def _case_specs(*, centroid_size, iterations, image_size, backbone, walk_sizes, quick, workdir: Path):
    from benchmarks import cases
    specs: List[Dict[str, Any]] = []
    for method in CENTROID_METHODS:
        if method != "reference" and not cases.backend_available(method):
            continue
        specs.append({"op": "centroids", "method": method, "size": list(centroid_size), "iterations": iterations,
                      "target_s": 0.5 if quick else 1.5, "min_repeats": 2 if quick else 3,
                      "save": str(workdir / f"centroids_{method}.npy")})
    specs.append({"op": "sem_seg", "backbone": backbone, "image": list(image_size), "classes": SEM_SEG_CLASSES,
                  "target_s": 4.0 if quick else 12.0, "min_repeats": 2 if quick else 3})
    if cases.backend_available("cpp"):
        for size in walk_sizes:
            for threads in (None, 1):     # torch's thread count (all cores), then one thread for comparison
                specs.append({"op": "random_walk", "method": "cpp", "size": list(size), "quick": quick,
                              "threads": threads})
    return specs


def measure(*, centroid_size: Sequence[int] = CENTROID_SIZE, iterations: int = CENTROID_ITERATIONS,
            image_size: Sequence[int] = IMAGE_SIZE, backbone: str = "resnet50",
            walk_sizes: Sequence[Sequence[int]] = WALK_SIZES, quick: bool = False,
            command: str = "python -m benchmarks.label_generation", progress: bool = True) -> Dict[str, Any]:
    """Run every case in its own subprocess (sizes as given); the raw figures, JSON-able."""
    import numpy as np
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = os.getloadavg()
    machine = _machine()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="irnet_labels_") as tmp:
        specs = _case_specs(centroid_size=centroid_size, iterations=iterations, image_size=image_size,
                            backbone=backbone, walk_sizes=walk_sizes, quick=quick, workdir=Path(tmp))
        results = report.run_cases(specs, _spec_label, "benchmarks.label_generation", progress)
        # bit-exact agreement of every backend's centroids with the NumPy reference's
        saved = {r["spec"]["method"]: r["spec"]["save"] for r in results
                 if r["spec"]["op"] == "centroids" and "error" not in r}
        if "reference" in saved and os.path.exists(saved["reference"]):
            expected = np.load(saved["reference"])
            for res in results:
                if res["spec"]["op"] == "centroids" and "error" not in res and os.path.exists(res["spec"]["save"]):
                    res["exact"] = bool(np.array_equal(np.load(res["spec"]["save"]), expected))
    for res in results:
        res["spec"].pop("save", None)
    return {"command": command, "started": f"{started:%Y-%m-%d %H:%M}", "total_s": time.perf_counter() - t0,
            "quick": quick, "machine": machine, "load_start": list(load_start), "load_end": list(os.getloadavg()),
            "results": results}


def dense_copy_bytes(size: Sequence[int]) -> int:
    """Bytes of one dense N x N float32 matrix (the reference's transition matrix) for an h x w map."""
    num = int(size[0]) * int(size[1])
    return num * num * 4


def _bytes_text(num: int) -> str:
    if num >= 1e9:
        return f"{num / 1e9:.1f} GB ({num / 2 ** 30:.1f} GiB)"
    return f"{num / 1e6:.1f} MB ({num / 2 ** 20:.1f} MiB)"


def _one_thread_share(sem: Dict[str, Any]) -> Optional[Tuple[float, float]]:
    """Median seconds of the one-thread walk and the walk's share of a step that used it."""
    walk1 = sem.get("walk_1thread_s")
    if not walk1:
        return None
    med = sem["medians_s"]
    one = statistics.median(walk1)
    return one, one / (med["step"] - med["walk"] + one)


def _headlines(run: Dict[str, Any]) -> List[Dict[str, Any]]:
    results = run["results"]
    cent = {r["spec"]["method"]: r for r in results if r["spec"]["op"] == "centroids" and "error" not in r}
    sem = next((r for r in results if r["spec"]["op"] == "sem_seg" and "error" not in r), None)
    rows = []

    def add(target, value, text, ok):
        rows.append({"target": target, "measured": text if value is not None else "not measured",
                     "status": "not measured" if value is None else ("met" if ok else "not met")})

    ref, cpp = cent.get("reference"), cent.get("cpp")
    some = ref or cpp
    size = _size_label(some["spec"]["size"] if some else CENTROID_SIZE)
    iterations = some["spec"]["iterations"] if some else CENTROID_ITERATIONS
    speed = _ratio(ref and ref["median_s"], cpp and cpp["median_s"])
    by_min = _ratio(ref and min(ref["times_s"]), cpp and min(cpp["times_s"]))
    add(f"cpp find_centroids_with_refinement {size} x{iterations} >= {TARGET_CENTROID_SPEEDUP:.0f}x faster than "
        "the NumPy reference", speed,
        f"{_fmt(speed)}x (of minima {_fmt(by_min)}x; {_fmt(cpp and cpp['median_s'] * 1e3, '.2f')} ms vs "
        f"{_fmt(ref and ref['median_s'] * 1e3, '.1f')} ms)", speed is not None and speed >= TARGET_CENTROID_SPEEDUP)
    share = sem["medians_s"]["walk"] / sem["medians_s"]["step"] if sem else None
    one = _one_thread_share(sem) if sem else None
    add(f"random walk < {TARGET_WALK_SHARE:.0%} of a make_sem_seg step"
        + (f" ({_size_label(sem['spec']['image'])}, {sem['spec']['backbone']}, CPU)" if sem else ""), share,
        f"{_fmt(share and share * 100, '.2f')}% ({_fmt(sem and sem['medians_s']['walk'] * 1e3, '.1f')} ms of "
        f"{_fmt(sem and sem['medians_s']['step'] * 1e3, '.0f')} ms; with the walk on 1 thread "
        f"{_fmt(one and one[0] * 1e3, '.1f')} ms, {_fmt(one and one[1] * 100, '.2f')}%)",
        share is not None and share < TARGET_WALK_SHARE)
    for res in results:
        if res["spec"]["op"] != "random_walk" or "error" in res:
            continue
        size = tuple(res["spec"]["size"])
        rows.append({"target": f"cpp random walk {_size_label(size)} (C={WALK_CHANNELS}, {res['threads']} "
                               f"thread{'s' if res['threads'] > 1 else ''}), no target",
                     "measured": f"{res['median_s'] * 1e3:.0f} ms (min {min(res['times_s']) * 1e3:.0f}), "
                                 f"{res['peak_mb']:.1f} MB above the inputs "
                                 f"(reference: {_bytes_text(dense_copy_bytes(size))} per dense copy)",
                     "status": "info"})
    return rows


def render(run: Dict[str, Any], out_path: Path) -> List[Dict[str, Any]]:
    """Write the Markdown report of a :func:`measure` run atomically; return the headline rows."""
    results, machine = run["results"], run["machine"]
    load_start, load_end = run["load_start"], run["load_end"]
    heads = _headlines(run)
    cent = [r for r in results if r["spec"]["op"] == "centroids"]
    sem = [r for r in results if r["spec"]["op"] == "sem_seg"]
    walks = [r for r in results if r["spec"]["op"] == "random_walk"]
    lines = ["# irnet_fast label-generation benchmarks", "",
             f"Generated {run['started']} UTC by `{run['command']}` (run from the repository root) in "
             f"{run['total_s']:.0f} s{' (quick mode: ResNet-18, fewer repeats)' if run['quick'] else ''}. "
             "All ratios below were measured in this same run.", ""]
    lines += report.machine_section(machine, load_start, load_end)
    lines += ["## Method", "",
              "- Every case runs in a fresh process: imports, inputs and one call on a tiny input (JIT compilation, "
              "lazy initialisation; for make_sem_seg one whole step at full size), then the resident pages are locked "
              "(`mlockall(MCL_CURRENT | MCL_ONFAULT)`), the RSS high-water mark is reset (`/proc/self/clear_refs`) and "
              "the case is timed with `time.perf_counter` (one warm-up call, then the median of repeats, \"runs\"). "
              "Peak MB = `getrusage(RUSAGE_SELF).ru_maxrss` after the runs minus before: memory above the inputs "
              "(the helpers of `benchmarks/report.py`). \"min ms\" is the fastest run, the figure least disturbed "
              "by other processes on a shared machine; targets are judged on the medians.",
              "- find_centroids_with_refinement: the displacement field of `benchmarks/test_bench_instances.py` "
              "(`displacement_field`, seed 0: every pixel's (dy, dx) points to the nearest of 5 random instance "
              "centres, scaled by 0.6-1.0 per instance, plus Gaussian-smoothed noise of amplitude 2, float32). "
              "Reference: `irnet_fast.ops._reference.find_centroids_with_refinement` (NumPy, the IRNet code "
              "verbatim) on the NumPy array; backends: `irnet_fast.ops.find_centroids_with_refinement(tensor, "
              "iterations, backend=...)`. \"exact\": the int32 centroids equal the reference's bit for bit.",
              "- make_sem_seg step: `IRNet(backbone)` with random weights (timing only; PretrainedWeightsWarning "
              "silenced) in `EdgeDisplacement`, eval mode, `torch.no_grad()`, CPU. Per image: "
              "`boundary_and_displacement` of `irnet_fast.pipeline.make_sem_seg` (ImageNet normalisation, the "
              "image and its flip in one batch, padded to a multiple of 16) = \"IRNet inference\"; "
              f"`random_walk([cam], [edge], radius=5, beta=10, exp_times=8, backend=\"cpp\")` with "
              f"{SEM_SEG_CLASSES} class channels (the CAMs of an image with {SEM_SEG_CLASSES} classes; the "
              "background is a constant channel added after the walk) = \"random walk\"; `upsample_scores` "
              "(bilinear x4, crop, divide by the max) and `irnet_fast.metrics.cam_to_label` (background 0.25, argmax, class ids) "
              "= \"rest\". Image: uniform random uint8. PNG writing and file loading are not timed.",
              "- Large random walks: `benchmarks.report`'s random-walk case (the same inputs: boundary map "
              "`sigmoid(6 * avg_pool2d(randn, 5, 1, 2))`, CAMs `rand` normalised per channel), 3 channels, "
              "radius 5, beta 10, 256 steps, cpp backend. The dense reference (`_reference.propagate_to_edge`) "
              "builds the N x N float32 transition matrix and squares it 8 times; each dense copy is N * N * 4 "
              "bytes, and a squaring `T @ T` holds at least three at once (both operands, which are the same "
              "matrix here, the product, plus the affinity matrix and `A ** beta` that precede it), so it needs "
              "several such copies.", ""]

    lines += ["## find_centroids_with_refinement", "",
              "| size | iterations | implementation | median ms | min ms | runs | peak MB above inputs | "
              "speed-up vs reference (median) | of minima | exact |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    ref = next((r for r in cent if r["spec"]["method"] == "reference" and "error" not in r), None)
    for res in cent:
        spec = res["spec"]
        name = "NumPy reference" if spec["method"] == "reference" else f"{spec['method']} (irnet_fast)"
        if "error" in res:
            lines.append(f"| {_size_label(spec['size'])} | {spec['iterations']} | {name} | failed: {res['error']} "
                         "| | | | | | |")
            continue
        speed = _ratio(ref and ref["median_s"], res["median_s"])
        by_min = _ratio(ref and min(ref["times_s"]), min(res["times_s"]))
        exact = "base" if spec["method"] == "reference" else (
            "n/a" if res.get("exact") is None else ("yes" if res["exact"] else "NO"))
        lines.append(f"| {_size_label(spec['size'])} | {spec['iterations']} | {name} | {res['median_s'] * 1e3:.2f} | "
                     f"{min(res['times_s']) * 1e3:.2f} | {len(res['times_s'])} | {res['peak_mb']:.1f} | "
                     f"{_fmt(speed, '.1f', 'x')} | {_fmt(by_min, '.1f', 'x')} | {exact} |")
    head = heads[0]
    lines += ["", f"Target: {head['target']}: {head['measured']} - **{head['status']}**.", ""]

    lines += ["## make_sem_seg per image (CPU)", ""]
    for res in sem:
        spec = res["spec"]
        if "error" in res:
            lines += [f"{_size_label(spec['image'])}, {spec['backbone']}: failed: {res['error']}", ""]
            continue
        med, parts = res["medians_s"], res["parts_s"]
        note = ""
        if spec["backbone"] != "resnet50":
            note = f" ({'quick mode: ' if run['quick'] else ''}not the paper's ResNet-50)"
        lines += [f"Image {_size_label(spec['image'])}, backbone {spec['backbone']}{note}"
                  f", stride-4 map {_size_label(res['map'])}, {spec['classes']} class channels, "
                  f"torch {res['threads']} threads, {len(parts['step'])} runs; peak "
                  f"{res['peak_mb']:.1f} MB above the model and inputs.", "",
                  "| part | median ms | min ms | share of the step (medians) |", "|---|---:|---:|---:|"]
        names = {"irnet": "IRNet inference (image + flip)", "walk": "random walk (cpp, 256 steps)",
                 "rest": "rest (upsample x4, normalise, argmax)", "step": "whole step"}
        for key, name in names.items():
            lines.append(f"| {name} | {med[key] * 1e3:.1f} | {min(parts[key]) * 1e3:.1f} | "
                         f"{med[key] / med['step']:.2%} |")
        one = _one_thread_share(res)
        if one:
            lines += [f"| for comparison, not in the step: the same walk on 1 thread | {one[0] * 1e3:.1f} | "
                      f"{min(res['walk_1thread_s']) * 1e3:.1f} | {one[1]:.2%} of a step using it |", "",
                      f"The walk runs on torch's {res['threads']} threads in the step. It synchronises its threads "
                      "after each of its 256 steps, so when other processes compete for the cores a descheduled "
                      "thread stalls every step (a scheduler time slice, several ms, each); the one-thread row "
                      "shows the walk without that effect."]
        lines.append("")
    head = heads[1]
    lines += [f"Target: {head['target']}: {head['measured']} - **{head['status']}**.", ""]

    lines += ["## Random walk on large maps (cpp, 3 channels)", "",
              "| input | map | N | threads | median ms | min ms | runs | peak MB above inputs | reference: one "
              "dense N x N float32 copy |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for res in walks:
        size = tuple(res["spec"]["size"])
        name = WALK_NAMES.get(size, "-")
        dense = _bytes_text(dense_copy_bytes(size))
        if "error" in res:
            lines.append(f"| {name} | {_size_label(size)} | {size[0] * size[1]} | {res['spec'].get('threads') or ''} "
                         f"| failed: {res['error']} | | | | {dense} |")
            continue
        lines.append(f"| {name} | {_size_label(size)} | {size[0] * size[1]} | {res['threads']} | "
                     f"{res['median_s'] * 1e3:.1f} | "
                     f"{min(res['times_s']) * 1e3:.1f} | {len(res['times_s'])} | {res['peak_mb']:.1f} | {dense} |")
    lines += ["", "The reference needs several such dense copies at once while it squares the matrix (the product "
              "and its operand, after the affinity matrix and its power), so its working set is a multiple of the "
              "last column; it was not run at these sizes.", ""]

    lines += ["## Headlines", "", "| target | measured (this run) | status |", "|---|---|---|"]
    lines += [f"| {h['target']} | {h['measured']} | {h['status']} |" for h in heads]
    unlocked = [_spec_label(r["spec"]) for r in results if "error" not in r
                and not (r.get("mlocked", True) and r.get("hwm_reset", True))]
    if unlocked:
        lines += ["", f"Note: {len(unlocked)} case(s) could not lock their pages or reset the RSS high-water mark "
                  f"({', '.join(unlocked[:4])}{', ...' if len(unlocked) > 4 else ''}); their peak MB may be off."]
    if any(abs(x) > 1.5 for x in list(load_start) + list(load_end)):
        lines += ["", f"Note: the load average was {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the "
                  "end on this machine, so other processes shared the cores and timings are noisy."]
    out_path = Path(out_path)
    if out_path.is_file():  # the section that benchmarks.cityscapes writes into this file stays
        from benchmarks.cityscapes import END, START
        old = out_path.read_text()
        if START in old and END in old:
            lines += ["", START + old.split(START, 1)[1].split(END, 1)[0] + END]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=str(out_path.parent))
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return heads


def run_cases(out_path, **sizes) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Measure (``sizes``: the keyword arguments of :func:`measure`) and write ``out_path``."""
    run = measure(**sizes)
    heads = render(run, Path(out_path))
    return run, heads


# ----------------------------------------------------------------------------- entry point


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.label_generation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="ResNet-18 for the make_sem_seg step and fewer repeats (also IRNET_BENCH_QUICK=1)")
    parser.add_argument("--out", default=str(HERE / "RESULTS_LABELS.md"), help="Markdown output "
                        "(default benchmarks/RESULTS_LABELS.md)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)   # internal: one case, JSON spec
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_run_child(json.loads(args.case))))
        return 0
    argv_list = list(sys.argv[1:] if argv is None else argv)
    quick = args.quick or _quick_env()
    command = "python -m benchmarks.label_generation " + " ".join(shlex.quote(a) for a in argv_list)
    if _quick_env() and not args.quick:
        command = "IRNET_BENCH_QUICK=1 " + command
    run, heads = run_cases(args.out, backbone="resnet18" if quick else "resnet50", quick=quick,
                           command=command.strip())
    print("\nHeadlines (this run):")
    for h in heads:
        print(f"  [{h['status']:>12s}] {h['target']}: {h['measured']}")
    print(f"\nwrote {args.out}; measuring took {run['total_s']:.0f} s")
    return 1 if any("error" in r for r in run["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
