"""Vectorised pure-PyTorch backend (any device) with the interface every backend shares.

Interface (all tensors validated, contiguous, on one device, float32 or float64):
  path_affinity(edge[B,H,W], paths[D,L,2], lengths[D], radius_floor) -> (affinity, argmax uint8)
      both [B, D, H - rf, W - 2 rf]; affinity = 1 - max of edge along each path
  transition_stencil(edge[B,h,w], paths, lengths, beta) -> (planes[B,D,h,w], norm[B,h,w])
  random_walk(x[B,C,h,w], planes, inv_norm[B,h,w], dirs[D,2], steps) -> [B,C,h,w]
  random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients) -> [B,C,h,w]: sum_k c_k T_k(P) x
      (optional: backends without it get the recurrence over their single-step random_walk)
Here path_affinity is differentiable through native autograd (DIFFERENTIABLE = True). Backends
whose path_affinity is not (DIFFERENTIABLE = False: numba, cupy) also provide
  path_affinity_backward(grad, argmax, paths, lengths, radius_floor, height, width) -> grad_edge
"""
from __future__ import annotations

import warnings
from typing import List, Tuple

import torch
import torch.nn.functional as F

from ._walk_grad import reach

DIFFERENTIABLE = True


def _path_points(paths: torch.Tensor, lengths: torch.Tensor) -> List[List[Tuple[int, int]]]:
    paths_list, lengths_list = paths.tolist(), lengths.tolist()
    return [[tuple(p) for p in path[:n]] for path, n in zip(paths_list, lengths_list)]


def _max_along(edge: torch.Tensor, points, top: int, left: int, height: int, width: int):
    """Max and first arg-max (path order) of ``edge`` over windows shifted by ``points``.

    A running maximum: strict ``>`` keeps the first maximal point, as the reference's max-pool.
    """
    def window(py, px):
        return edge[:, top + py:top + py + height, left + px:left + px + width]

    best = window(*points[0])
    arg = torch.zeros(best.shape, dtype=torch.uint8, device=edge.device)
    for j, (py, px) in enumerate(points[1:], start=1):
        value = window(py, px)
        larger = value > best
        best = torch.where(larger, value, best)
        arg.masked_fill_(larger, j)
    return best, arg


def _max_value_along(edge: torch.Tensor, points, top: int, left: int, height: int, width: int):
    """The maximum of :func:`_max_along` alone (no gradient needed): one op per point, not three."""
    windows = [edge[:, top + py:top + py + height, left + px:left + px + width] for py, px in points]
    best = windows[0].clone()
    for value in windows[1:]:
        torch.maximum(best, value, out=best)
    return best


def _chosen_points(argmax, paths, radius_floor, width):
    """Flat edge index ``[B, D, M]`` of the arg-max point of every (direction, source)."""
    batch, num_dirs, crop_h, crop_w = argmax.shape
    arg = argmax.reshape(batch, num_dirs, crop_h * crop_w).long()
    table = paths.long().unsqueeze(0).expand(batch, -1, -1, -1)  # [B, D, L, 2]
    py = table[..., 0].gather(2, arg)
    px = table[..., 1].gather(2, arg)
    rows = torch.arange(crop_h, device=argmax.device).view(-1, 1)
    cols = torch.arange(crop_w, device=argmax.device).view(1, -1) + radius_floor
    source = (rows * width + cols).reshape(1, 1, -1)
    return source + py * width + px


def path_affinity(edge, paths, lengths, radius_floor):
    batch, height, width = edge.shape
    crop_h, crop_w = height - radius_floor, width - 2 * radius_floor
    with torch.no_grad():
        argmax = [_max_along(edge, points, 0, radius_floor, crop_h, crop_w)[1]
                  for points in _path_points(paths, lengths)]
        argmax = (torch.stack(argmax, 1) if argmax
                  else torch.zeros((batch, 0, crop_h, crop_w), dtype=torch.uint8, device=edge.device))
        index = _chosen_points(argmax, paths, radius_floor, width)
    # One differentiable gather: autograd routes each gradient to the chosen point.
    chosen = edge.reshape(batch, height * width).gather(1, index.reshape(batch, index.shape[1:].numel()))
    return (1 - chosen).view(argmax.shape), argmax


