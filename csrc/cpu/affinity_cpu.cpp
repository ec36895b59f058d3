// CPU kernels of path_affinity (forward, backward) and transition_stencil.
//
// The loops run along rows of sources so that the inner loops are contiguous and vectorise;
// they compute exactly what kernels/affinity.h computes per element (same comparisons, same
// multiplications), which the CUDA kernels run and the *_portable ops run on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../kernels/affinity.h"
#include "simd.h"
#include "threads.h"

namespace irnet_fast {
namespace {

// Max of `edge` ([*, width]) along one path for `count` consecutive sources starting at
// (sy, sx): best[j] and, with arg, the first maximal path point (as kernels::path_max).
// The arg-max runs in a 32-bit scratch row: same lane width as float, so the loop vectorises.
template <typename T>
IRNET_INLINE void path_max_row(const T* edge, int64_t width, int64_t sy, int64_t sx, const int* path, int length,
                         int64_t count, T* __restrict best, uint8_t* __restrict arg, std::vector<int32_t>& scratch) {
  const T* first = edge + (sy + path[0]) * width + sx + path[1];
  for (int64_t j = 0; j < count; ++j) best[j] = first[j];
  if (arg) scratch.assign(count, 0);
  int32_t* __restrict arg32 = scratch.data();
  for (int p = 1; p < length; ++p) {
    const T* row = edge + (sy + path[2 * p]) * width + sx + path[2 * p + 1];
    if (arg) {
      for (int64_t j = 0; j < count; ++j) {
        const bool larger = row[j] > best[j];
        best[j] = larger ? row[j] : best[j];
        arg32[j] = larger ? p : arg32[j];
      }
    } else {
      // explicit vectors: GCC leaves this loop scalar (a runtime alias check it does not trust)
      typedef T vec __attribute__((vector_size(64)));
      constexpr int64_t kLanes = 64 / sizeof(T);
      int64_t j = 0;
      for (; j + kLanes <= count; j += kLanes) {
        vec r, b;
        __builtin_memcpy(&r, row + j, sizeof(vec));
        __builtin_memcpy(&b, best + j, sizeof(vec));
        b = r > b ? r : b;
        __builtin_memcpy(best + j, &b, sizeof(vec));
      }
      for (; j < count; ++j) best[j] = row[j] > best[j] ? row[j] : best[j];
    }
  }
  if (arg)
    for (int64_t j = 0; j < count; ++j) arg[j] = (uint8_t)arg32[j];
}

// values[j] = (1 - values[j]) ** beta with kernels::power's multiplication order.
template <typename T>
IRNET_INLINE void affinity_power_row(T* __restrict values, int64_t count, T beta, std::vector<T>& scratch) {
  for (int64_t j = 0; j < count; ++j) values[j] = T(1) - values[j];
  if (!(beta >= 0 && beta <= 64 && T((int)beta) == beta)) {
    for (int64_t j = 0; j < count; ++j) values[j] = kernels::power(values[j], beta);
    return;
  }
  scratch.assign(values, values + count);  // the running square
  T* base = scratch.data();
  for (int64_t j = 0; j < count; ++j) values[j] = T(1);
  for (int e = (int)beta; e > 0; e >>= 1) {
    if (e & 1)
      for (int64_t j = 0; j < count; ++j) values[j] *= base[j];
    for (int64_t j = 0; j < count; ++j) base[j] *= base[j];
  }
}

// Rows [begin, end) of the forward pass; a row is (image, direction, source row).
template <typename T>
IRNET_INLINE void affinity_rows(const T* e, T* out, uint8_t* arg_out, const int* paths, const int* lengths,
                                int64_t D, int64_t max_len, int64_t H, int64_t W, int64_t crop_h, int64_t crop_w,
                                int64_t radius_floor, int64_t begin, int64_t end) {
  std::vector<int32_t> scratch;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / (D * crop_h), k = (row / crop_h) % D, i = row % crop_h;
    T* best = out + row * crop_w;
    path_max_row(e + b * H * W, W, i, radius_floor, paths + 2 * k * max_len, lengths[k], crop_w, best,
                 arg_out + row * crop_w, scratch);
    for (int64_t j = 0; j < crop_w; ++j) best[j] = T(1) - best[j];
  }
}

// Rows [begin, end) of the stencil planes; a row is (image, direction, row y). E: the map's
// type; a float32 map (E) of float64 planes (T) takes the maxima along the paths in float32,
// twice the lanes, then widens them: a maximum is one of the values, so the planes are bit for
// bit those of the float64 map.
template <typename E, typename T>
IRNET_INLINE void stencil_rows(const E* e, T* s, const int* paths, const int* lengths, const int* dirs, int64_t D,
                               int64_t max_len, int64_t H, int64_t W, T beta, int64_t begin, int64_t end) {
  std::vector<T> scratch;
  std::vector<E> narrow(std::is_same_v<E, T> ? 0 : (size_t)W);
  std::vector<int32_t> unused;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / (D * H), k = (row / H) % D, y = row % H;
    const int dy = dirs[2 * k], dx = dirs[2 * k + 1];
    // sources whose destination (y + dy, x + dx) is on the grid (kernels::stencil_weight)
    const int64_t x0 = std::max(0, -dx), x1 = std::min<int64_t>(W, W - dx);
    if (y + dy >= H || x1 <= x0) continue;
    T* out = s + row * W + x0;
    if constexpr (std::is_same_v<E, T>) {
      path_max_row(e + b * H * W, W, y, x0, paths + 2 * k * max_len, lengths[k], x1 - x0, out, (uint8_t*)nullptr,
                   unused);
    } else {
      path_max_row(e + b * H * W, W, y, x0, paths + 2 * k * max_len, lengths[k], x1 - x0, narrow.data(),
                   (uint8_t*)nullptr, unused);
      for (int64_t j = 0; j < x1 - x0; ++j) out[j] = (T)narrow[j];
    }
    affinity_power_row(out, x1 - x0, beta, scratch);
  }
}

