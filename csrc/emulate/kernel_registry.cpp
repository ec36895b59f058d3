// Launches the kernels of kernels/cuda_kernels.cuh (the CuPy source) by name with parameters
// packed the way CuPy packs them, so the tests run the CuPy backend's launch code on the emulator.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "emulate.h"
#include "../kernels/cuda_kernels.cuh"

namespace irnet_fast {
namespace emu {
namespace {

template <typename T>
constexpr char type_code() {
  if constexpr (std::is_pointer_v<T>) return 'p';
  else if constexpr (std::is_same_v<T, int>) return 'i';
  else if constexpr (std::is_same_v<T, float>) return 'f';
  else if constexpr (std::is_same_v<T, double>) return 'd';
  else static_assert(sizeof(T) == 0, "kernel parameter type without a code");
}

using Packed = std::function<void(dim3, dim3, size_t, const std::string&, const uint8_t*, size_t)>;

template <typename... Params>
Packed packed(void (*kernel)(Params...), std::string name) {
  return [kernel, name](dim3 grid, dim3 block, size_t shared, const std::string& types, const uint8_t* bytes,
                        size_t size) {
    const std::string expected{type_code<Params>()...};
    TORCH_CHECK(types == expected, name, ": parameters expected types '", expected, "', got '", types, "'");
    size_t offset = 0;
    auto take = [&](auto tag) {
      using T = typename decltype(tag)::type;
      offset = (offset + alignof(T) - 1) / alignof(T) * alignof(T);
      T value;
      std::memcpy(&value, bytes + offset, sizeof(T));
      offset += sizeof(T);
      return value;
    };
    std::tuple<Params...> params{take(std::type_identity<Params>{})...};  // left to right
    TORCH_CHECK(offset == size, name, ": ", size, " parameter bytes, expected ", offset);
    std::apply([&](auto... values) { launch(kernel, grid, block, shared, values...); }, params);
  };
}

const std::map<std::string, Packed>& registry() {
  static const std::map<std::string, Packed> kernels = [] {
    std::map<std::string, Packed> r;
#define IRNET_EMU_KERNEL(name)                                                        \
  r["irnet_fast::kernels::" #name "<float>"] =                                         \
      packed(kernels::name<float>, "irnet_fast::kernels::" #name "<float>");           \
  r["irnet_fast::kernels::" #name "<double>"] =                                        \
      packed(kernels::name<double>, "irnet_fast::kernels::" #name "<double>");
    IRNET_EMU_KERNEL(path_affinity_kernel)
    IRNET_EMU_KERNEL(path_affinity_backward_kernel)
    IRNET_EMU_KERNEL(stencil_planes_kernel)
    IRNET_EMU_KERNEL(stencil_norm_kernel)
    IRNET_EMU_KERNEL(find_centroids_kernel)
    IRNET_EMU_KERNEL(feature_affinity_kernel)
    IRNET_EMU_KERNEL(feature_affinity_backward_kernel)
#undef IRNET_EMU_KERNEL
#define IRNET_EMU_WALK(cb)                                                               \
  r["irnet_fast::kernels::walk_tiles_kernel<float, " #cb ">"] =                           \
      packed(kernels::walk_tiles_kernel<float, cb>, "walk_tiles_kernel<float, " #cb ">");   \
  r["irnet_fast::kernels::walk_tiles_kernel<double, " #cb ">"] =                          \
      packed(kernels::walk_tiles_kernel<double, cb>, "walk_tiles_kernel<double, " #cb ">");
#define IRNET_EMU_CHEBYSHEV(cb)                                                                     \
  r["irnet_fast::kernels::chebyshev_tiles_kernel<float, float, " #cb ">"] =                         \
      packed(kernels::chebyshev_tiles_kernel<float, float, cb>, "chebyshev_tiles_kernel<float, " #cb ">"); \
  r["irnet_fast::kernels::chebyshev_tiles_kernel<double, double, " #cb ">"] =                       \
      packed(kernels::chebyshev_tiles_kernel<double, double, cb>, "chebyshev_tiles_kernel<double, " #cb ">");
    IRNET_EMU_WALK(1)
    IRNET_EMU_WALK(2)
    IRNET_EMU_WALK(4)
    IRNET_EMU_WALK(8)
    IRNET_EMU_CHEBYSHEV(1)
    IRNET_EMU_CHEBYSHEV(2)
    IRNET_EMU_CHEBYSHEV(4)
    IRNET_EMU_CHEBYSHEV(8)
#undef IRNET_EMU_WALK
#undef IRNET_EMU_CHEBYSHEV
    return r;
  }();
  return kernels;
}

dim3 to_dim3(c10::IntArrayRef v, const char* what) {
  TORCH_CHECK(v.size() >= 1 && v.size() <= 3, "launch_packed: ", what, " expected 1 to 3 sizes, got ", v.size());
  for (auto d : v) TORCH_CHECK(d >= 0 && d < (int64_t(1) << 32), "launch_packed: ", what, " size out of range: ", d);
  return dim3((unsigned)v[0], v.size() > 1 ? (unsigned)v[1] : 1u, v.size() > 2 ? (unsigned)v[2] : 1u);
}

void launch_packed(c10::string_view kernel, c10::IntArrayRef grid, c10::IntArrayRef block, int64_t shared_bytes,
                   c10::string_view types, const at::Tensor& params) {
  const std::string name(kernel);
  const auto& kernels = registry();
  const auto found = kernels.find(name);
  TORCH_CHECK(found != kernels.end(), "launch_packed: no kernel named '", name, "'");
  TORCH_CHECK(params.scalar_type() == at::kByte && params.dim() == 1 && params.is_contiguous() && !params.is_cuda(),
              "launch_packed: params expected a contiguous uint8 CPU tensor");
  TORCH_CHECK(shared_bytes >= 0, "launch_packed: shared_bytes expected >= 0, got ", shared_bytes);
  found->second(to_dim3(grid, "grid"), to_dim3(block, "block"), (size_t)shared_bytes, std::string(types),
                params.data_ptr<uint8_t>(), (size_t)params.numel());
}

// What a runtime reports about the emulated device: [max dynamic shared bytes, multiprocessors].
std::vector<int64_t> device_limits() { return {(int64_t)kMaxSharedBytes, (int64_t)kMultiprocessors}; }

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

}  // namespace
}  // namespace emu
}  // namespace irnet_fast

TORCH_LIBRARY_FRAGMENT(irnet_fast_emu, m) {
  // A kernel by its NVRTC name (as CuPy names it), its parameters packed as CUDA packs them:
  // `types` has one code per parameter (p pointer, i int32, f float32, d float64), `params` the
  // bytes (uint8), each value at its natural alignment.
  m.def("launch_packed(str kernel, int[] grid, int[] block, int shared_bytes, str types, Tensor params) -> ()",
        &irnet_fast::emu::launch_packed);
  m.def("kernel_names() -> str[]", &irnet_fast::emu::kernel_names);
  m.def("device_limits() -> int[]", &irnet_fast::emu::device_limits);
}
