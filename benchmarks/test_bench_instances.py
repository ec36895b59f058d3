"""find_centroids_with_refinement at 94x125 (a VOC image at stride 4), 300 iterations: the NumPy
reference against every backend present, on a displacement field like IRNet's (pixels pointing to
a few instance centres, with smooth noise). Every backend's result is checked against the
reference's, which is computed once at import.

    pytest benchmarks/test_bench_instances.py --benchmark-enable
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import cases
from benchmarks.conftest import run_benchmark, skip_unless_available

SIZE = (94, 125)
ITERATIONS = 300
GROUP = f"find_centroids {cases.size_label(SIZE)} x{ITERATIONS}"


def displacement_field(height: int, width: int, *, seed: int = 0, centres: int = 5) -> np.ndarray:
    """The clean field of :func:`benchmarks.cases.centroid_field`."""
    return cases.centroid_field(height, width, "clean", seed=seed, centres=centres)


FIELD = displacement_field(*SIZE)


@pytest.fixture(scope="module")
def expected():
    from irnet_fast.ops import _reference
    return _reference.find_centroids_with_refinement(FIELD, ITERATIONS)


@pytest.mark.parametrize("method", ("reference",) + cases.CPU_BACKENDS)
def test_find_centroids(benchmark, method, expected):
    skip_unless_available(method)
    from irnet_fast.ops import _reference, find_centroids_with_refinement
    if method == "reference":
        def fn():
            return _reference.find_centroids_with_refinement(FIELD, ITERATIONS)
    else:
        field = torch.from_numpy(FIELD)

        def fn():
            return find_centroids_with_refinement(field, ITERATIONS, backend=method)
    case = cases.Case(fn, info={"N": SIZE[0] * SIZE[1], "iterations": ITERATIONS})
    result = run_benchmark(benchmark, case, group=GROUP)
    assert np.array_equal(cases.as_numpy(result), expected)


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
@pytest.mark.parametrize("method", [pytest.param("cuda", marks=pytest.mark.needs_cuda),
                                    pytest.param("torch", marks=pytest.mark.needs_cuda)])
def test_find_centroids_cuda(benchmark, method, expected):
    skip_unless_available(method)
    from irnet_fast.ops import find_centroids_with_refinement
    field = torch.from_numpy(FIELD).cuda()
    case = cases.Case(lambda: find_centroids_with_refinement(field, ITERATIONS, backend=method),
                      info={"N": SIZE[0] * SIZE[1], "iterations": ITERATIONS}, sync=torch.cuda.synchronize)
    result = run_benchmark(benchmark, case, group=GROUP + " cuda")
    assert np.array_equal(result.cpu().numpy(), expected)
