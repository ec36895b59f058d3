// Schemas of every compiled op, declared once. Kernels register per dispatch key in cpu/*.cpp and
// cuda/*.cu; autograd and fake kernels are registered from Python (irnet_fast/ops/_compiled.py).
#include <torch/library.h>

TORCH_LIBRARY(irnet_fast, m) {
  // edge [B, H, W], paths [D, L, 2] int32, lengths [D] int32 ->
  //   affinity [B, D, H - rf, W - 2 rf], argmax [B, D, H - rf, W - 2 rf] uint8
  m.def("path_affinity(Tensor edge, Tensor paths, Tensor lengths, int radius_floor) -> (Tensor, Tensor)");
  // grad [B, D, crop_h, crop_w], argmax -> grad_edge [B, height, width]
  m.def("_path_affinity_backward(Tensor grad, Tensor argmax, Tensor paths, Tensor lengths, int radius_floor, "
        "int height, int width) -> Tensor");
  // edge [B, h, w] -> planes [B, D, h, w], norm [B, h, w]
  m.def("transition_stencil(Tensor edge, Tensor paths, Tensor lengths, float beta) -> (Tensor, Tensor)");
  // x [B, C, h, w], planes [B, D, h, w], inv_norm [B, h, w], dirs [D, 2] int32 -> [B, C, h, w]
  m.def("random_walk(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, int steps) -> Tensor");
  // the same tensors, coefficients c_0 .. c_d of sum_k c_k T_k(P) x (docs/chebyshev.md) -> [B, C, h, w]
  m.def("random_walk_chebyshev(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, float[] coefficients) -> Tensor");
  // displacement [2, h, w] float32/float64 -> refined centroids [2, h, w] int32
  m.def("find_centroids(Tensor displacement, int iterations) -> Tensor");
  // The per-element forms the CUDA kernels run, on the CPU (tests of the GPU arithmetic).
  m.def("_path_affinity_portable(Tensor edge, Tensor paths, Tensor lengths, int radius_floor) -> (Tensor, Tensor)");
  m.def("_path_affinity_backward_portable(Tensor grad, Tensor argmax, Tensor paths, Tensor lengths, "
        "int radius_floor, int height, int width) -> Tensor");
  m.def("_transition_stencil_portable(Tensor edge, Tensor paths, Tensor lengths, float beta) -> (Tensor, Tensor)");
  m.def("_random_walk_portable(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, int steps) -> Tensor");
  m.def("_random_walk_chebyshev_portable(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, "
        "float[] coefficients) -> Tensor");
}
