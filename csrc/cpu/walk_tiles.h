// The float32 Chebyshev pass of the radius-5 walk (IRNet's) on register tiles of 4 rows x 16
// columns, for CPUs with AVX-512 (random_walk_cpu.cpp picks it at run time; other CPUs, radii
// and dtypes take the row kernels there).
//
// Why tiles: the row kernel loads each neighbour value once per output row, 69 loads for 69
// multiply-adds, most of them split across two cache lines (shifted by dx), and the loads bound
// it. A tile of 4 output rows uses each neighbour value for every row of the tile that reaches it
// (about 3 times), so the loads fall to about a third and the multiply-adds bound the pass.
// What it needs: the direction set known at compile time (every offset becomes a constant
// displacement) and the weights of both neighbours of a pixel stored side by side:
//   weights [row][column block][2 D][16]: slot j < D holds S_j(p), slot D + j holds S_j(p - o_j),
// so every weight load is one aligned vector.
// Values: [row][channel][column] with 4 zero rows above and below, 16 zero columns left (the
// interior starts 64-byte aligned) and at least 4 right; rows padded to a multiple of 4 with zero
// weights and a zero inverse norm, so padded outputs stay 0.
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>

namespace irnet_fast {
namespace tiles {

constexpr int kRadius = 5;
constexpr int kPad = kRadius - 1;  // the largest |dy|, |dx| of an offset
constexpr int kRows = 4;           // output rows per tile
constexpr int kLanes = 16;         // float32 lanes per vector
constexpr int kLeft = 16;          // zero columns left of the interior

// The half-plane offsets within the radius (dy > 0, or dy == 0 and dx > 0, dy^2 + dx^2 < r^2),
// in a fixed order of their own: slot j. random_walk_cpu.cpp maps the caller's planes onto slots.
struct Offsets {
  int dy[64], dx[64], count;
};

constexpr Offsets make_offsets() {
  Offsets o{};
  o.count = 0;
  for (int dy = 0; dy < kRadius; ++dy) {
    for (int dx = -kPad; dx <= kPad; ++dx) {
      if ((dy == 0 && dx <= 0) || dy * dy + dx * dx >= kRadius * kRadius) continue;
      o.dy[o.count] = dy;
      o.dx[o.count] = dx;
      ++o.count;
    }
  }
  return o;
}

constexpr Offsets kOffsets = make_offsets();
constexpr int kDirs = kOffsets.count;  // 34
constexpr int kSlots = 2 * kDirs;

// One multiply-add of the tile: value at tile row `ry` (-kPad .. kRows + kPad - 1), column
// shift `dx`, into output row `r` with the weight in slot `slot`. Sorted by (ry, dx), so that
// consecutive terms share the value vector.
struct Term {
  int ry, dx, r, slot;
};

struct Terms {
  Term t[kRows * kSlots];
};

constexpr Terms make_terms() {
  Terms terms{};
  int n = 0;
  for (int ry = -kPad; ry < kRows + kPad; ++ry) {
    for (int dx = -kPad; dx <= kPad; ++dx) {
      for (int r = 0; r < kRows; ++r) {
        for (int j = 0; j < kDirs; ++j) {
          // forward neighbour p + o_j of output p = (r, 0), or backward neighbour p - o_j
          if (kOffsets.dy[j] == ry - r && kOffsets.dx[j] == dx) terms.t[n++] = Term{ry, dx, r, j};
          if (kOffsets.dy[j] == r - ry && kOffsets.dx[j] == -dx) terms.t[n++] = Term{ry, dx, r, kDirs + j};
        }
      }
    }
  }
  return terms;
}

constexpr Terms kTerms = make_terms();
constexpr int kTermCount = kRows * kSlots;

typedef float vf __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));
typedef double vd __attribute__((vector_size(64)));

