"""Direct calls of the registered ops (torch.ops.irnet_fast.*) with inconsistent arguments.

The ops are public, so their own checks must stop every argument that a kernel would index with
out of bounds. All cases run in one worker process: a crash there fails these tests instead of
killing the test run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from irnet_fast import backends

pytestmark = pytest.mark.skipif(not backends.is_available("cpp"), reason="irnet_fast._C not built")

import irnet_fast

# the worker imports the same irnet_fast as this process (the sanitizer build runs a copy)
PACKAGE_ROOT = Path(irnet_fast.__file__).resolve().parents[1]

# name -> (op, python expression of its arguments, text the error must contain)
CASES = {
    "affinity_point_outside_box": ("path_affinity", "E, P([[[1, 1], [0, 3], [0, 0]]]), N([3]), 2", "inside the box"),
    "affinity_destination_beyond_reach": ("path_affinity", "E, P([[[3, 0], [0, 0]]]), N([2]), 2", "within radius_floor"),
    "affinity_destination_not_half_plane": ("path_affinity", "E, P([[[-1, 0], [0, 0]]]), N([2]), 2", "dy > 0"),
    "affinity_length_zero": ("path_affinity", "E, P([[[1, 0], [0, 0]]]), N([0]), 2", "lengths[0] expected in [1, 2]"),
    "affinity_length_too_long": ("path_affinity", "E, P([[[1, 0], [0, 0]]]), N([3]), 2", "lengths[0] expected in [1, 2]"),
    "affinity_negative_radius_floor": ("path_affinity", "E, P([[[1, 0], [0, 0]]]), N([2]), -3", "radius_floor"),
    "affinity_huge_radius_floor": ("path_affinity", "E, P([[[1, 0], [0, 0]]]), N([2]), 2**40", "radius_floor"),
    "backward_argmax_beyond_length": ("_path_affinity_backward",
                                      "G(1, 1, 6, 4), A((1, 1, 6, 4), 2), P([[[1, 0], [0, 0]]]), N([2]), 2, 8, 8",
                                      "argmax of direction 0"),
    "backward_wrong_output_size": ("_path_affinity_backward",
                                   "G(1, 1, 6, 4), A((1, 1, 6, 4), 1), P([[[1, 0], [0, 0]]]), N([2]), 2, 100, 100",
                                   "height, width expected 8, 8"),
    "backward_argmax_shape": ("_path_affinity_backward",
                              "G(1, 1, 6, 4), A((1, 1, 3, 4), 0), P([[[1, 0], [0, 0]]]), N([2]), 2, 8, 8", "argmax"),
    "backward_negative_radius_floor": ("_path_affinity_backward",
                                       "G(1, 1, 6, 4), A((1, 1, 6, 4), 0), P([[[1, 0], [0, 0]]]), N([2]), -2, 4, 0",
                                       "radius_floor"),
    "stencil_destination_upwards": ("transition_stencil", "E, P([[[-2, 1], [0, 0]]]), N([2]), 10.0", "dy > 0"),
    "stencil_length_too_long": ("transition_stencil", "E, P([[[1, 0], [0, 0]]]), N([5]), 10.0", "lengths[0]"),
    "walk_dirs_upwards": ("random_walk", "X, S(1), R, D([[-1, 0]]), 4", "dirs[0] expected"),
    "walk_dirs_huge": ("random_walk", "X, S(1), R, D([[1 << 20, 0]]), 4", "dirs[0] expected"),
    "walk_steps_overflow": ("random_walk", "X, S(1), R, D([[1, 0]]), 2**32 + 3", "steps expected in [0, 2147483647]"),
    "walk_steps_negative": ("random_walk", "X, S(1), R, D([[1, 0]]), -1", "steps expected in [0"),
    "walk_planes_mismatch": ("random_walk", "X, S(2), R, D([[1, 0]]), 4", "dirs expected int32 [2, 2]"),
    "centroids_nan": ("find_centroids", "F(float('nan')), 10", "finite"),
    "centroids_inf": ("find_centroids", "F(float('inf')), 10", "finite"),
    "centroids_iterations_overflow": ("find_centroids", "F(0.5), 2**32 + 3", "iterations expected in [0, 2147483647]"),
    "centroids_iterations_negative": ("find_centroids", "F(0.5), -1", "iterations expected in [0"),
    "centroids_shape": ("find_centroids", "torch.zeros(3, 4, 4), 1", "displacement expected float32 or float64 [2, h, w]"),
}

# ops that have a per-element ("portable", the CUDA arithmetic on the CPU) twin with the same checks
PORTABLE = ("path_affinity", "_path_affinity_backward", "transition_stencil", "random_walk")

_WORKER = r"""
import json, sys, torch
import irnet_fast._ext  # loads the compiled ops
E = torch.rand(1, 8, 8)
X = torch.rand(1, 2, 5, 6)
R = torch.ones(1, 5, 6)
def P(v): return torch.tensor(v, dtype=torch.int32)
def N(v): return torch.tensor(v, dtype=torch.int32)
def D(v): return torch.tensor(v, dtype=torch.int32)
def S(d): return torch.rand(1, d, 5, 6)
def G(*shape): return torch.rand(*shape)
def A(shape, value): return torch.full(shape, value, dtype=torch.uint8)
def F(value):
    d = torch.zeros(2, 4, 4)
    d[1, 2, 3] = value
    return d
out = {}
for name, (op, args) in json.loads(sys.argv[1]).items():
    try:
        getattr(torch.ops.irnet_fast, op)(*eval("(" + args + ",)"))
        out[name] = None
    except RuntimeError as exc:
        out[name] = str(exc).splitlines()[0]
    print(json.dumps({name: out[name]}), flush=True)
"""


def _calls():
    calls = {name: (op, args) for name, (op, args, _) in CASES.items()}
    for name, (op, args, _) in CASES.items():
        if op in PORTABLE:
            calls[name + "_portable"] = ("_" + op.lstrip("_") + "_portable", args)
    return calls


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(_calls())], capture_output=True, text=True,
                          env=env, timeout=300)
    found = {}
    for line in proc.stdout.splitlines():
        found.update(json.loads(line))
    return proc, found


@pytest.mark.parametrize("name", sorted(_calls()))
def test_inconsistent_arguments_raise_not_crash(results, name):
    proc, found = results
    assert name in found, f"the worker died before this case (exit {proc.returncode}): {proc.stderr[-2000:]}"
    op, _ = _calls()[name]
    message = found[name]
    assert message is not None, f"{op} accepted inconsistent arguments"
    base = name[:-len("_portable")] if name.endswith("_portable") else name
    assert CASES[base][2] in message, message
    assert message.startswith(op.lstrip("_")), message  # the kernel's name: "<op>_cpu: ..."
