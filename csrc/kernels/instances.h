// Centroid refinement arithmetic of IRNet's instance step (docs/algorithm.md, "Instances"), bit for bit as the
// NumPy reference computes it: the centroids are float32, but `cy - floor(cy)` is float32 - int32,
// which NumPy promotes to float64, so the bilinear weights and the four-term sum are float64 and
// only the in-place `cy += sum` rounds back to float32.
//
// Every product and sum must round on its own (no fused multiply-add): device code spells the
// operations with the _rn intrinsics (nvcc contracts a*b+c by default); the CPU file that includes
// this header turns contraction off for itself (csrc/cpu/instances_cpu.cpp).
// Header-only, no includes beyond common.h, so NVRTC (CuPy) compiles it as it is.
#pragma once
#include "common.h"

#if defined(__CUDA_ARCH__)
#define IRNET_DMUL(a, b) __dmul_rn((a), (b))
#define IRNET_DADD(a, b) __dadd_rn((a), (b))
#define IRNET_DSUB(a, b) __dsub_rn((a), (b))
#define IRNET_RINT_F2I(v) __float2int_rn(v)
#else
#define IRNET_DMUL(a, b) ((a) * (b))
#define IRNET_DADD(a, b) ((a) + (b))
#define IRNET_DSUB(a, b) ((a) - (b))
#define IRNET_RINT_F2I(v) ((int)__builtin_rintf(v))  // half to even in the default rounding mode
#endif

namespace irnet_fast {
namespace kernels {

// One bilinear sample of `d` ([height, width] row-major) with the reference's term order:
// ((d[uy,ux]*fy)*fx + (d[dy,ux]*(1-fy))*fx) + (d[uy,dx]*fy)*(1-fx)) + (d[dy,dx]*(1-fy))*(1-fx).
template <typename scalar_t>
IRNET_HD double centroid_sample(const scalar_t* d, int width, int uy, int dy, int ux, int dx, double fy, double fx,
                                double gy, double gx) {
  const double t1 = IRNET_DMUL(IRNET_DMUL((double)d[uy * width + ux], fy), fx);
  const double t2 = IRNET_DMUL(IRNET_DMUL((double)d[dy * width + ux], gy), fx);
  const double t3 = IRNET_DMUL(IRNET_DMUL((double)d[uy * width + dx], fy), gx);
  const double t4 = IRNET_DMUL(IRNET_DMUL((double)d[dy * width + dx], gy), gx);
  return IRNET_DADD(IRNET_DADD(IRNET_DADD(t1, t2), t3), t4);
}

IRNET_HD float clip_coordinate(float v, float hi) {
  // np.clip(v, 0, hi) for finite and infinite values
  v = v >= 0.0f ? v : 0.0f;  // NaN goes to 0 too: no NaN reaches an integer conversion
  return v > hi ? hi : v;
}

// One refinement step of the centroid (cy, cx), both in [0, h-1] x [0, w-1] (so floor is a
// truncation and ceil is floor + 1 unless integral). Returns whether it moved: a centroid that
// does not move is a fixed point of the (deterministic) step, so the caller may stop there.
// d0, d1: the displacement channels (dy, dx), [height, width] each, float32 or float64 (read as
// float64, which is what NumPy does with either).
template <typename scalar_t>
IRNET_HD bool centroid_step(const scalar_t* d0, const scalar_t* d1, int height, int width, float& cy, float& cx) {
  const int dy = (int)cy, dx = (int)cx;
  const int uy = dy + ((float)dy < cy), ux = dx + ((float)dx < cx);
  const double fy = IRNET_DSUB((double)cy, (double)dy), fx = IRNET_DSUB((double)cx, (double)dx);
  const double gy = IRNET_DSUB(1.0, fy), gx = IRNET_DSUB(1.0, fx);
  const double sy = centroid_sample(d0, width, uy, dy, ux, dx, fy, fx, gy, gx);
  const double sx = centroid_sample(d1, width, uy, dy, ux, dx, fy, fx, gy, gx);
  const float ny = clip_coordinate((float)IRNET_DADD((double)cy, sy), (float)(height - 1));
  const float nx = clip_coordinate((float)IRNET_DADD((double)cx, sx), (float)(width - 1));
  const bool moved = ny != cy || nx != cx;
  cy = ny;
  cx = nx;
  return moved;
}

// One step of a centroid that also detects the end of its trajectory. The step is deterministic,
// so a centroid that returns to an earlier state repeats from there: a fixed point (the step does
// not move it) stays, and a 2-cycle (back where it was two steps ago: the common overshoot around
// a centre) alternates. Either way the state after all the steps is known now: `done` is set and
// (cy, cx) holds it. `remaining`: steps left after this one; (py, px): the state before (cy, cx).
template <typename scalar_t>
IRNET_HD void centroid_advance(const scalar_t* d0, const scalar_t* d1, int height, int width, int remaining,
                               bool has_previous, float& cy, float& cx, float& py, float& px, bool& done) {
  float ny = cy, nx = cx;
  const bool moved = centroid_step(d0, d1, height, width, ny, nx);
  const bool cycle = has_previous && ny == py && nx == px;  // states alternate (cy, cx), (ny, nx)
  const bool take_new = moved && !done && !(cycle && (remaining & 1));
  const bool keep_previous = !take_new || cycle;  // py, px matter only while going on
  done = done || !moved || cycle;
  py = keep_previous ? py : cy;
  px = keep_previous ? px : cx;
  cy = take_new ? ny : cy;
  cx = take_new ? nx : cx;
}

// The refined centroid of pixel (y, x) after `iterations` steps, rounded half to even.
template <typename scalar_t>
IRNET_HD void refine_centroid(const scalar_t* d0, const scalar_t* d1, int height, int width, int iterations, int y,
                              int x, int* out_y, int* out_x) {
  float cy = (float)y, cx = (float)x, py = cy, px = cx;
  bool done = false;
  for (int i = 0; i < iterations && !done; ++i)
    centroid_advance(d0, d1, height, width, iterations - 1 - i, i > 0, cy, cx, py, px, done);
  *out_y = IRNET_RINT_F2I(cy);
  *out_x = IRNET_RINT_F2I(cx);
}

}  // namespace kernels
}  // namespace irnet_fast
