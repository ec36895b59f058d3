// A CUDA SIMT emulator on the host, for the test build only (IRNET_FAST_EMULATE_CUDA): the
// __global__ kernels of csrc/kernels/*.cuh and the launchers of csrc/cuda/*.cu compile as plain
// C++ and run on CPU tensors with GPU semantics:
//   - blockIdx, threadIdx, blockDim, gridDim as on the device;
//   - the threads of a block are fibers on one OS thread, each with its own stack, that meet at
//     __syncthreads(); between barriers they run one after another, in an order that alternates
//     (forward, reverse) from one barrier interval and block to the next, so a read of a
//     neighbour's shared-memory write without a barrier in between sees a stale value;
//   - blocks run one after another on the calling thread; `__shared__` is `static thread_local`
//     (one copy per OS thread, so concurrent launches from several threads stay apart), and
//     dynamic shared memory (IRNET_DYNAMIC_SHARED) is filled with 0xFF bytes (NaN) before every
//     block;
//   - launch configurations are checked as the driver checks them (an empty grid is an error);
//     a __syncthreads() that some threads of a block skip (an early return) is an error too;
//   - atomicAdd is a real atomic (launches from several OS threads may overlap).
// Warp-synchronous intrinsics are not provided: no kernel here uses them.
#pragma once
#ifndef IRNET_FAST_EMULATE_CUDA
#error "emulate.h is for the emulated test build (-DIRNET_FAST_EMULATE_CUDA)"
#endif

#include <math.h>  // the device math functions (pow, ...), global as in CUDA

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

namespace irnet_fast {
namespace emu {

// The largest dynamic shared memory of one block (H100/H200 with the opt-in attribute).
constexpr size_t kMaxSharedBytes = 227 * 1024;
constexpr unsigned int kMaxThreadsPerBlock = 1024;
constexpr int kMultiprocessors = 132;  // what launchers that size grids by the device see (H100 SXM, H200)

// A type-erased reference to the kernel call of one thread.
struct Body {
  void (*call)(const void*);
  const void* self;
  void operator()() const { call(self); }
};

void run_grid(const Body& body, dim3 grid, dim3 block, size_t shared_bytes);
void syncthreads();
unsigned char* dynamic_shared();

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args) {
  // the parameters are copied at launch, converted to the kernel's types, as cudaLaunchKernel does
  struct Call {
    void (*kernel)(Params...);
    std::tuple<Params...> params;
  } call{kernel, std::tuple<Params...>(static_cast<Params>(std::forward<Args>(args))...)};
  const Body body{[](const void* self) {
                    const Call& c = *static_cast<const Call*>(self);
                    std::apply(c.kernel, c.params);
                  },
                  &call};
  run_grid(body, grid, block, shared_bytes);
}

template <typename T>
T atomic_add(T* address, T value) {
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  } else {
    T old = *address, desired = old + value;
    while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      desired = old + value;
    return old;
  }
}

}  // namespace emu
}  // namespace irnet_fast

inline void __syncthreads() { irnet_fast::emu::syncthreads(); }
inline float atomicAdd(float* address, float value) { return irnet_fast::emu::atomic_add(address, value); }
inline double atomicAdd(double* address, double value) { return irnet_fast::emu::atomic_add(address, value); }
inline int atomicAdd(int* address, int value) { return irnet_fast::emu::atomic_add(address, value); }
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
  return irnet_fast::emu::atomic_add(address, value);
}
template <typename T>
inline T __ldg(const T* address) {
  return *address;
}

// `extern __shared__` memory sized by the launch (the GPU form is in kernels/common.h).
#define IRNET_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::irnet_fast::emu::dynamic_shared())
