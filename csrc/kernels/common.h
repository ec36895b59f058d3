// Portability macros shared by the C++ (CPU), CUDA (nvcc) and CuPy (NVRTC) builds.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define IRNET_HD __host__ __device__ __forceinline__
#else
#define IRNET_HD inline
#endif
