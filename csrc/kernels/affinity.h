// Path affinity arithmetic: max of the boundary map along a straight path (REFERENCE.md 2).
// Header-only, no includes beyond common.h and random_walk.h, so NVRTC (CuPy) compiles it as it is.
#pragma once
#include "common.h"
// walk_step_at and the Chebyshev pass, for the files that include only this header
#include "random_walk.h"

namespace irnet_fast {
namespace kernels {

// Max of `edge` ([height, width] row-major) over the points of one path, starting from the
// source (sy, sx). `path` holds `length` (dy, dx) pairs, destination first, source last.
// Ties keep the first maximal point in path order, as max_pool2d does in the reference.
template <typename scalar_t>
IRNET_HD scalar_t path_max(const scalar_t* edge, int width, int sy, int sx, const int* path,
                           int length, int* arg) {
  scalar_t best = edge[(sy + path[0]) * width + sx + path[1]];
  int best_point = 0;
  for (int j = 1; j < length; ++j) {
    const scalar_t v = edge[(sy + path[2 * j]) * width + sx + path[2 * j + 1]];
    if (v > best) {
      best = v;
      best_point = j;
    }
  }
  *arg = best_point;
  return best;
}

// Gradient of `1 - path_max` reaching edge pixel (y, x): minus the sum of the upstream
// gradients of every (direction, source) whose arg-max path point lands on (y, x).
// grad/argmax: [num_dirs, crop_h, crop_w] of one image; crop origin is column radius_floor.
template <typename scalar_t>
IRNET_HD scalar_t path_affinity_grad_at(const scalar_t* grad, const unsigned char* argmax,
                                        const int* paths, const int* lengths, int num_dirs,
                                        int max_len, int crop_h, int crop_w, int radius_floor,
                                        int y, int x) {
  scalar_t acc = 0;
  const long long plane = (long long)crop_h * crop_w;
  for (int k = 0; k < num_dirs; ++k) {
    const int* path = paths + 2 * k * max_len;
    for (int j = 0; j < lengths[k]; ++j) {
      const int ci = y - path[2 * j];
      const int cj = x - path[2 * j + 1] - radius_floor;
      if (ci < 0 || ci >= crop_h || cj < 0 || cj >= crop_w) continue;
      const long long at = k * plane + (long long)ci * crop_w + cj;
      if (argmax[at] == j) acc -= grad[at];
    }
  }
  return acc;
}

// base ** exponent; small integral exponents (beta = 10 in IRNet) by repeated squaring, which is
// several times faster than pow and within a few ulps of it.
template <typename scalar_t>
IRNET_HD scalar_t power(scalar_t base, scalar_t exponent) {
  if (exponent >= 0 && exponent <= 64 && scalar_t((int)exponent) == exponent) {
    scalar_t result = 1;
    for (int e = (int)exponent; e > 0; e >>= 1) {
      if (e & 1) result *= base;
      base *= base;
    }
    return result;
  }
  return pow(base, exponent);
}

// One plane value of the transition stencil: affinity(p, p + o_k) ** beta, or 0 where the
// destination p + o_k = (y + dy, x + dx) lies outside the grid (dy >= 0 always).
template <typename scalar_t>
IRNET_HD scalar_t stencil_weight(const scalar_t* edge, int height, int width, int y, int x,
                                 const int* path, int length, scalar_t beta) {
  const int dy = path[0], dx = path[1];
  if (y + dy >= height || x + dx < 0 || x + dx >= width) return scalar_t(0);
  int arg;
  const scalar_t affinity = scalar_t(1) - path_max(edge, width, y, x, path, length, &arg);
  return power(affinity, beta);
}

// Column sum of the transition at (y, x): self loop + forward + backward neighbours.
// planes: [num_dirs, height, width]; dirs: [num_dirs, 2] destinations (dy, dx).
template <typename scalar_t>
IRNET_HD scalar_t stencil_norm_at(const scalar_t* planes, const int* dirs, int num_dirs,
                                  int height, int width, int y, int x) {
  const long long plane = (long long)height * width;
  scalar_t sum = 1;
  for (int k = 0; k < num_dirs; ++k) {
    sum += planes[k * plane + (long long)y * width + x];
    const int by = y - dirs[2 * k], bx = x - dirs[2 * k + 1];
    if (by >= 0 && bx >= 0 && bx < width) sum += planes[k * plane + (long long)by * width + bx];
  }
  return sum;
}

}  // namespace kernels
}  // namespace irnet_fast
