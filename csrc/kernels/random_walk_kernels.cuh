// __global__ kernel of the random walk, shared by the CUDA launcher (cuda/random_walk_cuda.cu),
// the CuPy backend (NVRTC, through cuda_kernels.cuh) and the emulated test build. Per-pixel
// arithmetic in affinity.h (walk_step_channels), which the CPU build's portable op runs too.
#pragma once
#include "affinity.h"

namespace irnet_fast {
namespace kernels {

// `steps` walk steps of CB channels of one tile, in shared memory, in one launch.
//
// src, dst [B, C, H, W]; planes [B, D, H, W]; inv_norm [B, H, W]; dirs [D, 2] (dy >= 0).
// grid (tiles_y * tiles_x, ceil(C / CB), B): a batch of images per launch (a padded batch keeps
// zero planes and inverse norm outside each image). Block: any number of threads.
// The block loads its tile_h x tile_w tile plus `halo` pixels on every side (the region; zero
// outside the image) into shared memory, then steps it there: after step s (0-based) a pixel is
// exact when it lies (s + 1) * reach pixels inside every region side that is not an image border
// (reach = max |dy|, |dx|), so only those are computed, and the tile is exact after `steps` steps
// when halo >= steps * reach. A tile covering the whole image needs no halo: all the steps of
// the walk run in one launch (a persistent block per image and channel group).
// Dynamic shared memory: 2 * CB * region_h * region_w scalars, then 2 * D ints.
template <typename scalar_t, int CB>
__global__ void walk_tiles_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                  const scalar_t* __restrict__ planes, const scalar_t* __restrict__ inv_norm,
                                  const int* __restrict__ dirs, int B, int C, int H, int W, int D, int reach,
                                  int tile_h, int tile_w, int halo, int steps) {
  IRNET_DYNAMIC_SHARED(scalar_t, smem);
  const int region_h = tile_h + 2 * halo, region_w = tile_w + 2 * halo;
  const int area = region_h * region_w;
  scalar_t* buffers[2] = {smem, smem + CB * area};
  int* shared_dirs = reinterpret_cast<int*>(smem + 2 * CB * area);
  const int tiles_x = (W + tile_w - 1) / tile_w;
  const int tile_y = (int)blockIdx.x / tiles_x, tile_x = (int)blockIdx.x % tiles_x;
  const int c0 = (int)blockIdx.y * CB, b = (int)blockIdx.z;
  const int oy = tile_y * tile_h - halo, ox = tile_x * tile_w - halo;  // region origin in the image
  const long long plane = (long long)H * W;
  const scalar_t* planes_b = planes + (long long)b * D * plane;
  const scalar_t* inv_b = inv_norm + (long long)b * plane;

  for (int i = threadIdx.x; i < 2 * D; i += blockDim.x) shared_dirs[i] = dirs[i];
  for (int i = threadIdx.x; i < CB * area; i += blockDim.x) {
    const int c = i / area, r = i % area;
    const int y = oy + r / region_w, x = ox + r % region_w;
    const bool inside = c0 + c < C && y >= 0 && y < H && x >= 0 && x < W;
    const scalar_t v = inside ? src[((long long)b * C + c0 + c) * plane + (long long)y * W + x] : scalar_t(0);
    buffers[0][i] = v;
    buffers[1][i] = v;  // pixels no step writes (outside the image) read as zero from either buffer
  }
  __syncthreads();

  for (int s = 0; s < steps; ++s) {
    const int shrink = (s + 1) * reach;
    const int y_lo = oy > 0 ? oy + shrink : 0;
    const int y_hi = oy + region_h < H ? oy + region_h - shrink : H;
    const int x_lo = ox > 0 ? ox + shrink : 0;
    const int x_hi = ox + region_w < W ? ox + region_w - shrink : W;
    const int zone_w = x_hi - x_lo;
    const int zone = (y_hi > y_lo && zone_w > 0) ? (y_hi - y_lo) * zone_w : 0;
    const scalar_t* from = buffers[s & 1];
    scalar_t* to = buffers[(s + 1) & 1];
    for (int i = threadIdx.x; i < zone; i += blockDim.x) {
      const int y = y_lo + i / zone_w, x = x_lo + i % zone_w;
      const int at = (y - oy) * region_w + (x - ox);
      scalar_t out[CB];
      walk_step_channels<scalar_t, CB>(from, area, region_w, at, planes_b, inv_b, shared_dirs, D, H, W, y, x, out);
      for (int c = 0; c < CB; ++c) to[c * area + at] = out[c];
    }
    __syncthreads();
  }

  const scalar_t* result = buffers[steps & 1];
  const int tile = tile_h * tile_w;
  for (int i = threadIdx.x; i < CB * tile; i += blockDim.x) {
    const int c = i / tile, r = i % tile;
    const int y = tile_y * tile_h + r / tile_w, x = tile_x * tile_w + r % tile_w;
    if (c0 + c < C && y < H && x < W) {
      dst[((long long)b * C + c0 + c) * plane + (long long)y * W + x] =
          result[c * area + (y - oy) * region_w + (x - ox)];
    }
  }
}

}  // namespace kernels
}  // namespace irnet_fast
