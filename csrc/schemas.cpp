// Schemas of every compiled op, declared once. Kernels register per dispatch key in cpu/*.cpp and
// cuda/*.cu; autograd and fake kernels are registered from Python (irnet_fast/ops/_compiled.py).
#include "schemas.h"

TORCH_LIBRARY(irnet_fast, m) {
  irnet_fast::define_device_ops(m);
  // The per-element forms the CUDA kernels run, on the CPU (tests of the GPU arithmetic).
  m.def("_path_affinity_portable(Tensor edge, Tensor paths, Tensor lengths, int radius_floor) -> (Tensor, Tensor)");
  m.def("_path_affinity_backward_portable(Tensor grad, Tensor argmax, Tensor paths, Tensor lengths, "
        "int radius_floor, int height, int width) -> Tensor");
  m.def("_transition_stencil_portable(Tensor edge, Tensor paths, Tensor lengths, float beta) -> (Tensor, Tensor)");
  m.def("_random_walk_portable(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, int steps) -> Tensor");
  m.def("_random_walk_chebyshev_portable(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, "
        "float[] coefficients) -> Tensor");
  // The walk that keeps its states (padded [passes + 1, B, C, h + 2 pad, row_stride]) and its reverse
  // pass, for the weights' gradient (CPU; other devices use ops/_walk_grad.py over their single step).
  m.def("_walk_states(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, int pad, float[] alpha, "
        "float[] beta, float[] c) -> (Tensor, Tensor)");
  m.def("_walk_states_backward(Tensor grad, Tensor states, Tensor planes, Tensor inv_norm, Tensor dirs, int pad, "
        "float[] alpha, float[] beta, float[] c) -> (Tensor, Tensor, Tensor)");
}
