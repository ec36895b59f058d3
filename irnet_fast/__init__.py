"""irnet_fast: a fast, faithful IRNet (Ahn, Cho, Kwak, CVPR 2019).

``irnet_fast.ops`` holds the kernels (affinity, transition, random walk) on the cuda, cupy, cpp,
numba and torch backends; ``irnet_fast.compat.indexing`` is a drop-in for the reference module.
Submodules load on first use (``import irnet_fast`` alone does not import torch), so the
command line starts fast; ``irnet_fast.ops`` loads the compiled extension.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {"ops": None, "backends": None, "HAS_CPP": "_ext", "HAS_CUDA": "_ext",
         "set_value_checks": "_checks", "value_checks": "_checks"}
__all__ = ["ops", "backends", "HAS_CPP", "HAS_CUDA", "set_value_checks", "value_checks", "__version__"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name] or name}")
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
