// The Python module irnet_fast._C_emu (test build only): importing it registers the CUDA
// launchers of csrc/cuda, compiled for the emulator, as CPU kernels of torch.ops.irnet_fast_emu,
// plus the entry the CuPy backend's emulated runtime launches kernels through (kernel_registry.cpp)
// and the emulator's self-test kernels (selftest.cu), each declaring its own ops.
#include <Python.h>

#include "../schemas.h"

TORCH_LIBRARY(irnet_fast_emu, m) {
  irnet_fast::define_device_ops(m);
}

static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_emu",
                                 "irnet_fast's CUDA kernels on a CPU SIMT emulator (test build)", -1, nullptr};

PyMODINIT_FUNC PyInit__C_emu(void) { return PyModule_Create(&module_def); }
