"""The benchmark cases shared by the pytest-benchmark suites and ``benchmarks.report``.

Every case is prepared by a ``prepare_*`` function that does the untimed set-up (inputs, index
arrays, sparse matrices) and returns a :class:`Case`: ``case.fn()`` is the timed part and returns
the result as something :func:`as_numpy` understands, for the agreement checks of the report.

Inputs are realistic and seeded: the boundary map is ``sigmoid(6 * avg_pool2d(randn, 5, 1, 2))``
(smooth, values in (0, 1)) and the CAMs are uniform noise normalised to a maximum of 1 per channel.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- configuration

#: Random-walk grid sizes (h, w) at stride 4: tiny, the dense reference's limit, a 375x500 VOC
#: image and a 1024x2048 Cityscapes image.
SIZES: Tuple[Tuple[int, int], ...] = ((32, 32), (64, 64), (94, 125), (256, 512))
QUICK_SIZES: Tuple[Tuple[int, int], ...] = ((32, 32), (64, 64), (94, 125))

#: The dense reference materialises N x N float32 matrices: at most 64x64 (about 10 s, 0.5 GB).
REFERENCE_MAX_PIXELS = 64 * 64
QUICK_REFERENCE_MAX_PIXELS = 32 * 32

RADIUS, BETA, EXP_TIMES = 5, 10, 8
STEPS = 2 ** EXP_TIMES
CHANNELS = 3

#: path_affinity: the IRNet training case (crop 512 at stride 4, batch 8, radius 10).
AFFINITY_BATCH, AFFINITY_SIZE, AFFINITY_RADIUS = 8, (128, 128), 10

#: GPU cases: a batch of 16 VOC images with 21 channels, and one Cityscapes image.
GPU_RW_CASES = (dict(batch=16, channels=21, size=(94, 125)), dict(batch=1, channels=CHANNELS, size=(256, 512)))

CPU_BACKENDS = ("cpp", "numba", "torch")
GPU_BACKENDS = ("cuda", "cupy")
#: ``<backend>`` runs the default Chebyshev evaluation, ``<backend>:steps`` the 256 literal steps.
STEP_METHODS = tuple(f"{b}:steps" for b in CPU_BACKENDS)
#: Random-walk methods in the order of the tables; the last three are the baselines.
RW_METHODS = CPU_BACKENDS + STEP_METHODS + ("scipy_csr", "torch_sparse_csr", "reference")
AFFINITY_METHODS = CPU_BACKENDS + ("reference",)
AFFINITY_MODES = ("fwd", "fwd+bwd")

METHOD_LABELS = {
    "cpp": "cpp (irnet_fast), Chebyshev", "numba": "numba (irnet_fast), Chebyshev",
    "torch": "torch (irnet_fast), Chebyshev",
    "cpp:steps": "cpp (irnet_fast), 256 steps", "numba:steps": "numba (irnet_fast), 256 steps",
    "torch:steps": "torch (irnet_fast), 256 steps",
    "cuda": "cuda (irnet_fast)", "cupy": "cupy (irnet_fast)",
    "scipy_csr": "SciPy CSR, 256 steps", "torch_sparse_csr": "torch sparse CSR, 256 steps",
    "reference": "dense reference",
}


def quick_mode() -> bool:
    """``IRNET_BENCH_QUICK=1``: sizes up to 94x125 and the dense reference only at 32x32."""
    return os.environ.get("IRNET_BENCH_QUICK", "").strip().lower() in ("1", "true", "yes", "on")


def sizes(quick: Optional[bool] = None) -> Tuple[Tuple[int, int], ...]:
    return QUICK_SIZES if (quick_mode() if quick is None else quick) else SIZES


def reference_allowed(size: Sequence[int], quick: Optional[bool] = None) -> bool:
    limit = QUICK_REFERENCE_MAX_PIXELS if (quick_mode() if quick is None else quick) else REFERENCE_MAX_PIXELS
    return size[0] * size[1] <= limit


def size_label(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def backend_available(name: str) -> bool:
    """``irnet_fast.backends.is_available`` that never raises (a half-installed CuPy, no GPU...)."""
    from irnet_fast import backends
    try:
        return bool(backends.is_available(name))
    except Exception:  # noqa: BLE001 - an unusable backend is simply absent here
        return False


def split_method(method: str) -> Tuple[str, str]:
    """``"cpp:steps"`` -> ``("cpp", "steps")``; a bare backend runs the default (Chebyshev)."""
    backend, _, walk = method.partition(":")
    return backend, walk or "chebyshev"


def method_available(method: str) -> bool:
    method = split_method(method)[0]
    if method in CPU_BACKENDS + GPU_BACKENDS:
        return backend_available(method)
    if method == "scipy_csr":
        try:
            import scipy.sparse  # noqa: F401
        except ImportError:
            return False
    return True


# ----------------------------------------------------------------------------- inputs

def make_edge(batch: int, height: int, width: int, *, seed: int = 0, device="cpu",
              dtype=torch.float32) -> torch.Tensor:
    """Smooth boundary probabilities in (0, 1): ``sigmoid(6 * avg_pool2d(randn, 5, 1, 2))``."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, 1, height, width, generator=gen, dtype=torch.float64)
    edge = torch.sigmoid(6 * F.avg_pool2d(noise, 5, stride=1, padding=2))
    return edge.to(device=device, dtype=dtype).contiguous()


