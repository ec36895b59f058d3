// __global__ kernels of path_affinity, its backward and transition_stencil, shared by the CUDA
// launchers (cuda/affinity_cuda.cu), the CuPy backend (NVRTC, through cuda_kernels.cuh) and the
// emulated test build. Per-element arithmetic in affinity.h, which the CPU build uses too.
#pragma once
#include "affinity.h"

namespace irnet_fast {
namespace kernels {

// Tiles of the path affinity kernels: kAffinityTileW x kAffinityTileH sources (forward) or edge
// pixels (backward) per block, one thread each; rows of 32 keep the reads and writes coalesced.
constexpr int kAffinityTileW = 32;
constexpr int kAffinityTileH = 8;

// edge [B, H, W] -> affinity, argmax [B, D, crop_h, crop_w]; paths [D, max_len, 2], lengths [D].
// grid (tiles_y * tiles_x, B), block kAffinityTileW * kAffinityTileH threads. The block stages
// the edge pixels its sources' paths can reach (tile + radius_floor below, + 2 radius_floor to
// the right) in shared memory once, then serves every direction from there; consecutive threads
// write consecutive sources of one direction. No atomics.
// Dynamic shared memory: (kAffinityTileH + rf) * (kAffinityTileW + 2 rf) scalars.
template <typename scalar_t>
__global__ void path_affinity_kernel(const scalar_t* __restrict__ edge, const int* __restrict__ paths,
                                     const int* __restrict__ lengths, scalar_t* __restrict__ affinity,
                                     unsigned char* __restrict__ argmax, int B, int H, int W, int D,
                                     int max_len, int radius_floor) {
  IRNET_DYNAMIC_SHARED(scalar_t, region);
  const int crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  const int region_h = kAffinityTileH + radius_floor, region_w = kAffinityTileW + 2 * radius_floor;
  const int tiles_x = (crop_w + kAffinityTileW - 1) / kAffinityTileW;
  const int i0 = ((int)blockIdx.x / tiles_x) * kAffinityTileH, j0 = ((int)blockIdx.x % tiles_x) * kAffinityTileW;
  const int b = (int)blockIdx.y;
  const scalar_t* edge_b = edge + (long long)b * H * W;
  // region pixel (r, q) is edge pixel (i0 + r, j0 + q); the source (i, j) sits at column j + rf
  for (int t = threadIdx.x; t < region_h * region_w; t += blockDim.x) {
    const int y = i0 + t / region_w, x = j0 + t % region_w;
    region[t] = (y < H && x < W) ? edge_b[(long long)y * W + x] : scalar_t(0);  // 0: read by no valid source
  }
  __syncthreads();
  const int li = (int)threadIdx.x / kAffinityTileW, lj = (int)threadIdx.x % kAffinityTileW;
  const int i = i0 + li, j = j0 + lj;
  if (li >= kAffinityTileH || i >= crop_h || j >= crop_w) return;  // no barrier below
  const long long plane = (long long)crop_h * crop_w;
  const long long out = (long long)b * D * plane + (long long)i * crop_w + j;
  for (int k = 0; k < D; ++k) {
    int arg;
    const scalar_t m = path_max(region, region_w, li, lj + radius_floor, paths + 2 * k * max_len, lengths[k], &arg);
    affinity[out + k * plane] = scalar_t(1) - m;
    argmax[out + k * plane] = (unsigned char)arg;
  }
}

// grad, argmax [B, D, crop_h, crop_w] -> grad_edge [B, H, W]: a gather, no atomics.
// grid (tiles_y * tiles_x, B) over the edge map, block kAffinityTileW * kAffinityTileH threads.
// For each direction the block stages the gradient and arg-max of every source whose path can
// land in its tile (tile + rf above, + 2 rf to the left) in shared memory; each thread then adds
// the sources whose arg-max point is its pixel, in path_affinity_grad_at's order (exact).
// Dynamic shared memory: (kAffinityTileH + rf) * (kAffinityTileW + 2 rf) scalars, then as many bytes.
template <typename scalar_t>
__global__ void path_affinity_backward_kernel(const scalar_t* __restrict__ grad,
                                              const unsigned char* __restrict__ argmax,
                                              const int* __restrict__ paths, const int* __restrict__ lengths,
                                              scalar_t* __restrict__ grad_edge, int B, int H, int W, int D,
                                              int max_len, int crop_h, int crop_w, int radius_floor) {
  IRNET_DYNAMIC_SHARED(scalar_t, shared_grad);
  const int region_h = kAffinityTileH + radius_floor, region_w = kAffinityTileW + 2 * radius_floor;
  const int area = region_h * region_w;
  unsigned char* shared_arg = reinterpret_cast<unsigned char*>(shared_grad + area);
  const int tiles_x = (W + kAffinityTileW - 1) / kAffinityTileW;
  const int y0 = ((int)blockIdx.x / tiles_x) * kAffinityTileH, x0 = ((int)blockIdx.x % tiles_x) * kAffinityTileW;
  const int b = (int)blockIdx.y;
  const int ci0 = y0 - radius_floor, cj0 = x0 - 2 * radius_floor;  // region origin among the sources
  const int ly = (int)threadIdx.x / kAffinityTileW, lx = (int)threadIdx.x % kAffinityTileW;
  const int y = y0 + ly, x = x0 + lx;
  const long long plane = (long long)crop_h * crop_w;
  scalar_t acc = 0;
  for (int k = 0; k < D; ++k) {
    const long long at_k = ((long long)b * D + k) * plane;
    for (int t = threadIdx.x; t < area; t += blockDim.x) {
      const int ci = ci0 + t / region_w, cj = cj0 + t % region_w;
      const bool inside = ci >= 0 && ci < crop_h && cj >= 0 && cj < crop_w;
      shared_grad[t] = inside ? grad[at_k + (long long)ci * crop_w + cj] : scalar_t(0);
      shared_arg[t] = inside ? argmax[at_k + (long long)ci * crop_w + cj] : (unsigned char)255;  // > any point
    }
    __syncthreads();
    if (ly < kAffinityTileH) {
      const int* path = paths + 2 * k * max_len;
      for (int j = 0; j < lengths[k]; ++j) {
        // the source whose j-th path point is (y, x), in region coordinates
        const int r = y - path[2 * j] - ci0, q = x - path[2 * j + 1] - radius_floor - cj0;
        if (shared_arg[r * region_w + q] == j) acc -= shared_grad[r * region_w + q];
      }
    }
    __syncthreads();
  }
  if (ly < kAffinityTileH && y < H && x < W) grad_edge[((long long)b * H + y) * W + x] = acc;
}

// edge [B, h, w] -> planes [B, D, h, w]
template <typename scalar_t>
__global__ void stencil_planes_kernel(const scalar_t* __restrict__ edge, const int* __restrict__ paths,
                                      const int* __restrict__ lengths, scalar_t* __restrict__ planes, int B,
                                      int H, int W, int D, int max_len, scalar_t beta) {
  const long long total = (long long)B * D * H * W;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int x = (int)(idx % W), y = (int)((idx / W) % H);
    const int k = (int)((idx / ((long long)W * H)) % D), b = (int)(idx / ((long long)W * H * D));
    planes[idx] = stencil_weight(edge + (long long)b * H * W, H, W, y, x, paths + 2 * k * max_len, lengths[k], beta);
  }
}

// planes [B, D, h, w] -> norm [B, h, w]; dirs [D, 2]
template <typename scalar_t>
__global__ void stencil_norm_kernel(const scalar_t* __restrict__ planes, const int* __restrict__ dirs,
                                    scalar_t* __restrict__ norm, int B, int H, int W, int D) {
  const long long total = (long long)B * H * W;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int x = (int)(idx % W), y = (int)((idx / W) % H), b = (int)(idx / ((long long)W * H));
    norm[idx] = stencil_norm_at(planes + (long long)b * D * H * W, dirs, D, H, W, y, x);
  }
}

}  // namespace kernels
}  // namespace irnet_fast