def _power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """affinity.h ``power()``: an integral exponent in [0, 64] by repeated squaring (the kernels'
    rounding, and a few multiplies instead of ``pow``), any other through ``pow``."""
    if not (0 <= exponent <= 64 and float(int(exponent)) == exponent):
        return base ** exponent
    result, e = None, int(exponent)
    while e > 0:
        if e & 1:
            result = base.clone() if result is None else result.mul_(base)
        e >>= 1
        if e:
            base = base * base
    return torch.ones_like(base) if result is None else result


def transition_stencil(edge, paths, lengths, beta):
    batch, height, width = edge.shape
    planes = edge.new_zeros((batch, paths.shape[0], height, width))
    norm = torch.ones_like(edge)
    for k, points in enumerate(_path_points(paths, lengths)):
        dy, dx = points[0]
        rows, x0, x1 = height - dy, max(0, -dx), min(width, width - dx)
        if rows <= 0 or x1 <= x0:
            continue
        value = _max_value_along(edge, points, 0, x0, rows, x1 - x0)
        weight = _power(1 - value, beta)
        planes[:, k, :rows, x0:x1] = weight
        norm[:, :rows, x0:x1] += weight               # forward neighbour p + o_k
        norm[:, dy:, x0 + dx:x1 + dx] += weight       # backward neighbour: column p + o_k
    return planes, norm


#: Grids (pixels of the batch) up to which a CPU walk of several passes is one sparse product
#: per pass: there the 2 D shifted products of a pass cost more in per-op overhead than in
#: arithmetic. Measured (2-core Xeon, 3 channels, whole Chebyshev walk, shifted / sparse): 64x64
#: 18.1 / 14.6 ms, 94x125 38.6 / 33.0 ms, 128x128 46.6 / 46.4 ms, 256x512 330 / 400 ms.
SPARSE_MAX_PIXELS = 128 * 128
_SPARSE_MIN_PASSES = 4


class _FlatGrid:
    """The zero-padded grid of a walk, flattened: ``[H + 2P, W + 2P]`` is ``L`` values per channel.

    A pass writes the run from the first to the last interior pixel (``n`` values, the padding
    columns between the rows included), so every neighbour ``p + o`` of the run is the same run
    shifted by the flat offset ``o = dy (W + 2P) + dx``. Planes and the inverse norm are zero
    outside the interior, so off-grid neighbours weigh nothing and the padding stays 0.
    """

    def __init__(self, x, planes, inv_norm, dirs):
        height, width = x.shape[-2:]
        dtype = x.dtype
        dirs_list = [tuple(d) for d in dirs.tolist()]
        self.pad = pad = reach(dirs_list)
        self.height, self.width = height, width
        self.row_stride = stride = width + 2 * pad
        self.length = (height + 2 * pad) * stride
        self.start, self.n = pad * stride + pad, (height - 1) * stride + width
        offsets = [dy * stride + dx for dy, dx in dirs_list]
        flat_planes = self.flat(planes.to(dtype))                 # [B, D, L]
        self.inv_run = self.run(self.flat(inv_norm.to(dtype).unsqueeze(1))[:, 0], 0)  # [B, n]
        # S_k(p) pairs with v(p + o_k), S_k(p - o_k) with v(p - o_k); the centre (weight 1) apart
        self.pairs = ([(self.run(flat_planes[:, k], 0), o) for k, o in enumerate(offsets)] +
                      [(self.run(flat_planes[:, k], -o), -o) for k, o in enumerate(offsets)])

    def flat(self, t):
        """``[B, K, h, w]`` -> ``[B, K, L]``, zero-padded."""
        pad = self.pad
        return F.pad(t, (pad, pad, pad, pad)).flatten(2)

    def run(self, t, offset):
        """The run shifted by ``offset`` of a ``[..., L]`` tensor."""
        return t[..., self.start + offset:self.start + offset + self.n]

    def interior(self, t):
        """``[B, K, h, w]`` of a ``[B, K, L]`` tensor."""
        return t.view(*t.shape[:2], -1, self.row_stride)[..., self.pad:self.pad + self.height,
                                                          self.pad:self.pad + self.width].contiguous()


