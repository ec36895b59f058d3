// CUDA launchers of every op; kernels in kernels/cuda_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../checks.h"
#include "../kernels/cuda_kernels.cuh"

namespace irnet_fast {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t total) {
  return (int)std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65535LL * 16));
}

std::tuple<at::Tensor, at::Tensor> path_affinity_cuda(const at::Tensor& edge_in, const at::Tensor& paths,
                                                      const at::Tensor& lengths, int64_t radius_floor) {
  check_affinity_args("path_affinity_cuda", edge_in, paths, lengths, radius_floor, /*cuda=*/true);
  const c10::cuda::CUDAGuard guard(edge_in.device());
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  const int64_t crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  TORCH_CHECK(crop_h >= 0 && crop_w >= 0, "path_affinity_cuda: edge of size ", H, "x", W,
              " is smaller than the search window (radius_floor ", radius_floor, ")");
  auto affinity = at::empty({B, D, crop_h, crop_w}, edge.options());
  auto argmax = at::empty({B, D, crop_h, crop_w}, edge.options().dtype(at::kByte));
  const int64_t total = affinity.numel();
  if (total == 0) return {affinity, argmax};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "path_affinity_cuda", [&] {
    kernels::path_affinity_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        edge.data_ptr<scalar_t>(), paths.data_ptr<int>(), lengths.data_ptr<int>(), affinity.data_ptr<scalar_t>(),
        argmax.data_ptr<uint8_t>(), (int)B, (int)H, (int)W, (int)D, (int)paths.size(1), (int)radius_floor);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {affinity, argmax};
}

at::Tensor path_affinity_backward_cuda(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                       const at::Tensor& paths, const at::Tensor& lengths, int64_t radius_floor,
                                       int64_t height, int64_t width) {
  check_backward_args("path_affinity_backward_cuda", grad_in, argmax_in, paths, lengths, /*cuda=*/true);
  check_backward_values("path_affinity_backward_cuda", grad_in, argmax_in, paths, lengths, radius_floor, height, width);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const auto grad = grad_in.contiguous();
  const auto argmax = argmax_in.contiguous();
  const int64_t B = grad.size(0), D = grad.size(1);
  auto grad_edge = at::empty({B, height, width}, grad.options());
  const int64_t total = grad_edge.numel();
  if (total == 0) return grad_edge;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "path_affinity_backward_cuda", [&] {
    kernels::path_affinity_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), argmax.data_ptr<uint8_t>(), paths.data_ptr<int>(), lengths.data_ptr<int>(),
        grad_edge.data_ptr<scalar_t>(), (int)B, (int)height, (int)width, (int)D, (int)paths.size(1),
        (int)grad.size(2), (int)grad.size(3), (int)radius_floor);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_edge;
}

std::tuple<at::Tensor, at::Tensor> transition_stencil_cuda(const at::Tensor& edge_in, const at::Tensor& paths,
                                                           const at::Tensor& lengths, double beta) {
  check_path_args("transition_stencil_cuda", edge_in, paths, lengths, /*cuda=*/true);
  const c10::cuda::CUDAGuard guard(edge_in.device());
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  auto planes = at::empty({B, D, H, W}, edge.options());
  auto norm = at::empty({B, H, W}, edge.options());
  if (norm.numel() == 0) return {planes, norm};
  const auto dirs = paths.select(1, 0).contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "transition_stencil_cuda", [&] {
    if (planes.numel() > 0) {
      kernels::stencil_planes_kernel<scalar_t><<<blocks_for(planes.numel()), kThreads, 0, stream>>>(
          edge.data_ptr<scalar_t>(), paths.data_ptr<int>(), lengths.data_ptr<int>(), planes.data_ptr<scalar_t>(),
          (int)B, (int)H, (int)W, (int)D, (int)paths.size(1), (scalar_t)beta);
    }
    kernels::stencil_norm_kernel<scalar_t><<<blocks_for(norm.numel()), kThreads, 0, stream>>>(
        planes.data_ptr<scalar_t>(), dirs.data_ptr<int>(), norm.data_ptr<scalar_t>(), (int)B, (int)H, (int)W, (int)D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {planes, norm};
}

at::Tensor random_walk_cuda(const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                            const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_cuda", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/true);
  check_count("random_walk_cuda", "steps", steps);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto src = x_in.contiguous().clone();
  if (src.numel() == 0 || steps == 0) return src;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  auto dst = at::empty_like(src);
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3), D = planes.size(1);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "random_walk_cuda", [&] {
    scalar_t* a = src.data_ptr<scalar_t>();
    scalar_t* b = dst.data_ptr<scalar_t>();
    for (int64_t step = 0; step < steps; ++step) {
      kernels::walk_step_kernel<scalar_t><<<blocks_for(src.numel()), kThreads, 0, stream>>>(
          a, b, planes.data_ptr<scalar_t>(), inv_norm.data_ptr<scalar_t>(), dirs.data_ptr<int>(), (int)B, (int)C,
          (int)H, (int)W, (int)D);
      std::swap(a, b);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return (steps % 2 == 0) ? src : dst;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CUDA, m) {
  m.impl("path_affinity", &path_affinity_cuda);
  m.impl("_path_affinity_backward", &path_affinity_backward_cuda);
  m.impl("transition_stencil", &transition_stencil_cuda);
  m.impl("random_walk", &random_walk_cuda);
}

}  // namespace irnet_fast
