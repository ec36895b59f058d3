// The one way the launchers in csrc/cuda start a kernel, and what they need around it, for the GPU
// build (nvcc, CUDA tensors) and the emulated test build (IRNET_FAST_EMULATE_CUDA: host C++ on CPU
// tensors, csrc/emulate/emulate.h). Everything a launcher computes (grids, offsets, batches) runs
// in both.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#ifdef IRNET_FAST_EMULATE_CUDA
#include "../emulate/emulate.h"
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace irnet_fast {
namespace cuda {

#ifdef IRNET_FAST_EMULATE_CUDA
constexpr bool kDeviceTensors = false;  // the emulated kernels read and write CPU tensors

struct DeviceGuard {
  explicit DeviceGuard(const at::Tensor&) {}
};

inline size_t max_shared_bytes(const at::Tensor&) { return emu::kMaxSharedBytes; }
inline int multiprocessor_count(const at::Tensor&) { return emu::kMultiprocessors; }
#else
constexpr bool kDeviceTensors = true;

struct DeviceGuard {
  explicit DeviceGuard(const at::Tensor& t) : guard(t.device()) {}
  c10::cuda::CUDAGuard guard;
};

// Dynamic shared memory one block may use (with the opt-in attribute that launch() sets).
inline size_t max_shared_bytes(const at::Tensor& t) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, t.get_device()));
  return (size_t)value;
}

inline int multiprocessor_count(const at::Tensor& t) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, t.get_device()));
  return value;
}
#endif

// Grid-stride kernels: blocks to cover `total` elements, capped (the kernels loop over the rest).
constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t total, int threads = kThreads) {
  return (unsigned int)std::max<int64_t>(1, std::min<int64_t>((total + threads - 1) / threads, 65535LL * 16));
}

// Launches `kernel` on torch's current stream (or on the emulator) and checks the launch.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args) {
#ifdef IRNET_FAST_EMULATE_CUDA
  emu::launch(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
#else
  if (shared_bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes));
  }
  kernel<<<grid, block, shared_bytes, c10::cuda::getCurrentCUDAStream()>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#endif
}

// A kernel output. Under the emulator every byte starts as 0xFF (NaN, 255), so an element that
// no thread writes shows in the tests.
inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto t = at::empty(sizes, options);
#ifdef IRNET_FAST_EMULATE_CUDA
  if (t.numel() > 0) std::memset(t.data_ptr(), 0xFF, t.nbytes());
#endif
  return t;
}

}  // namespace cuda
}  // namespace irnet_fast

// Registers the launchers: as the CUDA kernels of irnet_fast, or as the CPU kernels of the
// emulated test namespace irnet_fast_emu.
#ifdef IRNET_FAST_EMULATE_CUDA
#define IRNET_FAST_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(irnet_fast_emu, CPU, m)
#else
#define IRNET_FAST_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(irnet_fast, CUDA, m)
#endif
