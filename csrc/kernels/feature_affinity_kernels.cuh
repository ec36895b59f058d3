// __global__ kernels of feature_affinity and its backward (feature_affinity.h, the CPU kernel's
// arithmetic in the same order). Used by cuda/feature_affinity_cuda.cu, CuPy and the emulated build.
#pragma once
#include "feature_affinity.h"

namespace irnet_fast {
namespace kernels {

// features [B, C, h, w], dirs [D, 2] -> out [B, D, h, w]; one thread per (image, direction, pixel)
template <typename scalar_t>
__global__ void feature_affinity_kernel(const scalar_t* __restrict__ f, const int* __restrict__ dirs,
                                        scalar_t* __restrict__ out, int batch, int channels, int height, int width,
                                        int num_dirs) {
  const long long plane = (long long)height * width;
  const long long total = (long long)batch * num_dirs * plane;
  const scalar_t inv_channels = (scalar_t)1 / (scalar_t)channels;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    const long long p = i % plane, bk = i / plane;
    const int k = (int)(bk % num_dirs);
    const long long b = bk / num_dirs;
    const int y = (int)(p / width), x = (int)(p % width);
    const int ty = y + dirs[2 * k], tx = x + dirs[2 * k + 1];
    scalar_t value = 0;
    if (ty < height && tx >= 0 && tx < width) {
      const scalar_t* fb = f + b * channels * plane;
      const long long q = (long long)ty * width + tx;
      scalar_t sum = 0;
      for (int c = 0; c < channels; ++c) sum += abs_diff(fb[c * plane + p], fb[c * plane + q]);
      value = feature_affinity_from_sum(sum, inv_channels);
    }
    out[i] = value;
  }
}

// grad, affinity [B, D, h, w], features [B, C, h, w] -> out [B, C, h, w]; one thread per
// (image, channel, pixel) gathers its D outgoing and D incoming pairs (no atomics)
template <typename scalar_t>
__global__ void feature_affinity_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ f,
                                                 const scalar_t* __restrict__ aff, const int* __restrict__ dirs,
                                                 scalar_t* __restrict__ out, int batch, int channels, int height,
                                                 int width, int num_dirs) {
  const long long plane = (long long)height * width;
  const long long total = (long long)batch * channels * plane;
  const scalar_t inv_channels = (scalar_t)1 / (scalar_t)channels;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    const long long p = i % plane, bc = i / plane;
    const long long b = bc / channels;
    const int y = (int)(p / width), x = (int)(p % width);
    const scalar_t* fc = f + bc * plane;
    const scalar_t here = fc[p];
    scalar_t acc = 0;
    for (int k = 0; k < num_dirs; ++k) {
      const int dy = dirs[2 * k], dx = dirs[2 * k + 1];
      const long long base = (b * num_dirs + k) * plane;
      const int ty = y + dy, tx = x + dx;
      if (ty < height && tx >= 0 && tx < width) {  // outgoing pair (p, p + o)
        const scalar_t w = feature_affinity_weight(grad[base + p], aff[base + p], inv_channels);
        acc += w * sign_of(here - fc[(long long)ty * width + tx]);
      }
      const int sy = y - dy, sx = x - dx;
      if (sy >= 0 && sx >= 0 && sx < width) {  // incoming pair (p - o, p)
        const long long s = (long long)sy * width + sx;
        const scalar_t w = feature_affinity_weight(grad[base + s], aff[base + s], inv_channels);
        acc -= w * sign_of(fc[s] - here);
      }
    }
    out[i] = acc;
  }
}

}  // namespace kernels
}  // namespace irnet_fast
