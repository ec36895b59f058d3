// Defensive checks of the compiled ops' arguments, CPU and CUDA launchers alike (`cuda`: whether
// the tensors must be CUDA tensors; false for the CPU kernels and the emulated CUDA build). The
// Python wrappers validate first with friendlier messages; these keep a direct torch.ops call from
// reaching a kernel with bad input: besides dtypes and shapes they check every value a kernel
// indexes with (path points, lengths, arg-max indices, grid sizes, iteration counts), so no
// argument can make a kernel read or write out of bounds.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <climits>
#include <cstdlib>

namespace irnet_fast {

// Path points and walk offsets are small by construction (radius <= 64 in the Python API).
constexpr int64_t kMaxOffset = 255;

// The half plane of the search directions: dy > 0, or dy == 0 and dx > 0.
inline bool in_half_plane(int dy, int dx) { return dy > 0 || (dy == 0 && dx > 0); }

// Every direction k: 1 <= lengths[k] <= L; its destination (the first point) in the half plane
// (and within `reach` of the source when reach >= 0); every point inside the box spanned by the
// source (0, 0) and the destination. Kernels rely on exactly this: a path whose destination is on
// the grid never leaves it.
inline void check_path_contents(const char* op, const at::Tensor& paths, const at::Tensor& lengths,
                                int64_t reach) {
  const auto p = paths.to(at::kCPU);
  const auto n = lengths.to(at::kCPU);
  const int* pp = p.data_ptr<int>();
  const int* np = n.data_ptr<int>();
  const int64_t D = p.size(0), L = p.size(1);
  for (int64_t k = 0; k < D; ++k) {
    TORCH_CHECK(np[k] >= 1 && np[k] <= L, op, ": lengths[", k, "] expected in [1, ", L, "], got ", np[k]);
    const int* path = pp + 2 * k * L;
    const int dy = path[0], dx = path[1];
    TORCH_CHECK(in_half_plane(dy, dx) && std::abs(dy) <= kMaxOffset && std::abs(dx) <= kMaxOffset, op,
                ": paths[", k, "] destination expected dy > 0 (or dy == 0 and dx > 0) and |dy|, |dx| <= ",
                kMaxOffset, ", got (", dy, ", ", dx, ")");
    TORCH_CHECK(reach < 0 || (dy <= reach && std::abs(dx) <= reach), op, ": paths[", k, "] destination (", dy, ", ",
                dx, ") expected within radius_floor ", reach, " of the source");
    const int lo_x = dx < 0 ? dx : 0, hi_x = dx < 0 ? 0 : dx;
    for (int j = 1; j < np[k]; ++j) {
      const int y = path[2 * j], x = path[2 * j + 1];
      TORCH_CHECK(y >= 0 && y <= dy && x >= lo_x && x <= hi_x, op, ": paths[", k, "][", j, "] = (", y, ", ", x,
                  ") expected inside the box between the source (0, 0) and the destination (", dy, ", ", dx, ")");
    }
  }
}

// Walk offsets [D, 2]: each in the half plane and at most kMaxOffset.
inline void check_dirs_contents(const char* op, const at::Tensor& dirs) {
  const auto d = dirs.to(at::kCPU).contiguous();
  const int* dp = d.data_ptr<int>();
  for (int64_t k = 0; k < d.size(0); ++k) {
    const int dy = dp[2 * k], dx = dp[2 * k + 1];
    TORCH_CHECK(in_half_plane(dy, dx) && std::abs(dy) <= kMaxOffset && std::abs(dx) <= kMaxOffset, op, ": dirs[", k,
                "] expected dy > 0 (or dy == 0 and dx > 0) and |dy|, |dx| <= ", kMaxOffset, ", got (", dy, ", ", dx,
                ")");
  }
}

inline void check_radius_floor(const char* op, int64_t radius_floor) {
  TORCH_CHECK(radius_floor >= 0 && radius_floor <= kMaxOffset, op, ": radius_floor expected in [0, ", kMaxOffset,
              "], got ", radius_floor);
}

// Iteration and step counts are int64 in the schema; kernels count in int.
inline void check_count(const char* op, const char* name, int64_t value) {
  TORCH_CHECK(value >= 0 && value <= INT_MAX, op, ": ", name, " expected in [0, ", INT_MAX, "], got ", value);
}

// Grids whose flat indices fit the kernels' int arithmetic.
inline void check_grid(const char* op, const char* name, int64_t height, int64_t width) {
  TORCH_CHECK(height < (1 << 24) && width < (1 << 24) && height * width < (int64_t(1) << 31), op, ": ", name,
              " grid too large: ", height, "x", width);
}

inline void check_geometry(const char* op, const at::Tensor& paths, const at::Tensor& lengths,
                           const at::Device& device) {
  TORCH_CHECK(paths.dim() == 3 && paths.size(2) == 2 && paths.scalar_type() == at::kInt && paths.is_contiguous(),
              op, ": paths expected a contiguous int32 tensor [D, L, 2], got ", paths.sizes(), " ", paths.scalar_type());
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == paths.size(0) && lengths.scalar_type() == at::kInt &&
                  lengths.is_contiguous(),
              op, ": lengths expected a contiguous int32 tensor [", paths.size(0), "], got ", lengths.sizes());
  TORCH_CHECK(paths.device() == device && lengths.device() == device, op,
              ": paths and lengths expected on device ", device, ", got ", paths.device(), " and ", lengths.device());
  TORCH_CHECK(paths.size(1) <= 255, op, ": paths longer than 255 points are not supported, got ", paths.size(1));
}