class _ShiftedWalk(_FlatGrid):
    """``P`` as the 2 D shifted products of contiguous runs (any device); buffers ``[B, C, L]``."""

    def __init__(self, x, planes, inv_norm, dirs):
        super().__init__(x, planes, inv_norm, dirs)
        self.inv = self.inv_run.unsqueeze(1).contiguous()                 # [B, 1, n]
        self.weights = [weight.unsqueeze(1).contiguous() for weight, _ in self.pairs]
        values = self.flat(x).contiguous()
        self.buffers = [values, torch.zeros_like(values)]
        self.neighbours = [[self.run(buf, o) for _, o in self.pairs] for buf in self.buffers]
        self.applied = torch.empty_like(self.run(values, 0))
        # On the CPU one foreach call replaces 2 D Python-level ops per pass (no GPU: there the
        # fused foreach kernels must not see the same output twice).
        self.fused = x.device.type == "cpu" and hasattr(torch, "_foreach_addcmul_") and bool(self.pairs)

    def _apply(self, i, out):
        # the neighbours summed from 0, the centre added last (kernels/random_walk.h: far less
        # float32 rounding than a sum started at the centre)
        out.zero_()
        if self.fused:
            torch._foreach_addcmul_([out] * len(self.weights), self.weights, self.neighbours[i])
        else:
            for weight, neighbour in zip(self.weights, self.neighbours[i]):
                out.addcmul_(weight, neighbour)
        out.add_(self.run(self.buffers[i], 0)).mul_(self.inv)

    def step(self, i):
        """buffer ``1 - i`` = ``P`` buffer ``i``."""
        self._apply(i, self.run(self.buffers[1 - i], 0))

    def chebyshev_step(self, i):
        """buffer ``1 - i`` = ``2 P`` buffer ``i`` - buffer ``1 - i``."""
        self._apply(i, self.applied)
        nxt = self.run(self.buffers[1 - i], 0)
        nxt.copy_(self.applied.mul_(2).sub_(nxt))

    def grid(self, t):
        return self.interior(t)


class _SparseWalk(_FlatGrid):
    """``P`` as one sparse CSR product (CPU, small grids): buffers ``[B L, C]``, a row of ``P``
    per value, the run's rows with the 2 D + 1 stencil entries in increasing column order
    (explicit zeros off the grid), the other rows empty."""

    def __init__(self, x, planes, inv_norm, dirs):
        super().__init__(x, planes, inv_norm, dirs)
        batch, channels = x.shape[:2]
        pairs = self.pairs + [(torch.ones_like(self.inv_run), 0)]
        pairs.sort(key=lambda pair: pair[1])
        entries = len(pairs)
        entry_values = (torch.stack([w for w, _ in pairs], -1) * self.inv_run.unsqueeze(-1)).reshape(-1)
        offsets = torch.tensor([o for _, o in pairs], dtype=torch.int32)
        # int32 indices (the grids here are small): the form the sparse kernels take natively
        first = (torch.arange(batch, dtype=torch.int32).view(-1, 1) * self.length + self.start
                 + torch.arange(self.n, dtype=torch.int32)).view(-1)             # each run's rows
        columns = (first.view(-1, 1) + offsets.view(1, -1)).reshape(-1)
        counts = torch.zeros(batch * self.length, dtype=torch.int32)
        counts[first.long()] = entries
        rows = F.pad(torch.cumsum(counts, 0, dtype=torch.int32), (1, 0))
        size = batch * self.length
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = torch.sparse_csr_tensor(rows, columns, entry_values, (size, size),
                                                  check_invariants=False)
        values = self.flat(x).transpose(1, 2).reshape(size, channels)
        self.buffers = [values, torch.zeros_like(values)]
        self.batch, self.channels = batch, channels

    def step(self, i):
        torch.mm(self.matrix, self.buffers[i], out=self.buffers[1 - i])

    def chebyshev_step(self, i):
        self.buffers[1 - i].addmm_(self.matrix, self.buffers[i], beta=-1, alpha=2)

    def grid(self, t):
        return self.interior(t.view(self.batch, self.length, self.channels).transpose(1, 2))


