"""IRNet training benchmarks: the loss against the reference formula, and one step.

    python -m benchmarks.irn_training            # writes benchmarks/RESULTS_IRN.md
    python -m benchmarks.irn_training --quick    # smaller step benchmark (ResNet-18, 256 crop)

1. Loss forward + backward, B=8, 128x128 at stride 4, radius 10: ``irn_loss`` (path_affinity +
   direction-at-a-time displacement L1) against ``dense_irn_loss`` (PathIndex index arrays,
   gather + max-pool, the pair tensor), each in a fresh process: median time and peak RSS above
   the inputs (labels included in the inputs for both; the high-water mark is reset after the
   set-up, as in benchmarks/report.py).
2. One IRNet training step (ResNet-50, batch 2, 512 crop): time of the frozen backbone, of the
   branches (forward + backward) and of the loss (forward + backward), and their shares.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _loss_inputs(batch=8, size=128, radius=10, seed=0):
    from irnet_fast.ops import path_affinity_labels
    gen = torch.Generator().manual_seed(seed)
    edge = torch.randn(batch, 1, size, size, generator=gen)
    disp = torch.randn(batch, 2, size, size, generator=gen)
    coarse = (torch.rand(batch, size // 8, size // 8, generator=gen) * 4).long()
    label_map = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    label_map[label_map == 3] = 255
    return edge, disp, label_map, path_affinity_labels(label_map, radius)


def _measure_loss(method: str, repeats: int) -> dict:
    """In this process: median ms of forward + backward, and the peak RSS above the inputs."""
    from irnet_fast.models._reference import dense_irn_loss
    from irnet_fast.models.irn import irn_loss
    edge, disp, label_map, labels = _loss_inputs()

    def run():
        e, d = edge.clone().requires_grad_(), disp.clone().requires_grad_()
        out = irn_loss(e, d, labels, 10) if method == "fast" else dense_irn_loss(e, d, label_map, 10)
        out["total"].backward()
        return float(out["total"])

    # the high-water mark of the set-up (label extraction) must not hide the run's own peak
    from benchmarks.report import _lock_resident, _reset_peak_rss
    _lock_resident()
    if not _reset_peak_rss():
        raise RuntimeError("cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times), "peak_mb": peak, "total": value}


def _in_subprocess(method: str, repeats: int) -> dict:
    code = (f"import json, benchmarks.irn_training as b; "
            f"print(json.dumps(b._measure_loss({method!r}, {repeats})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def training_step(backbone="resnet50", batch=2, crop=512, radius=10, repeats=2) -> dict:
    """Times of one IRNet step split into frozen backbone, branches and loss (forward + backward)."""
    import warnings

    from irnet_fast.models import IRNet
    from irnet_fast.models.irn import irn_loss
    from irnet_fast.ops import path_affinity_labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IRNet(backbone)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, crop, crop, generator=gen)
    label_map = (torch.rand(batch, crop // 32, crop // 32, generator=gen) * 4).long()
    label_map = label_map.repeat_interleave(8, 1).repeat_interleave(8, 2)
    labels = path_affinity_labels(label_map, radius)
    parts = {"backbone": [], "branches": [], "loss": [], "step": []}
    for _ in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        features = model.features(image)
        t1 = time.perf_counter()
        edge, disp = model.heads(features)
        t2 = time.perf_counter()
        loss = irn_loss(edge, disp, labels, radius)["total"]
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t0)):
            parts[key].append(value)
    return {key: 1000 * statistics.median(values[1:]) for key, values in parts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at 256 crop for the step")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_IRN.md"))
    args = parser.parse_args(argv)
    command = "python -m benchmarks.irn_training" + (" --quick" if args.quick else "")
    fast = _in_subprocess("fast", 5)
    dense = _in_subprocess("dense", 3)
    step_cfg = dict(backbone="resnet18", crop=256) if args.quick else dict(backbone="resnet50", crop=512)
    step = training_step(**step_cfg)
    # the branches' backward runs inside the loss's backward() call: report forward + backward of
    # branches and loss together as "outside the backbone"
    outside = step["branches"] + step["loss"]
    speed, memory = dense["ms"] / fast["ms"], dense["peak_mb"] / max(fast["peak_mb"], 1e-3)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    lines = [
        "# IRNet training benchmarks", "",
        f"`{command}` on {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        "## Loss forward + backward (B=8, 128x128 at stride 4, radius 10)", "",
        "| method | median ms | min ms | peak MB above inputs | loss |", "|---|---:|---:|---:|---:|",
        f"| irn_loss (fast ops) | {fast['ms']:.0f} | {fast['min_ms']:.0f} | {fast['peak_mb']:.0f} | {fast['total']:.6f} |",
        f"| reference formula (index arrays) | {dense['ms']:.0f} | {dense['min_ms']:.0f} | {dense['peak_mb']:.0f} | "
        f"{dense['total']:.6f} |", "",
        f"Speed-up {speed:.1f}x (target >= 5x: {'met' if speed >= 5 else 'not met'}); "
        f"memory {memory:.1f}x less (target >= 10x: {'met' if memory >= 10 else 'not met'}).", "",
        f"## One training step ({step_cfg['backbone']}, batch 2, {step_cfg['crop']} crop, CPU)", "",
        "| part | ms | share |", "|---|---:|---:|",
        f"| frozen backbone (forward, no grad) | {step['backbone']:.0f} | {step['backbone'] / step['step']:.0%} |",
        f"| branches forward | {step['branches']:.0f} | {step['branches'] / step['step']:.0%} |",
        f"| loss forward + backward (branches' backward included) | {step['loss']:.0f} | "
        f"{step['loss'] / step['step']:.0%} |",
        f"| whole step (with the optimizer) | {step['step']:.0f} | 100% |", "",
        f"Outside the backbone: {outside / step['step']:.0%} of the step.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
