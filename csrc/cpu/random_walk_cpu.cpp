// CPU random walk on zero-padded planes: plain normalised stencil steps, or the fused passes of
// the Chebyshev evaluation (kernels/random_walk.h, docs/chebyshev.md).
//
// The fast path keeps values, planes and the inverse norm in buffers padded by P = max |offset|
// on every side (zeros there), so the inner loop is a branch-free multiply-add over contiguous
// rows that the compiler vectorises; blocks of BLOCK columns stay in registers across the 2D + 1
// neighbours. Zero planes and a zero inverse norm in the padding keep padded values at zero.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/ArrayRef.h>
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
#include "../kernels/random_walk.h"
#include "simd.h"
#include "threads.h"

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
typedef float vfloat8 __attribute__((vector_size(32)));  // 8 floats, widened to one vdouble

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

// One fused Chebyshev pass over one padded row of CB channels: the vector form of
// kernels::chebyshev_pass_at, with the values v_k kept in the arithmetic type A (double) rather
// than rounded to T each pass. Weights are stored as T and widened on load (for float32 inputs
// that costs one conversion per plane vector, shared by the CB channels, instead of one per
// value). VT: 8 lanes of T, VA: 8 lanes of A.
template <typename T, typename A, typename VT, typename VA, int CB>
IRNET_INLINE void chebyshev_row(const A* __restrict cur, A* __restrict prev, A* __restrict result,
                                const T* __restrict planes, const T* __restrict inv_norm,
                                const int64_t* __restrict offsets, int64_t num_dirs, int64_t plane,
                                int64_t q0, int64_t blocks, A coefficient, bool first) {
  constexpr int kLanes = sizeof(VT) / sizeof(T);
  static_assert(sizeof(VA) / sizeof(A) == kLanes, "VT and VA must have the same lanes");
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    VA fwd[CB], bwd[CB];
    for (int c = 0; c < CB; ++c) {
      fwd[c] = load<VA>(cur + c * plane + q);
      bwd[c] = VA{};
    }
    for (int64_t k = 0; k < num_dirs; ++k) {
      const int64_t o = offsets[k];
      const VA s_fwd = __builtin_convertvector(load<VT>(planes + k * plane + q), VA);      // S_k(p)
      const VA s_bwd = __builtin_convertvector(load<VT>(planes + k * plane + q - o), VA);  // S_k(p - o_k)
      for (int c = 0; c < CB; ++c) {
        fwd[c] += s_fwd * load<VA>(cur + c * plane + q + o);
        bwd[c] += s_bwd * load<VA>(cur + c * plane + q - o);
      }
    }
    const VA inv = __builtin_convertvector(load<VT>(inv_norm + q), VA);
    for (int c = 0; c < CB; ++c) {
      const VA applied = (fwd[c] + bwd[c]) * inv;
      const VA next = first ? applied : A(2) * applied - load<VA>(prev + c * plane + q);
      store<VA>(prev + c * plane + q, next);
      if (coefficient != A(0)) store<VA>(result + c * plane + q, load<VA>(result + c * plane + q) + coefficient * next);
    }
  }
}

template <typename T, typename A, typename VT, typename VA>
IRNET_INLINE void chebyshev_row_channels(const A* cur, A* prev, A* result, const T* planes, const T* inv_norm,
                                         const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                                         int64_t blocks, A coefficient, bool first, int channels) {
#define IRNET_CHEB_ROW(CB) \
  chebyshev_row<T, A, VT, VA, CB>(cur, prev, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks, \
                                  coefficient, first)
  switch (channels) {
    case 1: return IRNET_CHEB_ROW(1);
    case 2: return IRNET_CHEB_ROW(2);
    case 3: return IRNET_CHEB_ROW(3);
    default: return IRNET_CHEB_ROW(4);
  }
#undef IRNET_CHEB_ROW
}

