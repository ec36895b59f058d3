"""AffinityNet's family on the walk engine: feature_affinity, the affinity walk, compat.psa, against
the dense transcription of its formulas (ops/_reference.py) and hand tables."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irnet_fast import ops
from irnet_fast.compat import psa
from irnet_fast.ops import _reference as reference
from irnet_fast.ops.random_walk import _edge_affinity

from ..helpers import BACKENDS, boundary_map, cams


def features(batch, channels, height, width, *, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (0.5 * torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)).to(dtype)


def rel_err(actual, expected):
    return float((actual.double().cpu() - expected.double()).abs().max() / expected.abs().max().clamp_min(1e-30))


def test_pair_indices_hand_table():
    # radius 2, a 3 x 4 map: sources rows 0..1, columns 1..2; directions (0,1), (1,-1), (1,0), (1,1)
    ind_from, ind_to = psa.get_indices_of_pairs(2, (3, 4))
    assert ind_from.tolist() == [1, 2, 5, 6]
    assert ind_to.tolist() == [2, 3, 6, 7, 4, 5, 8, 9, 5, 6, 9, 10, 6, 7, 10, 11]
    assert ind_from.dtype == ind_to.dtype == np.int64
    edges = psa.get_indices_in_radius(3, 4, 2)
    assert edges.shape == (16, 2) and edges.dtype == np.int64
    assert edges[:5].tolist() == [[1, 2], [2, 3], [5, 6], [6, 7], [1, 4]]


@pytest.mark.parametrize("radius,size", [(5, (9, 12)), (5, (56, 56)), (3, (7, 5)), (4, (8, 9))])
def test_pair_indices_match_transcription(radius, size):
    ind_from, ind_to = psa.get_indices_of_pairs(radius, size)
    ref_from, ref_to = reference.psa_indices_of_pairs(radius, size)
    np.testing.assert_array_equal(ind_from, ref_from)
    np.testing.assert_array_equal(ind_to, ref_to)
    assert len(ref_to) == len(reference.psa_search_dst(radius)) * len(ref_from)
    np.testing.assert_array_equal(psa.get_indices_in_radius(*size, radius),
                                  reference.psa_indices_in_radius(*size, radius))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 12), (1, 5, 11, 10)])
def test_feature_affinity_matches_reference(backend, device, dtype, shape):
    f = features(*shape, seed=sum(shape), dtype=dtype)
    expected = reference.psa_affinity(f.double())
    actual = psa.affinity(f.to(device), backend=backend)
    assert actual.dtype == dtype and actual.shape == expected.shape
    assert rel_err(actual, expected) <= (1e-6 if dtype == torch.float32 else 1e-12)
    # outside AffinityNet's crop the planes hold no pair; "full" keeps every pair on the grid
    planes = ops.feature_affinity(f.to(device), backend=backend)
    full = ops.feature_affinity(f.to(device), region="full", backend=backend).cpu()
    mask = ops.region_mask(5, *shape[2:], "psa", dtype=dtype)
    torch.testing.assert_close(planes.cpu(), full * mask)
    for k, (dy, dx) in enumerate(ops.PathIndex(5, (9, 9)).search_dst.tolist()):
        y, x = shape[2] - 1 - dy, 0 if dx >= 0 else -dx  # a source outside the crop, destination on the grid
        want = torch.exp(-(f[:, :, y, x] - f[:, :, y + dy, x + dx]).abs().mean(1))
        torch.testing.assert_close(full[:, k, y, x].double(), want.double(), rtol=1e-6, atol=1e-7)
        assert float(full[:, k, shape[2] - 1, shape[3] - 1].abs().max()) == 0 or (dy == 0 and dx < 0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_feature_affinity_edge_cases_and_gradient(backend, device):
    one = ops.feature_affinity(features(1, 2, 1, 1).to(device), region="full", backend=backend)
    assert one.shape == (1, 34, 1, 1) and float(one.abs().max()) == 0
    assert ops.feature_affinity(features(0, 2, 6, 9).to(device), backend=backend).shape == (0, 34, 6, 9)
    f = features(2, 3, 9, 12, seed=4)
    nc = f.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(ops.feature_affinity(nc.to(device), backend=backend).cpu(),
                               reference_planes(f))
    x = features(1, 2, 4, 5, seed=5).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.feature_affinity(t, 2, region="full", backend=backend), (x,))
    # the gradient against autograd through the dense transcription (radius 5, AffinityNet's crop)
    y = features(2, 4, 9, 11, seed=6)
    g = torch.randn(reference.psa_affinity(y).shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    yy = y.clone().requires_grad_()
    (reference.psa_affinity(yy) * g).sum().backward()
    yd = y.to(device).requires_grad_()
    (psa.affinity(yd, backend=backend) * g.to(device)).sum().backward()
    torch.testing.assert_close(yd.grad.cpu(), yy.grad)


def reference_planes(f):
    """psa.affinity's layout back to planes, through the transcription."""
    aff = reference.psa_affinity(f)
    planes = torch.zeros(f.shape[0], 34, *f.shape[2:], dtype=f.dtype)
    planes[:, torch.from_numpy(psa.psa_order(5)), :f.shape[2] - 4, 4:f.shape[3] - 4] = \
        aff.view(f.shape[0], 34, f.shape[2] - 4, f.shape[3] - 8)
    return planes


