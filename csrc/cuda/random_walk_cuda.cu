// CUDA launchers of random_walk and random_walk_chebyshev (pair with cpu/random_walk_cpu.cpp);
// kernels in kernels/random_walk_kernels.cuh. A launch steps a whole padded batch: tiles of every
// image and channel group, several passes per launch in shared memory (or every pass, when a
// block holds a whole image), so 2**exp_times steps take a few dozen launches instead of 256.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../checks.h"
#include "../kernels/random_walk_kernels.cuh"

namespace irnet_fast {
namespace {

// Default plan (not yet measured on a GPU; benchmarks/gpu_check.sh compares plans through
// random_walk_tiled): 32 x 32 tiles, 2 passes per launch, up to 8 channels per block; one
// resident block per image and channel group (every pass in one launch, no halo) when the whole
// image fits in shared memory and those blocks fill the device.
constexpr int kTile = 32;
constexpr int kFusedPasses = 2;
constexpr int kMaxChannelBlock = 8;
constexpr int kTileThreads = 256;
constexpr int kResidentThreads = 1024;

// What a launch keeps in shared memory: `buffers` region copies of the values, `acc_bytes` per
// tile pixel and channel (the Chebyshev result), and the directions.
struct SharedLayout {
  int64_t buffers;
  size_t element, acc_bytes;
  int64_t num_dirs;

  size_t bytes(int64_t tile_h, int64_t tile_w, int64_t halo, int64_t channel_block) const {
    return (size_t)(buffers * channel_block * (tile_h + 2 * halo) * (tile_w + 2 * halo)) * element +
           (size_t)(channel_block * tile_h * tile_w) * acc_bytes + (size_t)(2 * num_dirs) * sizeof(int);
  }
};

// A launch plan: tile_h <= 0 asks for one resident tile per image.
struct WalkPlan {
  int tile_h, tile_w, fused, channel_block;
};

// The plan a launch sequence runs with, checked against the device.
struct Launches {
  int tile_h, tile_w, fused, halo_per_step, channel_block, threads, reach;
  dim3 grid;
  SharedLayout layout;