inline void check_floating(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " expected ", dim, " dimensions, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " expected float32 or float64, got ", t.scalar_type());
}

inline void check_device(const char* op, const char* name, const at::Tensor& t, bool cuda) {
  TORCH_CHECK(t.is_cuda() == cuda, op, ": ", name, " expected a ", cuda ? "CUDA" : "CPU", " tensor, got ", t.device());
}

// reach: the radius_floor of a path affinity (destinations within it), or -1 (transition stencil:
// kernels bound each destination by the grid themselves).
inline void check_path_args(const char* op, const at::Tensor& edge, const at::Tensor& paths,
                            const at::Tensor& lengths, bool cuda, int64_t reach = -1) {
  check_floating(op, "edge", edge, 3);
  check_device(op, "edge", edge, cuda);
  check_geometry(op, paths, lengths, edge.device());
  check_grid(op, "edge", edge.size(1), edge.size(2));
  check_path_contents(op, paths, lengths, reach);
}

inline void check_affinity_args(const char* op, const at::Tensor& edge, const at::Tensor& paths,
                                const at::Tensor& lengths, int64_t radius_floor, bool cuda) {
  check_radius_floor(op, radius_floor);
  check_path_args(op, edge, paths, lengths, cuda, radius_floor);
}

// The backward's output grid must be the one the forward cropped from, and every arg-max index
// must name a point of its path.
inline void check_backward_values(const char* op, const at::Tensor& grad, const at::Tensor& argmax,
                                  const at::Tensor& paths, const at::Tensor& lengths, int64_t radius_floor,
                                  int64_t height, int64_t width) {
  check_radius_floor(op, radius_floor);
  check_grid(op, "output", height, width);
  TORCH_CHECK(height == grad.size(2) + radius_floor && width == grad.size(3) + 2 * radius_floor, op,
              ": height, width expected ", grad.size(2) + radius_floor, ", ", grad.size(3) + 2 * radius_floor,
              " (grad's crop ", grad.size(2), "x", grad.size(3), " plus radius_floor ", radius_floor, "), got ", height,
              ", ", width);
  check_path_contents(op, paths, lengths, radius_floor);
  if (argmax.numel() == 0) return;
  const auto largest = argmax.amax({0, 2, 3}).to(at::kCPU).contiguous();  // [D]
  const auto n = lengths.to(at::kCPU);
  const uint8_t* lp = largest.data_ptr<uint8_t>();
  const int* np = n.data_ptr<int>();
  for (int64_t k = 0; k < largest.size(0); ++k) {
    TORCH_CHECK(lp[k] < np[k], op, ": argmax of direction ", k, " expected < lengths[", k, "] = ", np[k], ", got ",
                int(lp[k]));
  }
}