def test_to_dense_equals_transcription():
    f = features(1, 3, 10, 13, seed=2)
    torch.testing.assert_close(psa.affinity(f, to_dense=True), reference.psa_affinity(f, to_dense=True))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("logt", [3, 8])
def test_propagate_matches_transcription(backend, device, logt):
    f = features(1, 6, 12, 14, seed=logt)
    cam = cams(1, 3, 12, 14, seed=logt)[0]
    expected = reference.psa_propagate(cam, f, beta=8, logt=logt)
    actual = psa.propagate(cam.to(device), f.to(device), beta=8, logt=logt, backend=backend)
    assert actual.shape == cam.shape and rel_err(actual, expected) <= 1e-9
    steps = psa.propagate(cam.float().to(device), f.float().to(device), logt=logt, backend=backend, method="steps")
    assert rel_err(steps, expected) <= 1e-4


def test_infer_labels_matches_infer_aff_block():
    """infer_aff.py's block: bg = (1 - max)**alpha, pad to 8, avg-pool 8, walk, upsample, arg-max."""
    height, width = 75, 90
    fg = cams(1, 2, height, width, seed=3)[0]
    f = features(1, 4, 10, 12, seed=1)
    full = torch.zeros(21, height, width, dtype=torch.float64)
    keys = [4, 11]
    for k, v in zip(keys, fg):
        full[k + 1] = v
    full[0] = (1 - full[1:].max(0)[0]) ** 16
    full = F.pad(full, (0, 6, 0, 5))
    pooled = F.avg_pool2d(full, 8, 8)
    walked = reference.psa_propagate(pooled, f).view(1, 21, 10, 12)
    expected = F.interpolate(walked, (80, 96), mode="bilinear", align_corners=False)[0].argmax(0)[:height, :width]
    labels = psa.infer_labels(fg, f, (height, width), keys)
    assert float((labels == expected).double().mean()) >= 0.999


