// CUDA launchers of path_affinity, its backward and transition_stencil (pairs with
// cpu/affinity_cpu.cpp); kernels in kernels/affinity_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <tuple>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../checks.h"
#include "../kernels/affinity_kernels.cuh"

namespace irnet_fast {
namespace {

using cuda::kThreads;
constexpr int kTileThreads = kernels::kAffinityTileW * kernels::kAffinityTileH;

// Blocks over a grid of h x w (sources or edge pixels) in affinity tiles; shared bytes per block.
unsigned int affinity_tiles(int64_t h, int64_t w) {
  return (unsigned int)(((h + kernels::kAffinityTileH - 1) / kernels::kAffinityTileH) *
                        ((w + kernels::kAffinityTileW - 1) / kernels::kAffinityTileW));
}

size_t affinity_region_bytes(int64_t radius_floor, size_t element_bytes, const at::Tensor& like, const char* op) {
  const size_t bytes = (size_t)(kernels::kAffinityTileH + radius_floor) *
                       (size_t)(kernels::kAffinityTileW + 2 * radius_floor) * element_bytes;
  TORCH_CHECK(bytes <= cuda::max_shared_bytes(like), op, ": radius_floor ", radius_floor,
              " needs more shared memory than a block has (", bytes, " bytes)");
  return bytes;
}

std::tuple<at::Tensor, at::Tensor> path_affinity_cuda(const at::Tensor& edge_in, const at::Tensor& paths,
                                                      const at::Tensor& lengths, int64_t radius_floor) {
  check_affinity_args("path_affinity_cuda", edge_in, paths, lengths, radius_floor, cuda::kDeviceTensors);
  const cuda::DeviceGuard guard(edge_in);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  const int64_t crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  TORCH_CHECK(crop_h >= 0 && crop_w >= 0, "path_affinity_cuda: edge of size ", H, "x", W,
              " is smaller than the search window (radius_floor ", radius_floor, ")");
  auto affinity = cuda::new_output({B, D, crop_h, crop_w}, edge.options());
  auto argmax = cuda::new_output({B, D, crop_h, crop_w}, edge.options().dtype(at::kByte));
  const int64_t total = affinity.numel();
  if (total == 0) return {affinity, argmax};
  TORCH_CHECK(B <= 65535, "path_affinity_cuda: at most 65535 images per call, got ", B);
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "path_affinity_cuda", [&] {
    const size_t shared = affinity_region_bytes(radius_floor, sizeof(scalar_t), edge, "path_affinity_cuda");
    cuda::launch(kernels::path_affinity_kernel<scalar_t>, dim3(affinity_tiles(crop_h, crop_w), (unsigned int)B),
                 kTileThreads, shared,
                 edge.data_ptr<scalar_t>(), paths.data_ptr<int>(), lengths.data_ptr<int>(),
                 affinity.data_ptr<scalar_t>(), argmax.data_ptr<uint8_t>(), (int)B, (int)H, (int)W, (int)D,
                 (int)paths.size(1), (int)radius_floor);
  });
  return {affinity, argmax};
}

at::Tensor path_affinity_backward_cuda(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                       const at::Tensor& paths, const at::Tensor& lengths, int64_t radius_floor,
                                       int64_t height, int64_t width) {
  check_backward_args("path_affinity_backward_cuda", grad_in, argmax_in, paths, lengths, radius_floor, height, width,
                      cuda::kDeviceTensors);
  const cuda::DeviceGuard guard(grad_in);
  const auto grad = grad_in.contiguous();
  const auto argmax = argmax_in.contiguous();
  const int64_t B = grad.size(0), D = grad.size(1);
  auto grad_edge = cuda::new_output({B, height, width}, grad.options());
  const int64_t total = grad_edge.numel();
  if (total == 0) return grad_edge;
  TORCH_CHECK(B <= 65535, "path_affinity_backward_cuda: at most 65535 images per call, got ", B);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "path_affinity_backward_cuda", [&] {
    const size_t shared =
        affinity_region_bytes(radius_floor, sizeof(scalar_t) + 1, grad, "path_affinity_backward_cuda");
    cuda::launch(kernels::path_affinity_backward_kernel<scalar_t>, dim3(affinity_tiles(height, width), (unsigned int)B),
                 kTileThreads, shared,
                 grad.data_ptr<scalar_t>(), argmax.data_ptr<uint8_t>(), paths.data_ptr<int>(),
                 lengths.data_ptr<int>(), grad_edge.data_ptr<scalar_t>(), (int)B, (int)height, (int)width, (int)D,
                 (int)paths.size(1), (int)grad.size(2), (int)grad.size(3), (int)radius_floor);
  });
  return grad_edge;
}

std::tuple<at::Tensor, at::Tensor> transition_stencil_cuda(const at::Tensor& edge_in, const at::Tensor& paths,
                                                           const at::Tensor& lengths, double beta) {
  check_path_args("transition_stencil_cuda", edge_in, paths, lengths, cuda::kDeviceTensors);
  const cuda::DeviceGuard guard(edge_in);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  auto planes = cuda::new_output({B, D, H, W}, edge.options());
  auto norm = cuda::new_output({B, H, W}, edge.options());
  if (norm.numel() == 0) return {planes, norm};
  const auto dirs = paths.select(1, 0).contiguous();
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "transition_stencil_cuda", [&] {
    if (planes.numel() > 0) {
      cuda::launch(kernels::stencil_planes_kernel<scalar_t>, cuda::blocks_for(planes.numel()), kThreads, 0,
                   edge.data_ptr<scalar_t>(), paths.data_ptr<int>(), lengths.data_ptr<int>(),
                   planes.data_ptr<scalar_t>(), (int)B, (int)H, (int)W, (int)D, (int)paths.size(1), (scalar_t)beta);
    }
    cuda::launch(kernels::stencil_norm_kernel<scalar_t>, cuda::blocks_for(norm.numel()), kThreads, 0,
                 planes.data_ptr<scalar_t>(), dirs.data_ptr<int>(), norm.data_ptr<scalar_t>(), (int)B, (int)H,
                 (int)W, (int)D);
  });
  return {planes, norm};
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("path_affinity", &path_affinity_cuda);
  m.impl("_path_affinity_backward", &path_affinity_backward_cuda);
  m.impl("transition_stencil", &transition_stencil_cuda);
}

}  // namespace irnet_fast