def _walk_of(x, planes, inv_norm, dirs, passes):
    sparse = (x.device.type == "cpu" and passes >= _SPARSE_MIN_PASSES
              and x.shape[0] * x.shape[2] * x.shape[3] <= SPARSE_MAX_PIXELS)
    return (_SparseWalk if sparse else _ShiftedWalk)(x, planes, inv_norm, dirs)


def random_walk(x, planes, inv_norm, dirs, steps):
    if x.numel() == 0 or steps == 0:
        return x.clone()
    walk = _walk_of(x, planes, inv_norm, dirs, steps)
    for step in range(steps):
        walk.step(step % 2)
    return walk.grid(walk.buffers[steps % 2])


def random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients):
    """``sum_k c_k T_k(P) x`` (kernels/random_walk.h): one pass per degree, v_{k+1} written over
    v_{k-1}; the passes in the input dtype as the C++ kernels, the sum of c_k v_k in float64."""
    coefficients = [float(c) for c in coefficients]
    if x.numel() == 0:
        return x.clone()
    walk = _walk_of(x, planes, inv_norm, dirs, len(coefficients) - 1)
    result = walk.buffers[0].to(torch.float64) * coefficients[0]
    for k in range(1, len(coefficients)):  # v_k into the buffer of v_{k-2}
        src = (k - 1) % 2
        if k == 1:
            walk.step(src)
        else:
            walk.chebyshev_step(src)
        if coefficients[k] != 0.0:
            result.add_(walk.buffers[1 - src], alpha=coefficients[k])
    return walk.grid(result).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# instances (docs/algorithm.md, "Instances"): find_centroids(displacement[2,h,w], iterations) -> int32 [2,h,w]
# and label_components(mask[h,w] bool) -> (int64 labels [h,w], count)
# ----------------------------------------------------------------------------------------------

_CHECK_EVERY = 8  # steps between the (synchronising) checks for centroids that stopped moving


def _centroid_step(d0, d1, width, max_y, max_x, cy, cx):
    """One refinement step of centroids cy, cx (float32, 1-D) with the reference's arithmetic:
    float64 weights and four-term sums, each update rounded back to float32 (kernels/instances.h)."""
    dy, dx = cy.floor(), cx.floor()
    uy, ux = cy.ceil().long(), cx.ceil().long()
    fy, fx = cy.double() - dy.double(), cx.double() - dx.double()
    gy, gx = 1.0 - fy, 1.0 - fx
    dy, dx = dy.long(), dx.long()
    i_uu, i_du, i_ud, i_dd = uy * width + ux, dy * width + ux, uy * width + dx, dy * width + dx

    def sample(d):
        return d[i_uu] * fy * fx + d[i_du] * gy * fx + d[i_ud] * fy * gx + d[i_dd] * gy * gx

    ny = (cy.double() + sample(d0)).float().clamp_(0, max_y)
    nx = (cx.double() + sample(d1)).float().clamp_(0, max_x)
    return ny, nx


