// CPU kernels of feature_affinity: per (image, row) task, channels outermost so every inner loop runs
// along a row (contiguous, vectorised); the sums over channels go in ascending channel order as in
// kernels/feature_affinity.h. The backward gathers (no atomics): each output pixel adds the terms
// of its D outgoing and D incoming pairs.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../kernels/feature_affinity.h"

namespace irnet_fast {
namespace {

using kernels::abs_diff;

void check_args(const char* op, const at::Tensor& features, const at::Tensor& dirs) {
  TORCH_CHECK(features.dim() == 4 && features.is_contiguous(), op, "(): features expected a contiguous [B, C, h, w]");
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble, op,
              "(): features expected float32 or float64, got ", features.scalar_type());
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(1) == 2 && dirs.scalar_type() == at::kInt && dirs.is_contiguous(), op,
              "(): dirs expected a contiguous [D, 2] int32");
  TORCH_CHECK(features.size(1) >= 1, op, "(): features expected at least one channel");
}

// sources whose destination p + o is on the grid: rows [0, rows), columns [x0, x1)
struct Window {
  int dy, dx, rows, x0, x1;
};

std::vector<Window> windows(const at::Tensor& dirs, int height, int width) {
  std::vector<Window> out;
  const int* d = dirs.data_ptr<int>();
  for (int64_t k = 0; k < dirs.size(0); ++k) {
    const int dy = d[2 * k], dx = d[2 * k + 1];
    Window w{dy, dx, height - dy, dx < 0 ? -dx : 0, dx > 0 ? width - dx : width};
    out.push_back(w);
  }
  return out;
}

template <typename T>
void forward_kernel(const T* f, T* out, int64_t batch, int64_t channels, int height, int width,
                    const std::vector<Window>& win) {
  const int64_t plane = (int64_t)height * width, num_dirs = (int64_t)win.size();
  const T inv_channels = (T)1 / (T)channels;
  at::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc((size_t)(num_dirs * width));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / height;
      const int y = (int)(task % height);
      std::fill(acc.begin(), acc.end(), (T)0);
      for (int64_t c = 0; c < channels; ++c) {
        const T* fc = f + (b * channels + c) * plane;
        const T* src = fc + (int64_t)y * width;
        for (int64_t k = 0; k < num_dirs; ++k) {
          const Window& w = win[k];
          if (y >= w.rows) continue;
          const T* __restrict__ dst = fc + (int64_t)(y + w.dy) * width + w.dx;
          T* __restrict__ a = acc.data() + k * width;
          for (int x = w.x0; x < w.x1; ++x) a[x] += abs_diff(src[x], dst[x]);
        }
      }
      for (int64_t k = 0; k < num_dirs; ++k) {
        const Window& w = win[k];
        T* o = out + (b * num_dirs + k) * plane + (int64_t)y * width;
        const T* a = acc.data() + k * width;
        for (int x = 0; x < width; ++x) {
          const bool on = y < w.rows && x >= w.x0 && x < w.x1;
          o[x] = on ? kernels::feature_affinity_from_sum(a[x], inv_channels) : (T)0;
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* grad, const T* f, const T* aff, T* out, int64_t batch, int64_t channels, int height,
                     int width, const std::vector<Window>& win) {
  const int64_t plane = (int64_t)height * width, num_dirs = (int64_t)win.size();
  const T inv_channels = (T)1 / (T)channels;
  // weights w_k(p) = -grad_k(p) a_k(p) / C, once per (image, direction, pixel)
  std::vector<T> weight((size_t)(batch * num_dirs * plane));
  at::parallel_for(0, batch * num_dirs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t p = 0; p < plane; ++p)
        weight[i * plane + p] = kernels::feature_affinity_weight(grad[i * plane + p], aff[i * plane + p], inv_channels);
  });
  at::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / height;
      const int y = (int)(task % height);
      for (int64_t c = 0; c < channels; ++c) {
        const T* fc = f + (b * channels + c) * plane;
        const T* here = fc + (int64_t)y * width;
        T* o = out + (b * channels + c) * plane + (int64_t)y * width;
        for (int64_t k = 0; k < num_dirs; ++k) {
          const Window& w = win[k];
          const T* wk = weight.data() + (b * num_dirs + k) * plane;
          if (y < w.rows) {  // outgoing pair (p, p + o)
            const T* dst = fc + (int64_t)(y + w.dy) * width + w.dx;
            const T* ww = wk + (int64_t)y * width;
            for (int x = w.x0; x < w.x1; ++x) o[x] += ww[x] * kernels::sign_of(here[x] - dst[x]);
          }
          const int ys = y - w.dy;
          if (ys >= 0 && ys < w.rows) {  // incoming pair (p - o, p)
            const T* src = fc + (int64_t)ys * width - w.dx;
            const T* ww = wk + (int64_t)ys * width - w.dx;
            for (int x = w.x0 + w.dx; x < w.x1 + w.dx; ++x) o[x] -= ww[x] * kernels::sign_of(src[x] - here[x]);
          }
        }
      }
    }
  });
}

at::Tensor feature_affinity_cpu(const at::Tensor& features, const at::Tensor& dirs) {
  check_args("feature_affinity", features, dirs);
  const int64_t batch = features.size(0), channels = features.size(1);
  const int height = (int)features.size(2), width = (int)features.size(3);
  at::Tensor out = at::empty({batch, dirs.size(0), height, width}, features.options());
  if (out.numel() == 0) return out;
  const auto win = windows(dirs, height, width);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "feature_affinity", [&] {
    forward_kernel<scalar_t>(features.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), batch, channels, height, width,
                             win);
  });
  return out;
}

at::Tensor feature_affinity_backward_cpu(const at::Tensor& grad, const at::Tensor& features,
                                         const at::Tensor& affinity, const at::Tensor& dirs) {
  check_args("_feature_affinity_backward", features, dirs);
  TORCH_CHECK(grad.sizes() == affinity.sizes() && grad.is_contiguous() && affinity.is_contiguous() &&
                  grad.scalar_type() == features.scalar_type() && affinity.scalar_type() == features.scalar_type(),
              "_feature_affinity_backward(): grad and affinity expected contiguous [B, D, h, w] of the features' dtype");
  const int64_t batch = features.size(0), channels = features.size(1);
  const int height = (int)features.size(2), width = (int)features.size(3);
  at::Tensor out = at::zeros(features.sizes(), features.options());
  if (out.numel() == 0 || dirs.size(0) == 0) return out;
  const auto win = windows(dirs, height, width);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "_feature_affinity_backward", [&] {
    backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(),
                              affinity.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), batch, channels, height, width,
                              win);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("feature_affinity", &feature_affinity_cpu);
  m.impl("_feature_affinity_backward", &feature_affinity_backward_cpu);
}

}  // namespace irnet_fast
