// CUDA launcher of find_centroids: one thread per pixel runs all its refinement steps in
// registers (kernels/instances.h, the same arithmetic as the CPU kernel, with _rn intrinsics so
// that nvcc fuses no multiply-add).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../kernels/instances.h"

namespace irnet_fast {
namespace {

constexpr int kThreads = 128;

template <typename scalar_t>
__global__ void find_centroids_kernel(const scalar_t* __restrict__ displacement, int* __restrict__ out, int height,
                                      int width, int iterations) {
  const long long total = (long long)height * width;
  for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
       p += (long long)blockDim.x * gridDim.x) {
    kernels::refine_centroid(displacement, displacement + total, height, width, iterations, (int)(p / width),
                             (int)(p % width), out + p, out + total + p);
  }
}

at::Tensor find_centroids_cuda(const at::Tensor& displacement_in, int64_t iterations) {
  check_centroid_args("find_centroids_cuda", displacement_in, iterations, /*cuda=*/true);
  const c10::cuda::CUDAGuard guard(displacement_in.device());
  const auto displacement = displacement_in.contiguous();
  const int64_t H = displacement.size(1), W = displacement.size(2);
  auto out = at::empty({2, H, W}, displacement.options().dtype(at::kInt));
  if (H * W == 0) return out;
  const int blocks = (int)std::min<int64_t>((H * W + kThreads - 1) / kThreads, 65535LL * 16);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(displacement.scalar_type(), "find_centroids_cuda", [&] {
    find_centroids_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(displacement.data_ptr<scalar_t>(),
                                                                     out.data_ptr<int>(), (int)H, (int)W,
                                                                     (int)iterations);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CUDA, m) {
  m.impl("find_centroids", &find_centroids_cuda);
}

}  // namespace irnet_fast
