// __global__ kernels of the random walk (plain steps and Chebyshev passes), shared by the CUDA
// launcher (cuda/random_walk_cuda.cu), the CuPy backend (NVRTC, through cuda_kernels.cuh) and the
// emulated test build. Per-pixel arithmetic in random_walk.h (walk_apply_channels,
// chebyshev_update), which the CPU build's portable ops run too.
//
// Both kernels step tiles in shared memory. src, dst [B, C, H, W]; planes [B, D, H, W];
// inv_norm [B, H, W]; dirs [D, 2] (dy >= 0). grid (tiles_y * tiles_x, ceil(C / CB), B): a batch
// of images per launch (a padded batch keeps zero planes and inverse norm outside each image).
// Block: any number of threads. A block loads its tile_h x tile_w tile plus `halo` pixels on
// every side (the region; zero outside the image) and makes several passes there: after pass s
// (0-based) a pixel is exact when it lies (s + 1) * reach pixels inside every region side that is
// not an image border (reach = max |dy|, |dx|), so only those are computed, and the tile is exact
// after n passes when halo >= n * reach. A tile covering the whole image needs no halo: every
// pass of the walk runs in one launch (a persistent block per image and channel group).
#pragma once
#include "random_walk.h"

namespace irnet_fast {
namespace kernels {

// Where a block's tile and region lie. `at(y, x)`: a pixel's index in a region buffer.
struct WalkTile {
  int tile_y0, tile_x0, oy, ox, region_h, region_w, area, c0, b;

  IRNET_HD int at(int y, int x) const { return (y - oy) * region_w + (x - ox); }

