"""Loads the compiled extension ``irnet_fast._C`` when present.

``HAS_CPP``: the C++ CPU kernels are loaded. ``HAS_CUDA``: the extension was built with CUDA
kernels (a GPU is still needed to run them). Importing never fails without the extension; the
autograd and fake kernels of its ops are registered by :mod:`irnet_fast.ops._compiled`.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch  # noqa: F401  (irnet_fast._C links against libtorch: load it first)

HAS_CPP = False
HAS_CUDA = False
BUILD_INFO: dict = {}
LOAD_ERROR = None
DISABLED = os.environ.get("IRNET_FAST_NO_EXT", "0").lower() in ("1", "true", "yes", "on")

if DISABLED:
    LOAD_ERROR = "disabled by IRNET_FAST_NO_EXT=1"
else:
    try:
        from . import _C  # noqa: F401  (registers torch.ops.irnet_fast.*)

        BUILD_INFO = dict(_C.build_info())
        HAS_CPP = True
        HAS_CUDA = bool(BUILD_INFO.get("has_cuda", False))
    except (ImportError, OSError) as exc:  # not built, or built against another torch
        LOAD_ERROR = f"{type(exc).__name__}: {exc}"


class ExtensionNotLoadedWarning(RuntimeWarning):
    """``backend="auto"`` fell back to a slower backend because ``irnet_fast._C`` did not load."""


_warned = False


def warn_not_loaded() -> None:
    """Warns once per process that the compiled kernels are missing, with the error and the fix."""
    global _warned
    if _warned or HAS_CPP or DISABLED:
        return
    _warned = True
    warnings.warn(
        f"irnet_fast: the compiled extension irnet_fast._C did not load ({LOAD_ERROR}); backend='auto' falls "
        "back to a much slower backend (numba or torch). Fix: rebuild it against this torch with "
        "`pip install --no-build-isolation -e .` (or `make setup`) in the source folder; "
        "`irnet-fast info` shows the state. Set IRNET_FAST_NO_EXT=1 to run without it silently.",
        ExtensionNotLoadedWarning, stacklevel=3)


def _on_cpu(values) -> bool:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device.type == "cpu"
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return value[0].device.type == "cpu"
    return True  # NumPy arrays and the like


def threads_capped_when_busy(fn):
    """Runs the op ``fn`` with this thread's torch thread count capped at the cores that other
    processes leave idle now, and restores it after (``cap_threads_to_idle_cores`` in
    csrc/cpu/threads.h says why: on a busy machine each of torch's own small parallel regions
    around the kernels stalls for a scheduling round). Only for CPU inputs, with the compiled
    extension, outside torch.compile; the cap is per thread (``IRNET_FAST_LOAD_AWARE=0``: off)."""
    @functools.wraps(fn)
    def capped(*args, **kwargs):
        if not HAS_CPP or torch.compiler.is_compiling() or not _on_cpu(list(args) + list(kwargs.values())):
            return fn(*args, **kwargs)
        before = _C.cap_threads_to_idle_cores()
        try:
            return fn(*args, **kwargs)
        finally:
            _C.restore_threads(before)
    return capped
