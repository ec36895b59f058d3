"""The ops under torch's own tools: torch.compile(fullgraph=True), torch.export, opcheck of every
compiled op, half-precision input, the value-check switch, and the missing-extension warning."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import irnet_fast
from irnet_fast import _ext, backends, ops
from irnet_fast.ops import _compiled, _reference, _walk_grad
from irnet_fast.ops.path_index import geometry, geometry_on

from ..helpers import BACKENDS, boundary_map, cams, needs_ext

COMPILED_OPS = ("path_affinity", "_path_affinity_backward", "transition_stencil", "random_walk", "find_centroids",
                "_path_affinity_portable", "_path_affinity_backward_portable", "_transition_stencil_portable",
                "_random_walk_portable", "random_walk_chebyshev", "_random_walk_chebyshev_portable",
                "feature_affinity", "_feature_affinity_backward", "_walk_states", "_walk_states_backward")


def _walk(x, edge):
    return ops.random_walk(x, edge, exp_times=3)


def _affinity(edge):
    return ops.path_affinity(edge, 4)


@needs_ext
def test_compile_fullgraph_random_walk_and_path_affinity():
    torch._dynamo.reset()
    edge, x = boundary_map(1, 9, 12, seed=2), cams(1, 3, 9, 12)
    walk = torch.compile(_walk, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(walk(x, edge), _reference.propagate_to_edge(x[0], edge[0], 5, 10, 3).reshape(x.shape))

    affinity = torch.compile(_affinity, fullgraph=True, backend="aot_eager")
    ours, ref = edge.clone().requires_grad_(), edge.clone().requires_grad_()
    out = affinity(ours)
    expected = _reference.edge_to_affinity(ref[:, 0], ops.PathIndex(4, (9, 12)).path_indices)
    torch.testing.assert_close(out, expected)
    (out * torch.arange(out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    (expected * torch.arange(out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad)


def test_constant_result_marks_as_torch_does():
    """Our mark is the one torch.compiler.assume_constant_result sets (a torch that renamed it
    would make torch.compile trace the coefficient functions)."""
    from irnet_fast import _checks

    def ours():
        return [1.0]

    def theirs():
        return [1.0]

    assert _checks.constant_result(ours) is ours
    assert vars(torch.compiler.assume_constant_result(theirs)) == vars(ours) == {_checks._CONSTANT_RESULT_MARK: True}


def test_importing_the_ops_leaves_torch_dynamo_unloaded():
    """torch._dynamo takes seconds to import; a process that only calls the ops must not pay for it."""
    code = "import sys, irnet_fast, irnet_fast.ops, irnet_fast.compat; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


class _Walk(torch.nn.Module):
    def forward(self, x, edge):
        return _walk(x, edge)


class _Affinity(torch.nn.Module):
    def forward(self, edge):
        return _affinity(edge)


@needs_ext
def test_export_random_walk_and_path_affinity():
    edge, x = boundary_map(1, 9, 12, seed=3), cams(1, 2, 9, 12)
    program = torch.export.export(_Walk(), (x, edge))
    assert "irnet_fast.random_walk" in program.graph_module.print_readable(print_output=False)
    other_edge, other_x = boundary_map(1, 9, 12, seed=4), cams(1, 2, 9, 12, seed=5)
    torch.testing.assert_close(program.module()(other_x, other_edge), _walk(other_x, other_edge))

    program = torch.export.export(_Affinity(), (edge,))
    assert "irnet_fast.path_affinity" in program.graph_module.print_readable(print_output=False)
    torch.testing.assert_close(program.module()(other_edge), _affinity(other_edge))


def _opcheck_args():
    cpu = torch.device("cpu")
    edge = boundary_map(2, 9, 11)[:, 0].contiguous()
    paths, lengths = geometry_on(3, cpu)
    rf = geometry(3).radius_floor
    affinity, argmax = torch.ops.irnet_fast.path_affinity(edge, paths, lengths, rf)
    grad = torch.randn(affinity.shape, dtype=edge.dtype, generator=torch.Generator().manual_seed(0))
    planes, norm = torch.ops.irnet_fast.transition_stencil(edge, paths, lengths, 10.0)
    walk = (cams(2, 2, 9, 11).contiguous(), planes, 1 / norm, paths[:, 0].contiguous(), 4)
    displacement = torch.randn(2, 7, 8, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    backward = (grad, argmax, paths, lengths, rf, 9, 11)
    features = cams(2, 3, 9, 11).contiguous()
    aff_planes = torch.ops.irnet_fast.feature_affinity(features, paths[:, 0].contiguous())
    grad_planes = torch.randn(aff_planes.shape, dtype=features.dtype, generator=torch.Generator().manual_seed(3))
    recurrence = ([1.0, 2.0], [0.0, -1.0], [0.5, 0.25, 0.25])  # two Chebyshev passes
    states_args = walk[:4] + (_walk_grad.reach(walk[3]),) + recurrence
    return {
        "path_affinity": (edge.clone().requires_grad_(), paths, lengths, rf),
        "_path_affinity_portable": (edge, paths, lengths, rf),
        "_path_affinity_backward": backward, "_path_affinity_backward_portable": backward,
        "transition_stencil": (edge, paths, lengths, 10.0), "_transition_stencil_portable": (edge, paths, lengths, 2.5),
        "random_walk": walk, "_random_walk_portable": walk,
        "random_walk_chebyshev": walk[:4] + ([0.5, 0.25, 0.125],),
        "_random_walk_chebyshev_portable": walk[:4] + ([0.5, 0.25, 0.125],),
        "find_centroids": (displacement, 5),
        "feature_affinity": (features, paths[:, 0].contiguous()),
        "_feature_affinity_backward": (grad_planes, features, aff_planes, paths[:, 0].contiguous()),
        "_walk_states": states_args,
        "_walk_states_backward": (torch.randn(walk[0].shape, dtype=walk[0].dtype, generator=torch.Generator().manual_seed(5)),
                                  torch.ops.irnet_fast._walk_states(*states_args)[1]) + states_args[1:],
    }


@needs_ext
def test_opcheck_every_compiled_op():
    args = _opcheck_args()
    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("irnet_fast::")} - set(_compiled.CUDA_ONLY)  # no CPU kernel to check
    assert registered == set(COMPILED_OPS) == set(args)
    for name in COMPILED_OPS:
        torch.library.opcheck(getattr(torch.ops.irnet_fast, name).default, args[name])


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_computes_in_float32(backend, device, dtype):
    edge, x = boundary_map(2, 9, 13, seed=6).to(dtype), cams(2, 3, 9, 13).to(dtype)
    walked = ops.random_walk(x.to(device), edge.to(device), exp_times=4, backend=backend)
    assert walked.dtype == dtype
    expected = _reference.propagate_to_edge(x[1].double(), edge[1].double(), 5, 10, 4).reshape(3, 9, 13)
    torch.testing.assert_close(walked[1].cpu().double(), expected, rtol=1e-2, atol=1e-2)

    ours = edge.clone().to(device).requires_grad_()
    affinity = ops.path_affinity(ours, 4, backend=backend)
    assert affinity.dtype == dtype
    ref = edge.double().requires_grad_()
    expected = _reference.edge_to_affinity(ref[:, 0], ops.PathIndex(4, (9, 13)).path_indices)
    torch.testing.assert_close(affinity.cpu(), expected.to(dtype), rtol=0, atol=0)  # 1 - a max: exact, then rounded
    affinity.sum().backward()
    expected.sum().backward()
    assert ours.grad.dtype == dtype
    torch.testing.assert_close(ours.grad.cpu().double(), ref.grad)

    field = torch.randn(2, 6, 7, generator=torch.Generator().manual_seed(2)).to(dtype)
    np.testing.assert_array_equal(ops.find_centroids_with_refinement(field, 20, backend=backend).cpu().numpy(),
                                  _reference.find_centroids_with_refinement(field.float().numpy(), 20))


def test_value_checks_switch_and_message_digits():
    edge = boundary_map(1, 8, 10)
    edge[0, 0, 3, 4] = 1 + 1e-6
    x = cams(1, 2, 8, 10)
    with pytest.raises(ValueError, match=r"range \[[0-9.e-]+, 1\.000001\]"):
        ops.random_walk(x, edge)
    with irnet_fast.value_checks(False):
        ops.random_walk(x, edge, exp_times=1)  # no check, no error
        ops.path_affinity(edge.clamp(max=1) * float("nan"), 3)
    with pytest.raises(ValueError, match="expected finite values"):
        ops.path_affinity(edge.clamp(max=1) * float("nan"), 3)
    previous = irnet_fast.set_value_checks(False)
    try:
        assert previous is True
        ops.transition_stencil(edge)
    finally:
        irnet_fast.set_value_checks(previous)
    with pytest.raises(ValueError, match="edge expected values in"):
        ops.transition_stencil(edge)
    with irnet_fast.value_checks(False), pytest.raises(ValueError, match=r"edge expected shape \[B, 1, h, w\]"):
        ops.random_walk(x, edge[0])  # shape checks always run


def test_get_search_paths_dst_matches_reference_rule():
    pi = ops.PathIndex(10, (30, 30))
    for radius in (1, 2, 5, 10):
        paths, dst = pi.get_search_paths_dst(radius)
        # literal transcription of the reference's rule (grouped by length, destinations first)
        dirs = [(0, x) for x in range(1, radius)] + [(y, x) for y in range(1, radius)
                                                     for x in range(-radius + 1, radius) if x * x + y * y < radius ** 2]
        by_length = {}
        for dy, dx in dirs:
            coords = [[y, x] for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
                      if (dy * x - dx * y) ** 2 / (dy * dy + dx * dx) < 1]
            coords.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
            by_length.setdefault(len(coords), []).append(coords)
        expected = [np.asarray(by_length[n]) for n in sorted(by_length)]
        assert len(paths) == len(expected)
        for got, want in zip(paths, expected):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(dst.reshape(-1, 2), np.concatenate([p[:, 0] for p in expected])
                                      if expected else np.zeros((0, 2)))
    np.testing.assert_array_equal(pi.get_search_paths_dst(10)[1], pi.search_dst)


def test_missing_extension_warns_once_with_the_fix(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_CPP", False)
    monkeypatch.setattr(_ext, "DISABLED", False)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "ImportError: undefined symbol: _ZN3c10")
    monkeypatch.setattr(_ext, "_warned", False)
    monkeypatch.delenv("IRNET_FAST_BACKEND", raising=False)
    with pytest.warns(_ext.ExtensionNotLoadedWarning, match="undefined symbol.*pip install --no-build-isolation"):
        assert backends.resolve("auto", torch.device("cpu"), op="random_walk") in ("numba", "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backends.resolve("auto", torch.device("cpu"), op="random_walk")  # once only
    monkeypatch.setattr(_ext, "_warned", False)
    monkeypatch.setattr(_ext, "DISABLED", True)  # IRNET_FAST_NO_EXT=1: the user chose it, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backends.resolve("auto", torch.device("cpu"), op="random_walk")