IRNET_CLONES void chebyshev_row_any(const double* cur, double* prev, double* result, const float* planes,
                                    const float* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                    int64_t q0, int64_t blocks, double coefficient, bool first, int channels) {
  chebyshev_row_channels<float, double, vfloat8, vdouble>(cur, prev, result, planes, inv_norm, offsets, num_dirs,
                                                          plane, q0, blocks, coefficient, first, channels);
}

IRNET_CLONES void chebyshev_row_any(const double* cur, double* prev, double* result, const double* planes,
                                    const double* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                    int64_t q0, int64_t blocks, double coefficient, bool first, int channels) {
  chebyshev_row_channels<double, double, vdouble, vdouble>(cur, prev, result, planes, inv_norm, offsets, num_dirs,
                                                           plane, q0, blocks, coefficient, first, channels);
}

// Copies [B, K, h, w] into the interior of a zeroed padded [B, K, h + 2P, row_stride] buffer.
template <typename T>
at::Tensor to_padded(const at::Tensor& t, const PaddedLayout& layout) {
  const int64_t B = t.size(0), K = t.size(1), h = t.size(2), w = t.size(3);
  auto out = at::zeros({B, K, h + 2 * layout.pad, layout.row_stride}, t.options());
  out.narrow(2, layout.pad, h).narrow(3, layout.pad, w).copy_(t);
  return out;
}

// The parallel units of a walk: (image, group of up to kMaxChannelBlock channels), each run by one
// thread for all passes (threads.h says why). With few images the channels of an image are split
// into as many groups as there are threads (3 channels on 2 threads: 2 + 1), as evenly as possible.
struct WalkUnits {
  int64_t batch, channels, groups;  // groups per image
  int threads;
  int64_t count() const { return batch * groups; }
  void unit(int64_t u, int64_t* b, int64_t* c0, int* size) const {
    *b = u / groups;
    const int64_t g = u % groups, base = channels / groups, extra = channels % groups;
    *c0 = g * base + std::min(g, extra);
    *size = (int)(base + (g < extra ? 1 : 0));
  }
};

WalkUnits plan_units(int64_t B, int64_t C, double work) {
  WalkUnits units;
  units.batch = B;
  units.channels = C;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t fewest = (C + kMaxChannelBlock - 1) / kMaxChannelBlock;
  units.groups = std::min(C, std::max(fewest, (threads + B - 1) / B));
  units.threads = threads_for(units.count(), work);
  if (units.threads == 1) units.groups = fewest;  // one thread: the widest channel blocks
  return units;
}

// Temporal blocking: `group` passes of one unit sweep the rows together, pass j + 1 running
// pad + 1 rows behind pass j, so a row's planes and values are reused by every pass of the group
// while they are still in the L2 cache (the walk is bound by streaming the D planes otherwise).
// The lag makes the two ping-pong buffers safe: pass j + 1 at row r needs pass j's rows up to
// r + pad, which are done, and it overwrites row r of the buffer that pass j reads only at rows
// > r (steps: pass j's source; Chebyshev: v_{k-1}, read by pass k at rows >= r + 1).
template <typename F>
void wavefront(int64_t passes, int64_t rows, int64_t pad, int64_t group, const F& row_fn) {
  const int64_t lag = pad + 1;
  for (int64_t p0 = 0; p0 < passes; p0 += group) {
    const int64_t g = std::min(group, passes - p0);
    for (int64_t t = 0; t < rows + (g - 1) * lag; ++t) {
      for (int64_t j = 0; j < g; ++j) {
        const int64_t row = t - j * lag;
        if (row >= 0 && row < rows) row_fn(p0 + j, row);
      }
    }
  }
}

// Passes per wavefront: as many as keep (pass count x lag) rows of planes and values within
// about half of a 1 MB L2, at least 2 (then L3 still serves the rows of the second pass).
int64_t wave_group(const PaddedLayout& layout, int64_t num_dirs, int64_t weight_bytes, int64_t value_bytes_per_col) {
  const double row_bytes = (double)layout.row_stride * ((num_dirs + 1) * weight_bytes + value_bytes_per_col);
  const double per_pass = row_bytes * (layout.pad + 1);
  return std::max<int64_t>(2, std::min<int64_t>(8, (int64_t)(512.0 * 1024 / std::max(per_pass, 1.0))));
}

