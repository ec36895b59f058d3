"""setup.py's toolkit search: torch's guesses, the real nvcc behind a wrapper script, and a
CPU-only build with a warning when no toolkit is usable."""
import os
import runpy
import stat
from pathlib import Path

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def setup_py(monkeypatch):
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    monkeypatch.setenv("IRNET_FAST_NO_EXT", "1")  # loading the file builds nothing
    namespace = runpy.run_path(str(REPO / "setup.py"))
    monkeypatch.delenv("IRNET_FAST_NO_EXT")
    for name in ("CUDA_HOME", "CUDA_PATH", "FORCE_CUDA", "FORCE_ONLY_CPU"):
        monkeypatch.delenv(name, raising=False)
    return namespace


def _toolkit(root: Path) -> Path:
    for rel in ("bin/nvcc", "include/cuda_runtime.h", "lib64/libcudart.so"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


def _wrapper(folder: Path, target: Path) -> None:
    """An nvcc on PATH that is a shell script (as /usr/local/bin/nvcc can be)."""
    folder.mkdir(parents=True)
    script = folder / "nvcc"
    script.write_text(f"#!/bin/sh\necho '#$ TOP={target}/bin/..'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_wrapper_nvcc_leads_to_the_real_toolkit(setup_py, tmp_path, monkeypatch):
    from torch.utils import cpp_extension
    toolkit = _toolkit(tmp_path / "cuda-13.0")
    _wrapper(tmp_path / "usr" / "bin", toolkit)
    monkeypatch.setenv("PATH", f"{tmp_path / 'usr' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path / "usr"))  # torch's guess: the wrapper's parent
    home, tried = setup_py["_cuda_home"]()
    assert home == str(toolkit)
    assert tried[0] == str(tmp_path / "usr")  # torch's guess came first, and was rejected (no libcudart)


def test_cuda_home_wins_when_it_holds_a_toolkit(setup_py, tmp_path, monkeypatch):
    toolkit = _toolkit(tmp_path / "tk")
    monkeypatch.setenv("CUDA_HOME", str(toolkit))
    assert setup_py["_cuda_home"]()[0] == str(toolkit)
    assert not setup_py["_is_toolkit"](str(tmp_path))


def test_no_toolkit_builds_the_cpu_kernels_with_a_warning(setup_py, tmp_path, monkeypatch, capsys):
    import torch
    from torch.utils import cpp_extension
    if torch.version.cuda is None:
        pytest.skip("a CPU-only torch builds the CPU kernels without a warning")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc anywhere
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    monkeypatch.setitem(setup_py["_cuda_home"].__globals__, "_is_toolkit", lambda home: False)
    (ext,), _ = setup_py["_extensions"]()
    assert not any(str(s).endswith(".cu") for s in ext.sources)
    err = capsys.readouterr().err
    assert "WARNING: building the CPU kernels only: no CUDA toolkit found" in err and "CUDA_HOME" in err
    monkeypatch.setenv("FORCE_CUDA", "1")
    with pytest.raises(SystemExit, match="FORCE_CUDA=1 but no CUDA toolkit was found"):
        setup_py["_extensions"]()
