"""Every CUDA kernel and the CuPy launch path, run on the CPU SIMT emulator, against the CPU ops.

"cuda": the launchers of csrc/cuda (grids, offsets, batches) with their kernels, compiled for the
emulator (torch.ops.irnet_fast_emu). "cupy": irnet_fast/ops/_cupy.py (argument packing, grids,
outputs) launching the NVRTC kernel source on the emulator. Both must equal the CPU kernels.
"gpu-cuda" and "gpu-cupy" run the same tests on a real GPU (skipped without one).
"""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from irnet_fast.ops import _cupy
from irnet_fast.ops.path_index import geometry_on

from ..emulator import EMU, EmulatedRuntime, cupy_emulated, needs_emu
from ..helpers import boundary_map, cams, needs_ext

pytestmark = [needs_ext]
CPU = torch.ops.irnet_fast
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}
# walks of scores in [0, 1]: float32 rounding grows with the steps (the CPU kernel sums in another order)
WALK_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-12, atol=1e-14)}


class _CupyOps:
    def __getattr__(self, name):
        return cupy_emulated(getattr(_cupy, name))


class _OnGpu:
    """Runs ``ops``'s functions on CUDA copies of the tensor arguments; results come back to the CPU."""

    def __init__(self, ops):
        self.ops = ops

    def __getattr__(self, name):
        function = getattr(self.ops, name)

        def run(*args):
            out = function(*[a.cuda() if isinstance(a, torch.Tensor) else a for a in args])
            return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()
        return run


def _backward(ops):
    """The path affinity backward: a private op (``_``) of the registered namespaces, a plain
    function of the CuPy backend."""
    return getattr(ops, "_path_affinity_backward", None) or ops.path_affinity_backward


def _ops(kind):
    return {"cuda": lambda: EMU, "cupy": _CupyOps, "gpu-cuda": lambda: _OnGpu(torch.ops.irnet_fast),
            "gpu-cupy": lambda: _OnGpu(_cupy)}[kind]()


KINDS = [pytest.param("cuda", marks=needs_emu), pytest.param("cupy", marks=needs_emu),
         pytest.param("gpu-cuda", marks=pytest.mark.needs_cuda), pytest.param("gpu-cupy", marks=pytest.mark.needs_cupy)]


def _same_arithmetic(kind, dtype=torch.float64):
    """Tolerance between two runs of the same per-pixel arithmetic: none under the emulator; on a
    GPU nvcc may contract a * b + c into one rounding."""
    return dict(rtol=0, atol=0) if not kind.startswith("gpu") else WALK_TOL[dtype]


# the compiled launchers only: ops with an explicit launch plan
COMPILED = [pytest.param("cuda", marks=needs_emu), pytest.param("gpu-cuda", marks=pytest.mark.needs_cuda)]


# ------------------------------------------------------------------------------------------------
# the emulator enforces GPU semantics
# ------------------------------------------------------------------------------------------------

@needs_emu
def test_missing_syncthreads_fails_with_dynamic_and_static_shared_memory():
    x = torch.arange(1, 1001, dtype=torch.float32)
    expected = x + torch.stack([torch.roll(chunk, -1) for chunk in torch.cat([x, torch.zeros(24)]).view(-1, 64)])\
        .reshape(-1)[:1000]
    for dynamic in (True, False):
        torch.testing.assert_close(EMU.selftest_shared_neighbour(x, True, dynamic), expected, rtol=0, atol=0)
        racy = EMU.selftest_shared_neighbour(x, False, dynamic)
        assert not torch.equal(racy, expected)
        if dynamic:  # dynamic shared memory starts as NaN: every too-early read shows
            assert racy.isnan().any()


@needs_emu
def test_short_grid_leaves_outputs_unwritten():
    x = torch.arange(1000, dtype=torch.float32)
    assert torch.equal(EMU.selftest_copy(x, False), x)
    short = EMU.selftest_copy(x, True)
    assert short[-40:].isnan().all() and torch.equal(short[:960], x[:960])


@needs_emu
def test_barrier_skipped_by_some_threads_is_an_error():
    with pytest.raises(RuntimeError, match="exited while .* wait at __syncthreads"):
        EMU.selftest_early_return_barrier(torch.ones(1000))
    # a full last block is fine
    assert torch.equal(EMU.selftest_early_return_barrier(torch.ones(1024)), torch.ones(1024))


