// Portability macros shared by the C++ (CPU), CUDA (nvcc), CuPy (NVRTC) and emulated builds.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define IRNET_HD __host__ __device__ __forceinline__
#else
#define IRNET_HD inline
#endif

// The block's dynamic shared memory as a T* (`extern __shared__` sized by the launch; one byte
// array for every instantiation, since templated extern arrays of different types conflict).
// The emulated build defines it in csrc/emulate/emulate.h.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define IRNET_DYNAMIC_SHARED(T, name)                                  \
  extern __shared__ __align__(16) unsigned char irnet_dynamic_smem[]; \
  T* name = reinterpret_cast<T*>(irnet_dynamic_smem)
#endif

#if defined(IRNET_FAST_EMULATE_CUDA) && !defined(IRNET_DYNAMIC_SHARED)
#error "the emulated build includes cuda/launch.h (or emulate/emulate.h) before the kernels"
#endif
