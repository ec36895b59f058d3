// CUDA launcher of random_walk (pairs with cpu/random_walk_cpu.cpp); kernel in
// kernels/random_walk_kernels.cuh. A launch steps a whole padded batch: tiles of every image and
// channel group, several steps per launch in shared memory (or every step, when a block holds a
// whole image), so the 2**exp_times steps take a few dozen launches instead of 256.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "launch.h"  // first: under the emulator it defines the CUDA keywords
#include "../checks.h"
#include "../kernels/random_walk_kernels.cuh"

namespace irnet_fast {
namespace {

// Default plan (not yet measured on a GPU; benchmarks/gpu_check.sh compares plans through
// random_walk_tiled): 32 x 32 tiles, 2 steps per launch, up to 8 channels per block.
constexpr int kTile = 32;
constexpr int kFusedSteps = 2;
constexpr int kMaxChannelBlock = 8;
constexpr int kTileThreads = 256;
constexpr int kResidentThreads = 1024;


// tile_h <= 0: one resident tile per image, every step in one launch
struct WalkPlan {
  int tile_h, tile_w, fused, channel_block;
};

size_t walk_shared_bytes(int64_t tile_h, int64_t tile_w, int64_t halo, int64_t channel_block, int64_t num_dirs,
                         size_t element) {
  return (size_t)(2 * channel_block * (tile_h + 2 * halo) * (tile_w + 2 * halo)) * element +
         (size_t)(2 * num_dirs) * sizeof(int);
}

template <typename scalar_t>
void launch_walk(dim3 grid, int threads, size_t shared, int channel_block, const scalar_t* src, scalar_t* dst,
                 const scalar_t* planes, const scalar_t* inv_norm, const int* dirs, int64_t B, int64_t C, int64_t H,
                 int64_t W, int64_t D, int reach, int tile_h, int tile_w, int halo, int steps) {
  auto run = [&](auto kernel) {
    cuda::launch(kernel, grid, threads, shared, src, dst, planes, inv_norm, dirs, (int)B, (int)C, (int)H, (int)W,
                 (int)D, reach, tile_h, tile_w, halo, steps);
  };
  switch (channel_block) {
    case 1: return run(kernels::walk_tiles_kernel<scalar_t, 1>);
    case 2: return run(kernels::walk_tiles_kernel<scalar_t, 2>);
    case 4: return run(kernels::walk_tiles_kernel<scalar_t, 4>);
    default: return run(kernels::walk_tiles_kernel<scalar_t, 8>);
  }
}

// x [B, C, H, W] -> `steps` walk steps, with `plan`, or with the default plan when choose is set
at::Tensor walk(const char* op, const at::Tensor& x_in, const at::Tensor& planes_in, const at::Tensor& inv_norm_in,
                const at::Tensor& dirs_in, int64_t steps, WalkPlan plan, bool choose) {
  check_walk_args(op, x_in, planes_in, inv_norm_in, dirs_in, cuda::kDeviceTensors);
  TORCH_CHECK(steps >= 0 && steps < (int64_t(1) << 31), op, ": steps expected in [0, 2**31), got ", steps);
  const cuda::DeviceGuard guard(x_in);
  auto src = x_in.contiguous().clone();
  if (src.numel() == 0 || steps == 0) return src;
  const auto planes = planes_in.contiguous(), inv_norm = inv_norm_in.contiguous(), dirs = dirs_in.contiguous();
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3), D = planes.size(1);
  TORCH_CHECK(B <= 65535, op, ": at most 65535 images per call, got ", B);
  int reach = 0;  // max |dy|, |dx|: how far one step reads
  const auto dirs_host = dirs.cpu();
  for (int64_t k = 0; k < D; ++k) {
    const int dy = dirs_host.data_ptr<int>()[2 * k], dx = dirs_host.data_ptr<int>()[2 * k + 1];
    TORCH_CHECK(dy >= 0, op, ": dirs expected dy >= 0 (half plane), got ", dy);
    reach = std::max(reach, std::max(dy, std::abs(dx)));
  }
  const size_t element = src.element_size(), limit = cuda::max_shared_bytes(src);
  if (choose) {
    int cb = 1;
    while (cb < C && cb < kMaxChannelBlock) cb *= 2;
    // one block per image and channel group holding the whole image: no halo, one launch;
    // worth it when those blocks fill the device
    if (walk_shared_bytes(H, W, 0, cb, D, element) <= limit &&
        B * ((C + cb - 1) / cb) >= cuda::multiprocessor_count(src)) {
      plan = WalkPlan{0, 0, 1, cb};
    } else {
      plan = WalkPlan{kTile, kTile, kFusedSteps, cb};
      auto bytes = [&] { return walk_shared_bytes(kTile, kTile, (int64_t)plan.fused * reach, plan.channel_block, D, element); };
      while (plan.channel_block > 1 && bytes() > limit) plan.channel_block /= 2;
      while (plan.fused > 1 && bytes() > limit) --plan.fused;
    }
  }
  TORCH_CHECK(plan.channel_block == 1 || plan.channel_block == 2 || plan.channel_block == 4 || plan.channel_block == 8,
              op, ": channel_block expected 1, 2, 4 or 8, got ", plan.channel_block);
  const bool resident = plan.tile_h <= 0 || plan.tile_w <= 0;
  const int tile_h = resident ? (int)H : plan.tile_h, tile_w = resident ? (int)W : plan.tile_w;
  const int fused = resident ? (int)steps : plan.fused, halo_per_step = resident ? 0 : reach;
  TORCH_CHECK(fused >= 1, op, ": fused_steps expected >= 1, got ", fused);
  const size_t shared = walk_shared_bytes(tile_h, tile_w, (int64_t)halo_per_step * fused, plan.channel_block, D, element);
  TORCH_CHECK(shared <= limit, op, ": a ", tile_h, "x", tile_w, " tile of ", plan.channel_block, " channels with ",
              fused, " steps per launch needs ", shared, " bytes of shared memory, more than the ", limit,
              " a block has");
  const dim3 grid((unsigned int)(((H + tile_h - 1) / tile_h) * ((W + tile_w - 1) / tile_w)),
                  (unsigned int)((C + plan.channel_block - 1) / plan.channel_block), (unsigned int)B);
  const int threads = resident ? kResidentThreads : kTileThreads;
  auto dst = cuda::new_output(src.sizes(), src.options());
  int64_t launches = 0;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "random_walk_cuda", [&] {
    scalar_t* a = src.data_ptr<scalar_t>();
    scalar_t* b = dst.data_ptr<scalar_t>();
    for (int64_t done = 0; done < steps; ++launches, std::swap(a, b)) {
      const int n = (int)std::min<int64_t>(fused, steps - done);
      const int halo = halo_per_step * n;
      launch_walk<scalar_t>(grid, threads, walk_shared_bytes(tile_h, tile_w, halo, plan.channel_block, D, element),
                            plan.channel_block, a, b, planes.data_ptr<scalar_t>(), inv_norm.data_ptr<scalar_t>(),
                            dirs.data_ptr<int>(), B, C, H, W, D, reach, tile_h, tile_w, halo, n);
      done += n;
    }
  });
  return (launches % 2 == 0) ? src : dst;
}