@needs_emu
def test_invalid_launch_configuration_is_an_error():
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        EMU.launch_packed("irnet_fast::kernels::find_centroids_kernel<float>", [0], [256], 0, "ppiii",
                          torch.zeros(28, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        EMU.launch_packed("irnet_fast::kernels::find_centroids_kernel<float>", [1], [2048], 0, "ppiii",
                          torch.zeros(28, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------
# the CuPy launch seam
# ------------------------------------------------------------------------------------------------

@needs_emu
def test_emulator_knows_every_kernel_the_cupy_backend_compiles():
    names = set(EMU.kernel_names())
    for kernel, variant in _cupy._KERNELS:
        for ctype in _cupy._CTYPES.values():
            assert _cupy._name(kernel, ctype, variant) in names


@needs_emu
def test_packed_arguments_must_match_the_kernel():
    with pytest.raises(RuntimeError, match="parameters expected types 'ppiii'"):
        EMU.launch_packed("irnet_fast::kernels::find_centroids_kernel<float>", [1], [32], 0, "ppiid",
                          torch.zeros(32, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="28 parameter bytes expected|parameter bytes, expected 28"):
        EMU.launch_packed("irnet_fast::kernels::find_centroids_kernel<float>", [1], [32], 0, "ppiii",
                          torch.zeros(32, dtype=torch.uint8))
    runtime = EmulatedRuntime(torch.device("cpu"))
    x = torch.zeros(4)
    with pytest.raises(TypeError, match="argument 2 is a int"):
        runtime.launch("find_centroids_kernel", torch.float32, (1,), (32,),
                       [runtime.array(x), runtime.array(x.int()), 1, 1, 1])


# ------------------------------------------------------------------------------------------------
# every kernel against the CPU ops
# ------------------------------------------------------------------------------------------------

AFFINITY_CASES = [(2, (1, 2)), (5, (4, 8)), (5, (9, 30)), (3, (17, 11)), (10, (25, 33)), (1, (3, 5)), (5, (5, 8))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius,size", AFFINITY_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_path_affinity_forward_and_backward(kind, radius, size, dtype):
    ops = _ops(kind)
    edge = boundary_map(3, *size, seed=radius, dtype=dtype)[:, 0].contiguous()
    paths, lengths = geometry_on(radius, torch.device("cpu"))
    rf = radius - 1
    affinity, argmax = ops.path_affinity(edge, paths, lengths, rf)
    want_affinity, want_argmax = CPU.path_affinity(edge, paths, lengths, rf)
    assert torch.equal(affinity, want_affinity) and torch.equal(argmax, want_argmax)
    grad = torch.randn(affinity.shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    grad_edge = _backward(ops)(grad, argmax, paths, lengths, rf, *size)
    # the portable CPU op gathers in the kernel's order (exact); the fast one scatters (rounding)
    assert torch.equal(grad_edge, CPU._path_affinity_backward_portable(grad, argmax, paths, lengths, rf, *size))
    torch.testing.assert_close(grad_edge, CPU._path_affinity_backward(grad, argmax, paths, lengths, rf, *size),
                               **TOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 2), (13, 17), (7, 31)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_transition_stencil(kind, size, dtype):
    edge = boundary_map(2, *size, seed=sum(size), dtype=dtype)[:, 0].contiguous()
    paths, lengths = geometry_on(5, torch.device("cpu"))
    planes, norm = _ops(kind).transition_stencil(edge, paths, lengths, 10.0)
    want_planes, want_norm = CPU.transition_stencil(edge, paths, lengths, 10.0)
    assert torch.equal(planes, want_planes)
    torch.testing.assert_close(norm, want_norm, **TOL[dtype])


def _walk_inputs(batch, channels, size, dtype, radius=5, seed=0):
    edge = boundary_map(batch, *size, seed=seed, dtype=dtype)[:, 0].contiguous()
    paths, lengths = geometry_on(radius, torch.device("cpu"))
    planes, norm = CPU.transition_stencil(edge, paths, lengths, 10.0)
    x = cams(batch, channels, *size, seed=seed + 1, dtype=dtype).contiguous()
    return x, planes, 1 / norm, paths[:, 0].contiguous()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 2), (13, 17), (7, 31), (20, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_walk(kind, size, dtype):
    x, planes, inv_norm, dirs = _walk_inputs(2, 3, size, dtype, seed=sum(size))
    out = _ops(kind).random_walk(x, planes, inv_norm, dirs, 64)
    torch.testing.assert_close(out, CPU.random_walk(x, planes, inv_norm, dirs, 64), **WALK_TOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5, 256])
def test_random_walk_step_counts(kind, steps):
    x, planes, inv_norm, dirs = _walk_inputs(1, 2, (9, 11), torch.float64, seed=4)
    out = _ops(kind).random_walk(x, planes, inv_norm, dirs, steps)
    torch.testing.assert_close(out, CPU.random_walk(x, planes, inv_norm, dirs, steps), **TOL[torch.float64])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", [1, 2, 7])
def test_random_walk_radii(kind, radius):
    x, planes, inv_norm, dirs = _walk_inputs(2, 2, (10, 12), torch.float64, radius=radius, seed=radius)
    out = _ops(kind).random_walk(x, planes, inv_norm, dirs, 16)
    torch.testing.assert_close(out, CPU.random_walk(x, planes, inv_norm, dirs, 16), **TOL[torch.float64])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_walk_batch_of_different_sizes(kind, dtype):
    """A padded batch (as random_walk builds it for a list): zero planes and inverse norm outside
    each image keep every image exact; each must equal its own walk."""
    shapes = [(9, 12), (15, 7), (1, 1), (12, 12)]
    paths, lengths = geometry_on(5, torch.device("cpu"))
    dirs = paths[:, 0].contiguous()
    h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    x = torch.zeros(len(shapes), 3, h, w, dtype=dtype)
    planes = torch.zeros(len(shapes), dirs.shape[0], h, w, dtype=dtype)
    inv_norm = torch.zeros(len(shapes), h, w, dtype=dtype)
    singles = []
    for i, (hi, wi) in enumerate(shapes):
        xi, pi, ii, _ = _walk_inputs(1, 3, (hi, wi), dtype, seed=10 + i)
        x[i, :, :hi, :wi], planes[i, :, :hi, :wi], inv_norm[i, :hi, :wi] = xi[0], pi[0], ii[0]
        singles.append(CPU.random_walk(xi, pi, ii, dirs, 32)[0])
    out = _ops(kind).random_walk(x, planes, inv_norm, dirs, 32)
    for i, (hi, wi) in enumerate(shapes):
        torch.testing.assert_close(out[i, :, :hi, :wi], singles[i], **WALK_TOL[dtype])
        assert not out[i, :, hi:].any() and not out[i, :, :, wi:].any()


@pytest.mark.parametrize("kind", KINDS)
def test_empty_inputs(kind):
    ops = _ops(kind)
    paths, lengths = geometry_on(5, torch.device("cpu"))
    dirs = paths[:, 0].contiguous()
    for shape in [(0, 3, 5, 6), (2, 0, 5, 6)]:
        x = torch.zeros(shape, dtype=torch.float64)
        planes = torch.zeros(shape[0], 34, 5, 6, dtype=torch.float64)
        inv = torch.ones(shape[0], 5, 6, dtype=torch.float64)
        assert ops.random_walk(x, planes, inv, dirs, 8).shape == shape
    edge = torch.zeros(0, 9, 12, dtype=torch.float64)
    assert ops.path_affinity(edge, paths, lengths, 4)[0].shape == (0, 34, 5, 4)
    planes, norm = ops.transition_stencil(edge, paths, lengths, 10.0)
    assert planes.shape == (0, 34, 9, 12) and norm.shape == (0, 9, 12)
    assert ops.find_centroids(torch.zeros(2, 0, 4), 5).shape == (2, 0, 4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(1, 1), (5, 3), (23, 17)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_find_centroids(kind, size, dtype):
    gen = torch.Generator().manual_seed(sum(size))
    displacement = (torch.randn(2, *size, generator=gen, dtype=torch.float64) * 3).to(dtype)
    out = _ops(kind).find_centroids(displacement, 300)
    assert out.dtype == torch.int32 and torch.equal(out, CPU.find_centroids(displacement, 300))


# ------------------------------------------------------------------------------------------------
# the fused walk's launch plans (random_walk_tiled): tiles, halos, fused steps, channel blocks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tile,fused,block", [
    ((32, 32), 2, 4),   # the default tile
    ((3, 5), 2, 2),     # tiles smaller than the reach (4): the halo is wider than the tile
    ((1, 1), 3, 1),     # one pixel per tile
    ((4, 7), 1, 8),     # one step per launch, a channel block wider than C
    ((8, 8), 5, 2),     # steps not a multiple of the fused steps
    ((0, 0), 1, 4),     # one resident tile per image: every step in one launch
])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", COMPILED)
def test_fused_walk_plans(kind, tile, fused, block, dtype):
    x, planes, inv_norm, dirs = _walk_inputs(2, 3, (13, 19), dtype, seed=5)
    want = CPU.random_walk(x, planes, inv_norm, dirs, 12)
    out = _ops(kind).random_walk_tiled(x, planes, inv_norm, dirs, 12, *tile, fused, block)
    torch.testing.assert_close(out, want, **WALK_TOL[dtype])


@pytest.mark.parametrize("kind", COMPILED)
def test_fused_walk_equals_one_step_per_launch_exactly(kind):
    """Fusing steps changes where the values live, not the arithmetic: bit-identical results."""
    x, planes, inv_norm, dirs = _walk_inputs(3, 5, (17, 23), torch.float32, seed=8)
    ops = _ops(kind)
    one = ops.random_walk_tiled(x, planes, inv_norm, dirs, 9, 32, 32, 1, 1)
    for plan in [(32, 32, 2, 4), (5, 6, 4, 8), (0, 0, 1, 2)]:
        torch.testing.assert_close(ops.random_walk_tiled(x, planes, inv_norm, dirs, 9, *plan), one,
                                   **_same_arithmetic(kind, torch.float32))


@pytest.mark.parametrize("kind", COMPILED)
def test_fused_walk_rejects_bad_plans(kind):
    x, planes, inv_norm, dirs = _walk_inputs(1, 2, (6, 6), torch.float32)
    ops = _ops(kind)
    with pytest.raises(RuntimeError, match="channel_block expected 1, 2, 4 or 8, got 3"):
        ops.random_walk_tiled(x, planes, inv_norm, dirs, 4, 8, 8, 1, 3)
    with pytest.raises(RuntimeError, match="bytes of shared memory"):
        ops.random_walk_tiled(x, planes, inv_norm, dirs, 4, 256, 256, 1, 8)


@needs_emu
def test_cupy_walk_resident_plan_when_the_images_fill_the_device():
    """132 (image, channel group) blocks fill the emulated device: one launch does every step."""
    x, planes, inv_norm, dirs = _walk_inputs(EMU.device_limits()[1], 2, (3, 4), torch.float64, seed=2)
    EmulatedRuntime.launches.clear()
    out = cupy_emulated(_cupy.random_walk)(x, planes, inv_norm, dirs, 5)
    assert [launch[1:3] for launch in EmulatedRuntime.launches] == [((1, 1, x.shape[0]), (1024,))]
    torch.testing.assert_close(out, CPU.random_walk(x, planes, inv_norm, dirs, 5), **WALK_TOL[torch.float64])
    torch.testing.assert_close(EMU.random_walk(x, planes, inv_norm, dirs, 5), out, rtol=0, atol=0)


@needs_emu
def test_cupy_walk_default_plan_fuses_steps():
    x, planes, inv_norm, dirs = _walk_inputs(2, 3, (40, 35), torch.float32, seed=3)
    EmulatedRuntime.launches.clear()
    out = cupy_emulated(_cupy.random_walk)(x, planes, inv_norm, dirs, 5)
    grids = [launch[1] for launch in EmulatedRuntime.launches]
    assert grids == [(4, 1, 2)] * 3  # 2 x 2 tiles of 32, one group of 4 channels, 2 + 2 + 1 steps
    assert torch.equal(out, EMU.random_walk(x, planes, inv_norm, dirs, 5))


# ------------------------------------------------------------------------------------------------
# the fused Chebyshev walk (random_walk_chebyshev): passes fused per launch like the steps
# ------------------------------------------------------------------------------------------------

def _coefficients(steps, dtype):
    from irnet_fast.ops.random_walk import walk_coefficients
    return [float(c) for c in walk_coefficients(steps, 34, dtype)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (13, 17), (20, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_chebyshev_walk(kind, size, dtype):
    x, planes, inv_norm, dirs = _walk_inputs(2, 3, size, dtype, seed=sum(size))
    coefficients = _coefficients(256, dtype)
    out = _ops(kind).random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients)
    assert out.dtype == dtype and out.shape == x.shape
    if dtype == torch.float64:  # the portable CPU op runs the same per-pixel pass
        torch.testing.assert_close(out, CPU._random_walk_chebyshev_portable(x, planes, inv_norm, dirs, coefficients),
                                   **_same_arithmetic(kind))
    # float32 accumulates in float32 here (float64 on the CPU): the project's float32 criterion,
    # 1e-3 of the largest score, against the float64 walk
    want = CPU.random_walk_chebyshev(x.double(), planes.double(), inv_norm.double(), dirs, coefficients)
    scale = float(want.abs().max())
    torch.testing.assert_close(out.double(), want, rtol=0, atol=(1e-3 if dtype == torch.float32 else 1e-12) * scale)
    steps = CPU.random_walk(x.double(), planes.double(), inv_norm.double(), dirs, 256)
    torch.testing.assert_close(out.double(), steps, rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize("tile,fused,block", [((32, 32), 2, 4), ((3, 5), 2, 2), ((1, 1), 3, 1), ((4, 7), 1, 8),
                                              ((8, 8), 5, 2), ((0, 0), 1, 4)])
@pytest.mark.parametrize("degree", [0, 1, 2, 7])
@pytest.mark.parametrize("kind", COMPILED)
def test_chebyshev_walk_plans(kind, tile, fused, block, degree):
    x, planes, inv_norm, dirs = _walk_inputs(2, 3, (13, 19), torch.float64, seed=6)
    coefficients = [0.5 ** k for k in range(degree + 1)]
    want = CPU._random_walk_chebyshev_portable(x, planes, inv_norm, dirs, coefficients)
    out = _ops(kind).random_walk_chebyshev_tiled(x, planes, inv_norm, dirs, coefficients, *tile, fused, block)
    torch.testing.assert_close(out, want, **_same_arithmetic(kind))


@needs_emu
def test_cupy_chebyshev_default_and_resident_plans():
    coefficients = _coefficients(64, torch.float64)
    for batch, size, grids in [(2, (40, 35), None), (EMU.device_limits()[1], (3, 4), [(1, 1, 132)])]:
        x, planes, inv_norm, dirs = _walk_inputs(batch, 2, size, torch.float64, seed=1)
        EmulatedRuntime.launches.clear()
        out = cupy_emulated(_cupy.random_walk_chebyshev)(x, planes, inv_norm, dirs, coefficients)
        if grids is not None:
            assert [launch[1] for launch in EmulatedRuntime.launches] == grids
        else:
            assert len(EmulatedRuntime.launches) == -(-(len(coefficients) - 1) // 2)
        assert torch.equal(out, EMU.random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients))
        assert torch.equal(out, CPU._random_walk_chebyshev_portable(x, planes, inv_norm, dirs, coefficients))


@needs_emu
def test_a_launcher_with_a_grid_one_tile_short_fails(monkeypatch):
    """The seam catches launch bugs in the backend's own code: drop the last tile of the grid."""
    edge = boundary_map(2, 20, 70, seed=1)[:, 0].contiguous()
    paths, lengths = geometry_on(5, torch.device("cpu"))
    want = CPU.path_affinity(edge, paths, lengths, 4)[0]
    assert torch.equal(cupy_emulated(_cupy.path_affinity)(edge, paths, lengths, 4)[0], want)
    grid = _cupy._affinity_grid
    monkeypatch.setattr(_cupy, "_affinity_grid", lambda h, w, b: (grid(h, w, b)[0] - 1, b))
    short = cupy_emulated(_cupy.path_affinity)(edge, paths, lengths, 4)[0]
    assert short.isnan().any() and not torch.equal(short, want)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cupy_source_compiles_and_instantiates_every_kernel(tmp_path):
    """The inlined NVRTC source is a complete translation unit: as host C++ on the emulator's
    keywords, every kernel name the CuPy backend asks NVRTC for instantiates."""
    root = Path(__file__).resolve().parents[2]
    names = [_cupy._name(k, c, v) for k, v in _cupy._KERNELS for c in _cupy._CTYPES.values()]
    source = tmp_path / "kernels.cpp"
    source.write_text(_cupy.kernel_source() + "\n" + "\n".join(
        f"auto* instance_{i} = &{name};" for i, name in enumerate(names)) + "\n")
    done = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-DIRNET_FAST_EMULATE_CUDA", "-include",
                           str(root / "csrc" / "emulate" / "emulate.h"), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 12), (1, 5, 7, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_feature_affinity(kind, shape, dtype):
    ops = _ops(kind)
    gen = torch.Generator().manual_seed(sum(shape))
    features = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    dirs = geometry_on(5, torch.device("cpu"))[0][:, 0].contiguous()
    want = CPU.feature_affinity(features, dirs)
    got = ops.feature_affinity(features, dirs)
    torch.testing.assert_close(got, want, **TOL[dtype])
    grad = torch.randn(want.shape, generator=gen, dtype=torch.float64).to(dtype)
    backward = getattr(ops, "_feature_affinity_backward", None) or ops.feature_affinity_backward
    torch.testing.assert_close(backward(grad, features, want, dirs),
                               CPU._feature_affinity_backward(grad, features, want, dirs), **TOL[dtype])
