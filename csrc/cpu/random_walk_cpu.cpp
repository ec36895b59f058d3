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
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../kernels/random_walk.h"
#include "simd.h"
#include "threads.h"
#include "walk_layout.h"
#include "walk_tiles.h"

namespace irnet_fast {
namespace {

using namespace rows;

// Steps one padded row of CB channels (channel planes `chan_stride` apart), one vector of
// columns at a time (apply_at, walk_layout.h).
template <typename T, typename V, int CB>
IRNET_INLINE void walk_row(const T* __restrict src, T* __restrict dst, const T* __restrict planes,
                           const T* __restrict inv_norm, const int64_t* __restrict offsets, int64_t num_dirs,
                           int64_t plane, int64_t chan_stride, int64_t q0, int64_t blocks) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    V applied[CB];
    apply_at<T, V, CB>(src, planes, inv_norm, offsets, num_dirs, plane, chan_stride, q, applied);
    for (int c = 0; c < CB; ++c) store<V>(dst + c * chan_stride + q, applied[c]);
  }
}

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
// kernels::chebyshev_pass_at. Values, weights and the stencil arithmetic are in T (float32 for
// float32 inputs: twice the lanes of float64 and half the bytes); each v_k is stored in T and
// the accumulator is float64, as in the header. Summing the neighbours from 0 and adding the
// self term last keeps the float32 result ~1e-5 of the max off float64 at 94x125, several
// times closer than the reference's float32 walk (benchmarks/RESULTS_PRECISION.md).
template <typename T, typename V, int CB>
IRNET_INLINE void chebyshev_row(const T* __restrict cur, T* __restrict prev, double* __restrict result,
                                const T* __restrict planes, const T* __restrict inv_norm,
                                const int64_t* __restrict offsets, int64_t num_dirs, int64_t plane,
                                int64_t q0, int64_t blocks, double coefficient, bool first) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    V applied[CB];
    apply_at<T, V, CB>(cur, planes, inv_norm, offsets, num_dirs, plane, plane, q, applied);
    for (int c = 0; c < CB; ++c) {
      const V next = first ? applied[c] : T(2) * applied[c] - load<V>(prev + c * plane + q);
      store<V>(prev + c * plane + q, next);
      if (coefficient != 0.0) add_scaled(result + c * plane + q, next, coefficient);
    }
  }
}

template <typename T, typename V>
IRNET_INLINE void chebyshev_row_channels(const T* cur, T* prev, double* result, const T* planes, const T* inv_norm,
                                         const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                                         int64_t blocks, double coefficient, bool first, int channels) {
#define IRNET_CHEB_ROW(CB) \
  chebyshev_row<T, V, CB>(cur, prev, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks, coefficient, first)
  switch (channels) {
    case 1: return IRNET_CHEB_ROW(1);
    case 2: return IRNET_CHEB_ROW(2);
    case 3: return IRNET_CHEB_ROW(3);
    default: return IRNET_CHEB_ROW(4);
  }
#undef IRNET_CHEB_ROW
}

IRNET_CLONES void chebyshev_row_any(const float* cur, float* prev, double* result, const float* planes,
                                    const float* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                    int64_t q0, int64_t blocks, double coefficient, bool first, int channels) {
  chebyshev_row_channels<float, vfloat>(cur, prev, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks,
                                        coefficient, first, channels);
}

