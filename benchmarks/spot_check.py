"""A quick check of the CPU speed targets in one process (a few minutes; ``benchmarks.report`` is the full run).

    python -m benchmarks.spot_check [--threads N] [--dense] [--json PATH]

Times (median and minimum of repeats, ``time.perf_counter``) the cpp walk at 64x64, 94x125 and
256x512 (both methods; the op as users call it, weights included), numba and torch at 94x125, SciPy
CSR with 256 steps at 94x125, ``find_centroids_with_refinement`` on the clean and the noisy field
(cpp against the NumPy reference, bit-exactness checked), then the cpp walk at 94x125 and the noisy
centroids again with two busy torch processes running (:class:`benchmarks.cases.BusyProcesses`).
``--dense`` adds the dense reference walk at 64x64 (about a minute). Inputs and methods are those of
``benchmarks.report`` (``benchmarks.cases``). Running it for two builds in turn (two checkouts)
gives side-by-side figures on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _time(fn, repeats: int):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}, out


def measure(dense: bool = False) -> dict:
    import numpy as np
    import torch

    from benchmarks import cases
    results = {}

    def walk(method, size, repeats):
        case = cases.prepare_random_walk(method, size)
        results[f"walk {method} {size[0]}x{size[1]}"], _ = _time(case.fn, repeats)

    for size, repeats in (((64, 64), 9), ((94, 125), 9), ((256, 512), 3)):
        for method in ("cpp", "cpp:steps"):
            walk(method, size, repeats)
    for method in ("numba", "numba:steps", "torch", "torch:steps"):
        if cases.method_available(method):
            walk(method, (94, 125), 3)
    walk("scipy_csr", (94, 125), 3)
    if dense:
        walk("reference", (64, 64), 1)
    for field in cases.CENTROID_FIELDS:
        outs = {}
        for method in ("reference", "cpp"):
            case = cases.prepare_centroids(method, field)
            results[f"centroids {field} {method}"], outs[method] = _time(case.fn, 5 if method == "cpp" else 3)
        results[f"centroids {field} bit-exact"] = bool(np.array_equal(np.asarray(outs["cpp"]),
                                                                      np.asarray(outs["reference"])))
    with cases.BusyProcesses(2, 2):
        for method in ("cpp", "cpp:steps"):
            case = cases.prepare_random_walk(method, (94, 125))
            results[f"under load walk {method} 94x125"], _ = _time(case.fn, 9)
        case = cases.prepare_centroids("cpp", "noisy")
        results["under load centroids noisy cpp"], _ = _time(case.fn, 5)
    results["threads"] = torch.get_num_threads()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spot_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dense", action="store_true", help="also the dense reference walk at 64x64")
    parser.add_argument("--json", default=None, help="write the figures here as JSON too")
    args = parser.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    results = measure(args.dense)
    with open("/proc/loadavg") as handle:
        results["load average before, after"] = [load_before, handle.read().split()[:3]]
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key:40s} {value['median_ms']:10.2f} ms  (min {value['min_ms']:.2f})")
        else:
            print(f"{key:40s} {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