at::Tensor random_walk_cuda(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                            const at::Tensor& dirs, int64_t steps) {
  return walk("random_walk_cuda", x, planes, inv_norm, dirs, steps, WalkPlan{}, /*choose=*/true);
}

at::Tensor random_walk_tiled_cuda(const at::Tensor& x, const at::Tensor& planes, const at::Tensor& inv_norm,
                                  const at::Tensor& dirs, int64_t steps, int64_t tile_h, int64_t tile_w,
                                  int64_t fused_steps, int64_t channel_block) {
  TORCH_CHECK(tile_h < 4096 && tile_w < 4096 && fused_steps < 4096 && channel_block < 4096,
              "random_walk_tiled_cuda: tile ", tile_h, "x", tile_w, ", ", fused_steps, " fused steps and ",
              channel_block, " channels per block: out of range");
  return walk("random_walk_tiled_cuda", x, planes, inv_norm, dirs, steps,
              WalkPlan{(int)tile_h, (int)tile_w, (int)fused_steps, (int)channel_block}, /*choose=*/false);
}

}  // namespace

IRNET_FAST_CUDA_KERNELS(m) {
  m.impl("random_walk", &random_walk_cuda);
  m.impl("random_walk_tiled", &random_walk_tiled_cuda);
}

}  // namespace irnet_fast