IRNET_CLONES void stencil_rows_narrow_any(const float* e, double* s, const int* paths, const int* lengths,
                                          const int* dirs, int64_t D, int64_t max_len, int64_t H, int64_t W,
                                          double beta, int64_t begin, int64_t end) {
  stencil_rows<float, double>(e, s, paths, lengths, dirs, D, max_len, H, W, beta, begin, end);
}

// The map as float32 when every value is a float32 number, else an undefined tensor.
at::Tensor narrowed_exactly(const at::Tensor& edge) {
  if (edge.scalar_type() != at::kDouble) return at::Tensor();
  auto narrow = edge.to(at::kFloat);
  const double* e = edge.data_ptr<double>();
  const float* n = narrow.data_ptr<float>();
  for (int64_t i = 0, count = edge.numel(); i < count; ++i) {
    if ((double)n[i] != e[i]) return at::Tensor();
  }
  return narrow;
}

#define IRNET_ROW_CLONES(T)                                                                                        \
  IRNET_CLONES void affinity_rows_any(const T* e, T* out, uint8_t* arg_out, const int* paths, const int* lengths,    \
                                      int64_t D, int64_t max_len, int64_t H, int64_t W, int64_t crop_h,              \
                                      int64_t crop_w, int64_t radius_floor, int64_t begin, int64_t end) {            \
    affinity_rows<T>(e, out, arg_out, paths, lengths, D, max_len, H, W, crop_h, crop_w, radius_floor, begin, end); \
  }                                                                                                                \
  IRNET_CLONES void stencil_rows_any(const T* e, T* s, const int* paths, const int* lengths, const int* dirs,       \
                                     int64_t D, int64_t max_len, int64_t H, int64_t W, T beta, int64_t begin,       \
                                     int64_t end) {                                                                \
    stencil_rows<T, T>(e, s, paths, lengths, dirs, D, max_len, H, W, beta, begin, end);                                \
  }
IRNET_ROW_CLONES(float)
IRNET_ROW_CLONES(double)
#undef IRNET_ROW_CLONES