PaddedLayout padded_layout(const at::Tensor& dirs, int64_t D, int64_t h, int64_t w, int64_t lanes,
                           std::vector<int64_t>* offsets) {
  const int* dir_ptr = dirs.data_ptr<int>();
  int64_t pad = 0;
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(dir_ptr[2 * k] >= 0, "random_walk_cpu: dirs expected dy >= 0 (half plane), got ", dir_ptr[2 * k]);
    pad = std::max<int64_t>(pad, std::max(dir_ptr[2 * k], std::abs(dir_ptr[2 * k + 1])));
  }
  PaddedLayout layout;
  layout.pad = pad;
  layout.blocks = (w + lanes - 1) / lanes;
  layout.row_stride = 2 * pad + layout.blocks * lanes;
  layout.plane = (h + 2 * pad) * layout.row_stride;
  offsets->resize(D);
  for (int64_t k = 0; k < D; ++k) (*offsets)[k] = dir_ptr[2 * k] * layout.row_stride + dir_ptr[2 * k + 1];
  return layout;
}

template <typename T, typename V>
at::Tensor walk_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                    const at::Tensor& dirs, int64_t steps) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  std::vector<int64_t> offsets;
  const PaddedLayout layout = padded_layout(dirs, D, h, w, kLanes, &offsets);
  const int64_t pad = layout.pad;

  const at::Tensor planes_p = to_padded<T>(planes, layout);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout);
  at::Tensor src = to_padded<T>(x, layout);
  at::Tensor dst = at::zeros_like(src);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  T* a = src.data_ptr<T>();
  T* b_buf = dst.data_ptr<T>();
  const WalkUnits units = plan_units(B, C, (double)steps * B * C * h * w * (2 * D + 1));
  run_units(units.count(), units.threads, [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t chan = (b * C + c0) * layout.plane;
    wavefront(steps, h, pad, wave_group(layout, D, sizeof(T), channels * 2 * sizeof(T)), [&](int64_t step, int64_t i) {
      const T* from = (step % 2 == 0) ? a : b_buf;
      T* to = (step % 2 == 0) ? b_buf : a;
      walk_row_any(from + chan, to + chan, planes_ptr + b * D * layout.plane, inv_ptr + b * layout.plane,
                   offsets.data(), D, layout.plane, layout.plane, (i + pad) * layout.row_stride + pad,
                   layout.blocks, channels);
    });
  });
  auto& result = (steps % 2 == 0) ? src : dst;
  return result.narrow(2, pad, h).narrow(3, pad, w).contiguous();
}

// sum_k c_k T_k(P) x with one fused pass per degree (kernels/random_walk.h): two padded float64
// value buffers that ping-pong (v_{k+1} overwrites v_{k-1}) and a float64 accumulator; the
// weights stay in the input dtype.
template <typename T>
at::Tensor chebyshev_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                         const at::Tensor& dirs, c10::ArrayRef<double> coefficients) {
  constexpr int64_t kLanes = 8;  // one vdouble of arithmetic per vector of columns
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  std::vector<int64_t> offsets;
  const PaddedLayout layout = padded_layout(dirs, D, h, w, kLanes, &offsets);
  const int64_t pad = layout.pad;
  const at::Tensor planes_p = to_padded<T>(planes, layout);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout);
  at::Tensor first_buf = to_padded<double>(x.to(at::kDouble), layout);  // v_0
  at::Tensor second_buf = at::zeros_like(first_buf);
  at::Tensor result = first_buf.mul(coefficients[0]);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  double* a = first_buf.data_ptr<double>();
  double* b_buf = second_buf.data_ptr<double>();
  double* r = result.data_ptr<double>();
  const int64_t degree = (int64_t)coefficients.size() - 1;
  const WalkUnits units = plan_units(B, C, (double)degree * B * C * h * w * (2 * D + 1));
  run_units(units.count(), units.threads, [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t chan = (b * C + c0) * layout.plane;
    const int64_t group = wave_group(layout, D, sizeof(T), channels * 3 * sizeof(double));
    wavefront(degree, h, pad, group, [&](int64_t pass, int64_t i) {
      const int64_t k = pass + 1;
      const double* cur = (k % 2 == 1) ? a : b_buf;  // v_{k-1}
      double* prev = (k % 2 == 1) ? b_buf : a;       // v_{k-2}, becomes v_k
      chebyshev_row_any(cur + chan, prev + chan, r + chan, planes_ptr + b * D * layout.plane,
                        inv_ptr + b * layout.plane, offsets.data(), D, layout.plane,
                        (i + pad) * layout.row_stride + pad, layout.blocks, coefficients[k], k == 1, channels);
    });
  });
  return result.narrow(2, pad, h).narrow(3, pad, w).to(x.scalar_type()).contiguous();
}