IRNET_CLONES void chebyshev_row_any(const double* cur, double* prev, double* result, const double* planes,
                                    const double* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                    int64_t q0, int64_t blocks, double coefficient, bool first, int channels) {
  chebyshev_row_channels<double, vdouble>(cur, prev, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks,
                                          coefficient, first, channels);
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

// Waits until `counter` reaches `value` (the other band's progress): pause, then yield the core.
inline void wait_for(const std::atomic<int64_t>& counter, int64_t value) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < value; ++spins) {
    if (spins < 2048) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// The wavefront of one unit on two threads: the rows split into a top and a bottom band, each
// swept by one thread, the bottom band from the bottom up, so both reach the rows next to the
// split last in every pass. A pass may start on a row within pad + 1 rows of the split once the
// other band has finished the previous pass next to the split: that keeps both the reads of the
// previous pass's values and the ping-pong buffer (the pass overwrites what the other band's
// previous pass read) safe, as the lag does within a band. Each band publishes the passes it
// has finished next to the split; the two wait on each other once per pass, at the far end of
// their sweeps, so at equal speed neither waits. With fewer than two threads (a caller's
// parallel region) or a short image, the plain wavefront on one thread.
template <typename F>
void banded_wavefront(int64_t passes, int64_t rows, int64_t pad, int64_t group, const F& row_fn) {
  const int64_t reach = pad + 1, split = rows / 2;
  if (split < 2 * reach || rows - split < 2 * reach) return wavefront(passes, rows, pad, group, row_fn);
  std::atomic<int64_t> done[2];
  done[0].store(0);
  done[1].store(0);
  auto band = [&](int which) {
    const bool top = which == 0;
    wavefront(passes, top ? split : rows - split, pad, group, [&](int64_t pass, int64_t t) {
      const int64_t row = top ? t : rows - 1 - t;
      if (top ? row >= split - reach : row < split + reach) wait_for(done[1 - which], pass);
      row_fn(pass, row);
      if (row == (top ? split - 1 : split)) done[which].store(pass + 1, std::memory_order_release);
    });
  };
#ifdef _OPENMP
  if (omp_in_parallel()) return wavefront(passes, rows, pad, group, row_fn);
#pragma omp parallel num_threads(2)
  {
    if (omp_get_num_threads() == 2) {
      band(omp_get_thread_num());
    } else {
      wavefront(passes, rows, pad, group, row_fn);
    }
  }
#else
  std::thread bottom(band, 1);
  band(0);
  bottom.join();
#endif
}

// A unit's passes: banded on two threads when the plan says so, else the wavefront on this thread.
template <typename F>
void sweep(const WalkUnits& units, int64_t passes, int64_t rows, int64_t pad, int64_t group, const F& row_fn) {
  if (units.banded) return banded_wavefront(passes, rows, pad, group, row_fn);
  wavefront(passes, rows, pad, group, row_fn);
}

// Passes per wavefront: as many as keep (pass count x lag) rows of planes and values within
// about half of a 1 MB L2, at least 2 (then L3 still serves the rows of the second pass).
int64_t wave_group(const PaddedLayout& layout, int64_t num_dirs, int64_t weight_bytes, int64_t value_bytes_per_col) {
  const double row_bytes = (double)layout.row_stride * ((num_dirs + 1) * weight_bytes + value_bytes_per_col);
  const double per_pass = row_bytes * (layout.pad + 1);
  return std::max<int64_t>(2, std::min<int64_t>(8, (int64_t)(512.0 * 1024 / std::max(per_pass, 1.0))));
}


template <typename T, typename V>
at::Tensor walk_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                    const at::Tensor& dirs, int64_t steps) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  std::vector<int64_t> offsets;
  const PaddedLayout layout = padded_layout(dirs, D, h, w, kLanes, &offsets);
  const int64_t pad = layout.pad;

  const at::Tensor planes_p = to_padded<T>(planes, layout, kScratchPlanes);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout, kScratchInv);
  at::Tensor src = to_padded<T>(x, layout, kScratchFirst);
  at::Tensor dst = scratch(kScratchSecond, src.sizes(), src.options(), /*zero=*/true);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  T* a = src.data_ptr<T>();
  T* b_buf = dst.data_ptr<T>();
  const WalkUnits units = plan_units(B, C, (double)steps * B * C * h * w * (2 * D + 1));
  run_units(units.count(), units.unit_threads(), [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t chan = (b * C + c0) * layout.plane;
    sweep(units, steps, h, pad, wave_group(layout, D, sizeof(T), channels * 2 * sizeof(T)), [&](int64_t step, int64_t i) {
      const T* from = (step % 2 == 0) ? a : b_buf;
      T* to = (step % 2 == 0) ? b_buf : a;
      walk_row_any(from + chan, to + chan, planes_ptr + b * D * layout.plane, inv_ptr + b * layout.plane,
                   offsets.data(), D, layout.plane, layout.plane, (i + pad) * layout.row_stride + pad,
                   layout.blocks, channels);
    });
  });
  auto& result = (steps % 2 == 0) ? src : dst;
  return fresh_copy(result.narrow(2, pad, h).narrow(3, pad, w), x.scalar_type());
}

