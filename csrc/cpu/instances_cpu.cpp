// CPU kernel of find_centroids_with_refinement: each pixel runs all its iterations in registers
// (kernels/instances.h, the arithmetic the CUDA kernel runs too), blocks of pixels in parallel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

// The reference rounds every float64 product and sum on its own; a fused multiply-add would
// round once and change the centroids (setup.py compiles with -ffp-contract=fast for the other
// kernels). This must come before kernels/instances.h so that its inline functions get it too.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "../checks.h"
#include "../kernels/instances.h"
#include "simd.h"
#include "threads.h"

namespace irnet_fast {
namespace {

constexpr int kBlock = 16;  // pixels refined together: independent chains fill the vector lanes
// Pixels per task at least: tasks are handed out one at a time (threads.h), so pixels that stop
// early (most of a clean field) and pixels that run all iterations balance across the threads.
constexpr int64_t kGrain = 256;

// Pixels [begin, end) of one image (flat raster index), kBlock at a time, each lane with the
// per-pixel arithmetic of kernels::refine_centroid. A lane that is done (fixed point or 2-cycle,
// kernels::centroid_advance) keeps its result; the block stops when all lanes are done.
template <int N, typename T>
IRNET_INLINE void centroid_block(const T* d0, const T* d1, int height, int width, int iterations,
                                 int* out_y, int* out_x, int64_t first) {
  float cy[N], cx[N], py[N], px[N];
  bool done[N];
  for (int j = 0; j < N; ++j) {
    cy[j] = py[j] = (float)((first + j) / width);
    cx[j] = px[j] = (float)((first + j) % width);
    done[j] = false;
  }
  for (int i = 0; i < iterations; ++i) {
    int all_done = 1;
    for (int j = 0; j < N; ++j) {
      kernels::centroid_advance(d0, d1, height, width, iterations - 1 - i, i > 0, cy[j], cx[j], py[j], px[j],
                                done[j]);
      all_done &= (int)done[j];
    }
    if (all_done) break;
  }
  for (int j = 0; j < N; ++j) {
    out_y[first + j] = IRNET_RINT_F2I(cy[j]);
    out_x[first + j] = IRNET_RINT_F2I(cx[j]);
  }
}

#define IRNET_CENTROID_CLONES(T)                                                                                \
  IRNET_CLONES void centroid_rows_any(const T* d0, const T* d1, int height, int width, int iterations,         \
                                      int* out_y, int* out_x, int64_t begin, int64_t end) {                    \
    int64_t p = begin;                                                                                         \
    for (; p + kBlock <= end; p += kBlock)                                                                     \
      centroid_block<kBlock>(d0, d1, height, width, iterations, out_y, out_x, p);                              \
    for (; p < end; ++p) centroid_block<1>(d0, d1, height, width, iterations, out_y, out_x, p);                \
  }
IRNET_CENTROID_CLONES(float)
IRNET_CENTROID_CLONES(double)
#undef IRNET_CENTROID_CLONES

// displacement [2, h, w] float32 or float64 -> centroids [2, h, w] int32
at::Tensor find_centroids_cpu(const at::Tensor& displacement_in, int64_t iterations) {
  check_centroid_args("find_centroids_cpu", displacement_in, iterations, /*cuda=*/false);
  const auto displacement = displacement_in.contiguous();
  const int64_t H = displacement.size(1), W = displacement.size(2);
  auto out = at::empty({2, H, W}, displacement.options().dtype(at::kInt));
  if (H * W == 0) return out;
  int* o = out.data_ptr<int>();
  AT_DISPATCH_FLOATING_TYPES(displacement.scalar_type(), "find_centroids_cpu", [&] {
    const scalar_t* d = displacement.data_ptr<scalar_t>();
    // work: an upper bound (every pixel runs every iteration, ~40 operations each)
    parallel_chunks(H * W, kGrain, 40.0 * H * W * iterations, [&](int64_t begin, int64_t end) {
      centroid_rows_any(d, d + H * W, (int)H, (int)W, (int)iterations, o, o + H * W, begin, end);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("find_centroids", &find_centroids_cpu);
}

}  // namespace irnet_fast
