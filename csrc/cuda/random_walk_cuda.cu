// CUDA launcher of random_walk (pairs with cpu/random_walk_cpu.cpp); kernels in
// kernels/random_walk_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <utility>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../checks.h"
#include "../kernels/random_walk_kernels.cuh"

namespace irnet_fast {
namespace {

at::Tensor random_walk_cuda(const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                            const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_cuda", x_in, planes_in, inv_norm_in, dirs_in, cuda::kDeviceTensors);
  TORCH_CHECK(steps >= 0, "random_walk_cuda: steps expected >= 0, got ", steps);
  const cuda::DeviceGuard guard(x_in);
  auto src = x_in.contiguous().clone();
  if (src.numel() == 0 || steps == 0) return src;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  auto dst = cuda::new_output(src.sizes(), src.options());
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3), D = planes.size(1);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "random_walk_cuda", [&] {
    scalar_t* a = src.data_ptr<scalar_t>();
    scalar_t* b = dst.data_ptr<scalar_t>();
    for (int64_t step = 0; step < steps; ++step) {
      cuda::launch(kernels::walk_step_kernel<scalar_t>, cuda::blocks_for(src.numel()), cuda::kThreads, 0, a, b,
                   planes.data_ptr<scalar_t>(), inv_norm.data_ptr<scalar_t>(), dirs.data_ptr<int>(), (int)B,
                   (int)C, (int)H, (int)W, (int)D);
      std::swap(a, b);
    }
  });
  return (steps % 2 == 0) ? src : dst;
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("random_walk", &random_walk_cuda);
}

}  // namespace irnet_fast
