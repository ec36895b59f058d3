"""The cupy backend: the CUDA kernels of csrc/kernels/cuda_kernels.cuh, compiled by NVRTC at run time.

The source is the very file the compiled CUDA extension builds (one definition of the arithmetic,
affinity.h); its local includes are inlined by text, so NVRTC needs no include path. Tensors
cross to CuPy through DLPack (zero copy), outputs are allocated by torch, and every kernel runs on
torch's current stream of the tensors' device.

Importing this module never fails and never imports cupy: :func:`available` says whether it can
run (cupy installed, a GPU visible, kernel source found).

Launch seam: every kernel goes through a runtime object made by :data:`_runtime` (device ->
runtime; :func:`use_runtime` swaps it). The ops below compute grids, allocate outputs and pack
arguments; the runtime only converts tensors (``array``) and launches (``launch``). The tests
install a runtime that runs the same kernels on the CPU SIMT emulator (irnet_fast._C_emu).
"""
from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["path_affinity", "path_affinity_backward", "transition_stencil", "random_walk", "random_walk_chebyshev",
           "find_centroids", "feature_affinity", "feature_affinity_backward", "available", "kernel_source",
           "use_runtime"]

# The kernels are plain functions: affinity.py wraps them in an autograd.Function.
DIFFERENTIABLE = False

_THREADS = 256
_MAX_BLOCKS = 65535 * 16  # kernels loop grid-stride, so a capped grid still covers everything
_KERNEL_FILE = "cuda_kernels.cuh"
# (kernel, extra template argument or None): every instantiation, each for float and double
_CHANNEL_BLOCKS = (1, 2, 4, 8)
_KERNELS = (("path_affinity_kernel", None), ("path_affinity_backward_kernel", None), ("stencil_planes_kernel", None),
            ("stencil_norm_kernel", None), ("find_centroids_kernel", None), ("feature_affinity_kernel", None),
            ("feature_affinity_backward_kernel", None)) + \
    tuple((kernel, cb) for kernel in ("walk_tiles_kernel", "chebyshev_tiles_kernel") for cb in _CHANNEL_BLOCKS)
# kernels templated on the accumulation type too (the storage type's own: float32 accumulates in float)
_ACCUMULATING = ("chebyshev_tiles_kernel",)
# kernels/affinity_kernels.cuh: kAffinityTileW x kAffinityTileH
_AFFINITY_TILE = (8, 32)
# the walk's default plan, as cuda/random_walk_cuda.cu chooses it
_WALK_TILE, _WALK_FUSED, _WALK_THREADS, _WALK_RESIDENT_THREADS = 32, 2, 256, 1024
_CTYPES = {torch.float32: "float", torch.float64: "double"}
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*(?://.*)?$', re.MULTILINE)  # comment allowed
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def _import_cupy():
    try:
        import cupy
    except Exception:  # not installed, or a broken install (wrong CUDA wheel, missing libs)
        return None
    return cupy


def _kernel_dirs():
    here = Path(__file__).resolve()
    # a source checkout (csrc/kernels), then the copy an installed wheel ships (irnet_fast/_kernels)
    return (here.parents[2] / "csrc" / "kernels", here.parents[1] / "_kernels")


def _kernel_dir() -> Optional[Path]:
    for folder in _kernel_dirs():
        if (folder / _KERNEL_FILE).is_file():
            return folder
    return None


def _inline(path: Path, seen: set) -> str:
    """``path`` with its local ``#include "..."`` replaced by the files' text (each file once)."""
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)
    text = _PRAGMA_ONCE.sub("", path.read_text(encoding="utf-8"))

    def expand(match):
        target = path.parent / match.group(1)
        if not target.is_file():
            raise FileNotFoundError(f"irnet_fast cupy backend: {path.name} includes {match.group(1)!r}, "
                                    f"not found next to it in {path.parent}")
        return f"// ---- begin {match.group(1)} ----\n{_inline(target, seen)}\n// ---- end {match.group(1)} ----"

    return _INCLUDE.sub(expand, text)