inline void check_backward_args(const char* op, const at::Tensor& grad, const at::Tensor& argmax,
                                const at::Tensor& paths, const at::Tensor& lengths, int64_t radius_floor,
                                int64_t height, int64_t width, bool cuda) {
  check_floating(op, "grad", grad, 4);
  check_device(op, "grad", grad, cuda);
  TORCH_CHECK(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kByte, op,
              ": argmax expected uint8 of shape ", grad.sizes(), ", got ", argmax.sizes(), " ", argmax.scalar_type());
  TORCH_CHECK(argmax.device() == grad.device(), op, ": argmax expected on ", grad.device(), ", got ", argmax.device());
  check_geometry(op, paths, lengths, grad.device());
  TORCH_CHECK(grad.size(1) == paths.size(0), op, ": grad expected ", paths.size(0), " directions, got ", grad.size(1));
  check_backward_values(op, grad, argmax, paths, lengths, radius_floor, height, width);
}

inline void check_walk_args(const char* op, const at::Tensor& x, const at::Tensor& planes,
                            const at::Tensor& inv_norm, const at::Tensor& dirs, bool cuda) {
  check_floating(op, "x", x, 4);
  check_floating(op, "planes", planes, 4);
  check_floating(op, "inv_norm", inv_norm, 3);
  check_device(op, "x", x, cuda);
  TORCH_CHECK(planes.device() == x.device() && inv_norm.device() == x.device() && dirs.device() == x.device(), op,
              ": planes, inv_norm and dirs expected on ", x.device());
  TORCH_CHECK(planes.scalar_type() == x.scalar_type() && inv_norm.scalar_type() == x.scalar_type(), op,
              ": planes and inv_norm expected dtype ", x.scalar_type());
  TORCH_CHECK(planes.size(0) == x.size(0) && planes.size(2) == x.size(2) && planes.size(3) == x.size(3), op,
              ": planes expected [", x.size(0), ", D, ", x.size(2), ", ", x.size(3), "], got ", planes.sizes());
  TORCH_CHECK(inv_norm.size(0) == x.size(0) && inv_norm.size(1) == x.size(2) && inv_norm.size(2) == x.size(3), op,
              ": inv_norm expected [", x.size(0), ", ", x.size(2), ", ", x.size(3), "], got ", inv_norm.sizes());
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(0) == planes.size(1) && dirs.size(1) == 2 && dirs.scalar_type() == at::kInt,
              op, ": dirs expected int32 [", planes.size(1), ", 2], got ", dirs.sizes(), " ", dirs.scalar_type());
  check_grid(op, "x", x.size(2), x.size(3));
  check_dirs_contents(op, dirs);
}

// displacement [2, h, w] float32/float64, finite (a NaN coordinate has no integer form).
inline void check_centroid_args(const char* op, const at::Tensor& displacement, int64_t iterations, bool cuda) {
  TORCH_CHECK(displacement.dim() == 3 && displacement.size(0) == 2 &&
                  (displacement.scalar_type() == at::kFloat || displacement.scalar_type() == at::kDouble),
              op, ": displacement expected float32 or float64 [2, h, w], got ", displacement.sizes(), " ",
              displacement.scalar_type());
  check_device(op, "displacement", displacement, cuda);
  check_count(op, "iterations", iterations);
  check_grid(op, "displacement", displacement.size(1), displacement.size(2));
  TORCH_CHECK(displacement.numel() == 0 || displacement.isfinite().all().item<bool>(), op,
              ": displacement expected finite values, got NaN or infinity");
}

inline void check_coefficients(const char* op, c10::ArrayRef<double> coefficients) {
  TORCH_CHECK(!coefficients.empty(), op, ": coefficients expected at least one value (c_0), got none");
}

}  // namespace irnet_fast
