"""irnet_fast: a fast, faithful IRNet (Ahn, Cho, Kwak, CVPR 2019).

``irnet_fast.ops`` holds the kernels (affinity, transition, random walk) on the cuda, cupy, cpp,
numba and torch backends; ``irnet_fast.compat.indexing`` is a drop-in for the reference module.
"""
from . import backends, ops
from ._checks import set_value_checks, value_checks
from ._ext import HAS_CPP, HAS_CUDA

__version__ = "0.1.0"
__all__ = ["ops", "backends", "HAS_CPP", "HAS_CUDA", "set_value_checks", "value_checks", "__version__"]
