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
#include <cstdlib>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../kernels/affinity.h"

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
__attribute__((always_inline)) inline V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
__attribute__((always_inline)) inline void store(T* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// Steps `blocks` column blocks of one padded row; NV vectors per block give 2 NV independent
// accumulator chains, enough to hide the FMA latency.
template <typename T, typename V, int NV>
__attribute__((always_inline)) inline void walk_row(const T* __restrict src, T* __restrict dst,
                                                    const T* __restrict planes, const T* __restrict inv_norm,
                                                    const int64_t* __restrict offsets, int64_t num_dirs,
                                                    int64_t plane, int64_t q0, int64_t blocks) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes * NV;
    V fwd[NV], bwd[NV];
    for (int v = 0; v < NV; ++v) {
      fwd[v] = load<V>(src + q + v * kLanes);
      bwd[v] = V{};
    }
    for (int64_t k = 0; k < num_dirs; ++k) {
      const int64_t o = offsets[k];
      const T* s_fwd = planes + k * plane + q;      // S_k(p)
      const T* s_bwd = planes + k * plane + q - o;  // S_k(p - o_k)
      for (int v = 0; v < NV; ++v) {
        fwd[v] += load<V>(s_fwd + v * kLanes) * load<V>(src + q + o + v * kLanes);
        bwd[v] += load<V>(s_bwd + v * kLanes) * load<V>(src + q - o + v * kLanes);
      }
    }
    for (int v = 0; v < NV; ++v) {
      store<V>(dst + q + v * kLanes, (fwd[v] + bwd[v]) * load<V>(inv_norm + q + v * kLanes));
    }
  }
}

// One clone per instruction set, chosen at load time: the package stays portable while the
// hot loop gets AVX2/AVX-512 where the CPU has them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IRNET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IRNET_CLONES
#endif

constexpr int kVectorsPerBlock = 2;
constexpr int kBlockFloat = kVectorsPerBlock * sizeof(vfloat) / sizeof(float);
constexpr int kBlockDouble = kVectorsPerBlock * sizeof(vdouble) / sizeof(double);

IRNET_CLONES void walk_row_float(const float* src, float* dst, const float* planes, const float* inv_norm,
                                 const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                                 int64_t blocks) {
  walk_row<float, vfloat, kVectorsPerBlock>(src, dst, planes, inv_norm, offsets, num_dirs, plane, q0, blocks);
}

IRNET_CLONES void walk_row_double(const double* src, double* dst, const double* planes, const double* inv_norm,
                                  const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                                  int64_t blocks) {
  walk_row<double, vdouble, kVectorsPerBlock>(src, dst, planes, inv_norm, offsets, num_dirs, plane, q0, blocks);
}

inline void walk_row_any(const float* s, float* d, const float* p, const float* n, const int64_t* o, int64_t D,
                         int64_t plane, int64_t q0, int64_t blocks) {
  walk_row_float(s, d, p, n, o, D, plane, q0, blocks);
}
inline void walk_row_any(const double* s, double* d, const double* p, const double* n, const int64_t* o,
                         int64_t D, int64_t plane, int64_t q0, int64_t blocks) {
  walk_row_double(s, d, p, n, o, D, plane, q0, blocks);
}

// Copies [B, K, h, w] into the interior of a zeroed padded [B, K, h + 2P, row_stride] buffer.
template <typename T>
at::Tensor to_padded(const at::Tensor& t, const PaddedLayout& layout) {
  const int64_t B = t.size(0), K = t.size(1), h = t.size(2), w = t.size(3);
  auto out = at::zeros({B, K, h + 2 * layout.pad, layout.row_stride}, t.options());
  out.narrow(2, layout.pad, h).narrow(3, layout.pad, w).copy_(t);
  return out;
}

template <typename T, int BLOCK>
at::Tensor walk_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                    const at::Tensor& dirs, int64_t steps) {
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  const int* dir_ptr = dirs.data_ptr<int>();
  int64_t pad = 0;
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(dir_ptr[2 * k] >= 0, "random_walk_cpu: dirs expected dy >= 0 (half plane), got ", dir_ptr[2 * k]);
    pad = std::max<int64_t>(pad, std::max(dir_ptr[2 * k], std::abs(dir_ptr[2 * k + 1])));
  }
  PaddedLayout layout;
  layout.pad = pad;
  layout.blocks = (w + BLOCK - 1) / BLOCK;
  layout.row_stride = 2 * pad + layout.blocks * BLOCK;
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
  const int64_t units = B * C * h;  // one unit: one row of one channel of one image
  for (int64_t step = 0; step < steps; ++step) {
    at::parallel_for(0, units, 8, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / (C * h), c = (u / h) % C, i = u % h;
        const int64_t chan = (b * C + c) * layout.plane;
        const int64_t q0 = (i + pad) * layout.row_stride + pad;
        walk_row_any(a + chan, b_buf + chan, planes_ptr + b * D * layout.plane, inv_ptr + b * layout.plane,
                     offsets.data(), D, layout.plane, q0, layout.blocks);
      }
    });
    std::swap(a, b_buf);
  }
  auto& result = (steps % 2 == 0) ? src : dst;
  return result.narrow(2, pad, h).narrow(3, pad, w).contiguous();
}

at::Tensor random_walk_cpu(const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                           const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  TORCH_CHECK(steps >= 0, "random_walk_cpu: steps expected >= 0, got ", steps);
  const auto x = x_in.contiguous();
  if (x.numel() == 0) return x.clone();
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  if (x.scalar_type() == at::kFloat) return walk_cpu<float, kBlockFloat>(x, planes, inv_norm, dirs, steps);
  return walk_cpu<double, kBlockDouble>(x, planes, inv_norm, dirs, steps);
}

// The per-pixel form that the CUDA kernel runs (kernels::walk_step_at), on the CPU: lets the
// CPU tests check the GPU arithmetic. Slower than random_walk_cpu; not used by "auto".
at::Tensor random_walk_portable_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                    const at::Tensor& inv_norm_in, const at::Tensor& dirs_in, int64_t steps) {
  check_walk_args("random_walk_portable_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  TORCH_CHECK(steps >= 0, "random_walk_portable_cpu: steps expected >= 0, got ", steps);
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
  m.impl("random_walk_portable", &random_walk_portable_cpu);
}

}  // namespace irnet_fast