@functools.lru_cache(maxsize=None)
def kernel_source() -> str:
    """The NVRTC source: cuda_kernels.cuh with its local includes inlined."""
    folder = _kernel_dir()
    if folder is None:
        raise FileNotFoundError("irnet_fast cupy backend: kernel source " + _KERNEL_FILE + " not found in " +
                                " or ".join(str(d) for d in _kernel_dirs()))
    return _inline(folder / _KERNEL_FILE, set())


def _name(kernel: str, ctype: str, variant: Optional[int] = None) -> str:
    types = f"{ctype}, {ctype}" if kernel in _ACCUMULATING else ctype
    return f"irnet_fast::kernels::{kernel}<{types}{'' if variant is None else f', {variant}'}>"


@functools.lru_cache(maxsize=None)
def _module(device_index: int):
    """The RawModule of every kernel for float and double, one per device (compiled lazily)."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError("irnet_fast cupy backend: cupy is not installed")
    folder = _kernel_dir()
    options = ("--std=c++14",) + ((f"-I{folder}",) if folder is not None else ())
    names = [_name(k, c, v) for k, v in _KERNELS for c in _CTYPES.values()]
    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=kernel_source(), options=options, name_expressions=names)


@functools.lru_cache(maxsize=None)
def _kernel(device_index: int, kernel: str, ctype: str, variant: Optional[int] = None):
    cupy = _import_cupy()
    with cupy.cuda.Device(device_index):
        return _module(device_index).get_function(_name(kernel, ctype, variant))


def available() -> bool:
    """Whether this backend can run here: cupy imports, sees a GPU, and the kernel source exists."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        if not cupy.is_available():
            return False
    except Exception:
        return False
    return _kernel_dir() is not None


# ----------------------------------------------------------------------------------------------
# launching
# ----------------------------------------------------------------------------------------------

