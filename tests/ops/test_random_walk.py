"""Random walk, stencil and transition matrix of every backend against the dense reference."""
import pytest
import torch
import torch.nn.functional as F

from irnet_fast import backends, ops
from irnet_fast.ops import _reference as reference
from irnet_fast.ops.path_index import geometry_on

from ..helpers import BACKENDS, boundary_map, cams, needs_ext

SIZES = [(1, 1), (2, 3), (3, 12), (13, 17), (20, 9), (7, 31)]
METHODS = ["chebyshev", "steps"]


def reference_walk(x, edge, **kw):
    """Dense reference in float64, per image: x [B, C, h, w], edge [B, 1, h, w]."""
    return torch.stack([reference.propagate_to_edge(xi.double(), ei.double(), **kw)[:, 0]
                        for xi, ei in zip(x, edge)])


def rel_err(actual, expected):
    return float((actual.double().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_random_walk_matches_reference(backend, device, size, dtype, method):
    edge = boundary_map(2, *size, seed=sum(size))
    x = cams(2, 3, *size, seed=7)
    expected = reference_walk(x, edge)
    actual = ops.random_walk(x.to(device, dtype), edge.to(device, dtype), backend=backend, method=method)
    assert actual.shape == x.shape and actual.dtype == dtype and actual.device.type == device
    assert rel_err(actual, expected) <= (1e-3 if dtype == torch.float32 else 1e-8)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_float32_matches_float32_reference_and_labels(backend, device, method):
    """float32 against the reference as users run it (float32, dense)."""
    h, w = 24, 31
    edge = boundary_map(1, h, w, seed=3, dtype=torch.float32)[0]
    x = cams(1, 4, h, w, seed=4, dtype=torch.float32)[0]
    expected = reference.propagate_to_edge(x, edge)
    actual = ops.propagate_to_edge(x.to(device), edge.to(device), backend=backend, method=method).cpu()
    assert actual.shape == (4, 1, h, w)
    assert float((actual - expected).abs().max() / expected.abs().max()) <= 1e-3
    # docs/algorithm.md, "Random walk" semantic post-processing: x4 bilinear, / max, background 0.25, argmax
    def labels(rw):
        up = F.interpolate(rw.permute(1, 0, 2, 3), scale_factor=4, mode="bilinear", align_corners=False)[0]
        up = up / up.max()
        return torch.cat([torch.full_like(up[:1], 0.25), up]).argmax(0)
    assert float((labels(actual) == labels(expected)).double().mean()) >= 0.999


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("radius,beta,exp_times", [(1, 10, 3), (2, 3.5, 0), (5, 10, 1), (7, 10, 5), (3, 10, 10),
                                                   (5, 10, 3)])
def test_random_walk_parameters(backend, device, radius, beta, exp_times, method):
    edge = boundary_map(1, 11, 14, seed=radius)
    x = cams(1, 2, 11, 14)
    expected = reference_walk(x, edge, radius=radius, beta=beta, exp_times=exp_times)
    actual = ops.random_walk(x.to(device), edge.to(device), radius, beta, exp_times, backend=backend, method=method)
    assert rel_err(actual, expected) <= 1e-8


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_chebyshev_float64_within_tol(backend, device, tol):
    """The documented bound: ||chebyshev - steps||_2 <= tol ||x (1 - edge)||_2 (float64)."""
    edge = boundary_map(2, 19, 23, seed=8)
    x = cams(2, 3, 19, 23, seed=9)
    steps = ops.random_walk(x.to(device), edge.to(device), exp_times=8, backend=backend, method="steps").cpu()
    cheb = ops.random_walk(x.to(device), edge.to(device), exp_times=8, backend=backend, tol=tol).cpu()
    assert float((cheb - steps).norm()) <= tol * float((x * (1 - edge)).norm())
    assert float((cheb - steps).norm()) > 0  # the truncation is real: fewer passes than 256
    from irnet_fast.ops.random_walk import walk_coefficients
    assert len(walk_coefficients(256, 34, torch.float64, "chebyshev", tol)) - 1 < 100


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_list_of_sizes_matches_single_images(backend, device, method):
    shapes = [(3, 9, 12), (1, 15, 7), (3, 1, 1), (2, 12, 12)]
    xs = [cams(1, c, h, w, seed=i)[0].to(device) for i, (c, h, w) in enumerate(shapes)]
    edges = [boundary_map(1, h, w, seed=i)[0].to(device) for i, (_, h, w) in enumerate(shapes)]
    outs = ops.random_walk(xs, edges, backend=backend, method=method)
    assert isinstance(outs, list) and len(outs) == len(xs)
    for x, edge, out in zip(xs, edges, outs):
        assert out.shape == x.shape
        expected = reference.propagate_to_edge(x.cpu(), edge.cpu())[:, 0]
        assert rel_err(out, expected) <= 1e-8
    assert ops.random_walk([], [], backend=backend) == []


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    edge = boundary_map(2, 17, 13, seed=5)
    x = cams(2, 3, 17, 13)
    expected = reference_walk(x, edge)
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3).to(device)  # strides permuted
    edge_nc = torch.cat([edge, edge], 1)[:, ::2].to(device)            # a strided slice
    assert not x_nc.is_contiguous() and not edge_nc.is_contiguous()
    assert rel_err(ops.random_walk(x_nc, edge_nc, backend=backend), expected) <= 1e-8


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_propagate_to_edge_shapes(backend, device):
    edge = boundary_map(1, 9, 10)[0].to(device)
    x = cams(1, 6, 9, 10)[0].to(device)
    out4 = ops.propagate_to_edge(x.view(2, 3, 9, 10), edge, backend=backend)
    out3 = ops.propagate_to_edge(x, edge, backend=backend)
    assert out4.shape == out3.shape == (6, 1, 9, 10)
    torch.testing.assert_close(out4, out3)
    assert ops.propagate_to_edge(x[:0], edge, backend=backend).shape == (0, 1, 9, 10)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_batch_and_channels(backend, device):
    edge = boundary_map(2, 5, 6).to(device)
    assert ops.random_walk(cams(2, 3, 5, 6)[:, :0].to(device), edge, backend=backend).shape == (2, 0, 5, 6)
    assert ops.random_walk(cams(2, 3, 5, 6)[:0].to(device), edge[:0], backend=backend).shape == (0, 3, 5, 6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("size", [(1, 1), (6, 2), (13, 17)])
def test_transition_stencil_and_matrix(backend, device, size):
    edge = boundary_map(1, *size, seed=2)
    dense = reference.transition_matrix(edge[0], radius=5, beta=10)
    powered = reference._interior_affinity(edge[0], 5) ** 10  # A ** beta, dense
    planes, norm = ops.transition_stencil(edge.to(device), 5, 10, backend=backend)
    assert planes.shape == (1, 34, *size) and norm.shape == (1, 1, *size)
    torch.testing.assert_close(norm.reshape(-1).double().cpu(), powered.sum(0))
    h, w = size
    index = torch.arange(h * w).view(h, w)
    for k, (dy, dx) in enumerate(ops.PathIndex(5, (5, 8)).search_dst.tolist()):
        for y, x in [(0, 0), (h // 2, w // 2), (h - 1, w - 1), (0, w - 1)]:
            inside = y + dy < h and 0 <= x + dx < w
            want = powered[index[y, x], index[y + dy, x + dx]] if inside else 0.0
            assert float(planes[0, k, y, x]) == pytest.approx(float(want), rel=1e-12, abs=1e-300)
    t = ops.transition_matrix(edge[0].to(device), 5, 10, backend=backend)
    assert t.layout == torch.sparse_csr and t.shape == dense.shape
    torch.testing.assert_close(t.to_dense().cpu(), dense, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(t.to_dense().sum(0).cpu(), torch.ones(dense.shape[0], dtype=dense.dtype))


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_portable_cpu_kernel_runs_gpu_arithmetic(dtype):
    """_random_walk_portable runs kernels::walk_step_at, the function the CUDA kernel runs."""
    edge = boundary_map(2, 10, 13, seed=9, dtype=dtype)
    x = cams(2, 3, 10, 13, dtype=dtype)
    paths, lengths = geometry_on(5, torch.device("cpu"))
    planes, norm = torch.ops.irnet_fast.transition_stencil(edge[:, 0].contiguous(), paths, lengths, 10.0)
    values = (x * (1 - edge)).contiguous()
    dirs = paths[:, 0].contiguous()
    portable = torch.ops.irnet_fast._random_walk_portable(values, planes, 1 / norm, dirs, 256)
    fast = torch.ops.irnet_fast.random_walk(values, planes, 1 / norm, dirs, 256)
    assert rel_err(portable, reference_walk(x, edge)) <= (1e-3 if dtype == torch.float32 else 1e-8)
    assert rel_err(portable, fast.double()) <= (1e-4 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_large_batch_equals_single_images(backend, device, method):
    """Many (image, channel group) units in a batch; one image splits its channels into groups.
    Both must give the same numbers as the reference, and each other."""
    edge = boundary_map(6, 9, 11, seed=11)
    x = cams(6, 7, 9, 11, seed=12)
    batch = ops.random_walk(x.to(device), edge.to(device), backend=backend, method=method)
    assert rel_err(batch, reference_walk(x, edge)) <= 1e-8
    for i in (0, 5):
        single = ops.random_walk(x[i:i + 1].to(device), edge[i:i + 1].to(device), backend=backend, method=method)
        torch.testing.assert_close(single[0], batch[i], rtol=1e-12, atol=1e-14)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_portable_chebyshev_runs_the_header_arithmetic(dtype):
    """_random_walk_chebyshev_portable runs kernels::chebyshev_pass_at (the GPU form) pixel by pixel;
    the vectorised CPU kernel must agree (it keeps v_k in float64 where the GPU form rounds each
    v_k to float32: a few float32 ulps apart)."""
    from irnet_fast.ops.random_walk import walk_coefficients
    edge = boundary_map(2, 10, 13, seed=9)
    x = cams(2, 3, 10, 13)
    paths, lengths = geometry_on(5, torch.device("cpu"))
    planes, norm = torch.ops.irnet_fast.transition_stencil(edge[:, 0].contiguous(), paths, lengths, 10.0)
    values = (x * (1 - edge)).contiguous().to(dtype)
    planes, inv = planes.to(dtype), (1 / norm).to(dtype)
    dirs = paths[:, 0].contiguous()
    coefficients = [float(c) for c in walk_coefficients(256, 34, dtype)]
    portable = torch.ops.irnet_fast._random_walk_chebyshev_portable(values, planes, inv, dirs, coefficients)
    fast = torch.ops.irnet_fast.random_walk_chebyshev(values, planes, inv, dirs, coefficients)
    assert portable.dtype == fast.dtype == dtype
    assert rel_err(portable, reference_walk(x, edge)) <= (1e-4 if dtype == torch.float32 else 1e-10)
    assert rel_err(fast, portable.double()) <= (1e-5 if dtype == torch.float32 else 1e-13)
    torch.library.opcheck(torch.ops.irnet_fast.random_walk_chebyshev.default,
                          (values, planes, inv, dirs, coefficients[:9]))
    torch.library.opcheck(torch.ops.irnet_fast._random_walk_chebyshev_portable.default,
                          (values, planes, inv, dirs, coefficients[:9]))


def test_method_and_tol_errors():
    edge = boundary_map(1, 5, 6)
    x = cams(1, 2, 5, 6)
    with pytest.raises(ValueError, match=r"random_walk\(\): method expected one of 'chebyshev', 'steps', got 'fast'"):
        ops.random_walk(x, edge, method="fast")
    with pytest.raises(ValueError, match=r"random_walk\(\): tol expected None or a finite number >= 0, got -1"):
        ops.random_walk(x, edge, tol=-1)
    with pytest.raises(ValueError, match="RandomWalk"):
        ops.RandomWalk(method="dense")
    module = ops.RandomWalk(exp_times=6, method="steps")
    assert "method='steps'" in repr(module)
    torch.testing.assert_close(module(x, edge), ops.random_walk(x, edge, exp_times=6, method="steps"))


def test_generic_chebyshev_path_matches_fused(monkeypatch):
    """Backends without a fused kernel (cuda and cupy today) run the recurrence over their
    single-step op; on the torch backend both forms must agree."""
    from irnet_fast.ops import _torch
    edge = boundary_map(2, 12, 9, seed=4)
    x = cams(2, 3, 12, 9, seed=5)
    fused = ops.random_walk(x, edge, backend="torch")
    monkeypatch.delattr(_torch, "random_walk_chebyshev")
    generic = ops.random_walk(x, edge, backend="torch")
    torch.testing.assert_close(generic, fused, rtol=1e-12, atol=1e-14)
    assert rel_err(generic, reference_walk(x, edge)) <= 1e-8


def test_compat_propagate_to_edge_methods():
    from irnet_fast.compat import indexing
    edge = boundary_map(1, 9, 8, seed=6)[0]
    x = cams(1, 3, 9, 8, seed=6)[0]
    expected = reference.propagate_to_edge(x, edge)
    for method in METHODS:
        assert rel_err(indexing.propagate_to_edge(x, edge, method=method), expected[:, 0].unsqueeze(1)) <= 1e-8


@needs_ext
@pytest.mark.parametrize("size,channels", [((1, 1), 1), ((5, 17), 2), ((13, 19), 3), ((20, 9), 5), ((9, 40), 4)])
def test_cpu_float32_kernels_tiles_and_rows(monkeypatch, size, channels):
    """The radius-5 float32 Chebyshev walk runs on register tiles on CPUs with AVX-512 and on the
    row kernels elsewhere (IRNET_FAST_CPU_TILES=0 forces them): both within float32 noise of the
    float64 walk, rows not a multiple of the tile height and channel groups of every size included."""
    edge = boundary_map(2, *size, seed=channels)
    x = cams(2, channels, *size, seed=channels + 1)
    truth = ops.random_walk(x.double(), edge.double(), backend="cpp", method="steps")
    outs = []
    for flag in ("1", "0"):
        monkeypatch.setenv("IRNET_FAST_CPU_TILES", flag)
        outs.append(ops.random_walk(x, edge, backend="cpp"))
        assert rel_err(outs[-1], truth) <= 5e-5  # the reference's own float32 walk: ~6e-5
    assert rel_err(outs[0], outs[1].double()) <= 2e-5


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_cpu_walk_reused_buffers_leave_no_trace(monkeypatch, dtype, method):
    """The CPU walk kernels keep their working buffers between calls (fresh ones page-fault on
    every call): a small walk after a larger one, which leaves other values in those buffers, is
    bit for bit the walk before it, gradients included, and each result is a tensor of its own
    that later calls do not overwrite. The buffers that a kernel does not zero are handed out
    full of NaN here, so a read before a write shows."""
    monkeypatch.setenv("IRNET_FAST_POISON_SCRATCH", "1")
    def walk(x, edge):
        x = x.to(dtype).requires_grad_()
        edge = edge.to(dtype).requires_grad_()
        out = ops.random_walk(x, edge, backend="cpp", method=method, exp_times=4)
        (out * torch.linspace(-1, 2, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        return out.detach(), x.grad, edge.grad

    small = (cams(1, 3, 13, 17, seed=1), boundary_map(1, 13, 17, seed=2))
    large = (cams(2, 5, 40, 37, seed=3), boundary_map(2, 40, 37, seed=4))
    before = walk(*small)
    large_out = walk(*large)
    kept = [t.clone() for t in large_out]
    after = walk(*small)
    for a, b in zip(after, before):
        assert torch.equal(a, b)
    with torch.no_grad():
        no_grad_before = ops.random_walk(small[0].to(dtype), small[1].to(dtype), backend="cpp", method=method)
        ops.random_walk(large[0].to(dtype), large[1].to(dtype), backend="cpp", method=method)
        assert torch.equal(ops.random_walk(small[0].to(dtype), small[1].to(dtype), backend="cpp", method=method),
                           no_grad_before)
    for a, b in zip(large_out, kept):
        assert torch.equal(a, b)


@pytest.mark.parametrize("strategy", ["shifted", "sparse"])
@pytest.mark.parametrize("size", [(1, 1), (3, 12), (13, 17), (20, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("exp_times", [0, 3, 8])
def test_torch_backend_shifted_and_sparse_passes(monkeypatch, strategy, size, dtype, method, exp_times):
    """The torch backend applies P as shifted products or, on the CPU for small grids, as one sparse
    product: each against the dense reference, on a batch and a non-contiguous x."""
    from irnet_fast.ops import _torch
    monkeypatch.setattr(_torch, "SPARSE_MAX_PIXELS", 10 ** 9 if strategy == "sparse" else 0)
    used = []
    make = _torch._walk_of
    monkeypatch.setattr(_torch, "_walk_of", lambda *args: used.append(type(walk := make(*args))) or walk)
    edge = boundary_map(2, *size, seed=size[0] + 5 * size[1])
    x = cams(2, 5, *size, seed=11)[:, ::2]  # channels 0, 2, 4: not contiguous
    expected = reference_walk(x, edge, exp_times=exp_times)
    actual = ops.random_walk(x.to(dtype), edge.to(dtype), exp_times=exp_times, backend="torch", method=method)
    assert rel_err(actual, expected) <= (1e-3 if dtype == torch.float32 else 1e-8)
    if exp_times >= 3:  # a single pass stays shifted
        assert used and all(t is (_torch._SparseWalk if strategy == "sparse" else _torch._ShiftedWalk) for t in used)


@needs_ext
@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("radius,beta", [(5, 10), (2, 3), (5, 64), (5, 7.5), (2, 65)])
def test_stencil_planes_equal_the_compiled_kernels(backend, dtype, radius, beta):
    """The planes and norm of every CPU backend equal the C++ kernel's bit for bit (the same
    maxima and affinity.h's power: repeated squaring for integral beta up to 64, else pow), for
    integral beta; for other beta numba too (pow in double), torch within an ulp (its own pow)."""
    if backend == "numba" and not backends.is_available("numba"):
        pytest.skip("numba is not installed")
    for size in [(1, 1), (3, 2), (6, 20), (33, 47)]:
        edge = boundary_map(2, *size, seed=size[1], dtype=dtype)
        planes, norm = ops.transition_stencil(edge, radius, beta, backend=backend)
        want_planes, want_norm = ops.transition_stencil(edge, radius, beta, backend="cpp")
        if backend == "torch" and not (float(int(beta)) == beta <= 64):
            torch.testing.assert_close(planes, want_planes, rtol=4 * torch.finfo(dtype).eps, atol=0)
            torch.testing.assert_close(norm, want_norm, rtol=4 * torch.finfo(dtype).eps, atol=0)
        else:
            assert torch.equal(planes, want_planes) and torch.equal(norm, want_norm)
