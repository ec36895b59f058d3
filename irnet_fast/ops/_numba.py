"""The numba backend: JIT-compiled CPU kernels with the semantics of csrc/kernels/affinity.h.

Every kernel mirrors the per-element arithmetic of the compiled ops (path_max,
path_affinity_grad_at, stencil_weight, stencil_norm_at, walk_step_at), in the input dtype and
with the same summation order, except the random walk, which runs on zero-padded buffers like
csrc/cpu/random_walk_cpu.cpp (branch-free, vectorisable rows; all steps in one call).

Importing this module compiles nothing: each kernel is compiled (or loaded from numba's cache)
on its first call. The kernels are plain Python too, so ``NUMBA_DISABLE_JIT=1`` runs them as
such (slowly; for tiny inputs). Tensors reach the kernels as zero-copy NumPy views.
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np
import torch

__all__ = ["path_affinity", "path_affinity_backward", "transition_stencil", "random_walk", "random_walk_chebyshev",
           "find_centroids", "feature_affinity", "feature_affinity_backward", "available"]

# The kernels are plain functions: affinity.py wraps them in an autograd.Function.
DIFFERENTIABLE = False

_JIT = dict(parallel=True, cache=True, fastmath=False)
_BAND_ELEMENTS = 2048  # values per inner loop of the walk (a band of rows); see _band_rows


def available() -> bool:
    """Always True: this module imports only where numba is installed."""
    return True


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------

@numba.njit(**_JIT)
def _path_affinity_kernel(edge, paths, lengths, radius_floor, one, affinity, argmax):
    # edge [B, H, W]; paths [D, L, 2]; affinity, argmax [B, D, crop_h, crop_w]
    num_dirs = paths.shape[0]
    crop_h = affinity.shape[2]
    crop_w = affinity.shape[3]
    rows = affinity.shape[0] * num_dirs * crop_h
    for row in numba.prange(rows):
        b = row // (num_dirs * crop_h)
        k = (row // crop_h) % num_dirs
        i = row % crop_h
        length = lengths[k]
        for j in range(crop_w):
            sx = j + radius_floor
            # path_max: first maximal point in path order wins
            best = edge[b, i + paths[k, 0, 0], sx + paths[k, 0, 1]]
            best_point = 0
            for p in range(1, length):
                v = edge[b, i + paths[k, p, 0], sx + paths[k, p, 1]]
                if v > best:
                    best = v
                    best_point = p
            affinity[b, k, i, j] = one - best
            argmax[b, k, i, j] = best_point


@numba.njit(**_JIT)
def _path_affinity_backward_kernel(grad, argmax, paths, radius_floor, partial):
    # grad, argmax [B, D, crop_h, crop_w] -> partial [B, chunks, height, width]: each (image,
    # chunk of directions) task scatters into its own buffer (as the C++ kernel), no races
    num_dirs = grad.shape[1]
    crop_h = grad.shape[2]
    crop_w = grad.shape[3]
    chunks = partial.shape[1]
    width = partial.shape[3]
    for task in numba.prange(partial.shape[0] * chunks):
        b = task // chunks
        c = task % chunks
        for k in range(c * num_dirs // chunks, (c + 1) * num_dirs // chunks):
            for i in range(crop_h):
                for j in range(crop_w):
                    p = argmax[b, k, i, j]
                    y = i + paths[k, p, 0]
                    x = j + radius_floor + paths[k, p, 1]
                    partial[b, c, y, x] -= grad[b, k, i, j]


@numba.njit(**_JIT)
def _stencil_planes_kernel(edge, paths, lengths, beta, int_beta, one, zero, planes):
    # edge [B, h, w] -> planes [B, D, h, w]: (1 - path_max) ** beta, 0 where p + o_k is off-grid.
    # Row by row, a path point at a time over the row's valid columns [x0, x1): the inner loops
    # are branch-free and vectorise (every point of a path lies between p and p + o_k, so it is on
    # the grid wherever p + o_k is).
    num_dirs = paths.shape[0]
    height = edge.shape[1]
    width = edge.shape[2]
    rows = edge.shape[0] * num_dirs * height
    blocks = min(rows, 256)
    for block in numba.prange(blocks):
        base = np.empty(width, dtype=planes.dtype)  # one scratch row per block, not per row
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            b = row // (num_dirs * height)
            k = (row // height) % num_dirs
            y = row % height
            dy = paths[k, 0, 0]
            dx = paths[k, 0, 1]
            out = planes[b, k, y]
            x0 = max(0, -dx)
            x1 = min(width, width - dx) if y + dy < height else 0
            for x in range(width):
                out[x] = zero
            if x1 <= x0:
                continue
            # slices, then indices from 0: no negative-index wrap-around checks in the loops
            n = x1 - x0
            row_base = base[:n]
            dst = out[x0:x1]
            src = edge[b, y + dy, x0 + dx:x1 + dx]
            for t in range(n):
                row_base[t] = src[t]
            for p in range(1, lengths[k]):
                px = paths[k, p, 1]
                src = edge[b, y + paths[k, p, 0], x0 + px:x1 + px]
                for t in range(n):
                    v = src[t]
                    row_base[t] = v if v > row_base[t] else row_base[t]
            for t in range(n):
                row_base[t] = one - row_base[t]
            # affinity.h power(): an integral beta in [0, 64] (int_beta >= 0) by repeated squaring
            # in the dtype, a bit at a time over the row; any other by pow in double
            if int_beta >= 0:
                for t in range(n):
                    dst[t] = one
                e = int_beta
                while e > 0:
                    if e & 1:
                        for t in range(n):
                            dst[t] *= row_base[t]
                    e >>= 1
                    if e > 0:
                        for t in range(n):
                            row_base[t] *= row_base[t]
            else:
                for t in range(n):
                    dst[t] = np.float64(row_base[t]) ** beta


@numba.njit(**_JIT)
def _stencil_norm_kernel(planes, dirs, one, norm):
    # planes [B, D, h, w] -> norm [B, h, w]: 1 + forward + backward weights (affinity.h order)
    num_dirs = planes.shape[1]
    height = planes.shape[2]
    width = planes.shape[3]
    for row in numba.prange(planes.shape[0] * height):
        b = row // height
        y = row % height
        for x in range(width):
            s = one
            for k in range(num_dirs):
                s += planes[b, k, y, x]
                by = y - dirs[k, 0]
                bx = x - dirs[k, 1]
                if by >= 0 and bx >= 0 and bx < width:
                    s += planes[b, k, by, bx]
            norm[b, y, x] = s


@numba.njit(**_JIT)
def _walk_padded_kernel(buf_a, buf_b, planes, inv_norm, offsets, channels, height, width, pad,
                        row_stride, chunk, steps):
    """``steps`` walk steps on zero-padded buffers, ping-ponging buf_a -> buf_b -> buf_a ...

    buf_a, buf_b: [B * C, plane]; planes: [B, D, plane]; inv_norm: [B, plane]; a padded grid is
    [height + 2 pad, row_stride], row_stride = width + 2 pad, zero outside the interior (planes
    and inv_norm included). offsets[k] = dy * row_stride + dx, so p + o_k is a flat shift.

    One parallel unit is a band of ``chunk`` rows of one channel, taken as one contiguous run of
    the flat grid from its first to its last interior pixel: the padding columns between the
    rows ride along (zero planes and a zero inverse norm keep them zero), so the inner loops are
    long, branch-free and vectorise, and the slicing cost is paid once per band and direction.
    """
    num_dirs = offsets.shape[0]
    bands = (height + chunk - 1) // chunk
    units = buf_a.shape[0] * bands
    for step in range(steps):
        if step % 2 == 0:
            src = buf_a
            dst = buf_b
        else:
            src = buf_b
            dst = buf_a
        for u in numba.prange(units):
            bc = u // bands
            r0 = (u - bc * bands) * chunk
            r1 = min(r0 + chunk, height)
            img = bc // channels
            q0 = (r0 + pad) * row_stride + pad
            n = (r1 - r0 - 1) * row_stride + width
            s_all = src[bc]
            p_img = planes[img]
            out = dst[bc, q0:q0 + n]
            centre = s_all[q0:q0 + n]
            for t in range(n):
                out[t] = 0
            # y'(p) = inv_norm(p) (y(p) + sum_k S_k(p) y(p + o_k) + S_k(p - o_k) y(p - o_k)),
            # two directions per pass over the band; the neighbours summed from 0, y(p) added
            # last (kernels/random_walk.h: far less float32 rounding than a sum started at y(p))
            k = 0
            while k + 1 < num_dirs:
                o1 = offsets[k]
                o2 = offsets[k + 1]
                sf1 = p_img[k, q0:q0 + n]
                sb1 = p_img[k, q0 - o1:q0 - o1 + n]
                yf1 = s_all[q0 + o1:q0 + o1 + n]
                yb1 = s_all[q0 - o1:q0 - o1 + n]
                sf2 = p_img[k + 1, q0:q0 + n]
                sb2 = p_img[k + 1, q0 - o2:q0 - o2 + n]
                yf2 = s_all[q0 + o2:q0 + o2 + n]
                yb2 = s_all[q0 - o2:q0 - o2 + n]
                for t in range(n):
                    out[t] += (sf1[t] * yf1[t] + sb1[t] * yb1[t]) + (sf2[t] * yf2[t] + sb2[t] * yb2[t])
                k += 2
            if k < num_dirs:
                o1 = offsets[k]
                sf1 = p_img[k, q0:q0 + n]
                sb1 = p_img[k, q0 - o1:q0 - o1 + n]
                yf1 = s_all[q0 + o1:q0 + o1 + n]
                yb1 = s_all[q0 - o1:q0 - o1 + n]
                for t in range(n):
                    out[t] += sf1[t] * yf1[t] + sb1[t] * yb1[t]
            inv = inv_norm[img, q0:q0 + n]
            for t in range(n):
                out[t] = (centre[t] + out[t]) * inv[t]


@numba.njit(**_JIT)
def _chebyshev_padded_kernel(buf_a, buf_b, result, scratch, planes, inv_norm, offsets, coefficients, channels,
                             height, width, pad, row_stride, chunk):
    """``sum_k c_k T_k(P) x`` on the padded buffers of _walk_padded_kernel (kernels/random_walk.h).

    buf_a holds v_0; pass k reads v_{k-1} and overwrites v_{k-2} (the other buffer) with
    v_k = 2 P v_{k-1} - v_{k-2} (P v_0 for k = 1). The pass sums in the storage dtype
    (``scratch``: one row band per unit, allocated once), the neighbours from 0 and the centre
    last as the C++ kernels, and adds c_k v_k to the float64 ``result``.
    """
    num_dirs = offsets.shape[0]
    bands = (height + chunk - 1) // chunk
    units = buf_a.shape[0] * bands
    for k in range(1, coefficients.shape[0]):
        if k % 2 == 1:
            src = buf_a
            dst = buf_b
        else:
            src = buf_b
            dst = buf_a
        coefficient = coefficients[k]
        for u in numba.prange(units):
            bc = u // bands
            r0 = (u - bc * bands) * chunk
            r1 = min(r0 + chunk, height)
            img = bc // channels
            q0 = (r0 + pad) * row_stride + pad
            n = (r1 - r0 - 1) * row_stride + width
            s_all = src[bc]
            p_img = planes[img]
            acc = scratch[u, :n]
            centre = s_all[q0:q0 + n]
            for t in range(n):
                acc[t] = 0
            # four directions per sweep of the band: a quarter of the accumulator's round trips
            j = 0
            while j + 3 < num_dirs:
                o1, o2, o3, o4 = offsets[j], offsets[j + 1], offsets[j + 2], offsets[j + 3]
                sf1, sb1 = p_img[j, q0:q0 + n], p_img[j, q0 - o1:q0 - o1 + n]
                sf2, sb2 = p_img[j + 1, q0:q0 + n], p_img[j + 1, q0 - o2:q0 - o2 + n]
                sf3, sb3 = p_img[j + 2, q0:q0 + n], p_img[j + 2, q0 - o3:q0 - o3 + n]
                sf4, sb4 = p_img[j + 3, q0:q0 + n], p_img[j + 3, q0 - o4:q0 - o4 + n]
                yf1, yb1 = s_all[q0 + o1:q0 + o1 + n], s_all[q0 - o1:q0 - o1 + n]
                yf2, yb2 = s_all[q0 + o2:q0 + o2 + n], s_all[q0 - o2:q0 - o2 + n]
                yf3, yb3 = s_all[q0 + o3:q0 + o3 + n], s_all[q0 - o3:q0 - o3 + n]
                yf4, yb4 = s_all[q0 + o4:q0 + o4 + n], s_all[q0 - o4:q0 - o4 + n]
                for t in range(n):
                    acc[t] += ((sf1[t] * yf1[t] + sb1[t] * yb1[t]) + (sf2[t] * yf2[t] + sb2[t] * yb2[t])) + \
                        ((sf3[t] * yf3[t] + sb3[t] * yb3[t]) + (sf4[t] * yf4[t] + sb4[t] * yb4[t]))
                j += 4
            while j < num_dirs:
                o = offsets[j]
                sf = p_img[j, q0:q0 + n]
                sb = p_img[j, q0 - o:q0 - o + n]
                yf = s_all[q0 + o:q0 + o + n]
                yb = s_all[q0 - o:q0 - o + n]
                for t in range(n):
                    acc[t] += sf[t] * yf[t] + sb[t] * yb[t]
                j += 1
            inv = inv_norm[img, q0:q0 + n]
            out = dst[bc, q0:q0 + n]
            res = result[bc, q0:q0 + n]
            for t in range(n):
                applied = (centre[t] + acc[t]) * inv[t]
                if k == 1:
                    out[t] = applied
                else:
                    out[t] = 2.0 * applied - out[t]
                res[t] += coefficient * out[t]


# ----------------------------------------------------------------------------------------------
# backend interface (tensors validated by the caller: contiguous CPU, float32 or float64)
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _threads_of_torch():
    """Runs the call on no more of numba's threads than torch's count for this thread: the count
    that the public ops cap at the idle cores on a busy machine (``irnet_fast._ext``), or the
    user's ``torch.set_num_threads``. A walk makes a parallel region per pass, and with a core
    taken by another process each region waits a scheduling round for it: measured at 94x125
    beside one busy process, 346 ms on 2 threads against 28 ms on 1 (14 ms on the quiet machine)."""
    try:
        before = numba.get_num_threads()
    except Exception:  # no threading layer: nothing to cap
        before = 1
    limit = max(1, min(before, torch.get_num_threads()))
    if limit < before:
        numba.set_num_threads(limit)
    try:
        yield
    finally:
        if limit < before:
            numba.set_num_threads(before)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


@_threads_of_torch()
def path_affinity(edge, paths, lengths, radius_floor):
    """edge [B, H, W] -> (affinity, argmax uint8), both [B, D, H - rf, W - 2 rf]."""
    radius_floor = int(radius_floor)
    batch, height, width = edge.shape
    num_dirs = paths.shape[0]
    crop_h, crop_w = height - radius_floor, width - 2 * radius_floor
    if crop_h < 0 or crop_w < 0:
        raise ValueError(f"path_affinity(): edge of size {height}x{width} is smaller than the search "
                         f"window (radius_floor {radius_floor})")
    affinity = torch.empty((batch, num_dirs, crop_h, crop_w), dtype=edge.dtype)
    argmax = torch.empty((batch, num_dirs, crop_h, crop_w), dtype=torch.uint8)
    if affinity.numel() == 0:
        return affinity, argmax
    e = _np(edge)
    _path_affinity_kernel(e, _np(paths), _np(lengths), radius_floor, e.dtype.type(1),
                          affinity.numpy(), argmax.numpy())
    return affinity, argmax


@_threads_of_torch()
def path_affinity_backward(grad, argmax, paths, lengths, radius_floor, height, width):
    """grad, argmax [B, D, crop_h, crop_w] -> grad_edge [B, height, width] (deterministic)."""
    height, width = int(height), int(width)
    batch, num_dirs = grad.shape[0], grad.shape[1]
    if batch * height * width == 0 or grad.numel() == 0:  # nothing reaches the edge
        return torch.zeros((batch, height, width), dtype=grad.dtype)
    chunks = max(1, min(num_dirs, -(-numba.get_num_threads() // batch)))
    partial = torch.zeros((batch, chunks, height, width), dtype=grad.dtype)
    _path_affinity_backward_kernel(_np(grad), _np(argmax), _np(paths), int(radius_floor), partial.numpy())
    return partial.sum(1)


@_threads_of_torch()
def transition_stencil(edge, paths, lengths, beta):
    """edge [B, h, w] -> (planes [B, D, h, w], norm [B, h, w])."""
    batch, height, width = edge.shape
    num_dirs = paths.shape[0]
    planes = torch.empty((batch, num_dirs, height, width), dtype=edge.dtype)
    norm = torch.empty((batch, height, width), dtype=edge.dtype)
    if norm.numel() == 0:
        return planes, norm
    e = _np(edge)
    scalar = e.dtype.type
    p = planes.numpy()
    if planes.numel() != 0:
        # beta is rounded to the dtype first, as the C++ kernels take it as scalar_t
        beta_s = scalar(beta)
        integral = bool(0 <= beta_s <= 64) and float(int(beta_s)) == float(beta_s)
        _stencil_planes_kernel(e, _np(paths), _np(lengths), np.float64(beta_s),
                               int(beta_s) if integral else -1, scalar(1), scalar(0), p)
    dirs = np.ascontiguousarray(_np(paths)[:, 0, :])
    _stencil_norm_kernel(p, dirs, scalar(1), norm.numpy())
    return planes, norm


def _band_rows(channels_total: int, height: int, row_stride: int) -> int:
    """Rows per parallel unit of the walk: runs of about _BAND_ELEMENTS values, yet at least
    about four units per thread so that the threads stay balanced."""
    rows = max(1, _BAND_ELEMENTS // row_stride)
    try:
        threads = numba.get_num_threads()
    except Exception:  # no threading layer: run as if on one thread
        threads = 1
    per_thread = -(-channels_total * height // (4 * max(1, threads)))
    return max(1, min(rows, per_thread, height))


def _padded_walk_arrays(x, planes, inv_norm, dirs):
    """Zero-padded NumPy buffers of a walk: (buf_a with x, buf_b, planes, inv_norm, offsets,
    layout dict); a padded grid is [h + 2 pad, w + 2 pad], flat per channel and per plane."""
    batch, channels, height, width = x.shape
    num_dirs = planes.shape[1]
    d = _np(dirs).astype(np.int64).reshape(num_dirs, 2)
    if num_dirs and int(d[:, 0].min()) < 0:
        raise ValueError(f"random_walk(): dirs expected dy >= 0 (half plane), got {int(d[:, 0].min())}")
    pad = int(np.abs(d).max()) if num_dirs else 0
    row_stride = width + 2 * pad
    padded_h = height + 2 * pad
    plane = padded_h * row_stride
    offsets = np.ascontiguousarray(d[:, 0] * row_stride + d[:, 1])
    xs, ps, ns = _np(x), _np(planes), _np(inv_norm)
    dtype = xs.dtype
    interior = (slice(None), slice(None), slice(pad, pad + height), slice(pad, pad + width))
    buf_a = np.zeros((batch * channels, padded_h, row_stride), dtype=dtype)
    buf_a.reshape(batch, channels, padded_h, row_stride)[interior] = xs
    buf_b = np.zeros_like(buf_a)
    planes_p = np.zeros((batch, num_dirs, padded_h, row_stride), dtype=dtype)
    planes_p[interior] = ps
    inv_p = np.zeros((batch, 1, padded_h, row_stride), dtype=dtype)
    inv_p[interior] = ns.reshape(batch, 1, height, width)
    layout = dict(pad=pad, row_stride=row_stride, padded_h=padded_h, plane=plane, interior=interior,
                  chunk=_band_rows(batch * channels, height, row_stride))
    return (buf_a.reshape(batch * channels, plane), buf_b.reshape(batch * channels, plane),
            planes_p.reshape(batch, num_dirs, plane), inv_p.reshape(batch, plane), offsets, layout)


def _interior(buf, shape, layout):
    batch, channels = shape[:2]
    return np.ascontiguousarray(buf.reshape(batch, channels, layout["padded_h"], layout["row_stride"])
                                [layout["interior"]])


@_threads_of_torch()
def random_walk(x, planes, inv_norm, dirs, steps):
    """``steps`` normalised stencil steps of x [B, C, h, w] (walk_step_at, on padded buffers)."""
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"random_walk(): steps expected >= 0, got {steps}")
    if steps == 0 or x.numel() == 0:
        return x.detach().clone()
    batch, channels, height, width = x.shape
    buf_a, buf_b, planes_p, inv_p, offsets, lay = _padded_walk_arrays(x, planes, inv_norm, dirs)
    _walk_padded_kernel(buf_a, buf_b, planes_p, inv_p, offsets, channels, height, width, lay["pad"],
                        lay["row_stride"], lay["chunk"], steps)
    return torch.from_numpy(_interior(buf_a if steps % 2 == 0 else buf_b, x.shape, lay))


@_threads_of_torch()
def random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients):
    """``sum_k c_k T_k(P) x`` of x [B, C, h, w], one fused pass per degree (chebyshev_pass_at)."""
    coefficients = np.ascontiguousarray(np.asarray(coefficients, dtype=np.float64).reshape(-1))
    if x.numel() == 0:
        return x.detach().clone()
    batch, channels, height, width = x.shape
    buf_a, buf_b, planes_p, inv_p, offsets, lay = _padded_walk_arrays(x, planes, inv_norm, dirs)
    result = buf_a.astype(np.float64) * coefficients[0]
    chunk = lay["chunk"]
    bands = -(-height // chunk)
    scratch = np.empty((batch * channels * bands, (chunk - 1) * lay["row_stride"] + width), dtype=buf_a.dtype)
    _chebyshev_padded_kernel(buf_a, buf_b, result, scratch, planes_p, inv_p, offsets, coefficients, channels,
                             height, width, lay["pad"], lay["row_stride"], chunk)
    return torch.from_numpy(_interior(result, x.shape, lay).astype(buf_a.dtype))


# ----------------------------------------------------------------------------------------------
# instances (docs/algorithm.md, "Instances"): find_centroids, the arithmetic of csrc/kernels/instances.h
# ----------------------------------------------------------------------------------------------

@numba.njit(**_JIT)
def _find_centroids_kernel(d0, d1, iterations, out_y, out_x):
    # d0, d1 [h, w] (float32 or float64, read as float64); out_y, out_x [h, w] int32.
    # float() and np.float32() spell the reference's dtypes: they also hold without the JIT,
    # where a NumPy float32 times a Python float would stay float32.
    height, width = d0.shape
    max_y, max_x = np.float32(height - 1), np.float32(width - 1)
    for p in numba.prange(height * width):
        cy, cx = np.float32(p // width), np.float32(p % width)
        py, px = cy, cx  # the state before (cy, cx)
        for i in range(iterations):
            dy, dx = int(cy), int(cx)  # cy, cx >= 0: truncation is floor
            uy = dy + 1 if np.float32(dy) < cy else dy
            ux = dx + 1 if np.float32(dx) < cx else dx
            fy, fx = float(cy) - float(dy), float(cx) - float(dx)
            gy, gx = 1.0 - fy, 1.0 - fx
            sy = float(d0[uy, ux]) * fy * fx + float(d0[dy, ux]) * gy * fx + \
                float(d0[uy, dx]) * fy * gx + float(d0[dy, dx]) * gy * gx
            sx = float(d1[uy, ux]) * fy * fx + float(d1[dy, ux]) * gy * fx + \
                float(d1[uy, dx]) * fy * gx + float(d1[dy, dx]) * gy * gx
            ny = np.float32(float(cy) + sy)
            nx = np.float32(float(cx) + sx)
            ny = min(max(ny, np.float32(0)), max_y)
            nx = min(max(nx, np.float32(0)), max_x)
            if ny == cy and nx == cx:  # a fixed point of the step: it stays there
                break
            if i > 0 and ny == py and nx == px:  # a 2-cycle: the states alternate from here
                if (iterations - 1 - i) % 2 == 0:
                    cy, cx = ny, nx
                break
            py, px = cy, cx
            cy, cx = ny, nx
        out_y[p // width, p % width] = np.int32(np.rint(cy))
        out_x[p // width, p % width] = np.int32(np.rint(cx))


@_threads_of_torch()
def find_centroids(displacement, iterations):
    """displacement [2, h, w] (float32 or float64, CPU) -> int32 centroids [2, h, w]."""
    _, height, width = displacement.shape
    out = torch.empty((2, height, width), dtype=torch.int32)
    if height * width == 0:
        return out
    d = _np(displacement)
    o = out.numpy()
    _find_centroids_kernel(d[0], d[1], int(iterations), o[0], o[1])
    return out


# ----------------------------------------------------------------------------------------------
# feature affinity (kernels/feature_affinity.h): channels outermost, sums in ascending channel order
# ----------------------------------------------------------------------------------------------

@numba.njit(**_JIT)
def _feature_affinity_kernel(f, dirs, out):
    batch, channels, height, width = f.shape
    num_dirs = dirs.shape[0]
    inv_channels = f.dtype.type(1) / f.dtype.type(channels)
    for task in numba.prange(batch * height):
        b, y = task // height, task % height
        acc = np.zeros((num_dirs, width), dtype=f.dtype)
        for c in range(channels):
            for k in range(num_dirs):
                dy, dx = dirs[k, 0], dirs[k, 1]
                if y + dy >= height:
                    continue
                for x in range(max(0, -dx), min(width, width - dx)):
                    acc[k, x] += abs(f[b, c, y, x] - f[b, c, y + dy, x + dx])
        for k in range(num_dirs):
            dy, dx = dirs[k, 0], dirs[k, 1]
            for x in range(width):
                on = y + dy < height and 0 <= x + dx < width
                out[b, k, y, x] = np.exp(-(acc[k, x] * inv_channels)) if on else 0.0


@numba.njit(**_JIT)
def _feature_affinity_backward_kernel(grad, f, aff, dirs, out):
    batch, channels, height, width = f.shape
    num_dirs = dirs.shape[0]
    inv_channels = f.dtype.type(1) / f.dtype.type(channels)
    for task in numba.prange(batch * height):
        b, y = task // height, task % height
        for c in range(channels):
            for k in range(num_dirs):
                dy, dx = dirs[k, 0], dirs[k, 1]
                if y + dy < height:  # outgoing pair (p, p + o)
                    for x in range(max(0, -dx), min(width, width - dx)):
                        w = -(grad[b, k, y, x] * aff[b, k, y, x]) * inv_channels
                        out[b, c, y, x] += w * np.sign(f[b, c, y, x] - f[b, c, y + dy, x + dx])
                ys = y - dy
                if ys >= 0:  # incoming pair (p - o, p)
                    for x in range(max(0, dx), min(width, width + dx)):
                        w = -(grad[b, k, ys, x - dx] * aff[b, k, ys, x - dx]) * inv_channels
                        out[b, c, y, x] -= w * np.sign(f[b, c, ys, x - dx] - f[b, c, y, x])


@_threads_of_torch()
def feature_affinity(features, dirs):
    """features [B, C, h, w] -> affinity [B, D, h, w]."""
    batch, _, height, width = features.shape
    out = torch.empty((batch, dirs.shape[0], height, width), dtype=features.dtype)
    if out.numel():
        _feature_affinity_kernel(_np(features), _np(dirs), out.numpy())
    return out


@_threads_of_torch()
def feature_affinity_backward(grad, features, affinity, dirs):
    """grad, affinity [B, D, h, w] -> grad_features [B, C, h, w] (a gather: deterministic)."""
    out = torch.zeros(features.shape, dtype=features.dtype)
    if out.numel() and dirs.shape[0]:
        _feature_affinity_backward_kernel(_np(grad), _np(features), _np(affinity), _np(dirs), out.numpy())
    return out
