"""The CUDA kernels on the CPU SIMT emulator (irnet_fast._C_emu, built by ``make test``).

``EMU``: ``torch.ops.irnet_fast_emu`` (the launchers of csrc/cuda on CPU tensors), or None when the
test extension is not built. :class:`EmulatedRuntime` is a CuPy-backend runtime
(irnet_fast/ops/_cupy.py) that launches the NVRTC kernels by name on the emulator, with the
arguments packed as CUDA packs them, so the CuPy launch code runs here too.
"""
import struct

import numpy as np
import pytest
import torch

from irnet_fast.ops import _cupy

try:
    import irnet_fast._C_emu  # noqa: F401  (registers torch.ops.irnet_fast_emu)
    EMU = torch.ops.irnet_fast_emu
except ImportError:
    EMU = None

needs_emu = pytest.mark.skipif(EMU is None, reason="irnet_fast._C_emu not built (IRNET_FAST_EMULATED=1 python setup.py "
                                                   "build_ext --inplace, or make test)")

# numpy scalar type -> (parameter code, struct format); CuPy passes numpy scalars by value
_SCALARS = {np.int32: ("i", "i"), np.float32: ("f", "f"), np.float64: ("d", "d")}


class _Array:
    """What ``runtime.array`` returns: a contiguous CPU tensor passed as a pointer."""

    def __init__(self, tensor):
        self.tensor = tensor


class EmulatedRuntime:
    """A drop-in for _cupy._CupyRuntime on CPU tensors (see irnet_fast/ops/_cupy.py)."""

    launches = []  # (kernel, grid, block, shared_mem) of every launch, for the tests to inspect

    def __init__(self, device):
        if device.type != "cpu":
            raise ValueError(f"the emulated runtime runs on CPU tensors, got {device}")

    @staticmethod
    def empty(shape, *, dtype, device):
        """Kernel outputs start as 0xFF bytes (NaN), as cuda::new_output makes them under the emulator."""
        out = torch.empty(shape, dtype=dtype, device=device)
        if out.numel():
            out.view(torch.uint8).fill_(255)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def array(self, tensor, placeholder=None):
        if tensor.numel() == 0 and placeholder is not None:
            tensor = placeholder
        if tensor.numel() == 0:
            raise ValueError("an empty tensor reached a kernel argument (DLPack would not carry it); "
                             "pass a placeholder")
        if not tensor.is_contiguous() or tensor.device.type != "cpu":
            raise ValueError(f"kernel arrays must be contiguous CPU tensors here, got strides {tensor.stride()} "
                             f"on {tensor.device}")
        return _Array(tensor.detach())

    def max_shared_bytes(self):
        return EMU.device_limits()[0]

    def multiprocessor_count(self):
        return EMU.device_limits()[1]

    def launch(self, kernel, dtype, grid, block, args, shared_mem=0, variant=None):
        for dims in (grid, block):
            if not isinstance(dims, tuple) or not all(isinstance(d, int) for d in dims):
                raise TypeError(f"{kernel}: grid and block expected tuples of int, got {grid!r}, {block!r}")
        codes, packed = [], bytearray()
        for i, arg in enumerate(args):
            if isinstance(arg, _Array):
                code, fmt, value = "p", "Q", arg.tensor.data_ptr()
            elif type(arg) in _SCALARS:
                (code, fmt), value = _SCALARS[type(arg)], arg.item()
            else:
                raise TypeError(f"{kernel}: argument {i} is a {type(arg).__name__}; kernels take arrays and "
                                f"numpy int32/float32/float64 scalars")
            size = struct.calcsize(fmt)
            packed += bytes(-len(packed) % size)  # natural alignment
            packed += struct.pack("<" + fmt, value)
            codes.append(code)
        params = torch.tensor(list(packed), dtype=torch.uint8)
        name = _cupy._name(kernel, _cupy._ctype(dtype), variant)
        EmulatedRuntime.launches.append((name, grid, block, shared_mem))
        EMU.launch_packed(name, list(grid), list(block), int(shared_mem), "".join(codes), params)


def cupy_emulated(function):
    """``function`` of the CuPy backend, run through the emulated runtime."""
    def run(*args):
        with _cupy.use_runtime(EmulatedRuntime):
            return function(*args)
    return run
