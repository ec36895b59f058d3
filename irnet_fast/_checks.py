"""Argument checks that raise clear errors: ``<op>(): <arg> expected <X>, got <Y>``.

Two kinds: shape, dtype and device checks always run; value checks (finite, in [0, 1]) read the
data, which costs a device sync and cannot be traced, so they are skipped while torch.compile or
torch.export trace and can be switched off with :func:`set_value_checks` (or
``IRNET_FAST_VALUE_CHECKS=0``).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from ._limits import MAX_EXP_TIMES, MAX_RADIUS

FLOAT_DTYPES = (torch.float32, torch.float64)
# Computed in float32 and returned in the input's dtype (torchvision's autocast rule for its ops).
HALF_DTYPES = (torch.float16, torch.bfloat16)

_value_checks = os.environ.get("IRNET_FAST_VALUE_CHECKS", "1").lower() not in ("0", "false", "no", "off")


def set_value_checks(enabled: bool) -> bool:
    """Turns the value checks of every op on or off; returns the previous setting."""
    global _value_checks
    previous, _value_checks = _value_checks, bool(enabled)
    return previous


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """``with value_checks(False): ...`` runs the block without value checks."""
    previous = set_value_checks(enabled)
    try:
        yield
    finally:
        set_value_checks(previous)


def value_checks_enabled() -> bool:
    """Whether value checks run now: switched on and not inside a torch.compile / export trace."""
    return _value_checks and not torch.compiler.is_compiling()


# The attribute torch.compiler.assume_constant_result sets: the decorator itself imports
# torch._dynamo, which takes seconds and would make every `import irnet_fast` pay for it.
# tests/ops/test_torch_tools.py checks that both mark a function the same way.
_CONSTANT_RESULT_MARK = "_dynamo_marked_constant"


def constant_result(fn):
    """``torch.compiler.assume_constant_result(fn)`` without importing torch._dynamo."""
    setattr(fn, _CONSTANT_RESULT_MARK, True)
    return fn


def upcast_half(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """float16 / bfloat16 tensors as float32 (the ops compute in float32 or float64)."""
    return tuple(t.float() if isinstance(t, torch.Tensor) and t.dtype in HALF_DTYPES else t for t in tensors)


def check_radius(radius, *, op: str) -> int:
    """Checked before any geometry is built, so a huge radius costs nothing."""
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral) or not 1 <= radius <= MAX_RADIUS:
        raise ValueError(f"{op}(): radius expected an integer in [1, {MAX_RADIUS}], got {radius!r}")
    return int(radius)


def check_beta(beta, *, op: str) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta > 0 \
            or beta != beta or beta == float("inf"):
        raise ValueError(f"{op}(): beta expected a finite number > 0, got {beta!r}")
    return float(beta)


def check_exp_times(exp_times, *, op: str) -> int:
    if isinstance(exp_times, bool) or not isinstance(exp_times, numbers.Integral) \
            or not 0 <= exp_times <= MAX_EXP_TIMES:
        raise ValueError(f"{op}(): exp_times expected an integer in [0, {MAX_EXP_TIMES}] (2**exp_times walk "
                         f"steps), got {exp_times!r}")
    return int(exp_times)


def check_tensor(t, *, op: str, name: str, dims: Sequence[str], dtypes=FLOAT_DTYPES) -> torch.Tensor:
    """``t`` must be a tensor with ``len(dims)`` dimensions and one of ``dtypes``."""
    pattern = "[" + ", ".join(dims) + "]"
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}(): {name} expected a torch.Tensor of shape {pattern}, "
                        f"got {type(t).__name__}")
    if t.dim() != len(dims):
        raise ValueError(f"{op}(): {name} expected shape {pattern}, got {tuple(t.shape)}")
    for size, dim in zip(t.shape, dims):
        if dim.isdigit() and size != int(dim):
            raise ValueError(f"{op}(): {name} expected shape {pattern}, got {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{op}(): {name} expected dtype {names}, got {t.dtype}")
    return t


def _value_range(t: torch.Tensor):
    """``(min, max)`` of a non-empty tensor in one pass (NaN propagates to both)."""
    lo, hi = torch.aminmax(t.detach())
    return float(lo), float(hi)


def check_finite(t: torch.Tensor, *, op: str, name: str) -> None:
    if not value_checks_enabled() or not t.numel() or not t.is_floating_point():
        return  # integer and bool tensors are finite
    lo, hi = _value_range(t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{op}(): {name} expected finite values, got NaN or Inf")


def check_unit_interval(t: torch.Tensor, *, op: str, name: str, boundary: bool = True) -> None:
    """Finite and in [0, 1] (one pass): boundary probabilities, or affinities (``boundary=False``)."""
    if not value_checks_enabled() or not t.numel():
        return
    lo, hi = _value_range(t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{op}(): {name} expected finite values, got NaN or Inf")
    if lo < 0.0 or hi > 1.0:
        # repr: the shortest digits that tell 1 + 1e-7 from 1
        what, advice = (" (a boundary probability)", "; apply torch.sigmoid to logits") if boundary else ("", "")
        raise ValueError(f"{op}(): {name} expected values in [0, 1]{what}, got range [{lo!r}, {hi!r}]{advice}")


def check_same_device(*named, op: str) -> None:
    devices = [(name, t.device) for name, t in named]
    first_name, first = devices[0]
    for name, device in devices[1:]:
        if device != first:
            raise ValueError(f"{op}(): {name} expected on device {first} (like {first_name}), "
                             f"got {device}")


def check_same_dtype(*named, op: str) -> None:
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{op}(): {name} expected dtype {first.dtype} (like {first_name}), "
                            f"got {t.dtype}")


# --- NumPy arrays or tensors (instances, metrics, the COCO export) ------------------------------

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
_KIND_TEXT = {"float": "a float32 or float64 array", "anyfloat": "a floating array", "real": "a real array",
              "int": "an integer array", "bool": "a bool array"}


def _dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "")


def describe(x) -> str:
    """``shape (..) dtype ..`` of an array or tensor, for messages."""
    return f"shape {tuple(x.shape)} dtype {_dtype_name(x)}"


def _kind_ok(dtype: str, kind: str) -> bool:
    is_int = dtype.startswith(("int", "uint"))
    return {"float": dtype in ("float32", "float64"), "anyfloat": dtype in _FLOAT_NAMES,
            "real": dtype in _FLOAT_NAMES or is_int or dtype == "bool", "int": is_int or dtype == "bool",
            "bool": dtype == "bool" or is_int}[kind]


def check_array(x, *, op: str, name: str, kind: str, dims: Optional[Sequence] = None, tensors: bool = False):
    """``x`` must be a NumPy array (or, with ``tensors``, a torch.Tensor; other inputs go through
    ``np.asarray``) with ``len(dims)`` dimensions (ints and digit strings: exact sizes) and of
    ``kind``: "float" (float32 / float64), "anyfloat" (any floating), "real" (float, integer or
    bool), "int" (integer or bool), "bool" (bool, or 0/1 integers). Returns ``x`` (as an array).

    Raises ValueError ``"<op>(): <name> expected a bool array of shape (N, H, W), got shape ..
    dtype .."``; TypeError when ``tensors`` and ``x`` is neither an array nor a tensor."""
    pattern = None
    if dims is not None:
        pattern = "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
    if tensors:
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            raise TypeError(f"{op}(): {name} expected a NumPy array or torch.Tensor"
                            f"{f' of shape {pattern}' if pattern else ''}, got {type(x).__name__}")
    else:
        x = np.asarray(x)
    shape_ok = dims is None or (x.ndim == len(dims) and all(
        not str(d).isdigit() or s == int(d) for s, d in zip(x.shape, dims)))
    if not shape_ok or not _kind_ok(_dtype_name(x), kind):
        if pattern is None:
            raise ValueError(f"{op}(): {name} expected {_KIND_TEXT[kind]}, got dtype {_dtype_name(x)}")
        raise ValueError(f"{op}(): {name} expected {_KIND_TEXT[kind]} of shape {pattern}, got {describe(x)}")
    return x


def check_same_kind(a, b, *, op: str, names: Tuple[str, str]) -> None:
    """``a`` and ``b`` both tensors on one device, or both NumPy arrays."""
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        kinds = ["torch.Tensor" if isinstance(t, torch.Tensor) else "NumPy array" for t in (a, b)]
        raise ValueError(f"{op}(): {names[1]} expected a {kinds[0]} like {names[0]}, got a {kinds[1]}")
    if isinstance(a, torch.Tensor) and a.device != b.device:
        raise ValueError(f"{op}(): {names[1]} expected on device {a.device} (like {names[0]}), got {b.device}")


def check_number(value, *, op: str, name: str, minimum=None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"{op}(): {name} expected a real number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}(): {name} expected a number >= {minimum}, got {value!r}")
    return float(value)