def make_cams(batch: int, channels: int, height: int, width: int, *, seed: int = 1, device="cpu",
              dtype=torch.float32) -> torch.Tensor:
    """Non-negative scores normalised to a maximum of 1 per channel, as ``make_cam`` leaves them."""
    gen = torch.Generator().manual_seed(seed)
    cams = torch.rand(batch, channels, height, width, generator=gen, dtype=torch.float64)
    cams = cams / cams.amax(dim=(2, 3), keepdim=True)
    return cams.to(device=device, dtype=dtype).contiguous()


def walk_inputs(size: Sequence[int], *, batch: int = 1, channels: int = CHANNELS, seed: int = 0,
                device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    height, width = size
    return (make_cams(batch, channels, height, width, seed=seed + 1, device=device),
            make_edge(batch, height, width, seed=seed, device=device))


# ----------------------------------------------------------------------------- cases

@dataclass
class Case:
    """A prepared benchmark case: ``fn()`` is what gets timed."""
    fn: Callable[[], Any]
    setup_s: float = 0.0                      # untimed preparation (sparse matrix, index arrays)
    info: Dict[str, Any] = field(default_factory=dict)
    sync: Optional[Callable[[], None]] = None  # torch.cuda.synchronize for GPU cases


def _cuda_sync(device) -> Optional[Callable[[], None]]:
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else None


def scipy_transition(edge_hw: torch.Tensor):
    """``T^T`` of one image as a SciPy CSR matrix (built from irnet_fast.ops.transition_matrix)."""
    import numpy as np
    import scipy.sparse as sp

    from irnet_fast.ops import transition_matrix
    trans = transition_matrix(edge_hw.unsqueeze(0).cpu(), RADIUS, BETA)   # sparse CSR, y @ T is a step
    num = trans.shape[0]
    csr = sp.csr_matrix((trans.values().numpy(), trans.col_indices().numpy().astype(np.int64),
                         trans.crow_indices().numpy().astype(np.int64)), shape=(num, num))
    return csr.T.tocsr()                                                     # Y <- T^T @ Y, Y (N, C)


def prepare_random_walk(method: str, size: Sequence[int], *, batch: int = 1, channels: int = CHANNELS,
                        device="cpu", steps: int = STEPS, inputs=None) -> Case:
    """One random walk (radius 5, beta 10, exp_times 8) of ``batch`` images of ``size``.

    ``method``: an irnet_fast backend (cpp, numba, torch, cuda, cupy; ``<backend>:steps`` for the
    literal 256 steps instead of the default Chebyshev evaluation), ``scipy_csr`` or
    ``torch_sparse_csr`` (256 sparse steps with T built by ``transition_matrix``; the build is
    the untimed set-up) or ``reference`` (the dense ``_reference.propagate_to_edge``).
    The sparse baselines and the reference handle one image (batch 1). ``inputs``: ``(x, edge)``
    made beforehand by :func:`walk_inputs` (the report measures memory above them).
    """
    from irnet_fast.ops import random_walk
    x, edge = inputs if inputs is not None else walk_inputs(size, batch=batch, channels=channels, device=device)
    height, width = size
    num = height * width
    info = {"N": num, "B": batch, "C": channels}
    backend, walk = split_method(method)
    if backend in CPU_BACKENDS + GPU_BACKENDS:
        def run():
            return random_walk(x, edge, RADIUS, BETA, EXP_TIMES, backend=backend, method=walk)
        return Case(run, 0.0, info, _cuda_sync(device))
    if batch != 1:
        raise ValueError(f"{method} handles one image, got batch {batch}")
    if method == "reference":
        from irnet_fast.ops import _reference

        def run():
            return _reference.propagate_to_edge(x[0], edge[0], RADIUS, BETA, EXP_TIMES)
        return Case(run, 0.0, info)
    start = time.perf_counter()
    values = (x[0] * (1 - edge[0])).reshape(channels, num)
    if method == "scipy_csr":
        import numpy as np
        trans_t = scipy_transition(edge[0, 0])
        y0 = np.ascontiguousarray(values.cpu().numpy().T)                    # (N, C) float32
        info["nnz"] = int(trans_t.nnz)

        def run():
            y = y0
            for _ in range(steps):
                y = trans_t @ y
            return y.T
        return Case(run, time.perf_counter() - start, info)
    if method == "torch_sparse_csr":
        trans_t = scipy_transition(edge[0, 0])
        trans_t = torch.sparse_csr_tensor(torch.from_numpy(trans_t.indptr), torch.from_numpy(trans_t.indices),
                                          torch.from_numpy(trans_t.data), size=trans_t.shape,
                                          check_invariants=False).to(device)
        y0 = values.t().contiguous()                                         # (N, C)
        info["nnz"] = int(trans_t.values().numel())

        def run():
            y = y0
            for _ in range(steps):
                y = torch.sparse.mm(trans_t, y)
            return y.t()
        return Case(run, time.perf_counter() - start, info, _cuda_sync(device))
    raise ValueError(f"unknown random-walk method {method!r}")


def prepare_affinity(method: str, mode: str, *, batch: int = AFFINITY_BATCH, size: Sequence[int] = AFFINITY_SIZE,
                     radius: int = AFFINITY_RADIUS, device="cpu", edge=None) -> Case:
    """Affinities of a ``(batch, 1, *size)`` boundary map with autograd on (training setting).

    ``mode``: ``fwd`` (forward only) or ``fwd+bwd`` (forward, then ``out.sum().backward()``).
    ``method``: a backend of ``path_affinity`` or ``reference`` (``edge_to_affinity`` with the
    index arrays of ``PathIndex(radius, size)``, built in the untimed set-up and moved to
    ``device`` once, as the reference keeps them). ``edge``: a boundary map made beforehand by
    :func:`make_edge` (the report measures memory above it).
    """
    from irnet_fast.ops import PathIndex, path_affinity
    from irnet_fast.ops import _reference
    if mode not in AFFINITY_MODES:
        raise ValueError(f"mode expected one of {AFFINITY_MODES}, got {mode!r}")
    if edge is None:
        edge = make_edge(batch, size[0], size[1], device=device)
    batch, size = edge.shape[0], tuple(edge.shape[-2:])
    edge = edge.requires_grad_(True)
    info: Dict[str, Any] = {"N": size[0] * size[1], "B": batch, "radius": radius}
    setup_s = 0.0
    if method == "reference":
        start = time.perf_counter()
        indices = [torch.as_tensor(a, device=device) for a in PathIndex(radius, tuple(size)).path_indices]
        setup_s = time.perf_counter() - start
        info["index_MB"] = sum(a.numel() * a.element_size() for a in indices) / 2 ** 20

        def forward():
            return _reference.edge_to_affinity(edge, indices)
    else:
        def forward():
            return path_affinity(edge, radius, backend=method)

    if mode == "fwd":
        def run():
            return forward().detach()
    else:
        def run():
            edge.grad = None
            out = forward()
            out.sum().backward()
            return edge.grad
    return Case(run, setup_s, info, _cuda_sync(device))


#: find_centroids_with_refinement: a VOC image at stride 4, the reference's 300 iterations.
CENTROID_SIZE, CENTROID_ITERATIONS = (94, 125), 300
CENTROID_FIELDS = ("clean", "noisy")
CENTROID_METHODS = ("reference",) + CPU_BACKENDS


def centroid_field(height: int, width: int, kind: str = "clean", *, seed: int = 0, centres: int = 5):
    """A displacement field [2, h, w] float32 like IRNet's.

    ``clean``: every pixel points at the nearest of ``centres`` instance centres (gain 0.6-1), with
    a little smooth noise: trajectories reach a fixed point or a 2-cycle within a few iterations.
    ``noisy``: the instances are discs of radius ~h/6 pointing at their centres, and smooth noise of
    about 0.3 px per step lies inside and outside them (a trained IRNet drives the background
    displacement towards 0, never to exactly 0): most pixels run all iterations.
    """
    import numpy as np
    from scipy import ndimage
    if kind not in CENTROID_FIELDS:
        raise ValueError(f"centroid_field(): kind expected one of {CENTROID_FIELDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0, height - 1, centres), rng.uniform(0, width - 1, centres)
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    dist2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    near = dist2.argmin(0)
    gain = rng.uniform(0.6, 1.0, centres)[near]
    field = np.stack([(cy[near] - yy) * gain, (cx[near] - xx) * gain])
    if kind == "clean":
        field += ndimage.gaussian_filter(rng.standard_normal(field.shape), (0, 2, 2)) * 2
    else:
        inside = dist2.min(0) <= (max(height, width) / 6.0) ** 2
        noise = ndimage.gaussian_filter(rng.standard_normal(field.shape), (0, 3, 3))
        noise *= 0.3 / max(float(np.abs(noise).std()), 1e-12)
        field = np.where(inside[None], field * 0.3, 0.0) + noise
    return field.astype(np.float32)


def prepare_centroids(method: str, kind: str, *, size: Sequence[int] = CENTROID_SIZE,
                      iterations: int = CENTROID_ITERATIONS) -> Case:
    """``find_centroids_with_refinement`` of a ``kind`` field; ``method``: a backend or ``reference``
    (the NumPy transcription)."""
    from irnet_fast.ops import _reference, find_centroids_with_refinement
    field = centroid_field(*size, kind)
    info = {"N": size[0] * size[1], "iterations": iterations, "field": kind}
    if method == "reference":
        return Case(lambda: _reference.find_centroids_with_refinement(field, iterations), 0.0, info)
    tensor = torch.from_numpy(field)
    return Case(lambda: find_centroids_with_refinement(tensor, iterations, backend=method), 0.0, info)


_BUSY_LOOP = ("import torch, time\n"
              "torch.set_num_threads({threads})\n"
              "a = torch.rand(256, 256)\n"
              "while True:\n"
              "    b = a @ a\n")


class BusyProcesses:
    """Context manager: ``count`` processes, each a ``threads``-thread torch loop of ``a @ a`` on a
    256x256 matrix (what data-loader transforms or a second pipeline shard do to the cores),
    started on entry and killed on exit."""

    def __init__(self, count: int = 2, threads: int = 2):
        self.count, self.threads, self.procs = count, threads, []

    def __enter__(self):
        import subprocess
        import sys
        code = _BUSY_LOOP.format(threads=self.threads)
        self.procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(self.count)]
        time.sleep(1.5)  # imports done, loops running
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []


def as_numpy(result):
    """Any case result (tensor, sparse matrix product, array) as a float64 NumPy array."""
    import numpy as np
    if isinstance(result, torch.Tensor):
        return result.detach().to("cpu", torch.float64).numpy()
    return np.asarray(result, dtype=np.float64)


def flat_walk_result(result, channels: int, num: int):
    """A random-walk result of any method as a ``(C, N)`` float64 array."""
    return as_numpy(result).reshape(-1, channels, num)[0]


# ----------------------------------------------------------------------------- timing helpers

def time_case(case: Case, *, min_repeats: int = 3, max_repeats: int = 20, target_s: float = 1.5,
              slow_s: float = 2.0, long_s: float = 5.0, warmup: int = 1) -> Tuple[List[float], Any]:
    """Per-run seconds of ``case.fn`` and its last result.

    The first ``warmup`` runs are discarded unless they are slow: a first run of ``long_s`` or
    more is the only measurement (the dense reference at 64x64 runs exactly once), one of
    ``slow_s`` or more is kept and repeated once. Otherwise the case repeats until ``target_s``
    seconds of timed runs, at least ``min_repeats`` and at most ``max_repeats`` times. Compile
    and first-call costs belong in an earlier call on a tiny input (the report does that).
    """
    sync = case.sync or (lambda: None)

    def once():
        sync()
        start = time.perf_counter()
        out = case.fn()
        sync()
        return time.perf_counter() - start, out

    times: List[float] = []
    first, result = once()
    if first >= long_s:
        return [first], result
    if first >= slow_s:
        second, result = once()
        return [first, second], result
    for _ in range(warmup - 1):
        first, result = once()
    wanted = max(min_repeats, min(max_repeats, int(target_s / max(first, 1e-6))))
    while len(times) < wanted:
        elapsed, result = once()
        times.append(elapsed)
        if len(times) >= min_repeats and sum(times) >= target_s:
            break
    return times, result
