"""Backend selection: auto order, the environment override and the fallbacks without _C."""
import pytest
import torch

from irnet_fast import _ext, backends, ops

from ..helpers import boundary_map, cams


def test_auto_prefers_cpp_then_numba_then_torch(monkeypatch):
    cpu = torch.device("cpu")
    expected = "cpp" if _ext.HAS_CPP else ("numba" if backends.is_available("numba") else "torch")
    assert backends.resolve("auto", cpu, op="t") == expected
    monkeypatch.setattr(_ext, "HAS_CPP", False)
    assert backends.resolve("auto", cpu, op="t") == ("numba" if backends.is_available("numba") else "torch")
    monkeypatch.setattr(backends, "_numba_installed", lambda: False)
    assert backends.resolve("auto", cpu, op="t") == "torch"


def test_no_extension_still_computes(monkeypatch):
    """test_no_ext: without _C every public op falls back and gives the same numbers."""
    edge = boundary_map(1, 12, 15)
    x = cams(1, 3, 12, 15)
    want_rw = ops.random_walk(x, edge, backend="torch")
    want_aff = ops.path_affinity(edge, 4, backend="torch")
    monkeypatch.setattr(_ext, "HAS_CPP", False)
    torch.testing.assert_close(ops.random_walk(x, edge), want_rw)
    torch.testing.assert_close(ops.path_affinity(edge, 4), want_aff)


def test_environment_override(monkeypatch):
    monkeypatch.setenv("IRNET_FAST_BACKEND", "torch")
    assert backends.resolve("auto", torch.device("cpu"), op="t") == "torch"
    monkeypatch.setenv("IRNET_FAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend expected one of"):
        backends.resolve("auto", torch.device("cpu"), op="t")


def test_import_without_extension_in_subprocess():
    import subprocess
    import sys
    code = ("import irnet_fast, torch; from irnet_fast import ops, backends;"
            "assert not irnet_fast.HAS_CPP; assert 'cpp' not in backends.available_backends();"
            "e = torch.rand(1, 1, 6, 6); print(ops.random_walk(torch.rand(1, 2, 6, 6), e).shape)")
    env = {**__import__("os").environ, "IRNET_FAST_NO_EXT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 2, 6, 6])" in out.stdout


def test_info_reports_versions():
    info = backends.info()
    assert info["torch"] == torch.__version__ and "torch" in info["backends"]


@pytest.mark.needs_cuda
def test_cuda_and_cpu_agree():
    edge = boundary_map(2, 30, 41, dtype=torch.float32)
    x = cams(2, 5, 30, 41, dtype=torch.float32)
    # the GPU accumulates float32 walks in float32, the CPU in float64: the float32 criterion,
    # 1e-3 of the largest score
    expected = ops.random_walk(x, edge)
    torch.testing.assert_close(ops.random_walk(x.cuda(), edge.cuda()).cpu(), expected, rtol=0,
                               atol=1e-3 * float(expected.abs().max()))


def test_cupy_source_is_self_contained():
    """The CuPy backend compiles csrc/kernels/cuda_kernels.cuh with its includes inlined."""
    from irnet_fast.ops import _cupy
    source = _cupy.kernel_source()
    assert '#include "' not in source
    for name in [kernel for kernel, _ in _cupy._KERNELS] + ["walk_apply_channels", "chebyshev_update", "path_max"]:
        assert f"{name}(" in source
    assert isinstance(_cupy.available(), bool)
