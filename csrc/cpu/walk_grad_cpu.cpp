// The walk that keeps its states, and its reverse pass (irnet_fast/ops/_walk_grad.py,
// docs/walk_gradient.md). Both methods of the walk are the recurrence
//   w_0 = x,   w_{m+1} = alpha_m P w_m + beta_m w_{m-1},   y = sum_m c_m w_m,   P = D^-1 A,
// and the gradient of the weights needs every w_m. `_walk_states` runs it with one fused pass per
// step and keeps the states in the padded row layout (walk_layout.h); `_walk_states_backward` runs
// the adjoint recurrence
//   z_m = alpha_m D^-1 wbar_{m+1},   wbar_m = c_m g + A z_m + beta_{m+1} wbar_{m+2}
// with one fused pass per step that also sums the weight gradients of that step:
//   grad S_k(p) += sum_c z_m(p) w_m(p + o_k) + z_m(p + o_k) w_m(p)      (S_k is at (p, p+o_k) and (p+o_k, p))
//   grad D^-1(p) += sum_c wbar_{m+1}(p) (w_{m+1} - beta_m w_{m-1})(p) d(p)   (= zbar_m (A w_m), A w_m from the states)
// Values are in the input dtype, as in the fused forward kernels; the sums over the passes (y and
// the weight gradients) are float64: the gradient of a plane is a small difference of large sums
// (through A and through d), and float32 sums over hundreds of passes lose it.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/ArrayRef.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "threads.h"
#include "walk_layout.h"

namespace irnet_fast {
namespace {

using namespace rows;

// One pass of the forward recurrence over one padded row of CB channels (planes `plane` apart):
// next = alpha P cur + beta prev, result += coefficient next (apply_at, walk_layout.h).
template <typename T, typename V, int CB>
IRNET_INLINE void states_row(const T* __restrict cur, const T* __restrict prev, T* __restrict next,
                             double* __restrict result, const T* __restrict planes, const T* __restrict inv_norm,
                             const int64_t* __restrict offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                             int64_t blocks, T alpha, T beta, double coefficient) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    V applied[CB];
    apply_at<T, V, CB>(cur, planes, inv_norm, offsets, num_dirs, plane, plane, q, applied);
    for (int c = 0; c < CB; ++c) {
      const V value = alpha * applied[c] + beta * load<V>(prev + c * plane + q);
      store<V>(next + c * plane + q, value);
      if (coefficient != 0.0) add_scaled(result + c * plane + q, value, coefficient);
    }
  }
}

// The scalars of one reverse pass m.
template <typename T>
struct AdjointStep {
  T c;            // c_m
  T beta_above;   // beta_{m+1} (0 for the last step)
  T beta;         // beta_m
  T alpha_below;  // alpha_{m-1}: z_{m-1} is written for the next pass; 0 when m = 0 (not written)
};

// One reverse pass over one padded row of CB channels: reads z_m around p, wbar_{m+1}, the states
// w_m, w_{m+1}, w_{m-1} at p (w_m around p), overwrites wbar_{m+2} with wbar_m, writes z_{m-1}
// and adds this pass's terms to the D plane gradients and the inverse-norm gradient (before d).
template <typename T, typename V, int CB>
IRNET_INLINE void adjoint_row(const T* __restrict z, T* __restrict z_below, const T* __restrict above,
                              T* __restrict adj, const T* __restrict g, const T* __restrict w,
                              const T* __restrict w_next, const T* __restrict w_prev, double* __restrict grad_planes,
                              double* __restrict grad_inv, const T* __restrict planes, const T* __restrict inv_norm,
                              const int64_t* __restrict offsets, int64_t num_dirs, int64_t plane, int64_t q0,
                              int64_t blocks, AdjointStep<T> step) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = q0 + xb * kLanes;
    V fwd[CB], bwd[CB], zc[CB], wc[CB];
    for (int c = 0; c < CB; ++c) {
      fwd[c] = bwd[c] = V{};
      zc[c] = load<V>(z + c * plane + q);
      wc[c] = load<V>(w + c * plane + q);
    }
    for (int64_t k = 0; k < num_dirs; ++k) {
      const int64_t o = offsets[k];
      const V s_fwd = load<V>(planes + k * plane + q);
      const V s_bwd = load<V>(planes + k * plane + q - o);
      V pair = V{};
      for (int c = 0; c < CB; ++c) {
        const V z_fwd = load<V>(z + c * plane + q + o);
        fwd[c] += s_fwd * z_fwd;
        bwd[c] += s_bwd * load<V>(z + c * plane + q - o);
        pair += zc[c] * load<V>(w + c * plane + q + o) + z_fwd * wc[c];
      }
      add_scaled(grad_planes + k * plane + q, pair, 1.0);
    }
    const V inv = load<V>(inv_norm + q);
    V gi = V{};
    for (int c = 0; c < CB; ++c) {
      const int64_t p = c * plane + q;
      const V wbar = step.c * load<V>(g + p) + (zc[c] + (fwd[c] + bwd[c])) + step.beta_above * load<V>(adj + p);
      store<V>(adj + p, wbar);
      if (step.alpha_below != T(0)) store<V>(z_below + p, (step.alpha_below * inv) * wbar);
      gi += load<V>(above + p) * (load<V>(w_next + p) - step.beta * load<V>(w_prev + p));
    }
    add_scaled(grad_inv + q, gi, 1.0);
  }
}

