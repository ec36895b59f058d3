// CUDA launchers of feature_affinity and its backward (pair with cpu/feature_affinity_cpu.cpp);
// kernels in kernels/feature_affinity_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../kernels/feature_affinity_kernels.cuh"

namespace irnet_fast {
namespace {

void check_args(const char* op, const at::Tensor& features, const at::Tensor& dirs) {
  TORCH_CHECK(features.dim() == 4 && features.is_contiguous(), op, "(): features expected a contiguous [B, C, h, w]");
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble, op,
              "(): features expected float32 or float64, got ", features.scalar_type());
  TORCH_CHECK(features.size(1) >= 1, op, "(): features expected at least one channel");
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(1) == 2 && dirs.scalar_type() == at::kInt && dirs.is_contiguous(), op,
              "(): dirs expected a contiguous [D, 2] int32");
  TORCH_CHECK(features.device() == dirs.device(), op, "(): dirs expected on the features' device");
}

at::Tensor feature_affinity_cuda(const at::Tensor& features, const at::Tensor& dirs) {
  check_args("feature_affinity_cuda", features, dirs);
  const cuda::DeviceGuard guard(features);
  const int64_t B = features.size(0), C = features.size(1), H = features.size(2), W = features.size(3);
  const int64_t D = dirs.size(0);
  auto out = cuda::new_output({B, D, H, W}, features.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "feature_affinity_cuda", [&] {
    cuda::launch(kernels::feature_affinity_kernel<scalar_t>, cuda::blocks_for(out.numel()), cuda::kThreads, 0,
                 features.data_ptr<scalar_t>(), dirs.data_ptr<int>(), out.data_ptr<scalar_t>(), (int)B, (int)C,
                 (int)H, (int)W, (int)D);
  });
  return out;
}

at::Tensor feature_affinity_backward_cuda(const at::Tensor& grad, const at::Tensor& features,
                                          const at::Tensor& affinity, const at::Tensor& dirs) {
  check_args("_feature_affinity_backward_cuda", features, dirs);
  TORCH_CHECK(grad.sizes() == affinity.sizes() && grad.is_contiguous() && affinity.is_contiguous() &&
                  grad.scalar_type() == features.scalar_type() && affinity.scalar_type() == features.scalar_type(),
              "_feature_affinity_backward_cuda(): grad and affinity expected contiguous [B, D, h, w] of the "
              "features' dtype");
  const cuda::DeviceGuard guard(features);
  const int64_t B = features.size(0), C = features.size(1), H = features.size(2), W = features.size(3);
  const int64_t D = dirs.size(0);
  auto out = cuda::new_output(features.sizes(), features.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "_feature_affinity_backward_cuda", [&] {
    cuda::launch(kernels::feature_affinity_backward_kernel<scalar_t>, cuda::blocks_for(out.numel()), cuda::kThreads,
                 0, grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), affinity.data_ptr<scalar_t>(),
                 dirs.data_ptr<int>(), out.data_ptr<scalar_t>(), (int)B, (int)C, (int)H, (int)W, (int)D);
  });
  return out;
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("feature_affinity", &feature_affinity_cuda);
  m.impl("_feature_affinity_backward", &feature_affinity_backward_cuda);
}

}  // namespace irnet_fast