// sum_k c_k T_k(P) x with one fused pass per degree (kernels/random_walk.h): two padded value
// buffers in the input dtype that ping-pong (v_{k+1} overwrites v_{k-1}) and a float64 accumulator.
template <typename T, typename V>
at::Tensor chebyshev_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                         const at::Tensor& dirs, c10::ArrayRef<double> coefficients) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  std::vector<int64_t> offsets;
  const PaddedLayout layout = padded_layout(dirs, D, h, w, kLanes, &offsets);
  const int64_t pad = layout.pad;
  const at::Tensor planes_p = to_padded<T>(planes, layout, kScratchPlanes);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout, kScratchInv);
  at::Tensor first_buf = to_padded<T>(x, layout, kScratchFirst);  // v_0
  at::Tensor second_buf = scratch(kScratchSecond, first_buf.sizes(), first_buf.options(), /*zero=*/true);
  at::Tensor result = scratch(kScratchResult, first_buf.sizes(), first_buf.options().dtype(at::kDouble), false);
  result.copy_(first_buf).mul_(coefficients[0]);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  T* a = first_buf.data_ptr<T>();
  T* b_buf = second_buf.data_ptr<T>();
  double* r = result.data_ptr<double>();
  const int64_t degree = (int64_t)coefficients.size() - 1;
  const WalkUnits units = plan_units(B, C, (double)degree * B * C * h * w * (2 * D + 1));
  run_units(units.count(), units.unit_threads(), [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t chan = (b * C + c0) * layout.plane;
    const int64_t group = wave_group(layout, D, sizeof(T), channels * (2 * sizeof(T) + sizeof(double)));
    sweep(units, degree, h, pad, group, [&](int64_t pass, int64_t i) {
      const int64_t k = pass + 1;
      const T* cur = (k % 2 == 1) ? a : b_buf;  // v_{k-1}
      T* prev = (k % 2 == 1) ? b_buf : a;       // v_{k-2}, becomes v_k
      chebyshev_row_any(cur + chan, prev + chan, r + chan, planes_ptr + b * D * layout.plane,
                        inv_ptr + b * layout.plane, offsets.data(), D, layout.plane,
                        (i + pad) * layout.row_stride + pad, layout.blocks, coefficients[k], k == 1, channels);
    });
  });
  return fresh_copy(result.narrow(2, pad, h).narrow(3, pad, w), x.scalar_type());
}

// ------------------------------------------------------------------------------------------------
// The tiled float32 Chebyshev walk (walk_tiles.h): radius 5, AVX-512.

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IRNET_TILES 1
#define IRNET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi,bmi2")))

bool tiles_supported() {
  static const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return supported;
}

IRNET_AVX512 void chebyshev_tile_any(const float* cur, float* prev, double* result, const float* weights,
                                     const float* inv_norm, int64_t chan_stride, int64_t row_stride,
                                     int64_t inv_stride, int64_t at, int64_t weight_at, int64_t inv_at,
                                     int64_t blocks, double coefficient, bool first, int channels) {
#define IRNET_TILE(CB)                                                                                          \
  tiles::chebyshev_tile<CB>(cur, prev, result, weights, inv_norm, chan_stride, row_stride, inv_stride, at,   \
                            weight_at, inv_at, blocks, coefficient, first)
  switch (channels) {
    case 1: return IRNET_TILE(1);
    case 2: return IRNET_TILE(2);
    default: return IRNET_TILE(3);
  }
#undef IRNET_TILE
}
#else
bool tiles_supported() { return false; }
#endif

// IRNET_FAST_CPU_TILES=0 runs the row kernels instead (to compare the two; read on every call).
bool tiles_enabled() {
  const char* flag = std::getenv("IRNET_FAST_CPU_TILES");
  return flag == nullptr || std::string(flag) != "0";
}

constexpr int64_t kMaxTileChannels = 3;  // 4 rows x 3 channels: 12 of the 32 vector registers

