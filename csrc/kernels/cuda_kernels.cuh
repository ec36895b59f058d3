// Every __global__ kernel, in one file: the source the CuPy backend compiles with NVRTC
// (irnet_fast/ops/_cupy.py inlines the local includes). The compiled launchers include the
// per-op headers directly.
#pragma once
#include "affinity_kernels.cuh"
#include "feature_affinity_kernels.cuh"
#include "instances_kernels.cuh"
#include "random_walk_kernels.cuh"
