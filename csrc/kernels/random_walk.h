// Random-walk arithmetic per pixel: one normalised stencil step, and one fused pass of the
// Chebyshev evaluation of P ** n (docs/chebyshev.md). Header-only, no includes beyond common.h,
// so the CPU build, nvcc and NVRTC (CuPy) compile it as it is.
//
// Layout (GPU form, no padding): one image's values [height, width] per channel, planes
// [num_dirs, height, width] (S_k(p) = A(p, p + o_k) ** beta, 0 where p + o_k is off the grid),
// inv_norm [height, width] (1 / d(p)), dirs [num_dirs, 2] the half-plane offsets (dy >= 0, dx).
//
// Chebyshev pass k (k >= 1) for coefficients c_0 .. c_d, on two value buffers and an accumulator:
//   v_1     = P v_0                       (first pass: `current` holds v_0; `previous` is the
//                                          other buffer, its contents ignored, and becomes v_1)
//   v_{k+1} = 2 P v_k - v_{k-1}           (written over v_{k-1}: pixel p reads only v_{k-1}(p))
//   result += c_{k+1} v_{k+1}             (result starts as c_0 v_0)
// so the buffers ping-pong and nothing is allocated per degree. `acc_t` is the arithmetic type of
// a pass and of the accumulator: double for float32 storage keeps the float32 result closer to
// float64 than the reference's own float32 walk; the stored v_k are rounded to scalar_t once.
#pragma once
#include "common.h"

namespace irnet_fast {
namespace kernels {

// (P v)(p) = inv_norm(p) * (v(p) + sum_k S_k(p) v(p + o_k) + sum_k S_k(p - o_k) v(p - o_k)),
// summed in acc_t: forward and backward neighbour per direction from 0, the self loop last (a
// sum that starts at v(p) rounds every small term against a large one: in float32, 256 steps
// end 15 times farther from float64); for CB channels at once (each plane value loaded once for
// all of them). The values are read through
// their own layout (the image, or a tile of it in GPU shared memory): channel c of pixel (y, x)
// at values[c * channel_stride + at], rows value_width apart.
template <typename scalar_t, typename acc_t, int CB>
IRNET_HD void walk_apply_channels(const scalar_t* values, long long channel_stride, int value_width, long long at,
                                  const scalar_t* planes, const scalar_t* inv_norm, const int* dirs, int num_dirs,
                                  int height, int width, int y, int x, acc_t* out) {
  const long long plane = (long long)height * width;
  const long long p = (long long)y * width + x;
  acc_t acc[CB];
  for (int c = 0; c < CB; ++c) acc[c] = acc_t(0);
  for (int k = 0; k < num_dirs; ++k) {
    const int dy = dirs[2 * k], dx = dirs[2 * k + 1];
    const long long offset = (long long)dy * value_width + dx;
    const int fy = y + dy, fx = x + dx;
    if (fy < height && fx >= 0 && fx < width) {
      const acc_t s = (acc_t)planes[k * plane + p];
      for (int c = 0; c < CB; ++c) acc[c] += s * (acc_t)values[c * channel_stride + at + offset];
    }
    const int by = y - dy, bx = x - dx;
    if (by >= 0 && bx >= 0 && bx < width) {
      const acc_t s = (acc_t)planes[k * plane + (long long)by * width + bx];
      for (int c = 0; c < CB; ++c) acc[c] += s * (acc_t)values[c * channel_stride + at - offset];
    }
  }
  const acc_t inv = (acc_t)inv_norm[p];
  for (int c = 0; c < CB; ++c) out[c] = ((acc_t)values[c * channel_stride + at] + acc[c]) * inv;
}

// (P v)(p) of one channel stored as the image itself.
template <typename scalar_t, typename acc_t>
IRNET_HD acc_t walk_apply_at(const scalar_t* values, const scalar_t* planes, const scalar_t* inv_norm,
                             const int* dirs, int num_dirs, int height, int width, int y, int x) {
  acc_t out;
  walk_apply_channels<scalar_t, acc_t, 1>(values, 0, width, (long long)y * width + x, planes, inv_norm, dirs,
                                          num_dirs, height, width, y, x, &out);
  return out;
}

// One plain random-walk step at pixel (y, x) of one channel, in the storage type.
template <typename scalar_t>
IRNET_HD scalar_t walk_step_at(const scalar_t* values, const scalar_t* planes, const scalar_t* inv_norm,
                               const int* dirs, int num_dirs, int height, int width, int y, int x) {
  return walk_apply_at<scalar_t, scalar_t>(values, planes, inv_norm, dirs, num_dirs, height, width, y, x);
}

// The three-term update of one pixel once (P v_k)(p) is known: v_{k+1} = 2 P v_k - v_{k-1}, or
// P v_0 on the first pass. Overwrites *previous (v_{k-1}) with v_{k+1} rounded to scalar_t and
// adds coefficient * v_{k+1} (as stored) to *result. The CPU loops call this with SIMD vectors.
template <typename scalar_t, typename acc_t>
IRNET_HD void chebyshev_update(acc_t applied, bool first, acc_t coefficient, scalar_t* previous, acc_t* result) {
  const acc_t next = first ? applied : acc_t(2) * applied - (acc_t)*previous;
  const scalar_t stored = (scalar_t)next;
  *previous = stored;
  *result += coefficient * (acc_t)stored;
}

// One fused Chebyshev pass at pixel (y, x) of one channel: `current` = v_k, `previous` = v_{k-1}
// (replaced by v_{k+1}; on the first pass read nowhere), `result` the accumulator, all
// [height, width]; `coefficient` is c_{k+1}.
template <typename scalar_t, typename acc_t>
IRNET_HD void chebyshev_pass_at(const scalar_t* current, scalar_t* previous, acc_t* result, const scalar_t* planes,
                                const scalar_t* inv_norm, const int* dirs, int num_dirs, int height, int width,
                                acc_t coefficient, bool first, int y, int x) {
  const long long p = (long long)y * width + x;
  const acc_t applied = walk_apply_at<scalar_t, acc_t>(current, planes, inv_norm, dirs, num_dirs, height, width, y, x);
  chebyshev_update<scalar_t, acc_t>(applied, first, coefficient, previous + p, result + p);
}

}  // namespace kernels
}  // namespace irnet_fast