def _grid(total: int, threads: int = _THREADS) -> Tuple[int]:
    return (max(1, min((total + threads - 1) // threads, _MAX_BLOCKS)),)


def _i32(value: int) -> np.int32:
    value = int(value)
    if not -2 ** 31 <= value < 2 ** 31:
        raise ValueError(f"irnet_fast cupy backend: size {value} does not fit the kernels' int arguments")
    return np.int32(value)


def _scalar(dtype: torch.dtype, value: float):
    return np.float32(value) if dtype == torch.float32 else np.float64(value)


def _int_placeholder(device: torch.device) -> torch.Tensor:
    return torch.zeros(2, dtype=torch.int32, device=device)


def _ctype(dtype: torch.dtype) -> str:
    try:
        return _CTYPES[dtype]
    except KeyError:
        raise TypeError(f"irnet_fast cupy backend: expected float32 or float64 tensors, got {dtype}") from None


class _CupyRuntime:
    """Runs kernels of one device on torch's current stream there; converts tensors by DLPack."""

    def __init__(self, device: torch.device):
        if device.type != "cuda":
            raise ValueError(f"irnet_fast cupy backend: expected CUDA tensors, got device {device}")
        self.cupy = _import_cupy()
        if self.cupy is None:
            raise RuntimeError("irnet_fast cupy backend: cupy is not installed")
        self.index = device.index if device.index is not None else torch.cuda.current_device()
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        cuda = self.cupy.cuda
        self._stack.enter_context(cuda.Device(self.index))
        pointer = torch.cuda.current_stream(self.index).cuda_stream
        try:
            stream = cuda.ExternalStream(pointer, self.index)
        except TypeError:  # CuPy < 10 takes the pointer only
            stream = cuda.ExternalStream(pointer)
        self._stack.enter_context(stream)
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def array(self, tensor: torch.Tensor, placeholder: Optional[torch.Tensor] = None):
        """A CuPy view of ``tensor``; ``placeholder`` stands in for an empty one, which the kernel
        never reads (empty arrays cross DLPack unreliably)."""
        if tensor.numel() == 0 and placeholder is not None:
            tensor = placeholder
        # inside the stream context: the consumer stream is torch's own, so DLPack adds no sync
        return self.cupy.from_dlpack(tensor.detach())

    def max_shared_bytes(self) -> int:
        """Dynamic shared memory a block may use with the opt-in attribute that launch() sets."""
        props = torch.cuda.get_device_properties(self.index)
        return int(getattr(props, "shared_memory_per_block_optin", 48 * 1024))

    def multiprocessor_count(self) -> int:
        return int(torch.cuda.get_device_properties(self.index).multi_processor_count)

    def launch(self, kernel: str, dtype: torch.dtype, grid: Tuple[int, ...], block: Tuple[int, ...], args,
               shared_mem: int = 0, variant: Optional[int] = None) -> None:
        function = _kernel(self.index, kernel, _ctype(dtype), variant)
        if shared_mem > 48 * 1024:  # above the default limit a kernel must opt in
            function.max_dynamic_shared_size_bytes = shared_mem
        function(grid, block, tuple(args), shared_mem=shared_mem)


# The launch seam: device -> runtime. The tests swap in the emulated runtime.
_runtime = _CupyRuntime


def _output(shape, dtype, device) -> torch.Tensor:
    """A kernel output; the runtime's ``empty`` when it has one (the emulated runtime fills it
    with NaN, so that elements no thread writes show)."""
    return getattr(_runtime, "empty", torch.empty)(tuple(shape), dtype=dtype, device=device)


@contextlib.contextmanager
def use_runtime(factory):
    """Run this backend's kernels through ``factory(device)`` instead of CuPy (for tests)."""
    global _runtime
    previous, _runtime = _runtime, factory
    try:
        yield
    finally:
        _runtime = previous


# ----------------------------------------------------------------------------------------------
# backend interface (tensors validated by the caller: contiguous, one CUDA device, float32/64)
# ----------------------------------------------------------------------------------------------

def _affinity_grid(height: int, width: int, batch: int) -> Tuple[int, int]:
    """Affinity tiles over a height x width grid (sources, or edge pixels), times the batch."""
    tile_h, tile_w = _AFFINITY_TILE
    if batch > 65535:
        raise ValueError(f"irnet_fast cupy backend: at most 65535 images per call, got {batch}")
    return (-(-height // tile_h) * -(-width // tile_w), batch)


def _affinity_block() -> Tuple[int]:
    return (_AFFINITY_TILE[0] * _AFFINITY_TILE[1],)


def _affinity_shared(run, radius_floor: int, element_bytes: int) -> int:
    tile_h, tile_w = _AFFINITY_TILE
    size = (tile_h + radius_floor) * (tile_w + 2 * radius_floor) * element_bytes
    if size > run.max_shared_bytes():
        raise ValueError(f"irnet_fast cupy backend: radius_floor {radius_floor} needs more shared memory than a "
                         f"block has ({size} bytes)")
    return size


def path_affinity(edge, paths, lengths, radius_floor):
    """edge [B, H, W] -> (affinity, argmax uint8), both [B, D, H - rf, W - 2 rf]."""
    radius_floor = int(radius_floor)
    batch, height, width = edge.shape
    num_dirs, max_len = paths.shape[0], paths.shape[1]
    crop_h, crop_w = height - radius_floor, width - 2 * radius_floor
    if crop_h < 0 or crop_w < 0:
        raise ValueError(f"path_affinity(): edge of size {height}x{width} is smaller than the search "
                         f"window (radius_floor {radius_floor})")
    affinity = _output((batch, num_dirs, crop_h, crop_w), edge.dtype, edge.device)
    argmax = _output((batch, num_dirs, crop_h, crop_w), torch.uint8, edge.device)
    total = affinity.numel()
    if total == 0:
        return affinity, argmax
    with _runtime(edge.device) as run:
        # (edge, paths, lengths, affinity, argmax, B, H, W, D, max_len, radius_floor)
        run.launch("path_affinity_kernel", edge.dtype, _affinity_grid(crop_h, crop_w, batch), _affinity_block(), (
            run.array(edge), run.array(paths, placeholder=_int_placeholder(edge.device)),
            run.array(lengths, placeholder=_int_placeholder(edge.device)), run.array(affinity), run.array(argmax),
            _i32(batch), _i32(height), _i32(width), _i32(num_dirs), _i32(max_len), _i32(radius_floor)),
            shared_mem=_affinity_shared(run, radius_floor, edge.element_size()))
    return affinity, argmax


def path_affinity_backward(grad, argmax, paths, lengths, radius_floor, height, width):
    """grad, argmax [B, D, crop_h, crop_w] -> grad_edge [B, height, width] (a gather, deterministic)."""
    height, width = int(height), int(width)
    batch, num_dirs, crop_h, crop_w = grad.shape
    max_len = paths.shape[1]
    grad_edge = _output((batch, height, width), grad.dtype, grad.device)
    total = grad_edge.numel()
    if total == 0:
        return grad_edge
    if grad.numel() == 0:  # no directions or an empty crop: nothing reaches the edge
        return grad_edge.zero_()
    with _runtime(grad.device) as run:
        # (grad, argmax, paths, lengths, grad_edge, B, H, W, D, max_len, crop_h, crop_w, radius_floor)
        run.launch("path_affinity_backward_kernel", grad.dtype, _affinity_grid(height, width, batch),
                   _affinity_block(), (
            run.array(grad), run.array(argmax), run.array(paths), run.array(lengths), run.array(grad_edge),
            _i32(batch), _i32(height), _i32(width), _i32(num_dirs), _i32(max_len), _i32(crop_h),
            _i32(crop_w), _i32(radius_floor)), shared_mem=_affinity_shared(run, radius_floor, grad.element_size() + 1))
    return grad_edge


def transition_stencil(edge, paths, lengths, beta):
    """edge [B, h, w] -> (planes [B, D, h, w], norm [B, h, w])."""
    batch, height, width = edge.shape
    num_dirs, max_len = paths.shape[0], paths.shape[1]
    planes = _output((batch, num_dirs, height, width), edge.dtype, edge.device)
    norm = _output((batch, height, width), edge.dtype, edge.device)
    if norm.numel() == 0:
        return planes, norm
    dirs = paths[:, 0, :].contiguous()  # [D, 2] destinations
    with _runtime(edge.device) as run:
        planes_arr = run.array(planes, placeholder=norm)  # D == 0: never read
        if planes.numel() != 0:
            # (edge, paths, lengths, planes, B, H, W, D, max_len, beta)
            run.launch("stencil_planes_kernel", edge.dtype, _grid(planes.numel()), (_THREADS,), (
                run.array(edge), run.array(paths), run.array(lengths), planes_arr,
                _i32(batch), _i32(height), _i32(width), _i32(num_dirs), _i32(max_len),
                _scalar(edge.dtype, beta)))
        # (planes, dirs, norm, B, H, W, D); with D == 0 the norm is all ones
        run.launch("stencil_norm_kernel", edge.dtype, _grid(norm.numel()), (_THREADS,), (
            planes_arr, run.array(dirs, placeholder=_int_placeholder(edge.device)), run.array(norm),
            _i32(batch), _i32(height), _i32(width), _i32(num_dirs)))
    return planes, norm


class _WalkPlan:
    """The launches of a walk, chosen as cuda/random_walk_cuda.cu chooses them: one resident
    block per image and channel group (every pass in one launch) when the whole image fits in
    shared memory and those blocks fill the device, else 32 x 32 tiles with 2 passes per launch;
    up to 8 channels per block. ``buffers`` region copies of the values and ``acc_bytes`` per tile
    pixel and channel (the Chebyshev result) live in shared memory."""

    def __init__(self, run, x, dirs, num_dirs: int, passes: int, buffers: int, acc_bytes: int):
        batch, channels, height, width = x.shape
        if batch > 65535:
            raise ValueError(f"irnet_fast cupy backend: at most 65535 images per call, got {batch}")
        self.reach = int(dirs.abs().max()) if num_dirs else 0  # how far one pass reads
        self._layout = (buffers, x.element_size(), acc_bytes, num_dirs)
        limit = run.max_shared_bytes()
        block = 1
        while block < channels and block < _CHANNEL_BLOCKS[-1]:
            block *= 2
        if self._bytes(height, width, 0, block) <= limit and batch * -(-channels // block) >= run.multiprocessor_count():
            self.tile_h, self.tile_w, self.fused, self.halo_per_step = height, width, max(passes, 1), 0
            self.threads = _WALK_RESIDENT_THREADS
        else:
            self.tile_h = self.tile_w = _WALK_TILE
            self.fused, self.halo_per_step, self.threads = _WALK_FUSED, self.reach, _WALK_THREADS
            while block > 1 and self._bytes(self.tile_h, self.tile_w, self.fused * self.reach, block) > limit:
                block //= 2
            while self.fused > 1 and self._bytes(self.tile_h, self.tile_w, self.fused * self.reach, block) > limit:
                self.fused -= 1
        self.channel_block = block
        if self.shared(self.fused) > limit:
            raise ValueError(f"random_walk(): directions reaching {self.reach} pixels need more shared memory "
                             f"than a block has")
        self.grid = (-(-height // self.tile_h) * -(-width // self.tile_w), -(-channels // block), batch)

    def _bytes(self, tile_h, tile_w, halo, block):
        buffers, element, acc_bytes, num_dirs = self._layout
        return (buffers * block * (tile_h + 2 * halo) * (tile_w + 2 * halo) * element +
                block * tile_h * tile_w * acc_bytes + 2 * num_dirs * 4)

    def shared(self, passes: int) -> int:
        return self._bytes(self.tile_h, self.tile_w, self.halo_per_step * passes, self.channel_block)

    def sizes(self, x, num_dirs: int, passes: int):
        """(B, C, H, W, D, reach, tile_h, tile_w, halo) of a launch of ``passes`` passes."""
        return tuple(_i32(v) for v in (*x.shape, num_dirs, self.reach, self.tile_h, self.tile_w,
                                       self.halo_per_step * passes))


def random_walk(x, planes, inv_norm, dirs, steps):
    """``steps`` normalised stencil steps of x [B, C, h, w] with walk_tiles_kernel (see _WalkPlan)."""
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"random_walk(): steps expected >= 0, got {steps}")
    src = x.detach().clone()
    if steps == 0 or src.numel() == 0:
        return src
    num_dirs = planes.shape[1]
    dst = _output(src.shape, src.dtype, src.device)
    with _runtime(x.device) as run:
        plan = _WalkPlan(run, x, dirs, num_dirs, steps, buffers=2, acc_bytes=0)
        bufs = (run.array(src), run.array(dst))
        # with D == 0 the kernel reads neither planes nor dirs
        planes_arr = run.array(planes, placeholder=inv_norm)
        dirs_arr = run.array(dirs, placeholder=_int_placeholder(x.device))
        inv_arr = run.array(inv_norm)
        launches, done = 0, 0
        while done < steps:
            n = min(plan.fused, steps - done)
            # (src, dst, planes, inv_norm, dirs, B, C, H, W, D, reach, tile_h, tile_w, halo, steps)
            run.launch("walk_tiles_kernel", x.dtype, plan.grid, (plan.threads,), (
                bufs[launches % 2], bufs[(launches + 1) % 2], planes_arr, inv_arr, dirs_arr) +
                plan.sizes(x, num_dirs, n) + (_i32(n),), shared_mem=plan.shared(n), variant=plan.channel_block)
            launches, done = launches + 1, done + n
    return src if launches % 2 == 0 else dst


def random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients):
    """``sum_k c_k T_k(P) x`` for x [B, C, h, w] (irnet_fast/ops/chebyshev.py), passes fused per
    launch with chebyshev_tiles_kernel (see _WalkPlan); accumulated in the input dtype."""
    coefficients = [float(c) for c in coefficients]
    if not coefficients:
        raise ValueError("random_walk_chebyshev(): coefficients expected at least one value (c_0), got none")
    cur = x.detach().clone()
    if cur.numel() == 0:
        return cur
    num_dirs, degree = planes.shape[1], len(coefficients) - 1
    buffers = [cur] + [_output(cur.shape, cur.dtype, cur.device) for _ in range(3)]  # v_k, v_{k-1} in and out
    result = _output(cur.shape, cur.dtype, cur.device)
    coeffs = torch.tensor(coefficients, dtype=x.dtype, device=x.device)
    with _runtime(x.device) as run:
        plan = _WalkPlan(run, x, dirs, num_dirs, degree, buffers=2, acc_bytes=x.element_size())
        arrays = [run.array(b) for b in buffers]
        planes_arr = run.array(planes, placeholder=inv_norm)
        dirs_arr = run.array(dirs, placeholder=_int_placeholder(x.device))
        inv_arr, result_arr, coeffs_arr = run.array(inv_norm), run.array(result), run.array(coeffs)
        done = 0
        while True:  # degree 0 still launches once: it sets result = c_0 x
            n = min(plan.fused, degree - done)
            # (cur_in, prev_in, cur_out, prev_out, result, planes, inv_norm, dirs, coefficients,
            #  B, C, H, W, D, reach, tile_h, tile_w, halo, first, passes)
            run.launch("chebyshev_tiles_kernel", x.dtype, plan.grid, (plan.threads,), (
                *arrays, result_arr, planes_arr, inv_arr, dirs_arr, coeffs_arr) +
                plan.sizes(x, num_dirs, n) + (_i32(done), _i32(n)), shared_mem=plan.shared(n),
                variant=plan.channel_block)
            arrays = [arrays[2], arrays[3], arrays[0], arrays[1]]
            done += n
            if done >= degree:
                break
    return result


_CENTROID_THREADS = 128


def find_centroids(displacement, iterations):
    """displacement [2, h, w] float32/float64 -> refined centroids [2, h, w] int32."""
    _, height, width = displacement.shape
    out = _output((2, height, width), torch.int32, displacement.device)
    if height * width == 0:
        return out
    with _runtime(displacement.device) as run:
        # (displacement, out, height, width, iterations)
        run.launch("find_centroids_kernel", displacement.dtype, _grid(height * width, _CENTROID_THREADS),
                   (_CENTROID_THREADS,), (run.array(displacement), run.array(out), _i32(height), _i32(width),
                                          _i32(iterations)))
    return out


def feature_affinity(features, dirs):
    """features [B, C, h, w] -> affinity [B, D, h, w] (kernels/feature_affinity_kernels.cuh)."""
    batch, channels, height, width = features.shape
    num_dirs = dirs.shape[0]
    out = _output((batch, num_dirs, height, width), features.dtype, features.device)
    if out.numel() == 0:
        return out
    with _runtime(features.device) as run:
        run.launch("feature_affinity_kernel", features.dtype, _grid(out.numel()), (_THREADS,),
                   (run.array(features), run.array(dirs), run.array(out), _i32(batch), _i32(channels), _i32(height),
                    _i32(width), _i32(num_dirs)))
    return out


def feature_affinity_backward(grad, features, affinity, dirs):
    """grad, affinity [B, D, h, w] -> grad_features [B, C, h, w] (a gather: deterministic)."""
    batch, channels, height, width = features.shape
    num_dirs = dirs.shape[0]
    out = _output(features.shape, features.dtype, features.device)
    if out.numel() == 0:
        return out
    with _runtime(features.device) as run:
        run.launch("feature_affinity_backward_kernel", features.dtype, _grid(out.numel()), (_THREADS,),
                   (run.array(grad), run.array(features), run.array(affinity), run.array(dirs, _int_placeholder(
                       features.device)), run.array(out), _i32(batch), _i32(channels), _i32(height), _i32(width),
                    _i32(num_dirs)))
    return out