#define IRNET_CB_SWITCH(channels, CALL) \
  switch (channels) {                   \
    case 1: CALL(1); break;             \
    case 2: CALL(2); break;             \
    case 3: CALL(3); break;             \
    default: CALL(4); break;            \
  }

template <typename T, typename V>
IRNET_INLINE void states_row_channels(const T* cur, const T* prev, T* next, double* result, const T* planes,
                                      const T* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                      int64_t q0, int64_t blocks, T alpha, T beta, double coefficient, int channels) {
#define IRNET_STATES_ROW(CB) \
  states_row<T, V, CB>(cur, prev, next, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks, alpha, beta, coefficient)
  IRNET_CB_SWITCH(channels, IRNET_STATES_ROW)
#undef IRNET_STATES_ROW
}

template <typename T, typename V>
IRNET_INLINE void adjoint_row_channels(const T* z, T* z_below, const T* above, T* adj, const T* g, const T* w,
                                       const T* w_next, const T* w_prev, double* grad_planes, double* grad_inv, const T* planes,
                                       const T* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                       int64_t q0, int64_t blocks, AdjointStep<T> step, int channels) {
#define IRNET_ADJOINT_ROW(CB)                                                                                   \
  adjoint_row<T, V, CB>(z, z_below, above, adj, g, w, w_next, w_prev, grad_planes, grad_inv, planes, inv_norm, \
                        offsets, num_dirs, plane, q0, blocks, step)
  IRNET_CB_SWITCH(channels, IRNET_ADJOINT_ROW)
#undef IRNET_ADJOINT_ROW
}

IRNET_CLONES void states_row_any(const float* cur, const float* prev, float* next, double* result, const float* planes,
                                 const float* inv_norm, const int64_t* offsets, int64_t num_dirs, int64_t plane,
                                 int64_t q0, int64_t blocks, float alpha, float beta, double coefficient, int channels) {
  states_row_channels<float, vfloat>(cur, prev, next, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks,
                                     alpha, beta, coefficient, channels);
}

IRNET_CLONES void states_row_any(const double* cur, const double* prev, double* next, double* result,
                                 const double* planes, const double* inv_norm, const int64_t* offsets, int64_t num_dirs,
                                 int64_t plane, int64_t q0, int64_t blocks, double alpha, double beta,
                                 double coefficient, int channels) {
  states_row_channels<double, vdouble>(cur, prev, next, result, planes, inv_norm, offsets, num_dirs, plane, q0, blocks,
                                       alpha, beta, coefficient, channels);
}

IRNET_CLONES void adjoint_row_any(const float* z, float* z_below, const float* above, float* adj, const float* g,
                                  const float* w, const float* w_next, const float* w_prev, double* grad_planes,
                                  double* grad_inv, const float* planes, const float* inv_norm, const int64_t* offsets,
                                  int64_t num_dirs, int64_t plane, int64_t q0, int64_t blocks, AdjointStep<float> step,
                                  int channels) {
  adjoint_row_channels<float, vfloat>(z, z_below, above, adj, g, w, w_next, w_prev, grad_planes, grad_inv, planes,
                                      inv_norm, offsets, num_dirs, plane, q0, blocks, step, channels);
}

IRNET_CLONES void adjoint_row_any(const double* z, double* z_below, const double* above, double* adj, const double* g,
                                  const double* w, const double* w_next, const double* w_prev, double* grad_planes,
                                  double* grad_inv, const double* planes, const double* inv_norm,
                                  const int64_t* offsets, int64_t num_dirs, int64_t plane, int64_t q0, int64_t blocks,
                                  AdjointStep<double> step, int channels) {
  adjoint_row_channels<double, vdouble>(z, z_below, above, adj, g, w, w_next, w_prev, grad_planes, grad_inv, planes,
                                        inv_norm, offsets, num_dirs, plane, q0, blocks, step, channels);
}

