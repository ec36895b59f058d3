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

// Pixels per task at least: tasks are handed out one at a time (threads.h), so pixels that stop
// early (most of a clean field) and pixels that run all iterations balance across the threads.
constexpr int64_t kGrain = 256;

// kLanes pixels in vector registers: the lane-wise form of kernels::centroid_advance, the same
// IEEE operations in the same order (contraction is off in this file), so every lane is bit for
// bit what the scalar function computes; the four bilinear samples are gathers across lanes.
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
constexpr int kLanes = 8;

// The displacement of both channels at the pixels `index` of every lane, widened to float64:
// element by element (any CPU), or, for float32 fields, 8 pairs (d0, d1) per vpgatherdq from a
// copy of the field with the channels interleaved (half the loads of two 32-bit gathers). The
// gather is inline asm so that this file keeps compiling for every instruction set; only
// centroid_rows_gather, called on CPUs with AVX-512, uses it.
template <typename T>
struct LaneGather {
  const T* d0;
  const T* d1;
  IRNET_INLINE void get(v8i index, v8d* a0, v8d* a1) const {
    for (int l = 0; l < kLanes; ++l) {
      (*a0)[l] = (double)d0[index[l]];
      (*a1)[l] = (double)d1[index[l]];
    }
  }
};

typedef long long v8q __attribute__((vector_size(64)));

struct PairGather {
  const float* pairs;  // [h * w][2]: d0, d1 of each pixel side by side
  IRNET_INLINE void get(v8i index, v8d* a0, v8d* a1) const {
#if defined(__x86_64__) && defined(__GNUC__)
    v8q out;
    unsigned char mask;
    asm("kxnorb %k[m], %k[m], %k[m]\n\t"
        "vpxorq %[o], %[o], %[o]\n\t"
        "vpgatherdq (%[b],%[i],8), %[o]%{%[m]%}"
        : [o] "=&v"(out), [m] "=&Yk"(mask)
        : [b] "r"(pairs), [i] "v"(index)
        : "memory");
    const v8i low = __builtin_convertvector(out, v8i), high = __builtin_convertvector(out >> 32, v8i);
    v8f f0, f1;
    __builtin_memcpy(&f0, &low, sizeof(f0));
    __builtin_memcpy(&f1, &high, sizeof(f1));
    *a0 = __builtin_convertvector(f0, v8d);
    *a1 = __builtin_convertvector(f1, v8d);
#else
    for (int l = 0; l < kLanes; ++l) {
      (*a0)[l] = (double)pairs[2 * index[l]];
      (*a1)[l] = (double)pairs[2 * index[l] + 1];
    }
#endif
  }
};

// One bilinear sample of both channels, each in the reference's term order.
template <typename G>
IRNET_INLINE void sample(const G& g, v8i uu, v8i du, v8i ud, v8i dd, v8d fy, v8d fx, v8d gy, v8d gx, v8d* sy,
                         v8d* sx) {
  v8d a[4], b[4];
  g.get(uu, &a[0], &b[0]);
  g.get(du, &a[1], &b[1]);
  g.get(ud, &a[2], &b[2]);
  g.get(dd, &a[3], &b[3]);
  *sy = ((((a[0] * fy) * fx) + ((a[1] * gy) * fx)) + ((a[2] * fy) * gx)) + ((a[3] * gy) * gx);
  *sx = ((((b[0] * fy) * fx) + ((b[1] * gy) * fx)) + ((b[2] * fy) * gx)) + ((b[3] * gy) * gx);
}

IRNET_INLINE v8f clip(v8f v, float hi) {
  const v8f zero = v8f{} , top = v8f{} + hi;
  v = v < zero ? zero : v;
  return v > top ? top : v;
}

