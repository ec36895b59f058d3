// The weight gradient of the stencil walk (irnet_fast/ops/_walk_grad.py, pair_products):
//   G_k(p) = sum_c z(c, p) w(c, p + o_k) + z(c, p + o_k) w(c, p),  0 where p + o_k is off the grid,
// for the states of every pass stacked as channels (thousands of them). Per (image, row) task the
// row's D accumulator rows stay in L1 while the channels stream past in ascending order, every
// inner loop along a row; the torch form makes four image-sized temporaries per direction instead
// (2 s against ~0.1 s for a 64x64 grid, 21 channels, 78 passes).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "threads.h"

namespace irnet_fast {
namespace {

template <typename T>
void pair_products_kernel(const T* z, const T* w, T* out, const int* dirs, int64_t num_dirs, int64_t batch,
                          int64_t channels, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  parallel_chunks(batch * height, 1, 4.0 * batch * plane * num_dirs * channels, [&](int64_t begin, int64_t end) {
    std::vector<T> acc((size_t)(num_dirs * width));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / height, y = task % height;
      std::fill(acc.begin(), acc.end(), (T)0);
      for (int64_t c = 0; c < channels; ++c) {
        const T* zc = z + (b * channels + c) * plane;
        const T* wc = w + (b * channels + c) * plane;
        const T* z_src = zc + y * width;
        const T* w_src = wc + y * width;
        for (int64_t k = 0; k < num_dirs; ++k) {
          const int64_t dy = dirs[2 * k], dx = dirs[2 * k + 1];
          if (y + dy >= height) continue;
          const int64_t x0 = std::max<int64_t>(0, -dx), x1 = std::min<int64_t>(width, width - dx);
          const T* z_dst = zc + (y + dy) * width + dx;
          const T* w_dst = wc + (y + dy) * width + dx;
          T* a = acc.data() + k * width;
#pragma omp simd
          for (int64_t x = x0; x < x1; ++x) a[x] += z_src[x] * w_dst[x] + z_dst[x] * w_src[x];
        }
      }
      for (int64_t k = 0; k < num_dirs; ++k) {
        std::copy(acc.begin() + k * width, acc.begin() + (k + 1) * width, out + ((b * num_dirs + k) * height + y) * width);
      }
    }
  });
}

at::Tensor walk_pair_products_cpu(const at::Tensor& z_in, const at::Tensor& w_in, const at::Tensor& dirs_in) {
  TORCH_CHECK(z_in.dim() == 4, "_walk_pair_products(): z expected [B, C, h, w], got ", z_in.sizes());
  TORCH_CHECK(w_in.sizes() == z_in.sizes(), "_walk_pair_products(): w expected the shape of z ", z_in.sizes(),
              ", got ", w_in.sizes());
  TORCH_CHECK(w_in.scalar_type() == z_in.scalar_type(), "_walk_pair_products(): w expected dtype ",
              z_in.scalar_type(), " like z, got ", w_in.scalar_type());
  TORCH_CHECK(dirs_in.dim() == 2 && dirs_in.size(1) == 2 && dirs_in.scalar_type() == at::kInt,
              "_walk_pair_products(): dirs expected a [D, 2] int32 tensor");
  const auto z = z_in.contiguous(), w = w_in.contiguous(), dirs = dirs_in.contiguous();
  const int64_t B = z.size(0), C = z.size(1), h = z.size(2), wd = z.size(3), D = dirs.size(0);
  const int* d = dirs.data_ptr<int>();
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(d[2 * k] >= 0, "_walk_pair_products(): dirs expected dy >= 0 (half plane), got ", d[2 * k]);
  }
  auto out = at::zeros({B, D, h, wd}, z.options());
  if (out.numel() == 0 || C == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "_walk_pair_products", [&] {
    pair_products_kernel<scalar_t>(z.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d, D, B, C,
                                   h, wd);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("_walk_pair_products", &walk_pair_products_cpu);
}

}  // namespace irnet_fast
