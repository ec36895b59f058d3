"""The cpp CPU ops quiet and under load: two busy processes of the benchmark's own, each a
2-thread torch loop of ``a @ a`` on a 256x256 matrix (``benchmarks.cases.BusyProcesses``), run for
the duration of each ``loaded`` case and stopped after it. Compare the ``quiet`` and ``loaded``
rows of a group (``python -m benchmarks.report`` prints the slow-down of each op).

    pytest benchmarks/test_bench_load.py --benchmark-enable
"""
from __future__ import annotations

import pytest

from benchmarks import cases
from benchmarks.conftest import run_benchmark, skip_unless_available

OPS = {
    "random_walk 94x125 chebyshev": lambda: cases.prepare_random_walk("cpp", (94, 125)),
    "random_walk 94x125 steps": lambda: cases.prepare_random_walk("cpp:steps", (94, 125)),
    "path_affinity fwd+bwd": lambda: cases.prepare_affinity("cpp", "fwd+bwd"),
    "find_centroids clean": lambda: cases.prepare_centroids("cpp", "clean"),
    "find_centroids noisy": lambda: cases.prepare_centroids("cpp", "noisy"),
}


@pytest.mark.parametrize("load", ["quiet", "loaded"])
@pytest.mark.parametrize("op", list(OPS))
def test_cpu_op_under_load(benchmark, op, load):
    skip_unless_available("cpp")
    case = OPS[op]()
    case.fn()  # first-call costs outside the busy window
    if load == "quiet":
        result = run_benchmark(benchmark, case, group=f"under load: {op}")
    else:
        with cases.BusyProcesses(2, 2):
            result = run_benchmark(benchmark, case, group=f"under load: {op}")
    assert result is not None
