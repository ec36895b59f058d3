"""path_affinity, affinity labels and pair displacements against the reference index-array forms."""
import numpy as np
import pytest
import torch

from irnet_fast import ops
from irnet_fast.compat import indexing
from irnet_fast.ops import _reference as reference

from ..helpers import BACKENDS, boundary_map
from .test_path_index import literal_indices, literal_paths


def reference_affinity(edge, radius):
    path_index = ops.PathIndex(radius, edge.shape[-2:])
    return reference.edge_to_affinity(edge, path_index.path_indices)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("radius,size", [(2, (1, 2)), (5, (4, 8)), (5, (9, 30)), (3, (17, 11)), (10, (25, 33)),
                                         (1, (3, 5))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_path_affinity_matches_reference(backend, device, radius, size, dtype):
    edge = boundary_map(3, *size, seed=radius, dtype=dtype)
    actual = ops.path_affinity(edge.to(device), radius, backend=backend)
    pi = ops.PathIndex(radius, size)
    if pi.num_directions == 0 or pi.src_indices.size == 0:  # the reference's max_pool2d fails here
        assert actual.shape == (3, pi.num_directions, pi.src_indices.size)
        return
    expected = reference_affinity(edge, radius)
    assert actual.dtype == dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_path_affinity_three_dim_and_non_contiguous(backend, device):
    edge = boundary_map(2, 14, 21, seed=4)
    expected = reference_affinity(edge, 4)
    strided = edge.transpose(2, 3).contiguous().transpose(2, 3).to(device)
    assert not strided.is_contiguous()
    torch.testing.assert_close(ops.path_affinity(strided, 4, backend=backend).cpu(), expected, rtol=0, atol=0)
    torch.testing.assert_close(ops.path_affinity(edge[:, 0].to(device), 4, backend=backend).cpu(), expected,
                               rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_path_affinity_gradient_matches_reference(backend, device):
    edge = boundary_map(2, 16, 23, seed=8)
    weights = torch.randn(reference_affinity(edge, 5).shape, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    ref_edge = edge.clone().requires_grad_()
    (reference_affinity(ref_edge, 5) * weights).sum().backward()
    ours = edge.to(device).clone().requires_grad_()
    (ops.path_affinity(ours, 5, backend=backend) * weights.to(device)).sum().backward()
    torch.testing.assert_close(ours.grad.cpu(), ref_edge.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_path_affinity_gradcheck(backend, device):
    edge = boundary_map(1, 7, 12, seed=1).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda e: ops.path_affinity(e, 3, backend=backend), (edge,))


def test_path_affinity_ties_route_to_first_point():
    """A constant map ties every path: the gradient goes to the destination (first point)."""
    edge = torch.full((1, 1, 6, 9), 0.5, dtype=torch.float64, requires_grad=True)
    ops.path_affinity(edge, 3, backend="torch").sum().backward()
    ref = edge.detach().clone().requires_grad_()
    reference_affinity(ref, 3).sum().backward()
    torch.testing.assert_close(edge.grad, ref.grad)


def test_compat_module_names():
    edge = boundary_map(2, 12, 14)
    pi = indexing.PathIndex(radius=5, default_size=(12, 14))
    torch.testing.assert_close(indexing.edge_to_affinity(edge, pi.path_indices), reference_affinity(edge, 5))
    assert indexing.propagate_to_edge is ops.propagate_to_edge
    for name in ("affinity_sparse2dense", "to_transition_matrix"):
        assert callable(getattr(indexing, name))


def random_labels(batch, height, width, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(batch, (height + 3) // 4, (width + 3) // 4))
    labels = np.kron(coarse, np.ones((1, 4, 4), dtype=np.int64))[:, :height, :width]
    labels = np.where(labels == 3, 255, labels * 7)  # 0, 7, 14 and ignored 255
    return labels.astype(np.uint8)


@pytest.mark.parametrize("radius,size", [(10, (32, 32)), (5, (13, 22)), (3, (4, 5))])
def test_affinity_labels_exactly_equal(radius, size):
    labels = random_labels(3, *size, seed=radius)
    pi = ops.PathIndex(radius, size)
    fast = ops.path_affinity_labels(torch.from_numpy(labels), radius)
    for b in range(3):
        expected = reference.affinity_labels(labels[b], pi.src_indices, pi.dst_indices)
        compat = ops.affinity_labels(labels[b], pi.src_indices, pi.dst_indices)
        single = ops.path_affinity_labels(labels[b], radius)
        for e, c, f, s in zip(expected, compat, fast, single):
            assert e.dtype == f.dtype == torch.float32
            torch.testing.assert_close(c, e, rtol=0, atol=0)
            torch.testing.assert_close(f[b], e, rtol=0, atol=0)
            torch.testing.assert_close(s, e, rtol=0, atol=0)
    assert sum(float(t.sum()) for t in fast) > 0


def test_affinity_labels_hand_table():
    # 2 x 3 grid, radius 2 (rf 1): the single source (0, 1)
    labels = np.array([[5, 5, 5], [0, 0, 255]])
    bg, fg, neg = ops.path_affinity_labels(labels, 2)
    assert ops.PathIndex(2, (2, 3)).search_dst.tolist() == [[0, 1], [1, 0], [1, -1], [1, 1]]
    # to (0, 2)=5 fg positive; to (1, 1)=0 and (1, 0)=0 negative; to (1, 2)=255 ignored
    assert fg.tolist() == [[1.0], [0.0], [0.0], [0.0]]
    assert neg.tolist() == [[0.0], [1.0], [1.0], [0.0]]
    assert bg.sum() == 0


@pytest.mark.parametrize("radius", [5, 10])
def test_to_pair_displacement(radius):
    disp = torch.randn(2, 2, 24, 30, dtype=torch.float64, requires_grad=True)
    pi = ops.PathIndex(radius, (24, 30))
    expected = torch.stack([torch.stack([
        disp[:, c].reshape(2, -1)[:, pi.src_indices] - disp[:, c].reshape(2, -1)[:, torch.from_numpy(d)]
        for d in pi.dst_indices], 1) for c in range(2)], 1)
    for arg in (pi, radius):
        actual = ops.to_pair_displacement(arg, disp)
        assert actual.shape == (2, 2, pi.num_directions, pi.src_indices.size)
        torch.testing.assert_close(actual, expected)
    actual.sum().backward()
    assert disp.grad is not None and torch.isfinite(disp.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("radius,size", [(5, (9, 30)), (10, (21, 25)), (3, (4, 4))])
def test_portable_cpu_kernels_run_gpu_arithmetic(dtype, radius, size):
    """The *_portable ops run kernels/affinity.h per element, as the CUDA kernels do."""
    from irnet_fast import backends
    from irnet_fast.ops.path_index import geometry, geometry_on
    if not backends.is_available("cpp"):
        pytest.skip("irnet_fast._C not built")
    edge = boundary_map(2, *size, seed=radius, dtype=dtype)[:, 0].contiguous()
    paths, lengths = geometry_on(radius, torch.device("cpu"))
    rf = geometry(radius).radius_floor
    fast = torch.ops.irnet_fast.path_affinity(edge, paths, lengths, rf)
    portable = torch.ops.irnet_fast._path_affinity_portable(edge, paths, lengths, rf)
    for a, b in zip(fast, portable):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grad = torch.randn(fast[0].shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    args = (grad, fast[1], paths, lengths, rf, *size)
    torch.testing.assert_close(torch.ops.irnet_fast._path_affinity_backward(*args),
                               torch.ops.irnet_fast._path_affinity_backward_portable(*args))
    # float64 maps of float32 values (the walk's weights of a float32 map) take the float32 maxima
    widened = edge.float().double()
    for beta in (10.0, 2.5):
        for e in (edge, widened):
            for a, b in zip(torch.ops.irnet_fast.transition_stencil(e, paths, lengths, beta),
                            torch.ops.irnet_fast._transition_stencil_portable(e, paths, lengths, beta)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_path_affinity_gradient_through_strided_upstream(backend, device):
    """Expanded (sum) and transposed upstream gradients reach the kernels unmaterialised."""
    edge = boundary_map(2, 13, 17, seed=3)
    for make_loss in (lambda a: a.sum(), lambda a: (a.transpose(1, 2).contiguous() ** 2).sum()):
        ref = edge.clone().requires_grad_()
        make_loss(reference_affinity(ref, 4)).backward()
        ours = edge.to(device).clone().requires_grad_()
        make_loss(ops.path_affinity(ours, 4, backend=backend)).backward()
        torch.testing.assert_close(ours.grad.cpu(), ref.grad, rtol=1e-12, atol=1e-12)


class ReferencePathIndex:
    """A stand-in for the reference's ``misc/indexing.PathIndex`` object, built from the literal
    transcription of its loops: the object a project mixing both codes hands over."""

    def __init__(self, radius, default_size):
        self.radius = radius
        self.radius_floor = int(np.ceil(radius) - 1)
        self.search_paths = literal_paths(radius)
        self.search_dst = np.concatenate([p[:, 0] for p in self.search_paths], axis=0)
        self.path_indices, self.src_indices, self.dst_indices = literal_indices(radius, default_size)


@pytest.mark.parametrize("radius", [3, 5])
def test_ops_take_the_references_path_index_object(radius):
    """Duck typing: the reference's own PathIndex object works wherever a PathIndex goes."""
    size = (14, 19)
    theirs = ReferencePathIndex(radius, size)
    ours = ops.PathIndex(radius, size)
    assert theirs.search_dst.tolist() == ours.search_dst.tolist()
    disp = torch.randn(2, 2, *size, dtype=torch.float64)
    expected = ops.to_pair_displacement(radius, disp)
    torch.testing.assert_close(ops.to_pair_displacement(theirs, disp), expected, rtol=0, atol=0)
    torch.testing.assert_close(ops.to_pair_displacement(ours, disp), expected, rtol=0, atol=0)
    # only the attributes the op reads are needed
    minimal = type("Minimal", (), {"radius_floor": theirs.radius_floor, "search_dst": theirs.search_dst})()
    torch.testing.assert_close(ops.to_pair_displacement(minimal, disp), expected, rtol=0, atol=0)
    # the index-array ops take its arrays as they come
    edge = boundary_map(2, *size, seed=radius, dtype=torch.float64)
    torch.testing.assert_close(ops.edge_to_affinity(edge, theirs.path_indices), ops.path_affinity(edge, radius))
    segm = torch.randint(0, 4, size)
    for a, b in zip(ops.affinity_labels(segm.numpy(), theirs.src_indices, theirs.dst_indices),
                    ops.path_affinity_labels(segm, radius)):
        assert torch.equal(a, b)


def test_path_index_duck_typing_errors():
    disp = torch.randn(1, 2, 12, 12)
    with pytest.raises(ValueError, match=r"path_index expected a PathIndex \(any object with radius_floor and "
                                         r"search_dst\) or a radius >= 1, got str"):
        ops.to_pair_displacement("5", disp)
    bad = type("Bad", (), {"radius_floor": 4, "search_dst": np.zeros((3, 3), np.int64)})()
    with pytest.raises(ValueError, match=r"path_index.search_dst expected integer offsets of shape \(D, 2\)"):
        ops.to_pair_displacement(bad, disp)
    bad = type("Bad", (), {"radius_floor": -1, "search_dst": np.zeros((3, 2), np.int64)})()
    with pytest.raises(ValueError, match="path_index.radius_floor expected an integer >= 0, got -1"):
        ops.to_pair_displacement(bad, disp)
    with pytest.raises(ValueError, match=r"radius expected an integer in \[1, 64\], got 0"):
        ops.to_pair_displacement(0, disp)
