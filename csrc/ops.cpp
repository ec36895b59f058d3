// The Python module irnet_fast._C: importing it loads the ops (schemas.cpp, cpu/, cuda/) into
// torch.ops.irnet_fast; build_info() reports how the extension was built.
#include <torch/extension.h>

#include <string>

#include "cpu/threads.h"


namespace {

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef WITH_CUDA
  info["has_cuda"] = true;
#ifdef CUDA_VERSION_STRING
  info["cuda_version"] = std::string(CUDA_VERSION_STRING);
#endif
#else
  info["has_cuda"] = false;
#endif
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#endif
#ifdef _OPENMP
  info["openmp"] = _OPENMP;
#else
  info["openmp"] = 0;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "irnet_fast compiled ops (registered as torch.ops.irnet_fast.*)";
  m.def("build_info", &build_info, "How this extension was built: CUDA, compiler, OpenMP.");
  m.def("cpu_threads", &irnet_fast::threads_for, pybind11::arg("units"), pybind11::arg("work"),
        pybind11::arg("min_work_per_thread") = 1e7,
        "Threads the CPU kernels start now for `units` independent units of `work` operations "
        "(torch's thread count, the work size and the cores other processes leave idle).");
  m.def("other_runnable_threads", &irnet_fast::other_runnable_threads,
        "Runnable threads of other processes on this machine now (0 where unknown).");
  m.def("sustained_other_runnable_threads", &irnet_fast::sustained_other_runnable_threads,
        "other_runnable_threads once they have stayed above 0 for 5 ms of readings (0 until then): "
        "the count the CPU kernels plan for.");
  m.def(
      "load_streak",
      [](const std::vector<std::pair<int, int64_t>>& readings) {
        irnet_fast::LoadStreak streak;
        std::vector<int> planned;
        for (const auto& [other, now_ns] : readings) planned.push_back(streak.update(other, now_ns));
        return planned;
      },
      pybind11::arg("readings"),
      "The counts planned for by a fresh LoadStreak fed (other runnable threads, time in ns) readings.");
  m.def("cap_threads_to_idle_cores", &irnet_fast::cap_threads_to_idle_cores,
        "Caps this thread's OpenMP (torch) thread count at the cores other processes leave idle now; "
        "returns the count before.");
  m.def("restore_threads", &irnet_fast::restore_threads, pybind11::arg("count"),
        "Sets this thread's OpenMP (torch) thread count back to `count`.");
}