// Zeroes what the row passes do not write of one padded plane: the pad rows above and below, and
// the pad columns left and right of the written blocks in the interior rows.
template <typename T>
void zero_margins(T* plane_ptr, const PaddedLayout& layout, int64_t h) {
  const int64_t pad = layout.pad, rs = layout.row_stride, written = rs - 2 * pad;
  std::memset(plane_ptr, 0, sizeof(T) * pad * rs);
  std::memset(plane_ptr + (pad + h) * rs, 0, sizeof(T) * pad * rs);
  for (int64_t i = 0; i < h; ++i) {
    T* row = plane_ptr + (pad + i) * rs;
    std::memset(row, 0, sizeof(T) * pad);
    std::memset(row + pad + written, 0, sizeof(T) * (rs - pad - written));
  }
}

struct Recurrence {
  c10::ArrayRef<double> alpha, beta, c;
  int64_t passes() const { return (int64_t)alpha.size(); }
};

void check_recurrence(const char* op, const Recurrence& r) {
  TORCH_CHECK(r.beta.size() == r.alpha.size() && r.c.size() == r.alpha.size() + 1, op,
              ": expected len(beta) == len(alpha) and len(c) == len(alpha) + 1, got ", r.alpha.size(), ", ",
              r.beta.size(), ", ", r.c.size());
}

// The padded layout of the walk of x (shape checks shared by both ops).
PaddedLayout walk_layout(const char* op, const at::Tensor& x, const at::Tensor& planes, const at::Tensor& dirs,
                         int64_t pad, std::vector<int64_t>* offsets) {
  const int64_t lanes = 64 / (int64_t)x.element_size();
  const PaddedLayout layout = padded_layout(dirs, planes.size(1), x.size(2), x.size(3), lanes, offsets);
  TORCH_CHECK(layout.pad == pad, op, ": pad expected the largest |offset| of dirs, ", layout.pad, ", got ", pad);
  return layout;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> walk_states_cpu_t(const at::Tensor& x, const at::Tensor& planes,
                                                    const at::Tensor& inv_norm, const at::Tensor& dirs,
                                                    const PaddedLayout& layout, const std::vector<int64_t>& offsets,
                                                    const Recurrence& rec) {
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), D = planes.size(1);
  const int64_t pad = layout.pad, passes = rec.passes(), plane = layout.plane;
  const at::Tensor planes_p = to_padded<T>(planes, layout, kScratchPlanes);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout, kScratchInv);
  auto states = at::empty({passes + 1, B, C, h + 2 * pad, layout.row_stride}, x.options());
  states[0].zero_();
  states[0].narrow(2, pad, h).narrow(3, pad, w).copy_(x);
  at::Tensor result = states[0].to(at::kDouble, /*non_blocking=*/false, /*copy=*/true).mul_(rec.c[0]);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  T* s = states.data_ptr<T>();
  double* r = result.data_ptr<double>();
  const int64_t state = B * C * plane;
  const WalkUnits units = plan_units(B, C, (double)passes * B * C * h * w * (2 * D + 1), kMaxChannelBlock,
                                     /*bands=*/false);
  run_units(units.count(), units.threads, [&](int64_t u) {
    int64_t b, c0;
    int channels;
    units.unit(u, &b, &c0, &channels);
    const int64_t chan = (b * C + c0) * plane;
    for (int64_t m = 0; m < passes; ++m) {
      T* next = s + (m + 1) * state + chan;
      for (int c = 0; c < channels; ++c) zero_margins(next + c * plane, layout, h);
      const T* cur = s + m * state + chan;
      const T* prev = m > 0 ? cur - state : cur;  // any state when beta_0 multiplies it (0)
      for (int64_t i = 0; i < h; ++i) {
        states_row_any(cur, prev, next, r + chan, planes_ptr + b * D * plane, inv_ptr + b * plane, offsets.data(), D,
                       plane, (i + pad) * layout.row_stride + pad, layout.blocks, (T)rec.alpha[m],
                       m > 0 ? (T)rec.beta[m] : T(0), rec.c[m + 1], channels);
      }
    }
  });
  auto y = result.narrow(2, pad, h).narrow(3, pad, w).to(x.scalar_type()).contiguous();
  return {y, states};
}

