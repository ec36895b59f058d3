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


def transition_stencil(edge, paths, lengths, beta):
    batch, height, width = edge.shape
    planes = edge.new_zeros((batch, paths.shape[0], height, width))
    norm = torch.ones_like(edge)
    for k, points in enumerate(_path_points(paths, lengths)):
        dy, dx = points[0]
        rows, x0, x1 = height - dy, max(0, -dx), min(width, width - dx)
        if rows <= 0 or x1 <= x0:
            continue
        value, _ = _max_along(edge, points, 0, x0, rows, x1 - x0)
        weight = (1 - value) ** beta
        planes[:, k, :rows, x0:x1] = weight
        norm[:, :rows, x0:x1] += weight               # forward neighbour p + o_k
        norm[:, dy:, x0 + dx:x1 + dx] += weight       # backward neighbour: column p + o_k
    return planes, norm


class _PaddedWalk:
    """Zero-padded ping-pong buffers of a walk and its stencil, applied with shifted views.

    ``buffers[i]`` are [B, C, H + 2P, W + 2P] in ``dtype``; ``apply(i, out)`` writes ``P v`` of
    ``buffers[i]`` into ``out`` ([B, C, h, w] view). Planes are zero across the border, so every
    shifted slice stays in bounds and off-grid neighbours weigh nothing.
    """

    def __init__(self, x, planes, inv_norm, dirs, dtype):
        height, width = x.shape[-2:]
        dirs_list = [tuple(d) for d in dirs.tolist()]
        self.pad = pad = reach(dirs_list)
        self.height, self.width = height, width
        planes_p = F.pad(planes.to(dtype), (pad, pad, pad, pad)).unsqueeze(2)  # [B, D, 1, H+2P, W+2P]
        self.inv = inv_norm.to(dtype).unsqueeze(1)
        shifts = [(dy, dx) for dy, dx in dirs_list] + [(-dy, -dx) for dy, dx in dirs_list]
        self.weights = ([self.window(planes_p[:, k], 0, 0) for k in range(len(dirs_list))] +   # S_k(p)
                        [self.window(planes_p[:, k], -dy, -dx) for k, (dy, dx) in enumerate(dirs_list)])  # S_k(p - o_k)
        self.buffers = [F.pad(x.to(dtype), (pad, pad, pad, pad)), F.pad(x.to(dtype), (pad, pad, pad, pad))]
        self.neighbours = [[self.window(buf, dy, dx) for dy, dx in shifts] for buf in self.buffers]
        # On the CPU one foreach call replaces 2 D Python-level ops per step (no GPU: there the
        # fused foreach kernels must not see the same output twice).
        self.fused = x.device.type == "cpu" and hasattr(torch, "_foreach_addcmul_") and bool(self.weights)

    def window(self, t, dy, dx):
        pad = self.pad
        return t[..., pad + dy:pad + dy + self.height, pad + dx:pad + dx + self.width]

    def interior(self, i):
        return self.window(self.buffers[i], 0, 0)

    def apply(self, i, out):
        # the neighbours summed from 0, the centre added last (kernels/random_walk.h: far less
        # float32 rounding than a sum started at the centre)
        out.zero_()
        if self.fused:
            torch._foreach_addcmul_([out] * len(self.weights), self.weights, self.neighbours[i])
        else:
            for weight, neighbour in zip(self.weights, self.neighbours[i]):
                out.addcmul_(weight, neighbour)
        out.add_(self.interior(i)).mul_(self.inv)


def random_walk(x, planes, inv_norm, dirs, steps):
    if x.numel() == 0 or steps == 0:
        return x.clone()
    walk = _PaddedWalk(x, planes, inv_norm, dirs, x.dtype)
    src = 0
    for _ in range(steps):
        walk.apply(src, walk.interior(1 - src))
        src = 1 - src
    return walk.interior(src).contiguous()


def random_walk_chebyshev(x, planes, inv_norm, dirs, coefficients):
    """``sum_k c_k T_k(P) x`` (kernels/random_walk.h): one pass per degree, v_{k+1} written over
    v_{k-1}; the passes in the input dtype as the C++ kernels, the sum of c_k v_k in float64."""
    coefficients = [float(c) for c in coefficients]
    if x.numel() == 0:
        return x.clone()
    walk = _PaddedWalk(x, planes, inv_norm, dirs, x.dtype)
    applied = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    result = x.to(torch.float64) * coefficients[0]
    cur = 0
    for k in range(1, len(coefficients)):
        nxt = walk.interior(1 - cur)  # v_{k-2} (ignored for k == 1), becomes v_k
        walk.apply(cur, applied)
        if k == 1:
            nxt.copy_(applied)
        else:
            nxt.copy_(applied.mul_(2).sub_(nxt))
        if coefficients[k] != 0.0:
            result.add_(nxt, alpha=coefficients[k])
        cur = 1 - cur
    return result.to(x.dtype)


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