template <typename V, typename T>
__attribute__((always_inline)) inline V vload(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
__attribute__((always_inline)) inline void vstore(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// Empty asm statements that make a value opaque to the optimiser: GCC otherwise hoists the
// constant offsets of all rows into stack slots and folds each reused value load back into every
// multiply-add that uses it (measured: no gain over the row kernel without them).
#define IRNET_OPAQUE_PTR(p) asm("" : "+r"(p))
#define IRNET_OPAQUE_VEC(v) asm("" : "+v"(v))

template <int CB, size_t I>
__attribute__((always_inline)) inline void tile_term(vf (&acc)[kRows][CB], vf (&value)[CB], const char*& row,
                                                     const char* const (&weights)[kRows], int64_t chan_bytes,
                                                     int64_t row_bytes) {
  constexpr Term term = kTerms.t[I];
  constexpr bool new_row = I == 0 || kTerms.t[I == 0 ? 0 : I - 1].ry != term.ry;
  constexpr bool new_value = new_row || kTerms.t[I == 0 ? 0 : I - 1].dx != term.dx;
  if constexpr (new_row && I > 0) {
    row += row_bytes * (term.ry - kTerms.t[I - 1].ry);
    IRNET_OPAQUE_PTR(row);
  }
  if constexpr (new_value) {
    for (int c = 0; c < CB; ++c) {
      value[c] = vload<vf>(row + c * chan_bytes + term.dx * (int)sizeof(float));
      IRNET_OPAQUE_VEC(value[c]);
    }
  }
  vf weight = vload<vf>(weights[term.r] + term.slot * kLanes * (int)sizeof(float));
  if constexpr (CB > 1) IRNET_OPAQUE_VEC(weight);
  for (int c = 0; c < CB; ++c) acc[term.r][c] += weight * value[c];
}

template <int CB, size_t... I>
__attribute__((always_inline)) inline void tile_terms(vf (&acc)[kRows][CB], const char* row,
                                                      const char* const (&weights)[kRows], int64_t chan_bytes,
                                                      int64_t row_bytes, std::index_sequence<I...>) {
  vf value[CB];
  (tile_term<CB, I>(acc, value, row, weights, chan_bytes, row_bytes), ...);
}

// One fused Chebyshev pass (kernels::chebyshev_pass_at) over the tile of rows [r0, r0 + 4) of CB
// channels, all column blocks. `cur`, `prev`, `result`: the value and accumulator buffers of this
// channel group, `at` = index of (r0, first interior column) in them; `row_stride` = CB *
// `chan_stride`. `weights` + `weight_at`: the tile's first weight row; `inv_norm` + `inv_at`:
// the tile's first row of 1 / d (rows `inv_stride` apart).
template <int CB>
__attribute__((always_inline)) inline void chebyshev_tile(const float* __restrict cur, float* __restrict prev,
                                                          double* __restrict result, const float* __restrict weights,
                                                          const float* __restrict inv_norm, int64_t chan_stride,
                                                          int64_t row_stride, int64_t inv_stride, int64_t at,
                                                          int64_t weight_at, int64_t inv_at, int64_t blocks,
                                                          double coefficient, bool first) {
  const int64_t weight_row = blocks * kSlots * kLanes;
  for (int64_t xb = 0; xb < blocks; ++xb) {
    const int64_t q = at + xb * kLanes;
    const char* weight_rows[kRows];
    for (int r = 0; r < kRows; ++r) {
      weight_rows[r] = reinterpret_cast<const char*>(weights + weight_at + r * weight_row + xb * kSlots * kLanes);
      IRNET_OPAQUE_PTR(weight_rows[r]);
    }
    vf acc[kRows][CB];
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < CB; ++c) acc[r][c] = vf{};
    const char* row = reinterpret_cast<const char*>(cur + q - kPad * row_stride);
    IRNET_OPAQUE_PTR(row);
    tile_terms<CB>(acc, row, weight_rows, chan_stride * (int64_t)sizeof(float), row_stride * (int64_t)sizeof(float),
                   std::make_index_sequence<kTermCount>{});
    for (int r = 0; r < kRows; ++r) {
      const vf inv = vload<vf>(inv_norm + inv_at + r * inv_stride + xb * kLanes);
      for (int c = 0; c < CB; ++c) {
        const int64_t p = q + r * row_stride + c * chan_stride;
        // the self term last, as the row kernels
        const vf applied = (vload<vf>(cur + p) + acc[r][c]) * inv;
        const vf next = first ? applied : 2.0f * applied - vload<vf>(prev + p);
        vstore<vf>(prev + p, next);
        if (coefficient != 0.0) {
          vf8 half[2];
          std::memcpy(half, &next, sizeof(next));
          vstore<vd>(result + p, vload<vd>(result + p) + coefficient * __builtin_convertvector(half[0], vd));
          vstore<vd>(result + p + 8, vload<vd>(result + p + 8) + coefficient * __builtin_convertvector(half[1], vd));
        }
      }
    }
  }
}

#undef IRNET_OPAQUE_PTR
#undef IRNET_OPAQUE_VEC

}  // namespace tiles
}  // namespace irnet_fast