// kernels::stencil_norm_at for a whole row, in its order per pixel (1, then forward and backward
// weight of each direction), so bit for bit the same sums; along the row it vectorises.
template <typename T>
IRNET_INLINE void norm_row(const T* planes, const int* dirs, int64_t D, int64_t H, int64_t W, int64_t y, T* out) {
  for (int64_t x = 0; x < W; ++x) out[x] = T(1);
  for (int64_t k = 0; k < D; ++k) {
    const T* plane = planes + k * H * W;
    const T* fwd = plane + y * W;
    for (int64_t x = 0; x < W; ++x) out[x] += fwd[x];
    const int64_t by = y - dirs[2 * k], dx = dirs[2 * k + 1];
    if (by < 0) continue;
    const int64_t x0 = std::max<int64_t>(0, dx), x1 = std::min<int64_t>(W, W + dx);  // 0 <= x - dx < W
    const T* bwd = plane + by * W - dx;
    for (int64_t x = x0; x < x1; ++x) out[x] += bwd[x];
  }
}

IRNET_CLONES void norm_row_any(const float* planes, const int* dirs, int64_t D, int64_t H, int64_t W, int64_t y,
                               float* out) {
  norm_row(planes, dirs, D, H, W, y, out);
}

IRNET_CLONES void norm_row_any(const double* planes, const int* dirs, int64_t D, int64_t H, int64_t W, int64_t y,
                               double* out) {
  norm_row(planes, dirs, D, H, W, y, out);
}

// edge [B, H, W] -> affinity, argmax: [B, D, H - rf, W - 2 rf]
std::tuple<at::Tensor, at::Tensor> path_affinity_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                     const at::Tensor& lengths, int64_t radius_floor) {
  check_affinity_args("path_affinity_cpu", edge_in, paths, lengths, radius_floor, /*cuda=*/false);
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
    parallel_chunks(B * D * crop_h, 8, (double)B * D * crop_h * crop_w * max_len, [&](int64_t begin, int64_t end) {
      affinity_rows_any(e, out, arg_out, path_ptr, len_ptr, D, max_len, H, W, crop_h, crop_w, radius_floor, begin,
                        end);
    });
  });
  return {affinity, argmax};
}

// grad [B, D, crop_h, crop_w] -> grad_edge [B, H, W]: each (image, chunk of directions) task
// scatters into its own buffer, the buffers are summed in a fixed order (no atomics, results
// independent of scheduling). grad is read through its strides: the expanded gradient of a
// sum() is never materialised.
at::Tensor path_affinity_backward_cpu(const at::Tensor& grad, const at::Tensor& argmax_in,
                                      const at::Tensor& paths, const at::Tensor& lengths,
                                      int64_t radius_floor, int64_t height, int64_t width) {
  check_backward_args("path_affinity_backward_cpu", grad, argmax_in, paths, lengths, radius_floor, height, width,
                      /*cuda=*/false);
  const auto argmax = argmax_in.contiguous();
  const int64_t B = grad.size(0), D = grad.size(1), crop_h = grad.size(2), crop_w = grad.size(3);
  const int64_t max_len = paths.size(1);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(D, (at::get_num_threads() + B - 1) / std::max<int64_t>(B, 1)));
  auto partial = at::zeros({B, chunks, height, width}, grad.options());
  const int* path_ptr = paths.data_ptr<int>();
  const auto stride = grad.strides();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "path_affinity_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const uint8_t* a = argmax.data_ptr<uint8_t>();
    scalar_t* acc_all = partial.data_ptr<scalar_t>();
    run_units(B * chunks, threads_for(B * chunks, (double)B * D * crop_h * crop_w), [&](int64_t task) {
      const int64_t b = task / chunks, c = task % chunks;
      scalar_t* acc = acc_all + task * height * width;
      for (int64_t k = c * D / chunks; k < (c + 1) * D / chunks; ++k) {
        const int* path = path_ptr + 2 * k * max_len;
        const uint8_t* arg = a + ((b * D) + k) * crop_h * crop_w;
        for (int64_t i = 0; i < crop_h; ++i) {
          const scalar_t* g_row = g + b * stride[0] + k * stride[1] + i * stride[2];
          for (int64_t j = 0; j < crop_w; ++j) {
            const int p = arg[i * crop_w + j];
            acc[(i + path[2 * p]) * width + j + radius_floor + path[2 * p + 1]] -= g_row[j * stride[3]];
          }
        }
      }
    });
  });
  return chunks == 1 ? partial.squeeze(1) : partial.sum(1);
}