  size_t shared(int passes) const { return layout.bytes(tile_h, tile_w, (int64_t)halo_per_step * passes, channel_block); }
};

Launches plan_launches(const char* op, const at::Tensor& src, const at::Tensor& dirs, int64_t D, int64_t passes,
                       SharedLayout layout, WalkPlan plan, bool choose) {
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3);
  TORCH_CHECK(B <= 65535, op, ": at most 65535 images per call, got ", B);
  int reach = 0;  // max |dy|, |dx|: how far one pass reads
  const auto dirs_host = dirs.cpu();
  for (int64_t k = 0; k < D; ++k) {
    const int dy = dirs_host.data_ptr<int>()[2 * k], dx = dirs_host.data_ptr<int>()[2 * k + 1];
    TORCH_CHECK(dy >= 0, op, ": dirs expected dy >= 0 (half plane), got ", dy);
    reach = std::max(reach, std::max(dy, std::abs(dx)));
  }
  const size_t limit = cuda::max_shared_bytes(src);
  if (choose) {
    int cb = 1;
    while (cb < C && cb < kMaxChannelBlock) cb *= 2;
    if (layout.bytes(H, W, 0, cb) <= limit && B * ((C + cb - 1) / cb) >= cuda::multiprocessor_count(src)) {
      plan = WalkPlan{0, 0, 1, cb};
    } else {
      plan = WalkPlan{kTile, kTile, kFusedPasses, cb};
      auto bytes = [&] { return layout.bytes(kTile, kTile, (int64_t)plan.fused * reach, plan.channel_block); };
      while (plan.channel_block > 1 && bytes() > limit) plan.channel_block /= 2;
      while (plan.fused > 1 && bytes() > limit) --plan.fused;
    }
  }
  TORCH_CHECK(plan.channel_block == 1 || plan.channel_block == 2 || plan.channel_block == 4 || plan.channel_block == 8,
              op, ": channel_block expected 1, 2, 4 or 8, got ", plan.channel_block);
  const bool resident = plan.tile_h <= 0 || plan.tile_w <= 0;
  Launches l;
  l.tile_h = resident ? (int)H : plan.tile_h;
  l.tile_w = resident ? (int)W : plan.tile_w;
  l.fused = resident ? (int)std::max<int64_t>(passes, 1) : plan.fused;
  l.halo_per_step = resident ? 0 : reach;
  l.channel_block = plan.channel_block;
  l.threads = resident ? kResidentThreads : kTileThreads;
  l.reach = reach;
  l.layout = layout;
  TORCH_CHECK(l.fused >= 1, op, ": fused_steps expected >= 1, got ", l.fused);
  const size_t shared = l.shared(l.fused);
  TORCH_CHECK(shared <= limit, op, ": a ", l.tile_h, "x", l.tile_w, " tile of ", l.channel_block, " channels with ",
              l.fused, " passes per launch needs ", shared, " bytes of shared memory, more than the ", limit,
              " a block has");
  l.grid = dim3((unsigned int)(((H + l.tile_h - 1) / l.tile_h) * ((W + l.tile_w - 1) / l.tile_w)),
                (unsigned int)((C + l.channel_block - 1) / l.channel_block), (unsigned int)B);
  return l;
}

// The kernel instances for a channel block (their template argument; same signature each).
template <typename scalar_t>
auto step_kernel(int channel_block) {
  switch (channel_block) {
    case 1: return kernels::walk_tiles_kernel<scalar_t, 1>;
    case 2: return kernels::walk_tiles_kernel<scalar_t, 2>;
    case 4: return kernels::walk_tiles_kernel<scalar_t, 4>;
    default: return kernels::walk_tiles_kernel<scalar_t, 8>;
  }
}

template <typename scalar_t, typename acc_t>
auto chebyshev_kernel(int channel_block) {
  switch (channel_block) {
    case 1: return kernels::chebyshev_tiles_kernel<scalar_t, acc_t, 1>;
    case 2: return kernels::chebyshev_tiles_kernel<scalar_t, acc_t, 2>;
    case 4: return kernels::chebyshev_tiles_kernel<scalar_t, acc_t, 4>;
    default: return kernels::chebyshev_tiles_kernel<scalar_t, acc_t, 8>;
  }
}

// x [B, C, H, W] -> `steps` walk steps, with `plan`, or the default plan when `choose` is set
at::Tensor walk(const char* op, const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                const at::Tensor& dirs_in, int64_t steps, WalkPlan plan, bool choose) {
  check_walk_args(op, x_in, planes_in, inv_norm_in, dirs_in, cuda::kDeviceTensors);
  TORCH_CHECK(steps >= 0 && steps < (int64_t(1) << 31), op, ": steps expected in [0, 2**31), got ", steps);
  const cuda::DeviceGuard guard(x_in);
  auto src = x_in.contiguous().clone();
  if (src.numel() == 0 || steps == 0) return src;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3), D = planes.size(1);
  const Launches l = plan_launches(op, src, dirs, D, steps, SharedLayout{2, (size_t)src.element_size(), 0, D}, plan, choose);
  auto dst = cuda::new_output(src.sizes(), src.options());
  int64_t launches = 0;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "random_walk_cuda", [&] {
    const auto kernel = step_kernel<scalar_t>(l.channel_block);
    scalar_t* a = src.data_ptr<scalar_t>();
    scalar_t* b = dst.data_ptr<scalar_t>();
    for (int64_t done = 0; done < steps; ++launches, std::swap(a, b)) {
      const int n = (int)std::min<int64_t>(l.fused, steps - done);
      cuda::launch(kernel, l.grid, l.threads, l.shared(n), a, b, planes.data_ptr<scalar_t>(),
                   inv_norm.data_ptr<scalar_t>(), dirs.data_ptr<int>(), (int)B, (int)C, (int)H, (int)W, (int)D,
                   l.reach, l.tile_h, l.tile_w, l.halo_per_step * n, n);
      done += n;
    }
  });
  return (launches % 2 == 0) ? src : dst;
}

