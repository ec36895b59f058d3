"""The module that implements each backend's kernels (the interface: :mod:`._torch`'s docstring).

:mod:`irnet_fast.backends` says which backends exist and picks one; this maps the name to code.
The compiled and torch backends are imported here (cheap, and torch.compile cannot trace an
import); numba and cupy load on first use (slow imports).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from . import _compiled, _torch

_LOADED = {"cuda": _compiled, "cpp": _compiled, "torch": _torch}
_LAZY = {"cupy": "_cupy", "numba": "_numba"}


def implementation(backend: str) -> ModuleType:
    """The kernels of ``backend``."""
    module = _LOADED.get(backend)
    if module is None:
        module = _LOADED[backend] = importlib.import_module(f"{__package__}.{_LAZY[backend]}")
    return module