// edge [B, h, w] -> planes [B, D, h, w] (affinity ** beta, 0 off-grid), norm [B, h, w]
std::tuple<at::Tensor, at::Tensor> transition_stencil_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                          const at::Tensor& lengths, double beta) {
  check_path_args("transition_stencil_cpu", edge_in, paths, lengths, /*cuda=*/false);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2);
  const int64_t D = paths.size(0), max_len = paths.size(1);
  auto planes = at::zeros({B, D, H, W}, edge.options());
  auto norm = at::empty({B, H, W}, edge.options());
  const auto dirs = paths.select(1, 0).contiguous();  // [D, 2] destinations
  const at::Tensor narrow = narrowed_exactly(edge);
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "transition_stencil_cpu", [&] {
    const scalar_t* e = edge.data_ptr<scalar_t>();
    scalar_t* s = planes.data_ptr<scalar_t>();
    scalar_t* n = norm.data_ptr<scalar_t>();
    const int* path_ptr = paths.data_ptr<int>();
    const int* len_ptr = lengths.data_ptr<int>();
    const int* dir_ptr = dirs.data_ptr<int>();
    // the path maxima vectorise: ~0.25 ns per (pixel, path point), so a thread per 2e6 of them
    // (~0.5 ms; a VOC-sized map, 94x125, has 4.4e6 at radius 5)
    const double work = (double)B * D * H * W * max_len, per_thread = 2e6;
    if (narrow.defined()) {  // float64 (narrowed_exactly)
      const float* e32 = narrow.data_ptr<float>();
      double* s64 = reinterpret_cast<double*>(s);
      parallel_chunks(B * D * H, 8, work, [&](int64_t begin, int64_t end) {
        stencil_rows_narrow_any(e32, s64, path_ptr, len_ptr, dir_ptr, D, max_len, H, W, beta, begin, end);
      }, per_thread);
    } else {
      parallel_chunks(B * D * H, 8, work, [&](int64_t begin, int64_t end) {
        stencil_rows_any(e, s, path_ptr, len_ptr, dir_ptr, D, max_len, H, W, (scalar_t)beta, begin, end);
      }, per_thread);
    }
    parallel_chunks(B * H, 16, (double)B * H * W * 2 * D, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        norm_row_any(s + (row / H) * D * H * W, dir_ptr, D, H, W, row % H, n + row * W);
      }
    });
  });
  return {planes, norm};
}

// The per-element forms that the CUDA kernels run (kernels/affinity.h), on the CPU, so that the
// CPU tests check the GPU arithmetic. Slower; not used by "auto".
std::tuple<at::Tensor, at::Tensor> path_affinity_portable_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                              const at::Tensor& lengths, int64_t radius_floor) {
  check_affinity_args("path_affinity_portable_cpu", edge_in, paths, lengths, radius_floor, /*cuda=*/false);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  const int64_t crop_h = H - radius_floor, crop_w = W - 2 * radius_floor;
  TORCH_CHECK(crop_h >= 0 && crop_w >= 0, "path_affinity_portable_cpu: edge smaller than the search window");
  auto affinity = at::empty({B, D, crop_h, crop_w}, edge.options());
  auto argmax = at::empty({B, D, crop_h, crop_w}, edge.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "path_affinity_portable_cpu", [&] {
    const int64_t total = affinity.numel();
    for (int64_t idx = 0; idx < total; ++idx) {
      const int64_t j = idx % crop_w, i = (idx / crop_w) % crop_h, k = (idx / (crop_w * crop_h)) % D;
      const int64_t b = idx / (crop_w * crop_h * D);
      int arg;
      const scalar_t m = kernels::path_max(edge.data_ptr<scalar_t>() + b * H * W, (int)W, (int)i,
                                           (int)(j + radius_floor), paths.data_ptr<int>() + 2 * k * paths.size(1),
                                           lengths.data_ptr<int>()[k], &arg);
      affinity.data_ptr<scalar_t>()[idx] = scalar_t(1) - m;
      argmax.data_ptr<uint8_t>()[idx] = (uint8_t)arg;
    }
  });
  return {affinity, argmax};
}

