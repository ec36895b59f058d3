// CPU random walk: 2**exp_times normalised stencil steps on zero-padded planes.
//
// The fast path keeps values, planes and the inverse norm in buffers padded by P = max |offset|
// on every side (zeros there), so the inner loop is a branch-free multiply-add over contiguous
// rows that the compiler vectorises; blocks of BLOCK columns stay in registers across the 2D + 1
// neighbours. Zero planes and a zero inverse norm in the padding keep padded values at zero.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cstdlib>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../kernels/affinity.h"
#include "simd.h"

namespace irnet_fast {
namespace {

struct PaddedLayout {
  int64_t pad, row_stride, plane;  // plane: elements of one padded [h + 2P, row_stride] grid
  int64_t blocks;                  // column blocks per row
};

// 64-byte vectors (GCC vector extension): one zmm with AVX-512, two ymm with AVX2, four xmm
// otherwise. Loads and stores are unaligned: rows are shifted by arbitrary offsets.
typedef float vfloat __attribute__((vector_size(64)));
typedef double vdouble __attribute__((vector_size(64)));

// memcpy compiles to one unaligned vector move (vmovups)
template <typename V, typename T>
IRNET_INLINE V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
IRNET_INLINE void store(T* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// Steps one padded row of CB channels (channel planes `chan_stride` apart), one vector of
// columns at a time. Each plane value is loaded once for all CB channels; the 2 CB accumulators
// (forward and backward neighbours per channel) are independent chains that hide FMA latency.
template <typename T, typename V, int CB>
IRNET_INLINE void walk_row(const T* __restrict src, T* __restrict dst,
                                                    const T* __restrict planes, const T* __restrict inv_norm,
                                                    const int64_t* __restrict offsets, int64_t num_dirs,
                                                    int64_t plane, int64_t chan_stride, int64_t q0,
                                                    int64_t blocks) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    V fwd[CB], bwd[CB];
    for (int c = 0; c < CB; ++c) {
      fwd[c] = load<V>(src + c * chan_stride + q);
      bwd[c] = V{};
    }
    for (int64_t k = 0; k < num_dirs; ++k) {
      const int64_t o = offsets[k];
      const V s_fwd = load<V>(planes + k * plane + q);      // S_k(p)
      const V s_bwd = load<V>(planes + k * plane + q - o);  // S_k(p - o_k)
      for (int c = 0; c < CB; ++c) {
        fwd[c] += s_fwd * load<V>(src + c * chan_stride + q + o);
        bwd[c] += s_bwd * load<V>(src + c * chan_stride + q - o);
      }
    }
    const V inv = load<V>(inv_norm + q);
    for (int c = 0; c < CB; ++c) store<V>(dst + c * chan_stride + q, (fwd[c] + bwd[c]) * inv);
  }
}

constexpr int kMaxChannelBlock = 4;

template <typename T, typename V>
IRNET_INLINE void walk_row_channels(const T* src, T* dst, const T* planes,
                                                             const T* inv_norm, const int64_t* offsets,
                                                             int64_t num_dirs, int64_t plane, int64_t chan_stride,
                                                             int64_t q0, int64_t blocks, int channels) {
  switch (channels) {
    case 1: return walk_row<T, V, 1>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks);
    case 2: return walk_row<T, V, 2>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks);
    case 3: return walk_row<T, V, 3>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks);
    default: return walk_row<T, V, 4>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks);
  }
}

IRNET_CLONES void walk_row_any(const float* src, float* dst, const float* planes, const float* inv_norm,
                               const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t chan_stride,
                               int64_t q0, int64_t blocks, int channels) {
  walk_row_channels<float, vfloat>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks,
                                   channels);
}

IRNET_CLONES void walk_row_any(const double* src, double* dst, const double* planes, const double* inv_norm,
                               const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t chan_stride,
                               int64_t q0, int64_t blocks, int channels) {
  walk_row_channels<double, vdouble>(src, dst, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q0, blocks,
                                     channels);
}

// Copies [B, K, h, w] into the interior of a zeroed padded [B, K, h + 2P, row_stride] buffer.
template <typename T>
at::Tensor to_padded(const at::Tensor& t, const PaddedLayout& layout) {
  const int64_t B = t.size(0), K = t.size(1), h = t.size(2), w = t.size(3);
  auto out = at::zeros({B, K, h + 2 * layout.pad, layout.row_stride}, t.options());
  out.narrow(2, layout.pad, h).narrow(3, layout.pad, w).copy_(t);
  return out;
}