// x [B, C, H, W] -> sum_k c_k T_k(P) x, passes fused per launch as in walk(); accumulated in
// float for float32 inputs (double for float64)
at::Tensor chebyshev(const char* op, const at::Tensor& x_in, const at::Tensor& planes_in,
                     const at::Tensor& inv_norm_in, const at::Tensor& dirs_in, c10::ArrayRef<double> coefficients,
                     WalkPlan plan, bool choose) {
  check_walk_args(op, x_in, planes_in, inv_norm_in, dirs_in, cuda::kDeviceTensors);
  check_coefficients(op, coefficients);
  const cuda::DeviceGuard guard(x_in);
  auto cur = x_in.contiguous().clone();
  if (cur.numel() == 0) return cur;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  const int64_t B = cur.size(0), C = cur.size(1), H = cur.size(2), W = cur.size(3), D = planes.size(1);
  const int64_t degree = (int64_t)coefficients.size() - 1;
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(cur.scalar_type(), "random_walk_chebyshev_cuda", [&] {
    using acc_t = scalar_t;  // float32 accumulation for float32 inputs
    const Launches l = plan_launches(op, cur, dirs, D, degree, SharedLayout{2, sizeof(scalar_t), sizeof(acc_t), D},
                                     plan, choose);
    const auto kernel = chebyshev_kernel<scalar_t, acc_t>(l.channel_block);
    constexpr auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    auto host = at::empty({(int64_t)coefficients.size()}, at::TensorOptions().dtype(at::kDouble));
    std::copy(coefficients.begin(), coefficients.end(), host.data_ptr<double>());
    const auto coeffs = host.to(cur.device(), acc_type);
    auto result = cuda::new_output(cur.sizes(), cur.options().dtype(acc_type));
    auto prev = cuda::new_output(cur.sizes(), cur.options());
    auto next_cur = cuda::new_output(cur.sizes(), cur.options());
    auto next_prev = cuda::new_output(cur.sizes(), cur.options());
    scalar_t *c_in = cur.data_ptr<scalar_t>(), *p_in = prev.data_ptr<scalar_t>();
    scalar_t *c_out = next_cur.data_ptr<scalar_t>(), *p_out = next_prev.data_ptr<scalar_t>();
    int64_t done = 0;
    do {  // degree 0 still launches once: it sets result = c_0 x
      const int n = (int)std::min<int64_t>(l.fused, degree - done);
      cuda::launch(kernel, l.grid, l.threads, l.shared(n), c_in, p_in, c_out, p_out, result.data_ptr<acc_t>(),
                   planes.data_ptr<scalar_t>(), inv_norm.data_ptr<scalar_t>(), dirs.data_ptr<int>(),
                   coeffs.data_ptr<acc_t>(), (int)B, (int)C, (int)H, (int)W, (int)D, l.reach, l.tile_h, l.tile_w,
                   l.halo_per_step * n, (int)done, n);
      std::swap(c_in, c_out);
      std::swap(p_in, p_out);
      done += n;
    } while (done < degree);
    out = result.to(cur.scalar_type());
  });
  return out;
}

at::Tensor random_walk_cuda(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                            const at::Tensor& dirs, int64_t steps) {
  return walk("random_walk_cuda", x, planes, inv_norm, dirs, steps, WalkPlan{}, /*choose=*/true);
}

WalkPlan explicit_plan(const char* op, int64_t tile_h, int64_t tile_w, int64_t fused, int64_t channel_block) {
  TORCH_CHECK(tile_h < 4096 && tile_w < 4096 && fused < 4096 && channel_block < 4096, op, ": tile ", tile_h, "x",
              tile_w, ", ", fused, " fused passes and ", channel_block, " channels per block: out of range");
  return WalkPlan{(int)tile_h, (int)tile_w, (int)fused, (int)channel_block};
}

at::Tensor random_walk_tiled_cuda(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                                  const at::Tensor& dirs, int64_t steps, int64_t tile_h, int64_t tile_w,
                                  int64_t fused_steps, int64_t channel_block) {
  const char* op = "random_walk_tiled_cuda";
  return walk(op, x, planes, inv_norm, dirs, steps, explicit_plan(op, tile_h, tile_w, fused_steps, channel_block),
              /*choose=*/false);
}

at::Tensor random_walk_chebyshev_cuda(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                                      const at::Tensor& dirs, c10::ArrayRef<double> coefficients) {
  return chebyshev("random_walk_chebyshev_cuda", x, planes, inv_norm, dirs, coefficients, WalkPlan{},
                   /*choose=*/true);
}

at::Tensor random_walk_chebyshev_tiled_cuda(const at::Tensor& x, const at::Tensor& planes,
                                            const at::Tensor& inv_norm, const at::Tensor& dirs,
                                            c10::ArrayRef<double> coefficients, int64_t tile_h, int64_t tile_w,
                                            int64_t fused_steps, int64_t channel_block) {
  const char* op = "random_walk_chebyshev_tiled_cuda";
  return chebyshev(op, x, planes, inv_norm, dirs, coefficients,
                   explicit_plan(op, tile_h, tile_w, fused_steps, channel_block), /*choose=*/false);
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("random_walk", &random_walk_cuda);
  m.impl("random_walk_tiled", &random_walk_tiled_cuda);
  m.impl("random_walk_chebyshev", &random_walk_chebyshev_cuda);
  m.impl("random_walk_chebyshev_tiled", &random_walk_chebyshev_tiled_cuda);
}

}  // namespace irnet_fast