at::Tensor random_walk_chebyshev_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                     const at::Tensor& inv_norm_in, const at::Tensor& dirs_in,
                                     c10::ArrayRef<double> coefficients) {
  check_walk_args("random_walk_chebyshev_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  check_coefficients("random_walk_chebyshev_cpu", coefficients);
  const auto x = x_in.contiguous();
  if (x.numel() == 0) return x.clone();
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  if (x.scalar_type() == at::kFloat) return chebyshev_cpu<float>(x, planes, inv_norm, dirs, coefficients);
  return chebyshev_cpu<double>(x, planes, inv_norm, dirs, coefficients);
}

// The per-pixel Chebyshev pass that the CUDA kernels run (kernels::chebyshev_pass_at), on the CPU
// and without padding: lets the CPU tests check the GPU arithmetic. Not used by "auto".
at::Tensor random_walk_chebyshev_portable_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                              const at::Tensor& inv_norm_in, const at::Tensor& dirs_in,
                                              c10::ArrayRef<double> coefficients) {
  check_walk_args("random_walk_chebyshev_portable_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  check_coefficients("random_walk_chebyshev_portable_cpu", coefficients);
  auto current = x_in.contiguous().clone();
  if (current.numel() == 0) return current;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  auto previous = at::empty_like(current);
  auto result = current.to(at::kDouble, /*non_blocking=*/false, /*copy=*/true).mul_(coefficients[0]);
  const int64_t B = current.size(0), C = current.size(1), h = current.size(2), w = current.size(3);
  const int64_t D = planes.size(1);
  AT_DISPATCH_FLOATING_TYPES(current.scalar_type(), "random_walk_chebyshev_portable_cpu", [&] {
    scalar_t* cur = current.data_ptr<scalar_t>();
    scalar_t* prev = previous.data_ptr<scalar_t>();
    double* acc = result.data_ptr<double>();
    for (size_t k = 1; k < coefficients.size(); ++k) {
      at::parallel_for(0, B * C * h, 8, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          const int64_t b = u / (C * h), c = (u / h) % C, y = u % h;
          const int64_t chan = (b * C + c) * h * w;
          for (int64_t x = 0; x < w; ++x) {
            kernels::chebyshev_pass_at<scalar_t, double>(
                cur + chan, prev + chan, acc + chan, planes.data_ptr<scalar_t>() + b * D * h * w,
                inv_norm.data_ptr<scalar_t>() + b * h * w, dirs.data_ptr<int>(), (int)D, (int)h, (int)w,
                coefficients[k], k == 1, (int)y, (int)x);
          }
        }
      });
      std::swap(cur, prev);
    }
  });
  return result.to(x_in.scalar_type());
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
  m.impl("random_walk_chebyshev", &random_walk_chebyshev_cpu);
  m.impl("_random_walk_chebyshev_portable", &random_walk_chebyshev_portable_cpu);
}

}  // namespace irnet_fast
