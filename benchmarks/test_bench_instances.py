"""find_centroids_with_refinement at 94x125 (a VOC image at stride 4), 300 iterations: the NumPy
reference against every backend present, on the two fields of ``benchmarks.cases.centroid_field``
(``clean``: pixels point at a few instance centres, most trajectories end early; ``noisy``: smooth
noise inside and outside the instances, most pixels run every iteration). Every backend's result
is checked against the reference's.

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


_EXPECTED = {}


def reference_centroids(kind: str) -> np.ndarray:
    """The NumPy reference's centroids of a field (computed once per field)."""
    if kind not in _EXPECTED:
        from irnet_fast.ops import _reference
        _EXPECTED[kind] = _reference.find_centroids_with_refinement(cases.centroid_field(*SIZE, kind), ITERATIONS)
    return _EXPECTED[kind]


@pytest.fixture(scope="module")
def expected():
    return reference_centroids("clean")


@pytest.mark.parametrize("method", cases.CENTROID_METHODS)
@pytest.mark.parametrize("kind", cases.CENTROID_FIELDS)
def test_find_centroids(benchmark, method, kind):
    skip_unless_available(method)
    case = cases.prepare_centroids(method, kind, size=SIZE, iterations=ITERATIONS)
    result = run_benchmark(benchmark, case, group=f"{GROUP} {kind} field")
    assert np.array_equal(cases.as_numpy(result), reference_centroids(kind))


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