std::tuple<at::Tensor, at::Tensor> walk_states_cpu(const at::Tensor& x_in, const at::Tensor& planes_in,
                                                  const at::Tensor& inv_norm_in, const at::Tensor& dirs_in,
                                                  int64_t pad, c10::ArrayRef<double> alpha,
                                                  c10::ArrayRef<double> beta, c10::ArrayRef<double> c) {
  const char* op = "_walk_states";
  check_walk_args(op, x_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  const Recurrence rec{alpha, beta, c};
  check_recurrence(op, rec);
  const auto x = x_in.contiguous(), planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous();
  const auto dirs = dirs_in.contiguous();
  std::vector<int64_t> offsets;
  const PaddedLayout layout = walk_layout(op, x, planes, dirs, pad, &offsets);
  if (x.scalar_type() == at::kFloat) return walk_states_cpu_t<float>(x, planes, inv_norm, dirs, layout, offsets, rec);
  return walk_states_cpu_t<double>(x, planes, inv_norm, dirs, layout, offsets, rec);
}

// The reverse units: (image, slot) with a slot's channels run in blocks of up to kMaxChannelBlock,
// one after the other, into the slot's own gradient accumulators (summed over the slots after).
template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> walk_states_backward_cpu_t(
    const at::Tensor& grad, const at::Tensor& states, const at::Tensor& planes, const at::Tensor& inv_norm,
    const PaddedLayout& layout, const std::vector<int64_t>& offsets, const Recurrence& rec) {
  const int64_t B = grad.size(0), C = grad.size(1), h = grad.size(2), w = grad.size(3), D = planes.size(1);
  const int64_t pad = layout.pad, passes = rec.passes(), plane = layout.plane, rs = layout.row_stride;
  const at::Tensor planes_p = to_padded<T>(planes, layout, kScratchPlanes);
  const at::Tensor inv_p = to_padded<T>(inv_norm.unsqueeze(1), layout, kScratchInv);
  const at::Tensor g_p = to_padded<T>(grad, layout, kScratchGrad);
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t slots = std::min<int64_t>((C + kMaxChannelBlock - 1) / kMaxChannelBlock,
                                          std::max<int64_t>(1, (threads + B - 1) / B));
  const int units = (int)(B * slots);
  const int threads_used = threads_for(units, (double)passes * B * C * h * w * (4 * D + 4));
  auto grad_x = at::empty({B, C, h, w}, grad.options());
  auto plane_acc = scratch(kScratchPlaneAcc, {B, slots, D, plane}, grad.options().dtype(at::kDouble), /*zero=*/true);
  auto inv_acc = scratch(kScratchInvAcc, {B, slots, plane}, grad.options().dtype(at::kDouble), /*zero=*/true);
  const T* planes_ptr = planes_p.data_ptr<T>();
  const T* inv_ptr = inv_p.data_ptr<T>();
  const T* g_ptr = g_p.data_ptr<T>();
  const T* s = states.data_ptr<T>();
  T* gx = grad_x.data_ptr<T>();
  double* pa = plane_acc.data_ptr<double>();
  double* ia = inv_acc.data_ptr<double>();
  const int64_t state = B * C * plane;
  run_units(units, threads_used, [&](int64_t u) {
    const int64_t b = u / slots, slot = u % slots;
    const int64_t base = C / slots, extra = C % slots;
    const int64_t first = slot * base + std::min(slot, extra), count = base + (slot < extra ? 1 : 0);
    const int64_t block_plane = kMaxChannelBlock * plane;
    std::vector<T> z_buf(2 * block_plane), adj_buf(2 * block_plane);
    double* grad_planes = pa + u * D * plane;
    double* grad_inv = ia + u * plane;
    const T* planes_b = planes_ptr + b * D * plane;
    const T* inv_b = inv_ptr + b * plane;
    for (int64_t c0 = first; c0 < first + count; c0 += kMaxChannelBlock) {
      const int channels = (int)std::min<int64_t>(kMaxChannelBlock, first + count - c0);
      const int64_t chan = (b * C + c0) * plane, n = channels * plane;
      T* z[2] = {z_buf.data(), z_buf.data() + block_plane};
      T* adj[2] = {adj_buf.data(), adj_buf.data() + block_plane};
      // wbar_{passes} = c_passes g, wbar_{passes + 1} = 0, z_{passes - 1} = alpha D^-1 wbar_{passes}
      const T c_last = (T)rec.c[passes];
      for (int64_t e = 0; e < n; ++e) adj[0][e] = c_last * g_ptr[chan + e];
      std::fill(adj[1], adj[1] + n, T(0));
      std::fill(z[1], z[1] + n, T(0));
      if (passes > 0) {
        const T alpha = (T)rec.alpha[passes - 1];
        for (int c = 0; c < channels; ++c) {
          for (int64_t e = 0; e < plane; ++e) z[0][c * plane + e] = alpha * inv_b[e] * adj[0][c * plane + e];
        }
      }
      int cur = 0;
      for (int64_t m = passes - 1; m >= 0; --m) {
        const AdjointStep<T> step{(T)rec.c[m], m + 1 < passes ? (T)rec.beta[m + 1] : T(0), m > 0 ? (T)rec.beta[m] : T(0),
                                  m > 0 ? (T)rec.alpha[m - 1] : T(0)};
        const T* w_m = s + m * state + chan;
        const T* w_next = w_m + state;
        const T* w_prev = m > 0 ? w_m - state : w_m;
        for (int64_t i = 0; i < h; ++i) {
          adjoint_row_any(z[cur], z[1 - cur], adj[cur], adj[1 - cur], g_ptr + chan, w_m, w_next, w_prev, grad_planes,
                          grad_inv, planes_b, inv_b, offsets.data(), D, plane, (i + pad) * rs + pad, layout.blocks,
                          step, channels);
        }
        cur = 1 - cur;
      }
      // wbar_0 is the gradient of x (with no pass, c_0 g)
      for (int c = 0; c < channels; ++c) {
        for (int64_t i = 0; i < h; ++i) {
          std::memcpy(gx + ((b * C + c0 + c) * h + i) * w, adj[cur] + c * plane + (i + pad) * rs + pad, w * sizeof(T));
        }
      }
    }
  });
  // sum over the slots; d = 1 / inv_norm (0 where the inverse norm is 0: list-batch padding)
  auto grad_planes = at::empty({B, D, h, w}, grad.options());
  auto grad_inv = at::empty({B, h, w}, grad.options());
  const T* inv_in = inv_norm.data_ptr<T>();
  T* gp = grad_planes.data_ptr<T>();
  T* gi = grad_inv.data_ptr<T>();
  parallel_chunks(B * h, 4, (double)B * h * w * (D + 1) * slots, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / h, i = task % h, at = (i + pad) * rs + pad;
      for (int64_t k = 0; k < D; ++k) {
        T* out = gp + ((b * D + k) * h + i) * w;
        for (int64_t x = 0; x < w; ++x) {
          double sum = 0;
          for (int64_t slot = 0; slot < slots; ++slot) sum += pa[((b * slots + slot) * D + k) * plane + at + x];
          out[x] = (T)sum;
        }
      }
      T* out = gi + (b * h + i) * w;
      for (int64_t x = 0; x < w; ++x) {
        double sum = 0;
        for (int64_t slot = 0; slot < slots; ++slot) sum += ia[(b * slots + slot) * plane + at + x];
        const double inv = inv_in[(b * h + i) * w + x];
        out[x] = inv > 0.0 ? (T)(sum / inv) : T(0);
      }
    }
  });
  return {grad_x, grad_planes, grad_inv};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> walk_states_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& states_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
    const at::Tensor& dirs_in, int64_t pad, c10::ArrayRef<double> alpha, c10::ArrayRef<double> beta,
    c10::ArrayRef<double> c) {
  const char* op = "_walk_states_backward";
  check_walk_args(op, grad_in, planes_in, inv_norm_in, dirs_in, /*cuda=*/false);
  const Recurrence rec{alpha, beta, c};
  check_recurrence(op, rec);
  const auto grad = grad_in.contiguous(), planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous();
  const auto dirs = dirs_in.contiguous(), states = states_in.contiguous();
  std::vector<int64_t> offsets;
  const PaddedLayout layout = walk_layout(op, grad, planes, dirs, pad, &offsets);
  const std::vector<int64_t> expected{rec.passes() + 1, grad.size(0), grad.size(1), grad.size(2) + 2 * pad,
                                      layout.row_stride};
  TORCH_CHECK(states.sizes() == c10::IntArrayRef(expected) && states.scalar_type() == grad.scalar_type(), op,
              ": states expected ", c10::IntArrayRef(expected), " ", grad.scalar_type(), " (from _walk_states), got ",
              states.sizes(), " ", states.scalar_type());
  if (grad.scalar_type() == at::kFloat) {
    return walk_states_backward_cpu_t<float>(grad, states, planes, inv_norm, layout, offsets, rec);
  }
  return walk_states_backward_cpu_t<double>(grad, states, planes, inv_norm, layout, offsets, rec);
}

}  // namespace

TORCH_LIBRARY_IMPL(irnet_fast, CPU, m) {
  m.impl("_walk_states", &walk_states_cpu);
  m.impl("_walk_states_backward", &walk_states_backward_cpu);
}

}  // namespace irnet_fast
