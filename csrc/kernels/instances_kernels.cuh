// __global__ kernel of find_centroids: one thread per pixel runs all its refinement steps in
// registers (instances.h, the CPU kernel's arithmetic, with _rn intrinsics on the device so that
// nvcc fuses no multiply-add). Used by cuda/instances_cuda.cu, CuPy and the emulated build.
#pragma once
#include "instances.h"

namespace irnet_fast {
namespace kernels {

// displacement [2, h, w] -> out [2, h, w] int32 (rows, then columns)
template <typename scalar_t>
__global__ void find_centroids_kernel(const scalar_t* __restrict__ displacement, int* __restrict__ out, int height,
                                      int width, int iterations) {
  const long long total = (long long)height * width;
  for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
       p += (long long)blockDim.x * gridDim.x) {
    refine_centroid(displacement, displacement + total, height, width, iterations, (int)(p / width),
                    (int)(p % width), out + p, out + total + p);
  }
}

}  // namespace kernels
}  // namespace irnet_fast
