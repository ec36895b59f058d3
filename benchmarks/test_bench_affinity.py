"""path_affinity (kernel, no index arrays) against the reference's gather + max-pool
``edge_to_affinity(edge, PathIndex(10, (H, W)).path_indices)``: forward and forward + backward
(``out.sum().backward()``), B=8, 128x128, radius 10 (IRNet training). The PathIndex is built
outside the timed region.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import cases
from benchmarks.conftest import run_benchmark, skip_unless_available

SIZE_ID = f"B={cases.AFFINITY_BATCH} {cases.size_label(cases.AFFINITY_SIZE)} r={cases.AFFINITY_RADIUS}"


@pytest.mark.parametrize("method", cases.AFFINITY_METHODS)
@pytest.mark.parametrize("mode", cases.AFFINITY_MODES)
def test_path_affinity(benchmark, mode, method):
    skip_unless_available(method)
    case = cases.prepare_affinity(method, mode)
    result = run_benchmark(benchmark, case, group=f"path_affinity {mode} {SIZE_ID}")
    if mode == "fwd":
        assert result.shape[:2] == (cases.AFFINITY_BATCH, case.info.get("D", result.shape[1]))
    else:
        assert result.shape == (cases.AFFINITY_BATCH, 1, *cases.AFFINITY_SIZE)
    assert torch.isfinite(result).all()


GPU_METHODS = [pytest.param("cuda", marks=pytest.mark.needs_cuda),
               pytest.param("cupy", marks=[pytest.mark.needs_cuda, pytest.mark.needs_cupy]),
               pytest.param("torch", marks=pytest.mark.needs_cuda),
               pytest.param("reference", marks=pytest.mark.needs_cuda)]


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
@pytest.mark.parametrize("method", GPU_METHODS)
@pytest.mark.parametrize("mode", cases.AFFINITY_MODES)
def test_path_affinity_cuda(benchmark, mode, method):
    skip_unless_available(method)
    case = cases.prepare_affinity(method, mode, device="cuda")
    result = run_benchmark(benchmark, case, group=f"path_affinity cuda {mode} {SIZE_ID}")
    assert torch.isfinite(result).all()
