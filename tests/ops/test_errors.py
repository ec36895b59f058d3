"""Bad input raises a clear exception naming the argument, the expectation and what came."""
import pytest
import torch

from irnet_fast import ops

from ..helpers import BACKENDS, boundary_map, cams


def good(h=6, w=7):
    return cams(1, 2, h, w, dtype=torch.float32), boundary_map(1, h, w, dtype=torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_random_walk_bad_inputs(backend, device):
    x, edge = good()
    x, edge = x.to(device), edge.to(device)
    cases = [
        ((x, edge[..., :5]), ValueError, r"edge expected shape \[1, 1, 6, 7\] to match x"),
        ((x[0], edge), ValueError, r"x expected shape \[B, C, h, w\], got \(2, 6, 7\)"),
        ((x, edge.expand(1, 2, 6, 7)), ValueError, r"edge expected shape \[B, 1, h, w\]"),
        ((x, edge * 2), ValueError, r"edge expected values in \[0, 1\].*got range"),
        ((x, edge - 1), ValueError, r"edge expected values in \[0, 1\]"),
        ((x, torch.where(edge > 0.5, float("nan"), edge)), ValueError, "edge expected finite values"),
        ((x.masked_fill(x > 0.9, float("inf")), edge), ValueError, "x expected finite values"),
        ((x.double(), edge), TypeError, "edge expected dtype torch.float64"),
        ((x.int(), edge), TypeError, "x expected dtype torch.float32 or torch.float64, got torch.int32"),
        ((x.to(torch.complex64), edge.to(torch.complex64)), TypeError, "x expected dtype"),
        ((x.numpy() if device == "cpu" else x.cpu().numpy(), edge), TypeError, "x expected a torch.Tensor"),
        ((x[..., :0], edge[..., :0]), ValueError, r"edge expected a non-empty grid"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            ops.random_walk(*args, backend=backend)


@pytest.mark.parametrize("kwargs,match", [
    ({"radius": 0}, r"radius expected an integer in \[1, 64\], got 0"),
    ({"radius": 2.5}, r"radius expected an integer in \[1, 64\], got 2.5"),
    ({"radius": 400}, r"radius expected an integer in \[1, 64\], got 400"),
    ({"beta": 0}, "beta expected a finite number > 0, got 0"),
    ({"beta": -1.0}, "beta expected a finite number > 0"),
    ({"beta": float("nan")}, "beta expected a finite number > 0"),
    ({"exp_times": -1}, r"exp_times expected an integer in \[0, 16\].*got -1"),
    ({"exp_times": 1.5}, r"exp_times expected an integer in \[0, 16\]"),
    ({"exp_times": 30}, r"exp_times expected an integer in \[0, 16\].*got 30"),
])
def test_random_walk_bad_parameters(kwargs, match):
    x, edge = good()
    with pytest.raises(ValueError, match=match):
        ops.random_walk(x, edge, **kwargs)
    with pytest.raises(ValueError, match=match):
        ops.propagate_to_edge(x[0], edge[0], **kwargs)


def test_devices_must_match():
    x, edge = good()
    with pytest.raises(ValueError, match="edge expected on device cpu"):
        ops.random_walk(x, edge.to("meta"))


def test_backend_errors(monkeypatch):
    x, edge = good()
    with pytest.raises(ValueError, match="backend expected one of cuda, cupy, cpp, numba, torch or 'auto', got 'fast'"):
        ops.random_walk(x, edge, backend="fast")
    with pytest.raises(ValueError, match="backend 'cuda' expected CUDA tensors, got tensors on cpu"):
        ops.path_affinity(edge, 3, backend="cuda")
    from irnet_fast import _ext
    monkeypatch.setattr(_ext, "HAS_CPP", False)
    with pytest.raises(RuntimeError, match="backend 'cpp' requested but not available.*pip install"):
        ops.random_walk(x, edge, backend="cpp")


def test_list_errors():
    x, edge = good()
    with pytest.raises(ValueError, match="edge expected a list of 2 boundary maps"):
        ops.random_walk([x[0], x[0]], [edge[0]])
    with pytest.raises(ValueError, match=r"edge\[1\] expected shape \[1, h, w\]"):
        ops.random_walk([x[0], x[0]], [edge[0], edge[0, 0]])


def test_path_affinity_errors():
    edge = boundary_map(2, 10, 10)
    with pytest.raises(ValueError, match=r"edge expected at least 9 x 18 pixels for radius 10, got 10 x 10"):
        ops.path_affinity(edge, 10)
    with pytest.raises(ValueError, match=r"edge expected shape \[B, 1, H, W\], got \(2, 2, 10, 10\)"):
        ops.path_affinity(edge.expand(2, 2, 10, 10), 3)
    with pytest.raises(ValueError, match=r"edge expected values in \[0, 1\]"):
        ops.path_affinity(edge + 1, 3)
    with pytest.raises(TypeError, match="edge expected dtype"):
        ops.path_affinity(edge.long(), 3)
    with pytest.raises(TypeError, match="segm_map expected an integer label map"):
        ops.path_affinity_labels(torch.rand(10, 10), 3)
    with pytest.raises(ValueError, match=r"disp expected shape \[B, 2, H, W\]"):
        ops.to_pair_displacement(3, torch.rand(1, 3, 10, 10))


def test_propagate_to_edge_errors():
    x, edge = good()
    with pytest.raises(ValueError, match=r"edge expected shape \[1, 6, 7\] to match x"):
        ops.propagate_to_edge(x[0], edge[0, :, :5])
    with pytest.raises(ValueError, match="x expected a tensor"):
        ops.propagate_to_edge([1, 2], edge[0])


def test_compiled_op_rejects_bad_geometry_without_crashing():
    from irnet_fast import backends
    if not backends.is_available("cpp"):
        pytest.skip("irnet_fast._C not built")
    edge = torch.rand(1, 8, 8)
    paths = torch.tensor([[[1, 0], [0, 0]]] * 3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="paths expected a contiguous int32 tensor"):
        torch.ops.irnet_fast.path_affinity(edge, paths, torch.ones(3, dtype=torch.int32), 1)
    with pytest.raises(RuntimeError, match="is smaller than the search window"):
        torch.ops.irnet_fast.path_affinity(edge, paths.int(), torch.ones(3, dtype=torch.int32), 5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_path_affinity_empty_batch(backend, device):
    out = ops.path_affinity(torch.rand(0, 1, 20, 20, device=device), 5, backend=backend)
    assert out.shape == (0, 34, 16 * 12)


def test_radius_one_has_no_directions():
    disp = torch.rand(2, 2, 6, 7)
    assert ops.to_pair_displacement(1, disp).shape == (2, 2, 0, 42)
    bg, fg, neg = ops.path_affinity_labels(torch.zeros(6, 7, dtype=torch.long), 1)
    assert bg.shape == fg.shape == neg.shape == (0, 42)


def test_path_affinity_labels_takes_any_numpy_layout():
    import numpy as np
    seg = np.random.default_rng(0).integers(0, 4, (20, 23))
    seg[3, 4] = 255
    expected = ops.path_affinity_labels(np.ascontiguousarray(seg[::-1, ::-1]), 5)
    for view in (seg[::-1, ::-1], seg[::-1, ::-1].astype(">i4"), np.asfortranarray(seg[::-1, ::-1])):
        for a, b in zip(ops.path_affinity_labels(view, 5), expected):
            torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match=r"path_affinity_labels\(\): ignore_from expected an integer label"):
        ops.path_affinity_labels(seg, 5, ignore_from=None)


def test_edge_to_affinity_refuses_a_path_index_of_another_grid():
    index = ops.PathIndex(radius=5, default_size=(11, 20))
    edge = torch.rand(2, 1, 11, 20, dtype=torch.float64)
    torch.testing.assert_close(ops.edge_to_affinity(edge, index.path_indices),
                               ops.path_affinity(edge, 5, backend="torch").flatten(2))
    torch.testing.assert_close(ops.edge_to_affinity(edge.flatten(1), index.path_indices),
                               ops.edge_to_affinity(edge, index.path_indices))
    for other in (torch.rand(1, 1, 12, 20), torch.rand(1, 1, 20, 11), torch.rand(1, 1, 30, 30)):
        with pytest.raises(ValueError, match=r"edge_to_affinity\(\): edge expected the grid of the PathIndex"):
            ops.edge_to_affinity(other, index.path_indices)
    with pytest.raises(ValueError, match=r"edge expected at least \d+ pixels per image"):
        ops.edge_to_affinity(torch.rand(1, 1, 5, 5), index.path_indices)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", ["chebyshev", "steps"])
def test_scores_near_the_float32_maximum_stay_finite(backend, device, method):
    x, edge = cams(1, 3, 9, 11).float(), boundary_map(1, 9, 11).float()
    huge = x / x.max() * 3e38
    out = ops.random_walk(huge.to(device), edge.to(device), exp_times=5, backend=backend, method=method).cpu()
    assert torch.isfinite(out).all()
    expected = ops.random_walk(x.to(device), edge.to(device), exp_times=5, backend=backend, method=method).cpu()
    torch.testing.assert_close(out / 3e38, expected / x.max(), rtol=1e-4, atol=1e-6)


def test_propagate_to_edge_errors_name_it():
    x, edge = good()
    with pytest.raises(ValueError, match=r"^propagate_to_edge\(\): beta expected a finite number > 0"):
        ops.propagate_to_edge(x[0], edge[0], beta=0)