// V vectors of kLanes pixels each: independent chains that overlap the gathers' latency.
template <int V, typename G>
IRNET_INLINE void centroid_vector(const G& g, int height, int width, int iterations, int* out_y, int* out_x,
                                  int64_t first) {
  v8f cy[V], cx[V], py[V], px[V];
  v8i done[V];  // all bits set in a finished lane
  for (int v = 0; v < V; ++v) {
    for (int l = 0; l < kLanes; ++l) {
      cy[v][l] = (float)((first + v * kLanes + l) / width);
      cx[v][l] = (float)((first + v * kLanes + l) % width);
    }
    py[v] = cy[v];
    px[v] = cx[v];
    done[v] = v8i{};
  }
  const float max_y = (float)(height - 1), max_x = (float)(width - 1);
  for (int i = 0; i < iterations; ++i) {
    const v8i odd = v8i{} - (int)((iterations - 1 - i) & 1);
    v8i all_done = v8i{} - 1;
    for (int v = 0; v < V; ++v) {
      const v8i dy = __builtin_convertvector(cy[v], v8i), dx = __builtin_convertvector(cx[v], v8i);  // truncation
      const v8i uy = dy - (__builtin_convertvector(dy, v8f) < cy[v]);
      const v8i ux = dx - (__builtin_convertvector(dx, v8f) < cx[v]);
      const v8d fy = __builtin_convertvector(cy[v], v8d) - __builtin_convertvector(dy, v8d);
      const v8d fx = __builtin_convertvector(cx[v], v8d) - __builtin_convertvector(dx, v8d);
      const v8d gy = 1.0 - fy, gx = 1.0 - fx;
      const v8i uu = uy * width + ux, du = dy * width + ux, ud = uy * width + dx, dd = dy * width + dx;
      v8d sy, sx;
      sample(g, uu, du, ud, dd, fy, fx, gy, gx, &sy, &sx);
      const v8f ny = clip(__builtin_convertvector(__builtin_convertvector(cy[v], v8d) + sy, v8f), max_y);
      const v8f nx = clip(__builtin_convertvector(__builtin_convertvector(cx[v], v8d) + sx, v8f), max_x);
      const v8i moved = (ny != cy[v]) | (nx != cx[v]);
      const v8i cycle = (i > 0) ? ((ny == py[v]) & (nx == px[v])) : v8i{};
      const v8i take_new = moved & ~done[v] & ~(cycle & odd);
      const v8i keep_previous = ~take_new | cycle;
      done[v] = done[v] | ~moved | cycle;
      py[v] = keep_previous ? py[v] : cy[v];
      px[v] = keep_previous ? px[v] : cx[v];
      cy[v] = take_new ? ny : cy[v];
      cx[v] = take_new ? nx : cx[v];
      all_done &= done[v];
    }
    bool finished = true;
    for (int l = 0; l < kLanes; ++l) finished = finished && all_done[l];
    if (finished) break;
  }
  for (int v = 0; v < V; ++v) {
    for (int l = 0; l < kLanes; ++l) {
      out_y[first + v * kLanes + l] = IRNET_RINT_F2I(cy[v][l]);
      out_x[first + v * kLanes + l] = IRNET_RINT_F2I(cx[v][l]);
    }
  }
}

// Pixels [begin, end): vectors of 16 and 8 pixels, then one by one (kernels::refine_centroid).
template <typename G, typename T>
IRNET_INLINE void centroid_rows(const G& g, const T* d0, const T* d1, int height, int width, int iterations,
                                int* out_y, int* out_x, int64_t begin, int64_t end) {
  int64_t p = begin;
  for (; p + 2 * kLanes <= end; p += 2 * kLanes) centroid_vector<2>(g, height, width, iterations, out_y, out_x, p);
  for (; p + kLanes <= end; p += kLanes) centroid_vector<1>(g, height, width, iterations, out_y, out_x, p);
  for (; p < end; ++p)
    kernels::refine_centroid(d0, d1, height, width, iterations, (int)(p / width), (int)(p % width), out_y + p,
                             out_x + p);
}

#define IRNET_CENTROID_CLONES(T)                                                                           \
  IRNET_CLONES void centroid_rows_any(const T* d0, const T* d1, int height, int width, int iterations,    \
                                      int* out_y, int* out_x, int64_t begin, int64_t end) {               \
    centroid_rows(LaneGather<T>{d0, d1}, d0, d1, height, width, iterations, out_y, out_x, begin, end);    \
  }
IRNET_CENTROID_CLONES(float)
IRNET_CENTROID_CLONES(double)
#undef IRNET_CENTROID_CLONES

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IRNET_PAIR_GATHER 1
// float32 fields on CPUs with AVX-512: PairGather; the same arithmetic, so the same centroids.
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi,bmi2"))) void centroid_rows_gather(
    const float* pairs, const float* d0, const float* d1, int height, int width, int iterations, int* out_y,
    int* out_x, int64_t begin, int64_t end) {
  centroid_rows(PairGather{pairs}, d0, d1, height, width, iterations, out_y, out_x, begin, end);
}

bool gather_supported() {
  static const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return supported;
}
#endif

// displacement [2, h, w] float32 or float64 -> centroids [2, h, w] int32
at::Tensor find_centroids_cpu(const at::Tensor& displacement_in, int64_t iterations) {
  check_centroid_args("find_centroids_cpu", displacement_in, iterations, /*cuda=*/false);
  const auto displacement = displacement_in.contiguous();
  const int64_t H = displacement.size(1), W = displacement.size(2);
  auto out = at::empty({2, H, W}, displacement.options().dtype(at::kInt));
  if (H * W == 0) return out;
  int* o = out.data_ptr<int>();
#ifdef IRNET_PAIR_GATHER
  if (displacement.scalar_type() == at::kFloat && gather_supported()) {
    const float* d = displacement.data_ptr<float>();
    const auto pairs = displacement.view({2, H * W}).t().contiguous();  // [h * w, 2]
    const float* pp = pairs.data_ptr<float>();
    parallel_chunks_probed(H * W, kGrain, 40.0 * H * W * iterations, 5e-3, [&](int64_t begin, int64_t end) {
      centroid_rows_gather(pp, d, d + H * W, (int)H, (int)W, (int)iterations, o, o + H * W, begin, end);
    });
    return out;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES(displacement.scalar_type(), "find_centroids_cpu", [&] {
    const scalar_t* d = displacement.data_ptr<scalar_t>();
    // work: an upper bound (every pixel runs every iteration, ~40 operations each); most pixels of
    // a clean field stop early, so the first chunk is timed, and other threads are woken only for
    // more than 5 ms of work (on a busy machine a wake-up costs a scheduling round: ~15 ms measured)
    parallel_chunks_probed(H * W, kGrain, 40.0 * H * W * iterations, 5e-3, [&](int64_t begin, int64_t end) {
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