// plane_of_slot[j]: the plane of `dirs` with the offset of slot j of walk_tiles.h; false when the
// directions are not the radius-5 set.
bool tile_slots(const at::Tensor& dirs, int64_t D, int* plane_of_slot) {
  if (D != tiles::kDirs) return false;
  const int* d = dirs.data_ptr<int>();
  for (int j = 0; j < tiles::kDirs; ++j) {
    plane_of_slot[j] = -1;
    for (int64_t k = 0; k < D; ++k) {
      if (d[2 * k] == tiles::kOffsets.dy[j] && d[2 * k + 1] == tiles::kOffsets.dx[j]) plane_of_slot[j] = (int)k;
    }
    if (plane_of_slot[j] < 0) return false;
  }
  return true;
}

// Passes per wavefront of the tiled walk: as many as keep the weights and values of the tiles in
// flight (the group's tiles and one above and below) within ~1.75 MB of the 2 MB L2 (measured at
// 94x125: 5.7 ms at 1.75 MB, 6.9 at 1 MB, 7.5 at 3 MB). Below 3 passes (images wider than ~300
// columns) the weights stream from L3 at every pass and the row kernels, with half the weight
// bytes, are faster (256x512: 111 ms against 148 ms): 0 then.
int64_t tile_group(int64_t w) {
  using namespace tiles;
  const int64_t blocks = (w + kLanes - 1) / kLanes, rs = kLeft + blocks * kLanes + kLanes;
  const double tile_bytes = kRows * (double)(blocks * kSlots * kLanes * sizeof(float) + kMaxTileChannels * rs * 16);
  const int64_t group = std::min<int64_t>(16, (int64_t)(1.75e6 / tile_bytes) - 2);
  return group >= 3 ? group : 0;
}

