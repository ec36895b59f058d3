// Per-element arithmetic of feature_affinity (AffinityNet's affinities from a feature map):
// a(p, p + o_k) = exp(-sum_c |f_c(p) - f_c(p + o_k)| / C), summed over c in ascending order, and its
// gradient for the features. The CPU kernel (cpu/feature_affinity_cpu.cpp) and the numba backend
// run this arithmetic in this order, the CUDA kernels (feature_affinity_kernels.cuh) too.
// No includes beyond common.h, so NVRTC (CuPy) compiles it as it is (the C++ includer brings <cmath>).
#pragma once
#include "common.h"

namespace irnet_fast {
namespace kernels {

// fabs, not a compare-and-select: it vectorises (and |a - b| == |b - a| exactly)
template <typename T>
IRNET_HD T abs_diff(T a, T b) {
  return fabs(a - b);
}

// affinity from the channel sum of |differences| of one pair
template <typename T>
IRNET_HD T feature_affinity_from_sum(T sum, T inv_channels) {
  return exp(-(sum * inv_channels));
}

template <typename T>
IRNET_HD T sign_of(T v) {
  return (T)((v > (T)0) - (v < (T)0));
}

// the pair's weight in the gradient: d a / d sum = -a / C, times the incoming gradient
template <typename T>
IRNET_HD T feature_affinity_weight(T grad, T affinity, T inv_channels) {
  return -(grad * affinity) * inv_channels;
}

}  // namespace kernels
}  // namespace irnet_fast