def find_centroids(displacement, iterations):
    _, height, width = displacement.shape
    device = displacement.device
    num = height * width
    out = torch.empty((2, height, width), dtype=torch.int32, device=device)
    if num == 0:
        return out
    d0 = displacement[0].reshape(-1).double()
    d1 = displacement[1].reshape(-1).double()
    flat = torch.arange(num, device=device)
    cy, cx = (flat // width).float(), (flat % width).float()
    final_y, final_x = cy.clone(), cx.clone()
    active = flat
    for step in range(int(iterations)):
        ny, nx = _centroid_step(d0, d1, width, float(height - 1), float(width - 1), cy, cx)
        if step % _CHECK_EVERY == _CHECK_EVERY - 1:
            # a centroid that did not move is a fixed point of the step: store it and drop it
            moved = (ny != cy) | (nx != cx)
            final_y[active], final_x[active] = ny, nx
            active, ny, nx = active[moved], ny[moved], nx[moved]
        cy, cx = ny, nx
        if active.numel() == 0:
            break
    final_y[active], final_x[active] = cy, cx
    out[0] = torch.round(final_y).view(height, width).int()  # round half to even, as NumPy
    out[1] = torch.round(final_x).view(height, width).int()
    return out


def label_components(mask):
    """4-connected components of ``mask`` [h, w] (bool), numbered 1, 2, ... in raster order of
    their first pixel (0 outside the mask), as scipy.ndimage.label: returns (labels int64, count).

    Min-label propagation with pointer jumping: every pixel starts with its own raster index, takes
    the smallest label among its 4 neighbours, then the label of the pixel its label names; a
    component ends with the index of its first pixel, and sorting those gives the numbering.
    """
    height, width = mask.shape
    num = height * width
    if num == 0 or not bool(mask.any()):
        return torch.zeros((height, width), dtype=torch.int64, device=mask.device), 0
    none = num  # the label of pixels outside the mask: larger than any index
    index = torch.arange(num, device=mask.device).view(height, width)
    labels = torch.where(mask, index, torch.full_like(index, none))
    while True:
        previous = labels
        for _ in range(4):
            best = labels.clone()
            best[1:] = torch.minimum(best[1:], labels[:-1])
            best[:-1] = torch.minimum(best[:-1], labels[1:])
            best[:, 1:] = torch.minimum(best[:, 1:], labels[:, :-1])
            best[:, :-1] = torch.minimum(best[:, :-1], labels[:, 1:])
            best = torch.where(mask, best, none)
            # a label is the index of a pixel of the same component whose label is no larger
            flat = torch.cat([best.reshape(-1), best.new_full((1,), none)])
            labels = torch.minimum(best, flat[best])
        if torch.equal(labels, previous):
            break
    roots, inverse = torch.unique(labels[mask], return_inverse=True)
    out = torch.zeros((height, width), dtype=torch.int64, device=mask.device)
    out[mask] = inverse + 1
    return out, int(roots.numel())


# ----------------------------------------------------------------------------------------------
# feature affinity (AffinityNet): feature_affinity(features[B,C,h,w], dirs[D,2]) -> [B,D,h,w]
# exp(-mean_c |f_c(p) - f_c(p + o_k)|), 0 off the grid; and its backward (grad, features, affinity)
# ----------------------------------------------------------------------------------------------

def feature_affinity(features, dirs):
    from ._walk_grad import stencil_windows
    batch, channels, height, width = features.shape
    out = features.new_zeros((batch, len(dirs), height, width))
    for k, rows, x0, x1, dy, dx in stencil_windows(dirs.tolist(), height, width):
        diff = features[:, :, :rows, x0:x1] - features[:, :, dy:, x0 + dx:x1 + dx]
        out[:, k, :rows, x0:x1] = torch.exp(diff.abs_().sum(1) * (-1.0 / channels))
    return out


def feature_affinity_backward(grad, features, affinity, dirs):
    """``d/df_c(p) = sum_k w_k(p) sgn(f_c(p) - f_c(p + o_k)) - w_k(p - o_k) sgn(f_c(p - o_k) - f_c(p))``
    with ``w_k = -grad_k a_k / C`` (the sign of 0 is 0, as autograd's ``abs``)."""
    from ._walk_grad import stencil_windows
    batch, channels, height, width = features.shape
    out = torch.zeros_like(features)
    for k, rows, x0, x1, dy, dx in stencil_windows(dirs.tolist(), height, width):
        weight = (grad[:, k, :rows, x0:x1] * affinity[:, k, :rows, x0:x1]).mul_(-1.0 / channels)
        term = torch.sign(features[:, :, :rows, x0:x1] - features[:, :, dy:, x0 + dx:x1 + dx]).mul_(weight.unsqueeze(1))
        out[:, :, :rows, x0:x1] += term
        out[:, :, dy:, x0 + dx:x1 + dx] -= term
    return out