#ifdef IRNET_TILES
// chebyshev_cpu<float> on tiles: the same passes, the same wavefront (in tiles of 4 rows: pass
// j + 1 one tile behind pass j, which keeps the buffers safe since a tile is as tall as the
// stencil's reach), float32 values and arithmetic, float64 accumulator.
at::Tensor chebyshev_tiled_cpu(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                               const int* plane_of_slot, c10::ArrayRef<double> coefficients) {
  using namespace tiles;
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t tile_rows = (h + kRows - 1) / kRows, hp = tile_rows * kRows;
  const int64_t blocks = (w + kLanes - 1) / kLanes, rs = kLeft + blocks * kLanes + kLanes;
  const int64_t rows = hp + 2 * kPad, weight_row = blocks * kSlots * kLanes;
  const int64_t degree = (int64_t)coefficients.size() - 1;
  const WalkUnits units = plan_units(B, C, (double)degree * B * C * h * w * (2 * kDirs + 1), kMaxTileChannels);

  // weights [B][hp][blocks][2 D][16] and inverse norms [B][hp][rs], zero outside the image; every
  // element is written here (no zero fill first), whole in-image vectors by a fixed-size copy
  auto weights = scratch(kScratchPlanes, {B, hp * weight_row}, x.options(), /*zero=*/false);
  auto inv = scratch(kScratchInv, {B, hp * rs}, x.options(), /*zero=*/false);
  const float* s = planes.data_ptr<float>();
  const float* n = inv_norm.data_ptr<float>();
  float* wt = weights.data_ptr<float>();
  float* iv = inv.data_ptr<float>();
  constexpr size_t kVectorBytes = kLanes * sizeof(float);
  parallel_chunks(B * hp, 8, (double)B * hp * w * kSlots, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / hp, i = row % hp;
      float* iv_row = iv + b * hp * rs + i * rs;
      float* out = wt + b * hp * weight_row + i * weight_row;
      std::memset(iv_row, 0, rs * sizeof(float));
      if (i >= h) {
        std::memset(out, 0, weight_row * sizeof(float));
        continue;
      }
      std::memcpy(iv_row + kLeft, n + (b * h + i) * w, w * sizeof(float));
      for (int j = 0; j < kDirs; ++j) {
        const int64_t k = plane_of_slot[j], dy = kOffsets.dy[j], dx = kOffsets.dx[j];
        const float* fwd = s + ((b * tiles::kDirs + k) * h + i) * w;       // S_j(i, x)
        const float* bwd = s + ((b * tiles::kDirs + k) * h + i - dy) * w;  // S_j(i - dy, x - dx)
        for (int64_t xb = 0; xb < blocks; ++xb) {
          const int64_t x0 = xb * kLanes, x1 = std::min(w, x0 + kLanes);
          float* f = out + (xb * kSlots + j) * kLanes;
          float* g = out + (xb * kSlots + kDirs + j) * kLanes;
          if (x1 - x0 == kLanes) {
            std::memcpy(f, fwd + x0, kVectorBytes);
          } else {
            std::memset(f, 0, kVectorBytes);
            std::memcpy(f, fwd + x0, (x1 - x0) * sizeof(float));
          }
          const int64_t b0 = std::max(x0, dx), b1 = std::min(x1, w + dx);  // 0 <= x - dx < w
          if (i >= dy && b0 == x0 && b1 - b0 == kLanes) {
            std::memcpy(g, bwd + x0 - dx, kVectorBytes);
          } else {
            std::memset(g, 0, kVectorBytes);
            if (i >= dy && b1 > b0) std::memcpy(g + (b0 - x0), bwd + b0 - dx, (b1 - b0) * sizeof(float));
          }
        }
      }
    }
  });

  auto out = at::empty_like(x);
  const int64_t unit_size = rows * kMaxTileChannels * rs;
  auto values = scratch(kScratchFirst, {units.count(), 2, unit_size}, x.options(), /*zero=*/true);
  auto result = scratch(kScratchResult, {units.count(), unit_size}, x.options().dtype(at::kDouble), /*zero=*/true);
  const int64_t group = tile_group(w);
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  run_units(units.count(), units.unit_threads(), [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t row_stride = channels * rs;
    float* a = values.data_ptr<float>() + u * 2 * unit_size;
    float* a2 = a + unit_size;
    double* r = result.data_ptr<double>() + u * unit_size;
    for (int c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < h; ++i) {
        const float* src = xp + ((b * C + c0 + c) * h + i) * w;
        const int64_t at = (i + kPad) * row_stride + c * rs + kLeft;
        std::memcpy(a + at, src, w * sizeof(float));
        for (int64_t x_ = 0; x_ < w; ++x_) r[at + x_] = coefficients[0] * (double)src[x_];
      }
    }
    const float* wb = wt + b * hp * weight_row;
    const float* ib = iv + b * hp * rs;
    sweep(units, degree, tile_rows, 0, group, [&](int64_t pass, int64_t t) {
      const int64_t k = pass + 1;
      const float* cur = (k % 2 == 1) ? a : a2;  // v_{k-1}
      float* prev = (k % 2 == 1) ? a2 : a;       // v_{k-2}, becomes v_k
      chebyshev_tile_any(cur, prev, r, wb, ib, rs, row_stride, rs, (t * kRows + kPad) * row_stride + kLeft,
                         t * kRows * weight_row, t * kRows * rs + kLeft, blocks, coefficients[k], k == 1, channels);
    });
    for (int c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < h; ++i) {
        float* dst = op + ((b * C + c0 + c) * h + i) * w;
        const double* src = r + (i + kPad) * row_stride + c * rs + kLeft;
        for (int64_t x_ = 0; x_ < w; ++x_) dst[x_] = (float)src[x_];
      }
    }
  });
  return out;
}
#endif

at::Tensor random_walk_chebyshev_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                     const at::Tensor& inv_norm_in, const at::Tensor& dirs_in,
                                     c10::ArrayRef<double> coefficients) {
  check_walk_args("random_walk_chebyshev_cpu", x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  check_coefficients("random_walk_chebyshev_cpu", coefficients);
  const auto x = x_in.contiguous();
  if (x.numel() == 0) return x.clone();
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  if (x.scalar_type() == at::kFloat) {
#ifdef IRNET_TILES
    int plane_of_slot[tiles::kDirs];
    if (tiles_supported() && tiles_enabled() && tile_group(x.size(3)) > 0 &&
        tile_slots(dirs, planes.size(1), plane_of_slot)) {
      return chebyshev_tiled_cpu(x, planes, inv_norm, plane_of_slot, coefficients);
    }
#endif
    return chebyshev_cpu<float, vfloat>(x, planes, inv_norm, dirs, coefficients);
  }
  return chebyshev_cpu<double, vdouble>(x, planes, inv_norm, dirs, coefficients);
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
