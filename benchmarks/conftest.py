"""pytest-benchmark configuration for the irnet_fast benchmarks.

    pytest benchmarks/                          # smoke test: every case runs once (default
                                                # --benchmark-disable from pyproject.toml)
    pytest benchmarks/ --benchmark-enable       # real timings, grouped per op and size
    IRNET_BENCH_QUICK=1 pytest benchmarks/ ...  # sizes up to 94x125, dense reference at 32x32 only

``python -m benchmarks.report`` measures the same cases (plus peak memory) and writes RESULTS.md.
"""
from __future__ import annotations

import time

import pytest
import torch

from benchmarks import cases


def pytest_report_header(config):
    from irnet_fast import backends
    mode = "quick (IRNET_BENCH_QUICK=1)" if cases.quick_mode() else "full"
    present = [b for b in backends.BACKENDS if cases.backend_available(b)]
    return [f"irnet_fast benchmarks: {mode}; sizes {', '.join(map(cases.size_label, cases.sizes()))}; "
            f"backends present: {', '.join(present)}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"]


def pytest_configure(config):
    # The repository registers these in pyproject.toml; registering again keeps the suites
    # self-contained when they are run from elsewhere (pytest -p no:... or another rootdir).
    config.addinivalue_line("markers", "needs_cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "needs_cupy: needs CuPy with a GPU (skipped without one)")


def skip_unless_available(method: str) -> None:
    """Skip the current test when a backend (or SciPy) is absent here."""
    if not cases.method_available(method):
        pytest.skip(f"{method} is not available here")


def run_benchmark(benchmark, case: cases.Case, *, group: str, rounds: int = 0):
    """Time ``case.fn`` with the benchmark fixture in ``group``.

    With ``--benchmark-disable`` (the default) the case simply runs once. Otherwise one untimed
    warm-up call comes first (Numba compiles on its first call); a case slower than 0.5 s then
    gets a few pedantic rounds (about 4 s in all), a faster one pytest-benchmark's calibration.
    ``rounds`` > 0 skips the warm-up and runs exactly that many rounds (the dense reference).
    GPU cases synchronise after each call.
    """
    fn = case.fn
    if case.sync is not None:
        sync = case.sync

        def fn():
            out = case.fn()
            sync()
            return out
    benchmark.group = group
    benchmark.extra_info.update({k: v for k, v in case.info.items() if isinstance(v, (int, float, str))})
    benchmark.extra_info["setup_s"] = round(case.setup_s, 4)
    if getattr(benchmark, "disabled", False):
        return benchmark(fn)
    if rounds:
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > 0.5:
        return benchmark.pedantic(fn, rounds=max(1, min(5, int(4.0 / first))), iterations=1, warmup_rounds=0)
    return benchmark(fn)


@pytest.fixture
def needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
