"""Measure the irnet_fast benchmark cases and write ``benchmarks/RESULTS.md`` and a log-log plot.

    python -m benchmarks.report [--quick] [--out benchmarks/RESULTS.md] [--plot benchmarks/random_walk.png]
    python -m benchmarks.report --gpu [--out gpu_out/gpu_results.md]

CPU mode: every case (random walk per method and size, path_affinity per backend and mode) runs
in a fresh subprocess: imports, inputs, one call on a tiny input (JIT compilation, lazy
initialisation), then the high-water mark of the resident set size is reset
(``/proc/self/clear_refs``) and read with ``resource.getrusage(RUSAGE_SELF).ru_maxrss``; the case
is prepared (sparse matrices and index arrays count) and timed with ``time.perf_counter``
(warm-up, median of repeats), and the peak is read again. "Peak MB" is that difference: memory
above the inputs. The parent writes the table, the ratios measured in this same run, the project's
targets met / not met, and the plot. ``--quick`` (or IRNET_BENCH_QUICK=1) stops at 94x125 and
runs the dense reference at 32x32 only.

GPU mode (``--gpu``, for a lent GPU machine, see gpu_check.sh): one process, CUDA timings with
``torch.cuda.synchronize``, peak CUDA memory from torch's allocator, agreement with the CPU
``cpp`` backend; writes a Markdown file (``$OUT/gpu_results.md`` by default).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASE_TIMEOUT_S = 900
LOAD_PROCESSES, LOAD_THREADS = 2, 2   # the under-load cases: busy torch processes x threads each
GPU_DEVICE = "cuda"   # GPU mode's device (a test can point it elsewhere)

# ----------------------------------------------------------------------------- memory probes


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _lock_resident() -> bool:
    """Keep this process's resident pages resident: ``mlockall(MCL_CURRENT | MCL_ONFAULT)``.

    Some machines reclaim cold pages proactively (DAMON ``pageout``): library text dropped from
    the RSS during a run would hide the run's own allocations from the high-water mark. Locked
    pages cannot be reclaimed; MCL_ONFAULT locks only what is or becomes resident (no prefault).
    False where the kernel or the limits refuse (then the figure may be an underestimate).
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.mlockall(1 | 4) == 0          # MCL_CURRENT | MCL_ONFAULT
    except (OSError, AttributeError):
        return False


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


# ----------------------------------------------------------------------------- child: one case


def _spec_label(spec: Dict[str, Any]) -> str:
    load = " [under load]" if spec.get("load") else ""
    if spec["op"] == "random_walk":
        return f"random_walk {spec['size'][0]}x{spec['size'][1]} {spec['method']}{load}"
    if spec["op"] == "centroids":
        return f"find_centroids {spec['field']} {spec['method']}{load}"
    return f"path_affinity {spec['mode']} {spec['method']}{load}"