template <typename T, typename V>
at::Tensor walk_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                    const at::Tensor& dirs, int64_t steps) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  const int* dir_ptr = dirs.data_ptr<int>();
  int64_t pad = 0;
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(dir_ptr[2 * k] >= 0, "random_walk_cpu: dirs expected dy >= 0 (half plane), got ", dir_ptr[2 * k]);
    pad = std::max<int64_t>(pad, std::max(dir_ptr[2 * k], std::abs(dir_ptr[2 * k + 1])));
  }
  PaddedLayout layout;
  layout.pad = pad;
  layout.blocks = (w + kLanes - 1) / kLanes;
  layout.row_stride = 2 * pad + layout.blocks * kLanes;
  layout.plane = (h + 2 * pad) * layout.row_stride;
  std::vector<int64_t> offsets(D);
  for (int64_t k = 0; k < D; ++k) offsets[k] = dir_ptr[2 * k] * layout.row_stride + dir_ptr[2 * k + 1];

  const at::Tensor planes_p = to_padded<T>(planes, layout);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout);
  at::Tensor src = to_padded<T>(x, layout);
  at::Tensor dst = at::zeros_like(src);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  T* a = src.data_ptr<T>();
  T* b_buf = dst.data_ptr<T>();
  // A unit is one row of up to `block` channels of one image. Independent (image, channel group)
  // pairs need no synchronisation between steps: a barrier per step stalls all 256 steps whenever
  // another process takes a thread's core (measured on a loaded 2-core machine: 70 ms -> 1.2 s at
  // 160x160). So pairs are used when there are plenty, or when smaller channel blocks split the
  // work evenly over the threads (2 channels on 2 threads); otherwise rows are split per step.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t block = kMaxChannelBlock;
  bool independent = B * ((C + block - 1) / block) >= 2 * threads;
  for (int64_t cb = kMaxChannelBlock; !independent && cb >= 1; --cb) {
    if (C % cb == 0 && (B * (C / cb)) % threads == 0) {
      block = cb;
      independent = true;
    }
  }
  const int64_t channel_groups = (C + block - 1) / block;
  const int64_t groups = B * channel_groups;
  auto step_rows = [&](const T* from, T* to, int64_t group, int64_t row_begin, int64_t row_end) {
    const int64_t b = group / channel_groups, c0 = (group % channel_groups) * block;
    const int channels = (int)std::min<int64_t>(block, C - c0);
    const int64_t chan = (b * C + c0) * layout.plane;
    for (int64_t i = row_begin; i < row_end; ++i) {
      walk_row_any(from + chan, to + chan, planes_ptr + b * D * layout.plane, inv_ptr + b * layout.plane,
                   offsets.data(), D, layout.plane, layout.plane, (i + pad) * layout.row_stride + pad,
                   layout.blocks, channels);
    }
  };
  // Below this much work per step a barrier costs more than the second thread saves.
  const bool small = (int64_t)h * w * (D + 1) < (int64_t)1 << 16;
  if (independent || small) {
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t group = begin; group < end; ++group) {
        T* from = a;
        T* to = b_buf;
        for (int64_t step = 0; step < steps; ++step) {
          step_rows(from, to, group, 0, h);
          std::swap(from, to);
        }
      }
    });
  } else {
    // Fewer (image, channel) pairs than threads on a large map: split rows, synchronise after
    // every step. One OpenMP team for all steps: a barrier per step instead of a fork and join.
#ifdef _OPENMP
    const int team = (int)std::min<int64_t>(threads, groups * h);
#pragma omp parallel num_threads(team)
    {
      T* from = a;
      T* to = b_buf;
      for (int64_t step = 0; step < steps; ++step) {
#pragma omp for schedule(static)
        for (int64_t u = 0; u < groups * h; ++u) step_rows(from, to, u / h, u % h, u % h + 1);
        std::swap(from, to);
      }
    }
#else
    for (int64_t step = 0; step < steps; ++step) {
      at::parallel_for(0, groups * h, 4, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) step_rows(a, b_buf, u / h, u % h, u % h + 1);
      });
      std::swap(a, b_buf);
    }
#endif
  }
  auto& result = (steps % 2 == 0) ? src : dst;
  return result.narrow(2, pad, h).narrow(3, pad, w).contiguous();
}

at::Tensor random_walk_cpu(const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                           const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  check_count("random_walk_cpu", "steps", steps);
  const auto x = x_in.contiguous();
  if (x.numel() == 0) return x.clone();
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  if (x.scalar_type() == at::kFloat) return walk_cpu<float, vfloat>(x, planes, inv_norm, dirs, steps);
  return walk_cpu<double, vdouble>(x, planes, inv_norm, dirs, steps);
}

// The per-pixel form that the CUDA kernel runs (kernels::walk_step_at), on the CPU: lets the
// CPU tests check the GPU arithmetic. Slower than random_walk_cpu; not used by "auto".
at::Tensor random_walk_portable_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                    const at::Tensor& inv_norm_in, const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_portable_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  check_count("random_walk_portable_cpu", "steps", steps);
  auto src = x_in.contiguous().clone();
  if (src.numel() == 0) return src;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  auto dst = at::empty_like(src);
  const int64_t B = src.size(0), C = src.size(1), h = src.size(2), w = src.size(3), D = planes.size(1);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "random_walk_portable_cpu", [&] {
    scalar_t* a = src.data_ptr<scalar_t>();
    scalar_t* b_buf = dst.data_ptr<scalar_t>();
    for (int64_t step = 0; step < steps; ++step) {
      at::parallel_for(0, B * C * h, 8, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          const int64_t b = u / (C * h), c = (u / h) % C, y = u % h;
          const int64_t chan = (b * C + c) * h * w;
          for (int64_t x = 0; x < w; ++x) {
            b_buf[chan + y * w + x] = kernels::walk_step_at(
                a + chan, planes.data_ptr<scalar_t>() + b * D * h * w, inv_norm.data_ptr<scalar_t>() + b * h * w,
                dirs.data_ptr<int>(), (int)D, (int)h, (int)w, (int)y, (int)x);
          }
        }
      });
      std::swap(a, b_buf);
    }
  });
  return (steps % 2 == 0) ? src : dst;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("random_walk", &random_walk_cpu);
  m.impl("_random_walk_portable", &random_walk_portable_cpu);
}

}  // namespace irnet_fast
