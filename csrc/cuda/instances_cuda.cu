// CUDA launcher of find_centroids (pairs with cpu/instances_cpu.cpp); kernel in
// kernels/instances_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../checks.h"
#include "../kernels/instances_kernels.cuh"

namespace irnet_fast {
namespace {

constexpr int kThreads = 128;

at::Tensor find_centroids_cuda(const at::Tensor& displacement_in, int64_t iterations) {
  check_centroid_args("find_centroids_cuda", displacement_in, iterations, cuda::kDeviceTensors);
  const cuda::DeviceGuard guard(displacement_in);
  const auto displacement = displacement_in.contiguous();
  const int64_t H = displacement.size(1), W = displacement.size(2);
  auto out = cuda::new_output({2, H, W}, displacement.options().dtype(at::kInt));
  if (H * W == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(displacement.scalar_type(), "find_centroids_cuda", [&] {
    cuda::launch(kernels::find_centroids_kernel<scalar_t>, cuda::blocks_for(H * W, kThreads), kThreads, 0,
                 displacement.data_ptr<scalar_t>(), out.data_ptr<int>(), (int)H, (int)W, (int)iterations);
  });
  return out;
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("find_centroids", &find_centroids_cuda);
}

}  // namespace irnet_fast