def _run_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run one case in this (fresh) process and return its timings and peak memory."""
    import numpy as np
    import torch

    from benchmarks import cases

    quick = spec.get("quick", False)
    target_s = 0.6 if quick else 1.5
    size = tuple(spec["size"])
    if spec["op"] == "centroids":
        cases.prepare_centroids(spec["method"], spec["field"], size=(8, 10)).fn()  # compile / initialise
        gc.collect()
        locked = _lock_resident()
        reset = _reset_peak_rss()
        base = _peak_rss_mb()
        case = cases.prepare_centroids(spec["method"], spec["field"])
    elif spec["op"] == "random_walk":
        # compile / initialise on a tiny image first, so neither counts
        cases.prepare_random_walk(spec["method"], (12, 12)).fn()
        inputs = cases.walk_inputs(size)
        gc.collect()
        locked = _lock_resident()
        reset = _reset_peak_rss()
        base = _peak_rss_mb()
        case = cases.prepare_random_walk(spec["method"], size, inputs=inputs)
    else:
        cases.prepare_affinity(spec["method"], spec["mode"], batch=1, size=(24, 24)).fn()
        edge = cases.make_edge(cases.AFFINITY_BATCH, *size)
        gc.collect()
        locked = _lock_resident()
        reset = _reset_peak_rss()
        base = _peak_rss_mb()
        case = cases.prepare_affinity(spec["method"], spec["mode"], size=size, edge=edge)
    times, result = cases.time_case(case, target_s=target_s, min_repeats=2 if quick else 3)
    peak = _peak_rss_mb() - base
    out = {"spec": spec, "times_s": times, "median_s": statistics.median(times), "setup_s": case.setup_s,
           "peak_mb": peak, "hwm_reset": reset, "mlocked": locked, "info": case.info}
    if spec.get("save"):
        if spec["op"] == "random_walk":
            array = cases.flat_walk_result(result, cases.CHANNELS, case.info["N"])
        else:
            array = cases.as_numpy(result)
        np.save(spec["save"], array.astype(np.float32))
    if spec["op"] == "path_affinity" and spec["mode"] == "fwd":
        out["info"]["D"] = int(result.shape[1])
    return out


# ----------------------------------------------------------------------------- parent: CPU report


def _case_specs(quick: bool, workdir: Path) -> List[Dict[str, Any]]:
    from benchmarks import cases
    specs = []
    for size in cases.sizes(quick):
        for method in cases.RW_METHODS:
            if not cases.method_available(method):
                continue
            if method == "reference" and not cases.reference_allowed(size, quick):
                continue
            specs.append({"op": "random_walk", "method": method, "size": list(size), "quick": quick})
    for mode in cases.AFFINITY_MODES:
        for method in cases.AFFINITY_METHODS:
            if cases.method_available(method):
                specs.append({"op": "path_affinity", "method": method, "mode": mode,
                              "size": list(cases.AFFINITY_SIZE), "quick": quick})
    for field in cases.CENTROID_FIELDS:
        for method in cases.CENTROID_METHODS:
            if cases.method_available(method):
                specs.append({"op": "centroids", "method": method, "field": field,
                              "size": list(cases.CENTROID_SIZE), "quick": quick})
    # quiet / under-load pairs, back to back (the load drifts on a shared machine)
    for spec in _load_specs(quick):
        specs += [dict(spec, group="load"), dict(spec, group="load", load=True)]
    for i, spec in enumerate(specs):
        spec["save"] = str(workdir / f"case{i:02d}.npy")
    return specs


def _load_specs(quick: bool) -> List[Dict[str, Any]]:
    """The CPU ops timed quiet and under load: every cpp op, the NumPy centroid reference."""
    from benchmarks import cases
    if not cases.method_available("cpp"):
        return []
    size = [94, 125]
    specs = [{"op": "random_walk", "method": m, "size": size, "quick": quick} for m in ("cpp", "cpp:steps")]
    if not quick:
        specs.append({"op": "random_walk", "method": "cpp", "size": [256, 512], "quick": quick})
    specs.append({"op": "path_affinity", "method": "cpp", "mode": "fwd+bwd", "size": list(cases.AFFINITY_SIZE),
                  "quick": quick})
    for field in cases.CENTROID_FIELDS:
        for method in ("cpp", "reference"):
            specs.append({"op": "centroids", "method": method, "field": field, "size": list(cases.CENTROID_SIZE),
                          "quick": quick})
    return specs


def run_cases(specs: List[Dict[str, Any]], label, module: str = "benchmarks.report",
              progress: bool = True) -> List[Dict[str, Any]]:
    """Each case in its own process (:func:`_run_in_subprocess`), a progress line per case on stderr."""
    results = []
    for i, spec in enumerate(specs, 1):
        res = _run_in_subprocess(spec, module)
        results.append(res)
        if not progress:
            continue
        if "error" in res:
            print(f"[{i:2d}/{len(specs)}] {label(spec):44s} FAILED: {res['error']}", file=sys.stderr)
        else:
            print(f"[{i:2d}/{len(specs)}] {label(spec):44s} {res['median_s'] * 1e3:10.2f} ms "
                  f"(x{len(res['times_s'])}, min {min(res['times_s']) * 1e3:.2f})  "
                  f"peak {res['peak_mb']:8.1f} MB  [{res['wall_s']:.0f} s]", file=sys.stderr, flush=True)
    return results


def _run_in_subprocess(spec: Dict[str, Any], module: str = "benchmarks.report") -> Dict[str, Any]:
    """Runs one case as ``python -m <module> --case <spec>`` and returns its JSON result line."""
    from benchmarks import cases
    cmd = [sys.executable, "-m", module, "--case", json.dumps(spec)]
    start = time.perf_counter()
    try:
        if spec.get("load"):
            with cases.BusyProcesses(LOAD_PROCESSES, LOAD_THREADS):
                proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
        else:
            proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"spec": spec, "error": f"timed out after {CASE_TIMEOUT_S} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"spec": spec, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def _rel_diff(a, b) -> Optional[float]:
    import numpy as np
    if a is None or b is None or a.shape != b.shape:
        return None
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a - b).max()) / scale


def _load(path: Optional[str]):
    import numpy as np
    if path and os.path.exists(path):
        return np.load(path)
    return None


def _machine() -> Dict[str, str]:
    import torch

    from irnet_fast import backends
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2 ** 20:.1f} GiB"
                break
    except OSError:
        pass
    versions = []
    for name in ("numpy", "scipy", "numba"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            versions.append(f"{name} absent")
    info = backends.info()
    return {
        "CPU": model,
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable by this process)",
        "memory": mem,
        "OS / Python": f"{platform.platform()} / Python {platform.python_version()}",
        "torch": f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)",
        "libraries": ", ".join(versions),
        "irnet_fast extension": str(info.get("extension")),
        "backends present": ", ".join(info.get("backends", [])),
    }


def _fmt(value: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def _ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def machine_section(machine: Dict[str, str], load_start, load_end) -> List[str]:
    """The "Machine" table of a results file, with the load average at the start and end of the run."""
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines += [f"| load average (1, 5, 15 min) | start {load_start[0]:.2f}, {load_start[1]:.2f}, {load_start[2]:.2f}; "
              f"end {load_end[0]:.2f}, {load_end[1]:.2f}, {load_end[2]:.2f} |", ""]
    return lines


def _headlines(rw: Dict[Tuple[str, str], Dict], aff: Dict[Tuple[str, str], Dict], sizes, cent=None,
               pairs=()) -> List[Dict[str, Any]]:
    """The targets, each with the measured figure and met / not met / not measured."""
    cent = cent or {}
    def t(method, size):
        res = rw.get((method, size))
        return res["median_s"] if res and "median_s" in res else None

    def tmin(method, size):
        res = rw.get((method, size))
        return min(res["times_s"]) if res and "times_s" in res else None

    def m(method, size):
        res = rw.get((method, size))
        return res["peak_mb"] if res and "peak_mb" in res else None

    rows = []

    def add(target, value, text, ok):
        rows.append({"target": target, "measured": text if value is not None else "not measured",
                     "status": "not measured" if value is None else ("met" if ok else "not met"), "value": value})

    cpp_voc = t("cpp", "94x125")
    add("cpp random walk 94x125 (C=3) <= 5 ms", cpp_voc,
        f"{_fmt(cpp_voc and cpp_voc * 1e3)} ms (min {_fmt(tmin('cpp', '94x125') and tmin('cpp', '94x125') * 1e3)}; "
        f"256 steps {_fmt(t('cpp:steps', '94x125') and t('cpp:steps', '94x125') * 1e3)} ms)",
        cpp_voc is not None and cpp_voc <= 0.005)
    ratio = _ratio(t("scipy_csr", "94x125"), cpp_voc)
    by_min = _ratio(tmin("scipy_csr", "94x125"), tmin("cpp", "94x125"))
    add("cpp 94x125 >= 120x faster than SciPy CSR (256 steps)", ratio, f"{_fmt(ratio)}x (of minima {_fmt(by_min)}x)",
        ratio is not None and ratio >= 120)
    ratio = _ratio(t("reference", "64x64"), t("cpp", "64x64"))
    by_min = _ratio(tmin("reference", "64x64"), tmin("cpp", "64x64"))
    add("cpp 64x64 >= 4000x faster than the dense reference", ratio, f"{_fmt(ratio, '.0f')}x (of minima {_fmt(by_min, '.0f')}x)",
        ratio is not None and ratio >= 4000)
    big = t("cpp", "256x512")
    add("cpp random walk 256x512 (C=3) <= 0.1 s", big,
        f"{_fmt(big and big * 1e3, '.0f')} ms (min {_fmt(tmin('cpp', '256x512') and tmin('cpp', '256x512') * 1e3, '.0f')})",
        big is not None and big <= 0.1)
    mem = m("cpp", "256x512")
    add("cpp random walk 256x512 < 200 MB above the inputs", mem, f"{_fmt(mem)} MB", mem is not None and mem < 200)
    for backend, limit in (("numba", 3.0), ("torch", 10.0)):
        per_size = [(s, suffix, _ratio(t(backend + suffix, s), t("cpp" + suffix, s)))
                    for s in sizes for suffix in ("", ":steps")]
        per_size = [(s, suffix, r) for s, suffix, r in per_size if r is not None]
        worst = max((r for _, _, r in per_size), default=None)
        text = "; ".join(f"{s}{' steps' if suffix else ''}: {r:.2f}x" for s, suffix, r in per_size)
        add(f"{backend} random walk within {limit:g}x of cpp (every size, both methods)", worst,
            f"{text} (worst {_fmt(worst, '.2f')}x)", worst is not None and worst <= limit)
    ref, fast = aff.get(("reference", "fwd+bwd")), aff.get(("cpp", "fwd+bwd"))
    ok_ref = ref is not None and "median_s" in ref
    ok_fast = fast is not None and "median_s" in fast
    speed = _ratio(ref["median_s"], fast["median_s"]) if ok_ref and ok_fast else None
    speed_min = _ratio(min(ref["times_s"]), min(fast["times_s"])) if ok_ref and ok_fast else None
    add("cpp path_affinity fwd+bwd (B=8, 128x128, r=10) >= 5x faster than gather + max-pool", speed,
        f"{_fmt(speed)}x, of minima {_fmt(speed_min)}x ({_fmt(fast and fast.get('median_s', 0) * 1e3, '.0f')} ms vs "
        f"{_fmt(ref and ref.get('median_s', 0) * 1e3, '.0f')} ms)", speed is not None and speed >= 5)
    less = _ratio(ref["peak_mb"], max(fast["peak_mb"], 0.1)) if ok_ref and ok_fast else None
    add("cpp path_affinity fwd+bwd >= 10x less memory than gather + max-pool", less,
        f"{_fmt(less)}x ({_fmt(fast and fast.get('peak_mb'))} MB vs {_fmt(ref and ref.get('peak_mb'))} MB)",
        less is not None and less >= 10)
    for field, limit in (("clean", 100.0), ("noisy", 30.0)):
        ref_c, cpp_c = cent.get(("reference", field)), cent.get(("cpp", field))
        ok = all(r is not None and "median_s" in r for r in (ref_c, cpp_c))
        speed = _ratio(ref_c["median_s"], cpp_c["median_s"]) if ok else None
        add(f"cpp find_centroids_with_refinement 94x125 x300, {field} field: >= {limit:.0f}x the NumPy reference",
            speed, f"{_fmt(speed)}x ({_fmt(cpp_c and cpp_c.get('median_s', 0) * 1e3, '.2f')} ms vs "
            f"{_fmt(ref_c and ref_c.get('median_s', 0) * 1e3, '.0f')} ms; "
            f"{'bit-exact' if cpp_c and cpp_c.get('exact') else 'NOT exact'})",
            speed is not None and speed >= limit and bool(cpp_c.get("exact")))
    slow = [(_spec_label(q["spec"]), _ratio(l.get("median_s"), q.get("median_s"))) for q, l in pairs
            if q["spec"]["method"] != "reference" and "median_s" in q and "median_s" in l]
    worst = max((r for _, r in slow if r is not None), default=None)
    add("every cpp op under load (2 busy 2-thread torch processes) at most 3x its quiet time", worst,
        "; ".join(f"{name}: {r:.2f}x" for name, r in slow) + f" (worst {_fmt(worst, '.2f')}x)",
        worst is not None and worst <= 3.0)
    return rows


def _plot(rw: Dict[Tuple[str, str], Dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from benchmarks import cases
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"cpp": "o", "numba": "s", "torch": "^", "cpp:steps": "o", "numba:steps": "s", "torch:steps": "^",
               "scipy_csr": "v", "torch_sparse_csr": "D", "reference": "x"}
    for method in cases.RW_METHODS:
        points = sorted((res["info"]["N"], res["median_s"] * 1e3) for (meth, _), res in rw.items()
                        if meth == method and "median_s" in res)
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=markers.get(method, "o"), label=cases.METHOD_LABELS.get(method, method))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pixels N = h x w (stride-4 grid)")
    ax.set_ylabel("time per call (ms, median)")
    ax.set_title("IRNet random walk (radius 5, beta 10, T^256, 3 channels)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _measure(quick: bool, command: str) -> Dict[str, Any]:
    """Run every case in its own subprocess; the raw figures plus agreement, as a JSON-able dict."""
    from benchmarks import cases
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = os.getloadavg()
    machine = _machine()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="irnet_bench_") as tmp:
        specs = _case_specs(quick, Path(tmp))
        results = run_cases(specs, _spec_label)
        # agreement: against the dense reference where it ran, else against cpp
        arrays = {id(r): _load(r["spec"].get("save")) for r in results if "error" not in r}
        rw, aff = _index(results)
        for (method, size), res in rw.items():
            if "error" in res:
                continue
            base = rw.get(("reference", size)) or rw.get(("cpp", size))
            if base is not None and base is not res and "error" not in base:
                res["agree"] = _rel_diff(arrays[id(res)], arrays[id(base)])
                res["agree_with"] = base["spec"]["method"]
        for (method, mode), res in aff.items():
            base = aff.get(("reference", mode))
            if "error" not in res and base is not None and base is not res and "error" not in base:
                res["agree"] = _rel_diff(arrays[id(res)], arrays[id(base)])
                res["agree_with"] = "reference"
        cent = _centroids(results)
        for (method, field), res in cent.items():
            base = cent.get(("reference", field))
            if "error" not in res and base is not None and base is not res and "error" not in base:
                a, b = arrays[id(res)], arrays[id(base)]
                res["exact"] = bool(a is not None and b is not None and a.shape == b.shape and (a == b).all())
        del arrays
    for res in results:
        res["spec"].pop("save", None)
    return {"command": command, "started": f"{started:%Y-%m-%d %H:%M}", "total_s": time.perf_counter() - t0,
            "quick": quick, "machine": machine, "load_start": list(load_start), "load_end": list(os.getloadavg()),
            "results": results}


def _index(results):
    """(random walk, path_affinity) results of the main tables, keyed (method, size) and (method, mode)."""
    from benchmarks import cases
    main = [r for r in results if not r["spec"].get("group")]
    rw = {(r["spec"]["method"], cases.size_label(r["spec"]["size"])): r
          for r in main if r["spec"]["op"] == "random_walk"}
    aff = {(r["spec"]["method"], r["spec"]["mode"]): r for r in main if r["spec"]["op"] == "path_affinity"}
    return rw, aff


def _centroids(results) -> Dict[Tuple[str, str], Dict]:
    return {(r["spec"]["method"], r["spec"]["field"]): r for r in results
            if r["spec"]["op"] == "centroids" and not r["spec"].get("group")}


def _load_pairs(results) -> List[Tuple[Dict, Dict]]:
    """(quiet, under load) result pairs in run order."""
    group = [r for r in results if r["spec"].get("group") == "load"]
    return [(group[i], group[i + 1]) for i in range(0, len(group) - 1, 2)]


def cpu_main(args) -> int:
    from benchmarks import cases
    out_path = Path(args.out)
    plot_path = Path(args.plot) if args.plot else out_path.with_name("random_walk.png")
    json_path = out_path.with_suffix(".json")
    if args.from_json:
        run = json.loads(Path(args.from_json).read_text())
    else:
        quick = args.quick or cases.quick_mode()
        command = "python -m benchmarks.report " + " ".join(shlex.quote(a) for a in args.argv)
        if cases.quick_mode() and not args.quick:
            command = "IRNET_BENCH_QUICK=1 " + command
        run = _measure(quick, command)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(run, indent=1) + "\n")
    heads = _render(run, out_path, plot_path)
    print("\nHeadline ratios (this run):")
    for h in heads:
        print(f"  [{h['status']:>12s}] {h['target']}: {h['measured']}")
    print(f"\nwrote {out_path}" + ("" if args.from_json else f", {json_path}")
          + (f" and {plot_path}" if plot_path.exists() else "")
          + f"; measuring took {run['total_s']:.0f} s")
    return 1 if any("error" in r for r in run["results"]) else 0


def _render(run: Dict[str, Any], out_path: Path, plot_path: Path) -> List[Dict[str, Any]]:
    """Write the Markdown report and the plot from a run; return the headline rows."""
    from benchmarks import cases
    quick, command, total, machine = run["quick"], run["command"], run["total_s"], run["machine"]
    load_start, load_end, results = run["load_start"], run["load_end"], run["results"]
    rw, aff = _index(results)
    size_labels = [cases.size_label(s) for s in cases.sizes(quick)]
    cent, pairs = _centroids(results), _load_pairs(results)
    heads = _headlines(rw, aff, size_labels, cent, pairs)
    plotted = _plot(rw, plot_path)

    lines = ["# irnet_fast benchmark results", ""]
    lines += [f"Generated {run['started']} UTC by `{command}` (run from the repository root) in "
              f"{total:.0f} s{' (quick mode: sizes up to 94x125, dense reference at 32x32 only)' if quick else ''}.",
              "All ratios below were measured in this same run. The label-generation figures (instance ops, "
              "make_sem_seg, large walks) are in [RESULTS_LABELS.md](RESULTS_LABELS.md), written by "
              "`python -m benchmarks.label_generation`; IRNet training in [RESULTS_IRN.md](RESULTS_IRN.md); "
              "the float32 precision of the walk against float64 and the reference's own float32 walk in "
              "[RESULTS_PRECISION.md](RESULTS_PRECISION.md) (`python -m benchmarks.precision`).", ""]
    lines += machine_section(machine, load_start, load_end)
    lines += ["## Method", "",
              "- Inputs (seeded): boundary map `sigmoid(6 * avg_pool2d(randn, 5, stride 1, pad 2))` in (0, 1); "
              "CAMs `rand` normalised to max 1 per channel, 3 channels, one image.",
              "- Random walk: radius 5, beta 10, exp_times 8 (256 steps). `cpp`, `numba`, `torch`: "
              "`irnet_fast.ops.random_walk(..., backend=...)` with the default `method=\"chebyshev\"` (a degree-78 "
              "Chebyshev expansion of `T^256` in float32, see docs/chebyshev.md); \"256 steps\" rows: "
              "`method=\"steps\"`. SciPy CSR: `T^T` from "
              "`irnet_fast.ops.transition_matrix` as `scipy.sparse.csr_matrix`, then 256 steps `Y = T^T @ Y`, "
              "Y (N, C); torch sparse CSR: the same matrix, 256 steps of `torch.sparse.mm`. Only the steps are "
              "timed; the matrix build is the \"setup ms\" column (it counts in the peak memory). Dense reference: "
              "`irnet_fast.ops._reference.propagate_to_edge` (dense N x N float32, squared 8 times).",
              "- path_affinity: B=8, 128x128, radius 10, edge with `requires_grad=True`; `fwd` = forward only, "
              "`fwd+bwd` = forward then `out.sum().backward()`. Reference: `_reference.edge_to_affinity(edge, "
              "PathIndex(10, (128, 128)).path_indices)` (gather + max-pool); the PathIndex is built in the untimed "
              "set-up but its index arrays count in the reference's memory.",
              "- Time: `time.perf_counter`, each case in a fresh process after a call on a tiny input (JIT "
              "compilation, lazy initialisation); one warm-up call, then the median of repeats (\"runs\"). A "
              "case whose first call takes >= 5 s runs once (the dense reference at 64x64), >= 2 s twice. "
              "\"min ms\" is the fastest run: on a shared machine it is the figure least disturbed by other "
              "processes. Targets are judged on the medians.",
              "- find_centroids_with_refinement: `benchmarks.cases.centroid_field`, `clean` (pixels point at 5 "
              "centres: most trajectories end early) and `noisy` (smooth noise of ~0.3 px inside and outside 5 "
              "disc instances: most pixels run all 300 iterations); reference: the NumPy transcription "
              "`_reference.find_centroids_with_refinement`; \"bit-exact\": int32 centroids equal to it.",
              "- Peak MB: in that process, after imports, inputs and the tiny call, the resident pages are locked "
              "(`mlockall(MCL_CURRENT | MCL_ONFAULT)`, so that proactive reclaim of cold library pages cannot "
              "hide the run's allocations) and the RSS high-water mark is reset (`/proc/self/clear_refs`); peak = `getrusage(RUSAGE_SELF).ru_maxrss` after the runs minus the value "
              "before set-up: memory above the inputs, including the set-up (sparse matrix, index arrays). RSS counts "
              "touched pages, so memory the allocator had already mapped for the tiny call is reused without "
              "counting (a few MB at most); 0.0 means the case fitted in that.",
              "- Agreement: max |out - base| / max |base| against the dense reference where it ran, else against "
              "`cpp` (path_affinity: against the reference; fwd compares affinities, fwd+bwd the edge gradients).",
              ""]
    lines += ["## Random walk", "",
              "| case | size | N | backend | median ms | min ms | runs | setup ms | peak MB above inputs | "
              "speed-up vs reference | speed-up vs SciPy CSR | agreement |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for size in size_labels:
        ref = rw.get(("reference", size))
        scipy_res = rw.get(("scipy_csr", size))
        for method in cases.RW_METHODS:
            res = rw.get((method, size))
            if res is None:
                continue
            label = cases.METHOD_LABELS.get(method, method)
            if "error" in res:
                lines.append(f"| random_walk | {size} | | {label} | failed: {res['error']} | | | | | | | |")
                continue
            vs_ref = _ratio(ref.get("median_s") if ref else None, res["median_s"])
            vs_scipy = _ratio(scipy_res.get("median_s") if scipy_res else None, res["median_s"])
            agree = (f"{res['agree']:.1e} vs {res['agree_with']}" if res.get("agree") is not None else "base")
            lines.append(f"| random_walk | {size} | {res['info']['N']} | {label} | {res['median_s'] * 1e3:.2f} | "
                         f"{min(res['times_s']) * 1e3:.2f} | {len(res['times_s'])} | {_fmt(res['setup_s'] * 1e3 if res['setup_s'] else None, '.0f')} | "
                         f"{res['peak_mb']:.1f} | {_fmt(vs_ref, '.1f', 'x')} | {_fmt(vs_scipy, '.1f', 'x')} | {agree} |")
    lines += ["", "The dense reference is not run above "
              f"{'32x32' if quick else '64x64'}: at 94x125 it needs about 0.5 GB per dense copy and minutes "
              "(331-374 s and 2.4 GB measured on this kind of machine); at 256x512, 69 GB.", ""]
    if plotted:
        lines += [f"![time against N, log-log]({os.path.relpath(plot_path, out_path.parent)})", ""]
    lines += ["## path_affinity (B=8, 128x128, radius 10)", "",
              "| case | mode | backend | median ms | min ms | runs | setup ms | peak MB above inputs | speed-up vs reference | "
              "memory vs reference | agreement |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for mode in cases.AFFINITY_MODES:
        ref = aff.get(("reference", mode))
        for method in cases.AFFINITY_METHODS:
            res = aff.get((method, mode))
            if res is None:
                continue
            label = "gather + max-pool (reference)" if method == "reference" else f"path_affinity {method}"
            if "error" in res:
                lines.append(f"| path_affinity | {mode} | {label} | failed: {res['error']} | | | | | | | |")
                continue
            ok = ref is not None and "error" not in ref
            vs_ref = _ratio(ref["median_s"], res["median_s"]) if ok else None
            mem_ratio = _ratio(ref["peak_mb"], max(res["peak_mb"], 0.1)) if ok else None
            agree = f"{res['agree']:.1e}" if res.get("agree") is not None else "base"
            setup = f"{res['setup_s'] * 1e3:.0f}" if res["setup_s"] else "n/a"
            if method == "reference" and "index_MB" in res["info"]:
                setup += f" (index arrays {res['info']['index_MB']:.0f} MB)"
            lines.append(f"| path_affinity | {mode} | {label} | {res['median_s'] * 1e3:.1f} | "
                         f"{min(res['times_s']) * 1e3:.1f} | {len(res['times_s'])} | "
                         f"{setup} | {res['peak_mb']:.1f} | {_fmt(vs_ref, '.1f', 'x')} | "
                         f"{_fmt(mem_ratio, '.1f', 'x less')} | {agree} |")
    lines += ["", f"## find_centroids_with_refinement ({cases.size_label(cases.CENTROID_SIZE)}, "
              f"{cases.CENTROID_ITERATIONS} iterations)", "",
              "| field | backend | median ms | min ms | runs | speed-up vs reference | centroids |",
              "|---|---|---:|---:|---:|---:|---|"]
    for field in cases.CENTROID_FIELDS:
        ref_c = cent.get(("reference", field))
        for method in cases.CENTROID_METHODS:
            res = cent.get((method, field))
            if res is None:
                continue
            if "error" in res:
                lines.append(f"| {field} | {method} | failed: {res['error']} | | | | |")
                continue
            vs_ref = _ratio(ref_c.get("median_s") if ref_c else None, res["median_s"])
            exact = "base" if method == "reference" else ("bit-exact" if res.get("exact") else "DIFFERENT")
            label = "NumPy reference" if method == "reference" else method
            lines.append(f"| {field} | {label} | {res['median_s'] * 1e3:.2f} | {min(res['times_s']) * 1e3:.2f} | "
                         f"{len(res['times_s'])} | {_fmt(vs_ref, '.1f', 'x')} | {exact} |")
    if pairs:
        lines += ["", "## Under load", "",
                  f"Each case ran quiet, then again right after with {LOAD_PROCESSES} busy processes of the benchmark's "
                  f"own (each `torch.set_num_threads({LOAD_THREADS})` and repeated `a @ a` on a 256x256 matrix), "
                  "stopped after the case. A fair share of the 2 cores is then 2x.", "",
                  "| case | quiet median ms | under load median ms | slow-down |", "|---|---:|---:|---:|"]
        for quiet, loaded in pairs:
            name = _spec_label(quiet["spec"])
            if "error" in quiet or "error" in loaded:
                lines.append(f"| {name} | {quiet.get('error', '')} | {loaded.get('error', '')} | |")
                continue
            lines.append(f"| {name} | {quiet['median_s'] * 1e3:.2f} | {loaded['median_s'] * 1e3:.2f} | "
                         f"{_ratio(loaded['median_s'], quiet['median_s']):.2f}x |")
    lines += ["", "## Targets", "", "| target | measured (this run) | status |", "|---|---|---|"]
    lines += [f"| {h['target']} | {h['measured']} | {h['status']} |" for h in heads]
    unlocked = [_spec_label(r["spec"]) for r in results if "error" not in r
                and not (r.get("mlocked", True) and r.get("hwm_reset", True))]
    if unlocked:
        lines += ["", f"Note: {len(unlocked)} case(s) could not lock their pages or reset the RSS high-water mark "
                  f"({', '.join(unlocked[:4])}{', ...' if len(unlocked) > 4 else ''}); their peak MB may be off."]
    if any(abs(x) > 1.5 for x in load_start + load_end):
        lines += ["", f"Note: the load average was {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the "
                  "end on this machine, so other processes shared the cores and timings are noisy: absolute times are "
                  "then several times the quiet machine's (the dense reference at 64x64 shows by how much), and "
                  "\"quiet\" in the under-load table means without the benchmark's own busy processes."]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n")
    return heads


# ----------------------------------------------------------------------------- GPU mode


def _gpu_time(case, *, warmup: int = 3, target_s: float = 2.0, min_repeats: int = 10, max_repeats: int = 200):
    import torch
    for _ in range(warmup):
        result = case.fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = case.fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    wanted = max(min_repeats, min(max_repeats, int(target_s / max(first, 1e-6))))
    times = []
    for _ in range(wanted):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = case.fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, result


def _gpu_peak_mb(prepare) -> Tuple[Any, float]:
    """Prepare and run a case once; CUDA memory peak above what was allocated before (torch allocator)."""
    import torch
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    case = prepare()
    case.fn()
    torch.cuda.synchronize()
    return case, (torch.cuda.max_memory_allocated() - base) / 2 ** 20


# (tile_h, tile_w, fused passes, channel block) of the walk's CUDA launch plans compared on a GPU;
# tile 0 x 0: one resident block per image and channel group, every pass in one launch
GPU_WALK_PLANS = ((32, 32, 1, 8), (32, 32, 2, 8), (32, 32, 4, 4), (32, 32, 2, 4), (16, 32, 2, 8), (64, 32, 2, 4),
                  (32, 32, 1, 1), (0, 0, 1, 8), (0, 0, 1, 2))


def _gpu_walk_plans(heads) -> List[str]:
    """The fused walk's launch plans (random_walk_tiled, random_walk_chebyshev_tiled) against the
    default plan, on the batch of 16 VOC images; and the walk against the dense reference at 64x64."""
    import torch

    from benchmarks import cases
    from irnet_fast.ops.path_index import geometry_on
    from irnet_fast.ops.random_walk import walk_coefficients
    spec = cases.GPU_RW_CASES[0]
    batch, channels, size = spec["batch"], spec["channels"], spec["size"]
    x, edge = cases.walk_inputs(size, batch=batch, channels=channels, device=GPU_DEVICE)
    paths, lengths = geometry_on(cases.RADIUS, torch.device(GPU_DEVICE))
    ops = torch.ops.irnet_fast
    planes, norm = ops.transition_stencil(edge[:, 0].contiguous(), paths, lengths, float(cases.BETA))
    values, inv, dirs = (x * (1 - edge)).contiguous(), torch.reciprocal(norm), paths[:, 0].contiguous()
    coefficients = walk_coefficients(cases.STEPS, dirs.shape[0], x.dtype)  # None: Chebyshev saves nothing
    coefficients = [] if coefficients is None else [float(c) for c in coefficients]
    lines = ["", f"## Walk launch plans (B={batch}, C={channels}, {cases.size_label(size)}, float32)", "",
             f"steps: {cases.STEPS} plain steps; chebyshev: {len(coefficients) - 1} passes (float32 tol). "
             "Plan: tile h x w (0 x 0: one resident block per image and channel group), passes per launch, "
             "channels per block.", "",
             "| method | plan | median ms | ms per image | max diff vs default plan |", "|---|---|---:|---:|---:|"]
    for method in ("steps", "chebyshev") if coefficients else ("steps",):
        if method == "steps":
            default = lambda: ops.random_walk(values, planes, inv, dirs, cases.STEPS)  # noqa: E731
            tiled = lambda p: ops.random_walk_tiled(values, planes, inv, dirs, cases.STEPS, *p)  # noqa: E731
        else:
            default = lambda: ops.random_walk_chebyshev(values, planes, inv, dirs, coefficients)  # noqa: E731
            tiled = lambda p: ops.random_walk_chebyshev_tiled(values, planes, inv, dirs, coefficients, *p)  # noqa: E731
        base = None
        for plan in (None,) + GPU_WALK_PLANS:
            label = "default" if plan is None else "{}x{}, {}, {}".format(*plan)
            run = default if plan is None else (lambda p=plan: tiled(p))
            try:
                times, result = _gpu_time(cases.Case(run, 0.0, {}, torch.cuda.synchronize), target_s=1.0,
                                          min_repeats=5)
            except Exception as exc:  # noqa: BLE001 - e.g. a plan that needs too much shared memory
                lines.append(f"| {method} | {label} | failed: {type(exc).__name__}: {str(exc)[:80]} | | |")
                continue
            med = statistics.median(times)
            base = result if base is None else base
            diff = float((result.double() - base.double()).abs().max())
            lines.append(f"| {method} | {label} | {med * 1e3:.3f} | {med * 1e3 / batch:.4f} | {diff:.1e} |")
            print(f"walk {method} plan {label}: {med * 1e3:.3f} ms ({med * 1e3 / batch:.4f} ms/image)")
    # the dense reference at 64x64 (one image) against the cuda backend on the same inputs
    from irnet_fast.ops import _reference, random_walk
    x64, edge64 = cases.walk_inputs((64, 64), batch=1, channels=channels, device=GPU_DEVICE)
    try:
        ref_times, _ = _gpu_time(cases.Case(lambda: _reference.propagate_to_edge(
            x64[0], edge64[0], cases.RADIUS, cases.BETA, cases.EXP_TIMES), 0.0, {}, torch.cuda.synchronize),
            warmup=1, target_s=2.0, min_repeats=3, max_repeats=20)
        ours, _ = _gpu_time(cases.Case(lambda: random_walk(x64, edge64, cases.RADIUS, cases.BETA, cases.EXP_TIMES,
                                                           backend="cuda"), 0.0, {}, torch.cuda.synchronize))
        speed = statistics.median(ref_times) / statistics.median(ours)
        lines += ["", f"Dense reference walk at 64x64 (C={channels}, GPU): {statistics.median(ref_times) * 1e3:.2f} ms; "
                  f"cuda backend {statistics.median(ours) * 1e3:.3f} ms: {speed:.0f}x."]
        heads.append(("cuda random walk >= 1000x the dense reference on the same GPU at 64x64", f"{speed:.0f}x",
                      speed >= 1000))
    except Exception as exc:  # noqa: BLE001
        lines += ["", f"Dense reference walk at 64x64: failed: {type(exc).__name__}: {exc}"]
    return lines


def gpu_main(args) -> int:
    import numpy as np
    import torch

    from benchmarks import cases
    from irnet_fast import backends
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        out_path.write_text("# irnet_fast GPU benchmark\n\nNo CUDA GPU visible to torch: nothing measured.\n")
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    present = {b: cases.backend_available(b) for b in backends.BACKENDS}
    props = torch.cuda.get_device_properties(0)
    try:
        import cupy
        cupy_version = cupy.__version__
    except Exception:  # noqa: BLE001
        cupy_version = "absent"
    command = "python -m benchmarks.report " + " ".join(shlex.quote(a) for a in args.argv)
    lines = ["# irnet_fast GPU benchmark", "",
             f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.", "",
             "| | |", "|---|---|",
             f"| GPU | {props.name}, {props.total_memory / 2 ** 30:.0f} GiB, {props.multi_processor_count} SMs |",
             f"| torch | {torch.__version__} (CUDA {torch.version.cuda}) |",
             f"| CuPy | {cupy_version} |",
             f"| irnet_fast extension | {backends.info().get('extension')} |",
             f"| backends present | {', '.join(b for b, ok in present.items() if ok)} |",
             f"| CPU | {_machine()['CPU']}, {os.cpu_count()} logical cores |", "",
             "Timing: `time.perf_counter` around each call with `torch.cuda.synchronize()` before and after, "
             "3 warm-up calls, median of repeats. Peak MB: `torch.cuda.max_memory_allocated()` above the "
             "allocation before set-up, over set-up and one call (torch's allocator only; CuPy's own pool is not "
             "seen). Agreement: max |out - cpp| / max |cpp| with the CPU `cpp` backend on the same inputs.", ""]
    heads = []
    lines += ["## Random walk (radius 5, beta 10, 256 steps)", "",
              "| B | C | size | backend | median ms | ms per image | runs | peak MB | agreement vs cpp |",
              "|---:|---:|---|---|---:|---:|---:|---:|---|"]
    methods = [m for m in ("cuda", "cupy", "torch") if present.get(m)]
    for spec in cases.GPU_RW_CASES:
        batch, channels, size = spec["batch"], spec["channels"], spec["size"]
        x_cpu, edge_cpu = cases.walk_inputs(size, batch=batch, channels=channels)
        cpu_out = None
        if present.get("cpp"):
            from irnet_fast.ops import random_walk
            start = time.perf_counter()
            cpu_out = random_walk(x_cpu, edge_cpu, backend="cpp").double().numpy()
            cpu_s = time.perf_counter() - start
            lines.append(f"| {batch} | {channels} | {cases.size_label(size)} | cpp on the CPU "
                         f"({torch.get_num_threads()} threads, first call) | {cpu_s * 1e3:.1f} | "
                         f"{cpu_s * 1e3 / batch:.3f} | 1 | n/a | base |")
        for method in methods:
            label = f"{batch} | {channels} | {cases.size_label(size)} | {method}"
            try:
                inputs = (x_cpu.to(GPU_DEVICE), edge_cpu.to(GPU_DEVICE))
                case, peak = _gpu_peak_mb(lambda: cases.prepare_random_walk(
                    method, size, batch=batch, channels=channels, device=GPU_DEVICE, inputs=inputs))
                times, result = _gpu_time(case)
            except Exception as exc:  # noqa: BLE001 - record and go on
                lines.append(f"| {label} | failed: {type(exc).__name__}: {exc} | | | | |")
                continue
            med = statistics.median(times)
            agree = "n/a"
            if cpu_out is not None:
                got = result.double().cpu().numpy()
                agree = f"{np.abs(got - cpu_out).max() / (np.abs(cpu_out).max() or 1):.1e}"
            lines.append(f"| {label} | {med * 1e3:.3f} | {med * 1e3 / batch:.4f} | {len(times)} | {peak:.1f} | {agree} |")
            print(f"random_walk B={batch} C={channels} {cases.size_label(size)} {method}: {med * 1e3:.3f} ms "
                  f"({med * 1e3 / batch:.4f} ms/image), peak {peak:.1f} MB, agreement {agree}")
            if method == "cuda" and batch == 16:
                per_image = med * 1e3 / batch
                heads.append(("cuda random walk, VOC 94x125 in a batch of 16 (C=21): <= 0.1 ms per image",
                              f"{per_image:.4f} ms per image", per_image <= 0.1))
    if present.get("cuda"):
        lines += _gpu_walk_plans(heads)
    lines += ["", f"## path_affinity (B={cases.AFFINITY_BATCH}, {cases.size_label(cases.AFFINITY_SIZE)}, "
              f"radius {cases.AFFINITY_RADIUS})", "",
              "| mode | backend | median ms | runs | peak MB | speed-up vs reference | memory vs reference | "
              "agreement vs reference |", "|---|---|---:|---:|---:|---:|---:|---|"]
    aff_methods = [m for m in ("cuda", "cupy", "torch") if present.get(m)] + ["reference"]
    edge_cpu = cases.make_edge(cases.AFFINITY_BATCH, *cases.AFFINITY_SIZE)
    for mode in cases.AFFINITY_MODES:
        measured = {}
        for method in ["reference"] + aff_methods[:-1]:
            try:
                edge = edge_cpu.to(GPU_DEVICE)
                case, peak = _gpu_peak_mb(lambda: cases.prepare_affinity(method, mode, device=GPU_DEVICE, edge=edge))
                times, result = _gpu_time(case, target_s=1.0, min_repeats=5)
                measured[method] = (statistics.median(times), len(times), peak, result.double().cpu().numpy())
            except Exception as exc:  # noqa: BLE001
                measured[method] = exc
        ref = measured.get("reference")
        for method in aff_methods:
            res = measured.get(method)
            if isinstance(res, Exception):
                lines.append(f"| {mode} | {method} | failed: {type(res).__name__}: {res} | | | | | |")
                continue
            med, runs, peak, arr = res
            ok = isinstance(ref, tuple)
            speed = _ratio(ref[0], med) if ok else None
            mem = _ratio(ref[2], max(peak, 0.01)) if ok else None
            agree = "base" if method == "reference" else (
                f"{np.abs(arr - ref[3]).max() / (np.abs(ref[3]).max() or 1):.1e}" if ok else "n/a")
            label = "gather + max-pool (reference)" if method == "reference" else method
            lines.append(f"| {mode} | {label} | {med * 1e3:.2f} | {runs} | {peak:.1f} | {_fmt(speed, '.1f', 'x')} | "
                         f"{_fmt(mem, '.1f', 'x less')} | {agree} |")
            print(f"path_affinity {mode} {method}: {med * 1e3:.2f} ms, peak {peak:.1f} MB, "
                  f"speed-up vs reference {_fmt(speed, '.1f', 'x')}, memory {_fmt(mem, '.1f', 'x less')}")
            if method == "cuda" and mode == "fwd+bwd" and speed is not None:
                heads.append(("cuda path_affinity fwd+bwd >= 10x faster than gather + max-pool (GPU)",
                              f"{speed:.1f}x", speed >= 10))
                heads.append(("cuda path_affinity fwd+bwd >= 5x less memory than gather + max-pool (GPU)",
                              f"{mem:.1f}x", mem is not None and mem >= 5))
    if not heads:
        heads.append(("cuda backend measured", "cuda backend absent or failed", False))
    lines += ["", "## Targets", "", "| target | measured | status |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'met' if ok else 'not met'} |" for t, v, ok in heads]
    out_path.write_text("\n".join(lines) + "\n")
    print("\nGPU headline figures:")
    for t, v, ok in heads:
        print(f"  [{'met' if ok else 'not met':>7s}] {t}: {v}")
    print(f"wrote {out_path}")
    return 0


# ----------------------------------------------------------------------------- entry point


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="sizes up to 94x125 and the dense reference at 32x32 only (also IRNET_BENCH_QUICK=1)")
    parser.add_argument("--out", default=None,
                        help="Markdown output (default benchmarks/RESULTS.md; with --gpu $OUT/gpu_results.md)")
    parser.add_argument("--plot", default=None, help="PNG plot (default random_walk.png beside --out)")
    parser.add_argument("--gpu", action="store_true", help="GPU benchmark (cuda, cupy backends) instead of CPU")
    parser.add_argument("--from-json", default=None, metavar="PATH",
                        help="re-write the report from a saved RESULTS.json instead of measuring")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)   # internal: one case, JSON spec
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.case:
        print(json.dumps(_run_child(json.loads(args.case))))
        return 0
    if args.gpu:
        if args.out is None:
            args.out = str(Path(os.environ.get("OUT", "gpu_out")) / "gpu_results.md")
        return gpu_main(args)
    if args.out is None:
        args.out = str(HERE / "RESULTS.md")
        if args.plot is None:
            args.plot = str(HERE / "random_walk.png")
    return cpu_main(args)


if __name__ == "__main__":
    sys.exit(main())
