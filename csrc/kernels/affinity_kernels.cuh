// __global__ kernels of path_affinity, its backward and transition_stencil, shared by the CUDA
// launchers (cuda/affinity_cuda.cu), the CuPy backend (NVRTC, through cuda_kernels.cuh) and the
// emulated test build. Per-element arithmetic in affinity.h, which the CPU build uses too.
#pragma once
#include "affinity.h"

namespace irnet_fast {
namespace kernels {

// edge [B, H, W] -> affinity, argmax [B, D, crop_h, crop_w]
template <typename scalar_t>
__global__ void path_affinity_kernel(const scalar_t* __restrict__ edge, const int* __restrict__ paths,
                                     const int* __restrict__ lengths, scalar_t* __restrict__ affinity,
                                     unsigned char* __restrict__ argmax, int B, int H, int W, int D,
                                     int max_len, int radius_floor) {
  const int crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  const long long total = (long long)B * D * crop_h * crop_w;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int j = (int)(idx % crop_w);
    const int i = (int)((idx / crop_w) % crop_h);
    const int k = (int)((idx / ((long long)crop_w * crop_h)) % D);
    const int b = (int)(idx / ((long long)crop_w * crop_h * D));
    int arg;
    const scalar_t m = path_max(edge + (long long)b * H * W, W, i, j + radius_floor, paths + 2 * k * max_len,
                                lengths[k], &arg);
    affinity[idx] = scalar_t(1) - m;
    argmax[idx] = (unsigned char)arg;
  }
}

// grad, argmax [B, D, crop_h, crop_w] -> grad_edge [B, H, W] (a gather: no atomics)
template <typename scalar_t>
__global__ void path_affinity_backward_kernel(const scalar_t* __restrict__ grad,
                                              const unsigned char* __restrict__ argmax,
                                              const int* __restrict__ paths, const int* __restrict__ lengths,
                                              scalar_t* __restrict__ grad_edge, int B, int H, int W, int D,
                                              int max_len, int crop_h, int crop_w, int radius_floor) {
  const long long total = (long long)B * H * W;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int x = (int)(idx % W), y = (int)((idx / W) % H), b = (int)(idx / ((long long)W * H));
    const long long image = (long long)b * D * crop_h * crop_w;
    grad_edge[idx] = path_affinity_grad_at(grad + image, argmax + image, paths, lengths, D, max_len, crop_h,
                                           crop_w, radius_floor, y, x);
  }
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