at::Tensor path_affinity_backward_portable_cpu(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                               const at::Tensor& paths, const at::Tensor& lengths,
                                               int64_t radius_floor, int64_t height, int64_t width) {
  check_backward_args("path_affinity_backward_portable_cpu", grad_in, argmax_in, paths, lengths, radius_floor, height, width,
                      false);
  const auto grad = grad_in.contiguous();
  const auto argmax = argmax_in.contiguous();
  const int64_t B = grad.size(0), D = grad.size(1), crop_h = grad.size(2), crop_w = grad.size(3);
  auto grad_edge = at::empty({B, height, width}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "path_affinity_backward_portable_cpu", [&] {
    for (int64_t idx = 0; idx < grad_edge.numel(); ++idx) {
      const int64_t x = idx % width, y = (idx / width) % height, b = idx / (width * height);
      const int64_t image = b * D * crop_h * crop_w;
      grad_edge.data_ptr<scalar_t>()[idx] = kernels::path_affinity_grad_at(
          grad.data_ptr<scalar_t>() + image, argmax.data_ptr<uint8_t>() + image, paths.data_ptr<int>(),
          lengths.data_ptr<int>(), (int)D, (int)paths.size(1), (int)crop_h, (int)crop_w, (int)radius_floor, (int)y,
          (int)x);
    }
  });
  return grad_edge;
}

std::tuple<at::Tensor, at::Tensor> transition_stencil_portable_cpu(const at::Tensor& edge_in, const at::Tensor& paths,
                                                                   const at::Tensor& lengths, double beta) {
  check_path_args("transition_stencil_portable_cpu", edge_in, paths, lengths, /*cuda=*/false);
  const auto edge = edge_in.contiguous();
  const int64_t B = edge.size(0), H = edge.size(1), W = edge.size(2), D = paths.size(0);
  auto planes = at::empty({B, D, H, W}, edge.options());
  auto norm = at::empty({B, H, W}, edge.options());
  const auto dirs = paths.select(1, 0).contiguous();
  AT_DISPATCH_FLOATING_TYPES(edge.scalar_type(), "transition_stencil_portable_cpu", [&] {
    scalar_t* s = planes.data_ptr<scalar_t>();
    for (int64_t idx = 0; idx < planes.numel(); ++idx) {
      const int64_t x = idx % W, y = (idx / W) % H, k = (idx / (W * H)) % D, b = idx / (W * H * D);
      s[idx] = kernels::stencil_weight(edge.data_ptr<scalar_t>() + b * H * W, (int)H, (int)W, (int)y, (int)x,
                                       paths.data_ptr<int>() + 2 * k * paths.size(1), lengths.data_ptr<int>()[k],
                                       (scalar_t)beta);
    }
    for (int64_t idx = 0; idx < norm.numel(); ++idx) {
      const int64_t x = idx % W, y = (idx / W) % H, b = idx / (W * H);
      norm.data_ptr<scalar_t>()[idx] =
          kernels::stencil_norm_at(s + b * D * H * W, dirs.data_ptr<int>(), (int)D, (int)H, (int)W, (int)y, (int)x);
    }
  });
  return {planes, norm};
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("path_affinity", &path_affinity_cpu);
  m.impl("_path_affinity_backward", &path_affinity_backward_cpu);
  m.impl("transition_stencil", &transition_stencil_cpu);
  m.impl("_path_affinity_portable", &path_affinity_portable_cpu);
  m.impl("_path_affinity_backward_portable", &path_affinity_backward_portable_cpu);
  m.impl("_transition_stencil_portable", &transition_stencil_portable_cpu);
}

}  // namespace irnet_fast
