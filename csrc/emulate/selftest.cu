// Test-only kernels that prove the emulator enforces GPU semantics (emulated build only): a
// shared-memory neighbour read needs its __syncthreads(), a one-block-short grid leaves outputs
// unwritten, and a barrier that some threads skip is an error.
#include <ATen/core/Tensor.h>

#include "../cuda/launch.h"

namespace irnet_fast {
namespace {

constexpr int kThreads = 64;

// out[i] = x[i] + x[next in the block], through dynamic or static shared memory
__global__ void shared_neighbour_kernel(const float* x, float* out, int n, bool sync, bool dynamic) {
  IRNET_DYNAMIC_SHARED(float, dynamic_tile);
  __shared__ float static_tile[kThreads];
  float* tile = dynamic ? dynamic_tile : static_tile;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? x[i] : 0.0f;
  if (sync) __syncthreads();
  const int next = (threadIdx.x + 1) % blockDim.x;
  if (i < n) out[i] = tile[threadIdx.x] + tile[next];
}

// One thread per element, no grid-stride loop: the grid must cover n.
__global__ void copy_kernel(const float* x, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i];
}

// The classic bug: threads past the end return before a barrier the others wait at.
__global__ void early_return_kernel(const float* x, float* out, int n) {
  IRNET_DYNAMIC_SHARED(float, tile);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  tile[threadIdx.x] = x[i];
  __syncthreads();
  out[i] = tile[threadIdx.x];
}

at::Tensor float_input(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 1, op, ": x expected a float32 vector, got ", x.sizes(),
              " ", x.scalar_type());
  return x.contiguous();
}

unsigned int blocks(int64_t n) { return (unsigned int)std::max<int64_t>(1, (n + kThreads - 1) / kThreads); }

at::Tensor selftest_shared_neighbour(const at::Tensor& x_in, bool sync, bool dynamic) {
  const auto x = float_input(x_in, "selftest_shared_neighbour");
  auto out = cuda::new_output(x.sizes(), x.options());
  cuda::launch(shared_neighbour_kernel, blocks(x.numel()), kThreads, dynamic ? kThreads * sizeof(float) : 0,
               x.data_ptr<float>(), out.data_ptr<float>(), (int)x.numel(), sync, dynamic);
  return out;
}

at::Tensor selftest_copy(const at::Tensor& x_in, bool short_grid) {
  const auto x = float_input(x_in, "selftest_copy");
  auto out = cuda::new_output(x.sizes(), x.options());
  cuda::launch(copy_kernel, blocks(x.numel()) - (short_grid ? 1 : 0), kThreads, 0, x.data_ptr<float>(),
               out.data_ptr<float>(), (int)x.numel());
  return out;
}

at::Tensor selftest_early_return_barrier(const at::Tensor& x_in) {
  const auto x = float_input(x_in, "selftest_early_return_barrier");
  auto out = cuda::new_output(x.sizes(), x.options());
  cuda::launch(early_return_kernel, blocks(x.numel()), kThreads, kThreads * sizeof(float), x.data_ptr<float>(),
               out.data_ptr<float>(), (int)x.numel());
  return out;
}

}  // namespace
}  // namespace irnet_fast

TORCH_LIBRARY_FRAGMENT(irnet_fast_emu, m) {
  m.def("selftest_shared_neighbour(Tensor x, bool sync, bool dynamic) -> Tensor",
        &irnet_fast::selftest_shared_neighbour);
  m.def("selftest_copy(Tensor x, bool short_grid) -> Tensor", &irnet_fast::selftest_copy);
  m.def("selftest_early_return_barrier(Tensor x) -> Tensor", &irnet_fast::selftest_early_return_barrier);
}
