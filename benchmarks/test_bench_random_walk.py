"""Random walk (radius 5, beta 10, exp_times 8, 3 channels) on every backend present, against the
dense reference (<= 64x64), SciPy CSR and torch sparse CSR with 256 sparse steps.

Groups: ``random_walk <h>x<w>`` (CPU, one image) and ``random_walk cuda ...`` (GPU, skipped without
one). Run ``pytest benchmarks/ --benchmark-enable`` for timings; ``python -m benchmarks.report``
for the table with peak memory and ratios.
"""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import cases
from benchmarks.conftest import run_benchmark, skip_unless_available

SIZES = cases.sizes()


def _rounds(method: str, size) -> int:
    """The dense reference runs once above 32x32 (seconds and hundreds of MB); 0 = automatic."""
    return 1 if method == "reference" and size[0] * size[1] > 32 * 32 else 0


@pytest.mark.parametrize("method", cases.RW_METHODS)
@pytest.mark.parametrize("size", SIZES, ids=cases.size_label)
def test_random_walk(benchmark, size, method):
    skip_unless_available(method)
    if method == "reference" and not cases.reference_allowed(size):
        pytest.skip(f"dense reference skipped at {cases.size_label(size)} (N x N matrices; "
                    f"limit {'32x32 in quick mode' if cases.quick_mode() else '64x64'})")
    case = cases.prepare_random_walk(method, size)
    rounds = _rounds(method, size)
    result = run_benchmark(benchmark, case, group=f"random_walk {cases.size_label(size)} (N={case.info['N']})",
                           rounds=rounds)
    out = cases.flat_walk_result(result, cases.CHANNELS, case.info["N"])
    assert out.shape == (cases.CHANNELS, case.info["N"])
    assert math.isfinite(float(out.sum()))


GPU_CASES = [pytest.param(c, id=f"B{c['batch']}xC{c['channels']}-{cases.size_label(c['size'])}")
             for c in cases.GPU_RW_CASES]
GPU_METHODS = [pytest.param("cuda", marks=pytest.mark.needs_cuda),
               pytest.param("cupy", marks=[pytest.mark.needs_cuda, pytest.mark.needs_cupy]),
               pytest.param("torch", marks=pytest.mark.needs_cuda)]


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
@pytest.mark.parametrize("method", GPU_METHODS)
@pytest.mark.parametrize("spec", GPU_CASES)
def test_random_walk_cuda(benchmark, spec, method):
    skip_unless_available(method)
    case = cases.prepare_random_walk(method, spec["size"], batch=spec["batch"], channels=spec["channels"],
                                     device="cuda")
    group = f"random_walk cuda B={spec['batch']} C={spec['channels']} {cases.size_label(spec['size'])}"
    result = run_benchmark(benchmark, case, group=group)
    assert result.shape == (spec["batch"], spec["channels"], *spec["size"])
    assert torch.isfinite(result).all()
