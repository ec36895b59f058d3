"""Which backends exist and which one an op runs on.

Backends: ``cuda`` (compiled CUDA kernels), ``cupy`` (the same kernel source compiled by NVRTC),
``cpp`` (compiled CPU kernels), ``numba`` (JIT CPU kernels) and ``torch`` (vectorised PyTorch, any
device). ``"auto"`` picks cuda, then cupy, then torch for CUDA tensors and cpp, then numba, then
torch for CPU tensors; the environment variable ``IRNET_FAST_BACKEND`` replaces the default.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import List

import torch

from . import _ext
from .errors import InputRuntimeError

BACKENDS = ("cuda", "cupy", "cpp", "numba", "torch")
_GPU_ONLY = ("cuda", "cupy")
_CPU_ONLY = ("cpp", "numba")
_HOW_TO_GET = {
    "cuda": "irnet_fast was built without CUDA kernels; rebuild with FORCE_CUDA=1 "
            "(needs CUDA_HOME and a CUDA build of torch): FORCE_CUDA=1 pip install --no-build-isolation -e .",
    "cupy": "CuPy is not installed or sees no GPU; pip install cupy-cuda13x (or cupy-cuda12x for CUDA 12)",
    "cpp": "the compiled extension irnet_fast._C is not loaded ({error}); build it with "
           "pip install --no-build-isolation -e . (or make setup)",
    "numba": "Numba is not installed; pip install numba (or the [numba] extra)",
}


@functools.lru_cache(maxsize=None)
def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=None)
def _cupy_ready() -> bool:
    try:
        import cupy
        return bool(cupy.is_available())
    except Exception:  # not installed, or a broken install (wrong CUDA wheel, missing libs)
        return False


def is_available(backend: str) -> bool:
    """Whether ``backend`` can run here (for cuda and cupy: a GPU is visible too)."""
    if backend == "torch":
        return True
    if backend == "cpp":
        return _ext.HAS_CPP
    if backend == "cuda":
        return _ext.HAS_CUDA and torch.cuda.is_available()
    if backend == "numba":
        return _numba_installed()
    if backend == "cupy":
        return torch.cuda.is_available() and _cupy_ready()
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)} or 'auto'")


def available_backends() -> List[str]:
    return [b for b in BACKENDS if is_available(b)]


def resolve(backend: str, device: torch.device, *, op: str) -> str:
    """The backend an op runs on for tensors on ``device``; raises with a fix when impossible."""
    if backend is None or backend == "auto":
        forced = os.environ.get("IRNET_FAST_BACKEND", "").strip()
        if forced and forced != "auto":
            return resolve(forced, device, op=op)
        order = ("cuda", "cupy", "torch") if device.type == "cuda" else ("cpp", "numba", "torch")
        chosen = next(b for b in order if is_available(b))
        if chosen != order[0] and not _ext.HAS_CPP:
            _ext.warn_not_loaded()
        return chosen
    if backend not in BACKENDS:
        raise ValueError(f"{op}(): backend expected one of {', '.join(BACKENDS)} or 'auto', got {backend!r}")
    if backend in _GPU_ONLY and device.type != "cuda":
        raise ValueError(f"{op}(): backend '{backend}' expected CUDA tensors, got tensors on {device}; "
                         f"move them with .cuda() or use backend='cpp'/'auto'")
    if backend in _CPU_ONLY and device.type != "cpu":
        raise ValueError(f"{op}(): backend '{backend}' expected CPU tensors, got tensors on {device}; "
                         f"use backend='cuda'/'auto' or move them with .cpu()")
    if not is_available(backend):
        hint = _HOW_TO_GET.get(backend, "").format(error=_ext.LOAD_ERROR)
        if backend == "cuda" and _ext.HAS_CUDA:
            hint = "no CUDA GPU is visible to torch (torch.cuda.is_available() is False)"
        raise InputRuntimeError(f"{op}(): backend '{backend}' requested but not available: {hint}; "
                           f"or use backend='torch'")
    return backend


def info() -> dict:
    """Versions and backends, for bug reports (``irnet-fast info``)."""
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "extension": _ext.BUILD_INFO if _ext.HAS_CPP else f"not loaded: {_ext.LOAD_ERROR}",
        "backends": available_backends(),
        "torch_threads": torch.get_num_threads(),
    }
