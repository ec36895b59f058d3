// The padded row layout and the thread units shared by the CPU walk kernels
// (random_walk_cpu.cpp: the walks; walk_grad_cpu.cpp: the walk that keeps its states, and its
// reverse pass).
//
// Values, planes and the inverse norm live in buffers padded by P = max |offset| on every side
// (zeros there), so the inner loops are branch-free multiply-adds over contiguous rows; a row is
// padded on the right to whole vectors of columns.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/accumulate.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "simd.h"
#include "threads.h"

namespace irnet_fast {
namespace rows {

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

// result[0 .. lanes) += coefficient * v in float64 (float32 values widened, 8 lanes at a time).
IRNET_INLINE void add_scaled(double* result, const vdouble& v, double coefficient) {
  store<vdouble>(result, load<vdouble>(result) + coefficient * v);
}

IRNET_INLINE void add_scaled(double* result, const vfloat& v, double coefficient) {
  vfloat8 half[2];
  __builtin_memcpy(half, &v, sizeof(v));
  add_scaled(result, __builtin_convertvector(half[0], vdouble), coefficient);
  add_scaled(result + 8, __builtin_convertvector(half[1], vdouble), coefficient);
}

// P at the vector of columns starting at q of CB channels (channel planes `chan_stride` apart):
// applied[c] = (v(p) + sum_k S_k(p) v(p + o_k) + S_k(p - o_k) v(p - o_k)) / d(p). Each plane value is
// loaded once for all CB channels; the 2 CB accumulators (forward and backward neighbours per
// channel) are independent chains that hide FMA latency. The neighbour sums start from 0 and the
// self term comes last (kernels::walk_apply_channels): an accumulator that starts at v(p) rounds
// every small term against a large sum, an error that 256 float32 steps compound to 1e-4 of the
// max, 15 times that of this order.
template <typename T, typename V, int CB>
IRNET_INLINE void apply_at(const T* __restrict src, const T* __restrict planes, const T* __restrict inv_norm,
                           const int64_t* __restrict offsets, int64_t num_dirs, int64_t plane, int64_t chan_stride,
                           int64_t q, V (&applied)[CB]) {
  V fwd[CB], bwd[CB];
  for (int c = 0; c < CB; ++c) fwd[c] = bwd[c] = V{};
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
  for (int c = 0; c < CB; ++c) applied[c] = (load<V>(src + c * chan_stride + q) + (fwd[c] + bwd[c])) * inv;
}

struct PaddedLayout {
  int64_t pad, row_stride, plane;  // plane: elements of one padded [h + 2P, row_stride] grid
  int64_t blocks;                  // column blocks per row
};

inline PaddedLayout padded_layout(const at::Tensor& dirs, int64_t D, int64_t h, int64_t w, int64_t lanes,
                                  std::vector<int64_t>* offsets) {
  const int* dir_ptr = dirs.data_ptr<int>();
  int64_t pad = 0;
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(dir_ptr[2 * k] >= 0, "random_walk: dirs expected dy >= 0 (half plane), got ", dir_ptr[2 * k]);
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

// Working buffers kept by the calling thread between kernel calls, one per slot. Freshly mapped
// memory faults on the first touch of every 4 KB page, and whether the allocator maps it afresh
// depends on its history: measured at 94x125, 800-1200 faults and 1.6 ms of kernel time in some
// processes, none in others (the walk's median 5 ms in one process, 8 in the next). A slot keeps
// up to kMaxKeptBytes; larger buffers are freed after use. The views returned alias the slot
// until the thread's next call that uses it: nothing built on them may leave the kernel.
// IRNET_FAST_POISON_SCRATCH=1 fills the buffers not zeroed here with NaN (the tests).
enum ScratchSlot {
  kScratchPlanes, kScratchInv, kScratchFirst, kScratchSecond, kScratchResult,  // the walks
  kScratchGrad, kScratchPlaneAcc, kScratchInvAcc,                            // the reverse pass
  kScratchSlots
};

inline at::Tensor scratch(ScratchSlot slot, at::IntArrayRef sizes, const at::TensorOptions& options, bool zero) {
  constexpr int64_t kMaxKeptBytes = int64_t(64) << 20;
  thread_local at::Tensor kept[kScratchSlots];
  const int64_t numel = c10::multiply_integers(sizes);
  at::Tensor& block = kept[slot];
  at::Tensor out;
  if (numel * (int64_t)c10::elementSize(options.dtype().toScalarType()) > kMaxKeptBytes) {
    block = at::Tensor();
    out = at::empty(sizes, options);
  } else {
    if (!block.defined() || block.scalar_type() != options.dtype().toScalarType() || block.numel() < numel) {
      block = at::empty({numel}, options);
    }
    out = block.narrow(0, 0, numel).view(sizes);
  }
  if (zero) {
    out.zero_();
  } else if (const char* poison = std::getenv("IRNET_FAST_POISON_SCRATCH"); poison && poison[0] == '1') {
    out.fill_(std::numeric_limits<double>::quiet_NaN());  // the tests: a read before a write shows as NaN
  }
  return out;
}

// Copies [B, K, h, w] into the interior of a zeroed padded [B, K, h + 2P, row_stride] buffer
// (the thread's scratch `slot`).
template <typename T>
at::Tensor to_padded(const at::Tensor& t, const PaddedLayout& layout, ScratchSlot slot) {
  const int64_t B = t.size(0), K = t.size(1), h = t.size(2), w = t.size(3);
  auto out = scratch(slot, {B, K, h + 2 * layout.pad, layout.row_stride}, t.options(), /*zero=*/true);
  out.narrow(2, layout.pad, h).narrow(3, layout.pad, w).copy_(t);
  return out;
}

// A kernel's result as a tensor of its own (never a view of scratch).
inline at::Tensor fresh_copy(const at::Tensor& t, at::ScalarType dtype) {
  auto out = at::empty(t.sizes(), t.options().dtype(dtype));
  out.copy_(t);
  return out;
}

constexpr int kMaxChannelBlock = 4;

// The parallel units of a walk: (image, group of up to kMaxChannelBlock channels), each run by one
// thread for all passes (threads.h says why). With few images the channels of an image are split
// into as many groups as there are threads, as evenly as possible (4 channels of the row kernels on
// 3 threads: 2 + 1 + 1), unless one image on two threads shares its rows instead (plan_units).
struct WalkUnits {
  int64_t batch, channels, groups;  // groups per image
  int threads;
  bool banded;  // one unit (one image, all channels) whose rows two threads share (banded_wavefront)
  int64_t count() const { return batch * groups; }
  int unit_threads() const { return banded ? 1 : threads; }  // for run_units
  void unit(int64_t u, int64_t* b, int64_t* c0, int* size) const {
    *b = u / groups;
    const int64_t g = u % groups, base = channels / groups, extra = channels % groups;
    *c0 = g * base + std::min(g, extra);
    *size = (int)(base + (g < extra ? 1 : 0));
  }
};

// IRNET_FAST_CPU_BANDS=0 splits the channels instead (to compare the two; read on every call).
inline bool bands_enabled() {
  const char* flag = std::getenv("IRNET_FAST_CPU_BANDS");
  return flag == nullptr || std::strcmp(flag, "0") != 0;
}

// One image whose channels fit one block on two threads: the two threads share the rows of the
// whole block (two bands) rather than splitting the channels, since a pass loads each weight once
// for all channels of a block (94x125, 3 channels: one thread takes 5.5 ms for the block of 3,
// 4.3 ms for 2 channels and 3.4 ms for 1, so a 2 + 1 split ends after 4.3 ms).
inline WalkUnits plan_units(int64_t B, int64_t C, double work, int64_t max_block = kMaxChannelBlock,
                            bool bands = true) {
  WalkUnits units;
  units.batch = B;
  units.channels = C;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t fewest = (C + max_block - 1) / max_block;
  units.groups = std::min(C, std::max(fewest, (threads + B - 1) / B));
  bands = bands && B == 1 && C <= max_block && threads == 2 && bands_enabled();
  units.threads = threads_for(bands ? 2 : units.count(), work);
  units.banded = bands && units.threads == 2;
  if (units.banded || units.threads == 1) units.groups = fewest;  // the widest channel blocks
  return units;
}

}  // namespace rows
}  // namespace irnet_fast