  // the pixels pass s computes exactly: [y_lo, y_hi) x [x_lo, x_hi); returns their count
  IRNET_HD int zone(int s, int reach, int H, int W, int* y_lo, int* x_lo, int* zone_w) const {
    const int shrink = (s + 1) * reach;
    *y_lo = oy > 0 ? oy + shrink : 0;
    *x_lo = ox > 0 ? ox + shrink : 0;
    const int y_hi = oy + region_h < H ? oy + region_h - shrink : H;
    const int x_hi = ox + region_w < W ? ox + region_w - shrink : W;
    *zone_w = x_hi - *x_lo;
    return (y_hi > *y_lo && *zone_w > 0) ? (y_hi - *y_lo) * *zone_w : 0;
  }
};

template <int CB>
__device__ __forceinline__ WalkTile walk_tile(int W, int tile_h, int tile_w, int halo) {
  WalkTile t;
  const int tiles_x = (W + tile_w - 1) / tile_w;
  t.tile_y0 = ((int)blockIdx.x / tiles_x) * tile_h;
  t.tile_x0 = ((int)blockIdx.x % tiles_x) * tile_w;
  t.oy = t.tile_y0 - halo;
  t.ox = t.tile_x0 - halo;
  t.region_h = tile_h + 2 * halo;
  t.region_w = tile_w + 2 * halo;
  t.area = t.region_h * t.region_w;
  t.c0 = (int)blockIdx.y * CB;
  t.b = (int)blockIdx.z;
  return t;
}

// Loads the region of CB channels of `src` into `region` (channels `area` apart), 0 outside the
// image and past the last channel.
template <typename scalar_t, int CB>
__device__ __forceinline__ void load_region(const WalkTile& t, const scalar_t* src, scalar_t* region, int C, int H,
                                            int W) {
  const long long plane = (long long)H * W;
  for (int i = threadIdx.x; i < CB * t.area; i += blockDim.x) {
    const int c = i / t.area, r = i % t.area;
    const int y = t.oy + r / t.region_w, x = t.ox + r % t.region_w;
    const bool inside = t.c0 + c < C && y >= 0 && y < H && x >= 0 && x < W;
    region[i] = inside ? src[((long long)t.b * C + t.c0 + c) * plane + (long long)y * W + x] : scalar_t(0);
  }
}

// Writes the tile of CB channels from `region` to `dst`.
template <typename scalar_t, int CB>
__device__ __forceinline__ void store_tile(const WalkTile& t, const scalar_t* region, scalar_t* dst, int C, int H,
                                           int W, int tile_h, int tile_w) {
  const long long plane = (long long)H * W;
  const int tile = tile_h * tile_w;
  for (int i = threadIdx.x; i < CB * tile; i += blockDim.x) {
    const int c = i / tile, r = i % tile;
    const int y = t.tile_y0 + r / tile_w, x = t.tile_x0 + r % tile_w;
    if (t.c0 + c < C && y < H && x < W) {
      dst[((long long)t.b * C + t.c0 + c) * plane + (long long)y * W + x] = region[c * t.area + t.at(y, x)];
    }
  }
}

// `steps` plain walk steps of CB channels of one tile: src -> dst.
// Dynamic shared memory: 2 * CB * region scalars, then 2 * D ints.
template <typename scalar_t, int CB>
__global__ void walk_tiles_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                  const scalar_t* __restrict__ planes, const scalar_t* __restrict__ inv_norm,
                                  const int* __restrict__ dirs, int B, int C, int H, int W, int D, int reach,
                                  int tile_h, int tile_w, int halo, int steps) {
  IRNET_DYNAMIC_SHARED(scalar_t, smem);
  const WalkTile t = walk_tile<CB>(W, tile_h, tile_w, halo);
  scalar_t* buffers[2] = {smem, smem + CB * t.area};
  int* shared_dirs = reinterpret_cast<int*>(smem + 2 * CB * t.area);
  const long long plane = (long long)H * W;
  const scalar_t* planes_b = planes + (long long)t.b * D * plane;
  const scalar_t* inv_b = inv_norm + (long long)t.b * plane;
  for (int i = threadIdx.x; i < 2 * D; i += blockDim.x) shared_dirs[i] = dirs[i];
  load_region<scalar_t, CB>(t, src, buffers[0], C, H, W);
  load_region<scalar_t, CB>(t, src, buffers[1], C, H, W);  // pixels no step writes read as zero from either
  __syncthreads();
  for (int s = 0; s < steps; ++s) {
    int y_lo, x_lo, zone_w;
    const int zone = t.zone(s, reach, H, W, &y_lo, &x_lo, &zone_w);
    const scalar_t* from = buffers[s & 1];
    scalar_t* to = buffers[(s + 1) & 1];
    for (int i = threadIdx.x; i < zone; i += blockDim.x) {
      const int y = y_lo + i / zone_w, x = x_lo + i % zone_w;
      const int at = t.at(y, x);
      scalar_t out[CB];
      walk_apply_channels<scalar_t, scalar_t, CB>(from, t.area, t.region_w, at, planes_b, inv_b, shared_dirs, D, H, W,
                                                  y, x, out);
      for (int c = 0; c < CB; ++c) to[c * t.area + at] = out[c];
    }
    __syncthreads();
  }
  store_tile<scalar_t, CB>(t, buffers[steps & 1], dst, C, H, W, tile_h, tile_w);
}

// Chebyshev passes first .. first + passes - 1 of CB channels of one tile (pass k makes
// v_{k+1} = 2 P v_k - v_{k-1}, or P v_0 for k = 0, and adds c_{k+1} v_{k+1} to the result).
// cur_in, prev_in: v_first, v_{first - 1} (prev_in unread when first == 0); cur_out, prev_out get
// the tile of v_{first + passes}, v_{first + passes - 1}; result [B, C, H, W] in acc_t is read and
// written for the tile (set to c_0 v_0 when first == 0). coefficients: c_0 .. c_d in acc_t.
// Dynamic shared memory: CB * tile acc_t (the result), 2 * CB * region scalars, 2 * D ints.
template <typename scalar_t, typename acc_t, int CB>
__global__ void chebyshev_tiles_kernel(const scalar_t* __restrict__ cur_in, const scalar_t* __restrict__ prev_in,
                                       scalar_t* __restrict__ cur_out, scalar_t* __restrict__ prev_out,
                                       acc_t* __restrict__ result, const scalar_t* __restrict__ planes,
                                       const scalar_t* __restrict__ inv_norm, const int* __restrict__ dirs,
                                       const acc_t* __restrict__ coefficients, int B, int C, int H, int W, int D,
                                       int reach, int tile_h, int tile_w, int halo, int first, int passes) {
  IRNET_DYNAMIC_SHARED(acc_t, tile_result);
  const WalkTile t = walk_tile<CB>(W, tile_h, tile_w, halo);
  const int tile = tile_h * tile_w;
  scalar_t* cur = reinterpret_cast<scalar_t*>(tile_result + CB * tile);
  scalar_t* prev = cur + CB * t.area;
  int* shared_dirs = reinterpret_cast<int*>(prev + CB * t.area);
  const long long plane = (long long)H * W;
  const scalar_t* planes_b = planes + (long long)t.b * D * plane;
  const scalar_t* inv_b = inv_norm + (long long)t.b * plane;
  for (int i = threadIdx.x; i < 2 * D; i += blockDim.x) shared_dirs[i] = dirs[i];
  load_region<scalar_t, CB>(t, cur_in, cur, C, H, W);
  if (first > 0) {
    load_region<scalar_t, CB>(t, prev_in, prev, C, H, W);
  } else {
    for (int i = threadIdx.x; i < CB * t.area; i += blockDim.x) prev[i] = scalar_t(0);
  }
  for (int i = threadIdx.x; i < CB * tile; i += blockDim.x) {
    const int c = i / tile, r = i % tile;
    const int y = t.tile_y0 + r / tile_w, x = t.tile_x0 + r % tile_w;
    const bool inside = t.c0 + c < C && y < H && x < W;
    const long long g = ((long long)t.b * C + t.c0 + c) * plane + (long long)y * W + x;
    tile_result[i] = !inside ? acc_t(0)
                     : first == 0 ? coefficients[0] * (acc_t)cur_in[g]
                                  : result[g];
  }
  __syncthreads();
  for (int s = 0; s < passes; ++s) {
    const int k = first + s;
    int y_lo, x_lo, zone_w;
    const int zone = t.zone(s, reach, H, W, &y_lo, &x_lo, &zone_w);
    for (int i = threadIdx.x; i < zone; i += blockDim.x) {
      const int y = y_lo + i / zone_w, x = x_lo + i % zone_w;
      const int at = t.at(y, x);
      acc_t applied[CB];
      walk_apply_channels<scalar_t, acc_t, CB>(cur, t.area, t.region_w, at, planes_b, inv_b, shared_dirs, D, H, W, y,
                                               x, applied);
      const int ty = y - t.tile_y0, tx = x - t.tile_x0;
      const bool in_tile = ty >= 0 && ty < tile_h && tx >= 0 && tx < tile_w;
      for (int c = 0; c < CB; ++c) {
        acc_t unused = 0;  // the result of pixels outside the tile is kept by their own block
        acc_t* sum = in_tile ? &tile_result[c * tile + ty * tile_w + tx] : &unused;
        chebyshev_update<scalar_t, acc_t>(applied[c], k == 0, coefficients[k + 1], &prev[c * t.area + at], sum);
      }
    }
    __syncthreads();
    scalar_t* swap = cur;  // v_{k+1} is now in prev
    cur = prev;
    prev = swap;
  }
  store_tile<scalar_t, CB>(t, cur, cur_out, C, H, W, tile_h, tile_w);
  store_tile<scalar_t, CB>(t, prev, prev_out, C, H, W, tile_h, tile_w);
  for (int i = threadIdx.x; i < CB * tile; i += blockDim.x) {
    const int c = i / tile, r = i % tile;
    const int y = t.tile_y0 + r / tile_w, x = t.tile_x0 + r % tile_w;
    if (t.c0 + c < C && y < H && x < W) result[((long long)t.b * C + t.c0 + c) * plane + (long long)y * W + x] = tile_result[i];
  }
}

}  // namespace kernels
}  // namespace irnet_fast
