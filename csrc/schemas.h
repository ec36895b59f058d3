// Schemas of the ops that have CUDA kernels, declared once: schemas.cpp puts them in
// torch.ops.irnet_fast, the emulated test build (emulate/module.cpp) in torch.ops.irnet_fast_emu.
#pragma once
#include <torch/library.h>

namespace irnet_fast {

inline void define_device_ops(torch::Library& m) {
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
  // random_walk with an explicit launch plan (CUDA only; benchmarks and tests): tiles of
  // tile_h x tile_w (<= 0: one tile per image, every step in one launch), fused_steps steps per
  // launch, channel_block channels per block (1, 2, 4 or 8)
  m.def("random_walk_tiled(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, int steps, int tile_h, "
        "int tile_w, int fused_steps, int channel_block) -> Tensor");
  // the same tensors, coefficients c_0 .. c_d of sum_k c_k T_k(P) x (docs/chebyshev.md) -> [B, C, h, w]
  m.def("random_walk_chebyshev(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, float[] coefficients) -> Tensor");
  // random_walk_chebyshev with an explicit launch plan (CUDA only), as random_walk_tiled
  m.def("random_walk_chebyshev_tiled(Tensor x, Tensor planes, Tensor inv_norm, Tensor dirs, float[] coefficients, "
        "int tile_h, int tile_w, int fused_steps, int channel_block) -> Tensor");
  // displacement [2, h, w] float32/float64 -> refined centroids [2, h, w] int32
  m.def("find_centroids(Tensor displacement, int iterations) -> Tensor");
  // features [B, C, h, w], dirs [D, 2] int32 -> affinity [B, D, h, w] (AffinityNet's exp(-mean |df|))
  m.def("feature_affinity(Tensor features, Tensor dirs) -> Tensor");
  // grad [B, D, h, w], features, affinity [B, D, h, w], dirs -> grad_features [B, C, h, w]
  m.def("_feature_affinity_backward(Tensor grad, Tensor features, Tensor affinity, Tensor dirs) -> Tensor");
}

}  // namespace irnet_fast
