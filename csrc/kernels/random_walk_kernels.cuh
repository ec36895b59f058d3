// __global__ kernels of the random walk, shared by the CUDA launcher (cuda/random_walk_cuda.cu),
// the CuPy backend (NVRTC, through cuda_kernels.cuh) and the emulated test build.
#pragma once
#include "affinity.h"

namespace irnet_fast {
namespace kernels {

// One walk step: src, dst [B, C, h, w]; planes [B, D, h, w]; inv_norm [B, h, w]
template <typename scalar_t>
__global__ void walk_step_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                 const scalar_t* __restrict__ planes, const scalar_t* __restrict__ inv_norm,
                                 const int* __restrict__ dirs, int B, int C, int H, int W, int D) {
  const long long total = (long long)B * C * H * W;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int x = (int)(idx % W), y = (int)((idx / W) % H);
    const long long bc = idx / ((long long)W * H);
    const int b = (int)(bc / C);
    dst[idx] = walk_step_at(src + bc * H * W, planes + (long long)b * D * H * W, inv_norm + (long long)b * H * W,
                            dirs, D, H, W, y, x);
  }
}

}  // namespace kernels
}  // namespace irnet_fast
