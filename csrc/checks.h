// Defensive checks of the compiled ops' arguments, CPU and CUDA launchers alike (`cuda`: whether
// the tensors must be CUDA tensors; false for the CPU kernels and the emulated CUDA build). The
// Python wrappers validate first with friendlier messages; these keep a direct torch.ops call from
// reaching a kernel with bad input.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace irnet_fast {

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

inline void check_path_args(const char* op, const at::Tensor& edge, const at::Tensor& paths,
                            const at::Tensor& lengths, bool cuda) {
  check_floating(op, "edge", edge, 3);
  check_device(op, "edge", edge, cuda);
  check_geometry(op, paths, lengths, edge.device());
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
  TORCH_CHECK(radius_floor >= 0 && grad.size(2) == height - radius_floor && grad.size(3) == width - 2 * radius_floor,
              op, ": grad expected the ", height - radius_floor, "x", width - 2 * radius_floor, " crop of a ", height,
              "x", width, " map (radius_floor ", radius_floor, "), got ", grad.sizes());
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
}

inline void check_coefficients(const char* op, c10::ArrayRef<double> coefficients) {
  TORCH_CHECK(!coefficients.empty(), op, ": coefficients expected at least one value (c_0), got none");
}

inline void check_centroid_args(const char* op, const at::Tensor& displacement, int64_t iterations, bool cuda) {
  TORCH_CHECK(displacement.dim() == 3 && displacement.size(0) == 2 &&
                  (displacement.scalar_type() == at::kFloat || displacement.scalar_type() == at::kDouble),
              op, ": displacement expected float32 or float64 [2, h, w], got ", displacement.sizes(), " ",
              displacement.scalar_type());
  check_device(op, "displacement", displacement, cuda);
  TORCH_CHECK(iterations >= 0, op, ": iterations expected >= 0, got ", iterations);
  TORCH_CHECK(displacement.size(1) < (1 << 24) && displacement.size(2) < (1 << 24) &&
                  displacement.size(1) * displacement.size(2) < (int64_t(1) << 31),
              op, ": displacement expected h, w < 2**24 and h * w < 2**31, got ", displacement.sizes());
}

}  // namespace irnet_fast