def test_affinity_labels_match_transcription():
    gen = torch.Generator().manual_seed(3)
    label = torch.randint(0, 4, (14, 16), generator=gen).numpy().astype(np.uint8)
    label[2:5, 3:9] = 255
    expected = reference.psa_affinity_labels(label)
    actual = psa.ExtractAffinityLabelInRadius(cropsize=14, radius=5)(label)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    planes = ops.feature_affinity_labels(torch.from_numpy(label.astype(np.int64)))
    order = torch.from_numpy(psa.psa_order(5))
    for p, e in zip(planes, expected):
        torch.testing.assert_close(p[order, :10, 4:12].reshape(34, -1), e)
        assert float(p.sum()) == float(e.sum())  # nothing outside the crop


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_boundary_walk_is_an_affinity_walk(backend, device):
    """The boundary map produces planes like any other producer: the same walk."""
    edge = boundary_map(2, 9, 11, seed=1).to(device)
    x = cams(2, 3, 9, 11).to(device)
    aff = _edge_affinity(edge[:, 0], 5, backend)
    planes, norm = ops.transition_stencil(edge, backend=backend)
    planes_a, norm_a = ops.transition_stencil(affinity=aff, backend=backend)
    torch.testing.assert_close(planes_a, planes)
    torch.testing.assert_close(norm_a, norm)
    torch.testing.assert_close(ops.random_walk(x * (1 - edge), affinity=aff, backend=backend),
                               ops.random_walk(x, edge, backend=backend))
    lists = ops.random_walk([x[0], x[1, :2, :5]], affinity=[aff[0], aff[1, :, :5]], backend=backend)
    torch.testing.assert_close(lists[0], ops.random_walk(x[:1], affinity=aff[:1], backend=backend)[0])
    torch.testing.assert_close(lists[1], ops.random_walk(x[1:, :2, :5], affinity=aff[1:, :, :5], backend=backend)[0])


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("method", ["chebyshev", "steps"])
def test_walk_gradcheck(backend, device, method):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 3, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    edge = torch.rand(1, 1, 3, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_()  # no ties
    aff = torch.rand(1, 4, 3, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    # 16 steps, or 14 Chebyshev passes (tol 1e-3 keeps the expansion shorter than the steps)
    kw = dict(radius=2, beta=3.0, exp_times=4, backend=backend, method=method, tol=1e-3)
    check = dict(fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: ops.random_walk(t, edge.detach(), **kw), (x,), **check)
    assert torch.autograd.gradcheck(lambda t, e: ops.random_walk(t, e, **kw), (x, edge), **check)
    assert torch.autograd.gradcheck(lambda t, a: ops.random_walk(t, affinity=a, **kw), (x, aff), **check)


def test_gradient_through_psa_walk_matches_dense():
    f = features(1, 3, 10, 12, seed=8)
    cam = cams(1, 2, 10, 12, seed=8)[0]
    g = torch.randn(cam.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for fn in (reference.psa_propagate, psa.propagate):
        ff, cc = f.clone().requires_grad_(), cam.clone().requires_grad_()
        (fn(cc, ff, logt=5) * g).sum().backward()
        grads.append((ff.grad, cc.grad))
    for actual, expected in zip(grads[1], grads[0]):
        assert rel_err(actual, expected) <= 1e-8


def test_errors():
    f = features(1, 2, 9, 12)
    with pytest.raises(ValueError, match="exactly one of edge"):
        ops.random_walk(cams(1, 2, 9, 12))
    with pytest.raises(ValueError, match="affinity expected shape"):
        ops.random_walk(cams(1, 2, 9, 12), affinity=torch.rand(1, 5, 9, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"affinity expected values in \[0, 1\]"):
        ops.random_walk(cams(1, 2, 9, 12), affinity=torch.full((1, 34, 9, 12), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="affinity expected finite values"):
        ops.random_walk(cams(1, 2, 9, 12), affinity=torch.full((1, 34, 9, 12), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="region expected"):
        ops.feature_affinity(f, region="crop")
    with pytest.raises(ValueError, match="at least one channel"):
        ops.feature_affinity(f[:, :0])
    with pytest.raises(ValueError, match="size expected more than"):
        psa.get_indices_of_pairs(5, (4, 20))
    with pytest.raises(ValueError, match="cam expected the feature grid"):
        psa.propagate(cams(1, 2, 8, 12)[0], f)


def _walk_grads(backend, x, aff, g, method, exp_times=6):
    xx, aa = x.clone().requires_grad_(), aff.clone().requires_grad_()
    out = ops.random_walk(xx, affinity=aa, beta=3.0, exp_times=exp_times, backend=backend, method=method)
    out.backward(g)
    return out.detach(), xx.grad, aa.grad


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 7, 9), (1, 9, 6, 17), (1, 3, 2, 30), (3, 2, 11, 8)])
@pytest.mark.parametrize("method", ["chebyshev", "steps"])
def test_fused_state_kernels_match_the_recurrence(shape, method):
    """The CPU walk that keeps its states and its fused reverse pass against the float64
    recurrence over the torch backend's single step (ops/_walk_grad.py): float64 to 1e-10,
    float32 to float32 noise; radius 5 (dx < 0 included), sizes smaller than the stencil,
    several channel blocks, a non-contiguous upstream gradient."""
    from irnet_fast.ops import _compiled
    if not _compiled.has_walk_states("cpu"):
        pytest.skip("the compiled extension is not loaded")
    batch, channels, height, width = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    aff = torch.rand(batch, 34, height, width, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, width, height, channels, generator=gen, dtype=torch.float64).permute(0, 3, 2, 1)
    want = _walk_grads("torch", x, aff, g, method)
    got = _walk_grads("cpp", x, aff, g, method)
    for actual, expected in zip(got, want):
        assert rel_err(actual, expected) <= 1e-10
    got32 = _walk_grads("cpp", x.float(), aff.float(), g.float(), method)
    for actual, expected in zip(got32, want):
        assert actual.dtype == torch.float32 and rel_err(actual, expected) <= 1e-4


def test_fused_state_kernels_check_their_arguments():
    from irnet_fast.ops import _compiled
    if not _compiled.has_walk_states("cpu"):
        pytest.skip("the compiled extension is not loaded")
    from irnet_fast.ops.path_index import geometry
    dirs = torch.as_tensor(np.asarray(geometry(5).search_dst), dtype=torch.int32)
    x, planes, inv = torch.rand(1, 2, 5, 6), torch.rand(1, 34, 5, 6), torch.rand(1, 5, 6)
    with pytest.raises(RuntimeError, match="pad expected the largest"):
        _compiled.walk_states(x, planes, inv, dirs, 3, [1.0], [0.0], [0.0, 1.0])
    with pytest.raises(RuntimeError, match="len\\(c\\) == len\\(alpha\\) \\+ 1"):
        _compiled.walk_states(x, planes, inv, dirs, 4, [1.0], [0.0], [1.0])
    y, states = _compiled.walk_states(x, planes, inv, dirs, 4, [1.0], [0.0], [0.0, 1.0])
    assert tuple(states.shape) == _compiled.walk_states_shape(x.shape, x.dtype, 4, 1)
    with pytest.raises(RuntimeError, match="states expected"):
        _compiled.walk_states_backward(torch.ones_like(y), states[:1], planes, inv, dirs, 4, [1.0], [0.0], [0.0, 1.0])


def test_stencil_norm_gradient_matches_its_autograd_form():
    """The norm's own backward against autograd through the shifted sums, to the second order."""
    from irnet_fast.ops import _walk_grad
    from irnet_fast.ops.path_index import geometry
    dirs = torch.as_tensor(np.asarray(geometry(3).search_dst), dtype=torch.int32)
    planes = torch.rand(2, dirs.shape[0], 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    planes.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: _walk_grad.stencil_norm(p, dirs), (planes,))
    assert torch.autograd.gradgradcheck(lambda p: _walk_grad.stencil_norm(p, dirs) ** 2, (planes,))
    g = torch.randn(2, 4, 5, dtype=torch.float64)
    got, = torch.autograd.grad(_walk_grad.stencil_norm(planes, dirs), planes, g)
    want, = torch.autograd.grad(_walk_grad._shifted_sums(planes, dirs.tolist()), planes, g)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
