// CPU kernels of path_affinity (forward, backward) and transition_stencil.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "../kernels/affinity.h"

namespace irnet_fast {
namespace {

using kernels::path_affinity_grad_at;
using kernels::path_max;
using kernels::stencil_norm_at;
using kernels::stencil_weight;

// edge [B, H, W] -> affinity, argmax: [B, D, H - rf, W - 2 rf]
std::tuple<at::Tensor, at::Tensor> path_affinity_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                     const at::Tensor& lengths, int64_t radius_floor) {
  check_path_args("path_affinity_cpu", edge_in, paths, lengths, /*cuda=*/false);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2);
  const int64_t D = paths.size(0), max_len = paths.size(1);
  const int64_t crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  TORCH_CHECK(crop_h >= 0 && crop_w >= 0, "path_affinity_cpu: edge of size ", H, "x", W,
              " is smaller than the search window (radius_floor ", radius_floor, ")");
  auto affinity = at::empty({B, D, crop_h, crop_w}, edge.options());
  auto argmax = at::empty({B, D, crop_h, crop_w}, edge.options().dtype(at::kByte));
  const int* path_ptr = paths.data_ptr<int>();
  const int* len_ptr = lengths.data_ptr<int>();
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "path_affinity_cpu", [&] {
    const scalar_t* e = edge.data_ptr<scalar_t>();
    scalar_t* out = affinity.data_ptr<scalar_t>();
    uint8_t* arg_out = argmax.data_ptr<uint8_t>();
    at::parallel_for(0, B * D * crop_h, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / (D * crop_h), k = (row / crop_h) % D, i = row % crop_h;
        const int* path = path_ptr + 2 * k * max_len;
        const scalar_t* e_b = e + b * H * W;
        _Pragma("omp simd")
        for (int64_t j = 0; j < crop_w; ++j) {
          int arg;
          const scalar_t m = path_max(e_b, (int)W, (int)i, (int)(j + radius_floor), path, len_ptr[k], &arg);
          out[row * crop_w + j] = scalar_t(1) - m;
          arg_out[row * crop_w + j] = (uint8_t)arg;
        }
      }
    });
  });
  return {affinity, argmax};
}

// grad [B, D, crop_h, crop_w] -> grad_edge [B, H, W]; a gather, so deterministic.
at::Tensor path_affinity_backward_cpu(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                      const at::Tensor& paths, const at::Tensor& lengths,
                                      int64_t radius_floor, int64_t height, int64_t width) {
  check_backward_args("path_affinity_backward_cpu", grad_in, argmax_in, paths, lengths, /*cuda=*/false);
  const auto grad = grad_in.contiguous();
  const auto argmax = argmax_in.contiguous();
  const int64_t B = grad.size(0), D = grad.size(1), crop_h = grad.size(2), crop_w = grad.size(3);
  const int64_t max_len = paths.size(1);
  auto grad_edge = at::empty({B, height, width}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "path_affinity_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const uint8_t* a = argmax.data_ptr<uint8_t>();
    scalar_t* out = grad_edge.data_ptr<scalar_t>();
    at::parallel_for(0, B * height, 4, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / height, y = row % height;
        const int64_t image = b * D * crop_h * crop_w;
        for (int64_t x = 0; x < width; ++x) {
          out[row * width + x] = path_affinity_grad_at(
              g + image, a + image, paths.data_ptr<int>(), lengths.data_ptr<int>(), (int)D,
              (int)max_len, (int)crop_h, (int)crop_w, (int)radius_floor, (int)y, (int)x);
        }
      }
    });
  });
  return grad_edge;
}

// edge [B, h, w] -> planes [B, D, h, w] (affinity ** beta, 0 off-grid), norm [B, h, w]
std::tuple<at::Tensor, at::Tensor> transition_stencil_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                          const at::Tensor& lengths, double beta) {
  check_path_args("transition_stencil_cpu", edge_in, paths, lengths, /*cuda=*/false);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2);
  const int64_t D = paths.size(0), max_len = paths.size(1);
  auto planes = at::empty({B, D, H, W}, edge.options());
  auto norm = at::empty({B, H, W}, edge.options());
  const auto dirs = paths.select(1, 0).contiguous();  // [D, 2] destinations
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "transition_stencil_cpu", [&] {
    const scalar_t* e = edge.data_ptr<scalar_t>();
    scalar_t* s = planes.data_ptr<scalar_t>();
    scalar_t* n = norm.data_ptr<scalar_t>();
    const int* path_ptr = paths.data_ptr<int>();
    const int* len_ptr = lengths.data_ptr<int>();
    const int* dir_ptr = dirs.data_ptr<int>();
    at::parallel_for(0, B * D * H, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / (D * H), k = (row / H) % D, y = row % H;
        _Pragma("omp simd")
        for (int64_t x = 0; x < W; ++x) {
          s[row * W + x] = stencil_weight(e + b * H * W, (int)H, (int)W, (int)y, (int)x,
                                          path_ptr + 2 * k * max_len, len_ptr[k], (scalar_t)beta);
        }
      }
    });
    at::parallel_for(0, B * H, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / H, y = row % H;
        for (int64_t x = 0; x < W; ++x) {
          n[row * W + x] = stencil_norm_at(s + b * D * H * W, dir_ptr, (int)D, (int)H, (int)W, (int)y, (int)x);
        }
      }
    });
  });
  return {planes, norm};
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("path_affinity", &path_affinity_cpu);
  m.impl("path_affinity_backward", &path_affinity_backward_cpu);
  m.impl("transition_stencil", &transition_stencil_cpu);
}

}  // namespace irnet_fast
