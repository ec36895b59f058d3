"""Builds irnet_fast._C: C++ CPU kernels always, CUDA kernels when nvcc and a CUDA torch exist.

Environment:
  FORCE_CUDA=1          build the CUDA kernels (fails clearly without a CUDA toolkit)
  FORCE_ONLY_CPU=1      skip the CUDA kernels even when a toolkit is present
  IRNET_FAST_NO_EXT=1   no compiled extension at all (pure Python: numba / torch backends)
  IRNET_FAST_EMULATED=1 build only the test extension irnet_fast._C_emu instead: the CUDA
                        launchers and kernels compiled as host C++ on a SIMT emulator
                        (csrc/emulate), registered as torch.ops.irnet_fast_emu (make test does this)
"""
import glob
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        return home
    nvcc = shutil.which("nvcc")
    if nvcc:
        return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    return "/usr/local/cuda" if os.path.exists("/usr/local/cuda/bin/nvcc") else None


def _emulated_extension():
    """irnet_fast._C_emu: every csrc/cuda/*.cu (and the emulator's self-tests) as host C++."""
    from torch.utils import cpp_extension

    # .cu files go to nvcc in torch's build; a one-line .cpp that includes each keeps g++ on them
    wrappers = os.path.join(ROOT, "build", "emulate_src")
    os.makedirs(wrappers, exist_ok=True)
    sources = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "emulate", "*.cpp")))]
    for cu in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")) +
                     glob.glob(os.path.join(ROOT, "csrc", "emulate", "*.cu"))):
        wrapper = os.path.join(wrappers, os.path.basename(cu)[:-3] + "_emu.cpp")
        text = f'#include "{cu}"\n'
        if not os.path.exists(wrapper) or open(wrapper).read() != text:
            with open(wrapper, "w") as handle:
                handle.write(text)
        sources.append(os.path.relpath(wrapper, ROOT))
    # -O1: the tests' inputs are small, a lean build keeps make test fast
    cxx = ["-O1", "-g0", "-fopenmp", "-Wno-psabi", "-DIRNET_FAST_EMULATE_CUDA"]
    print("irnet_fast: building _C_emu (CUDA kernels on the CPU emulator, for the tests)")
    ext = cpp_extension.CppExtension("irnet_fast._C_emu", sources, include_dirs=[os.path.join(ROOT, "csrc")],
                                     extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None,
                                                          no_python_abi_suffix=False)
    return [ext], {"build_ext": build_ext}


def _extensions():
    if _flag("IRNET_FAST_EMULATED"):
        return _emulated_extension()
    if _flag("IRNET_FAST_NO_EXT"):
        print("irnet_fast: IRNET_FAST_NO_EXT=1, building without the compiled extension")
        return [], {}
    import torch
    from torch.utils import cpp_extension

    cuda_home = _cuda_home()
    with_cuda = False
    if not _flag("FORCE_ONLY_CPU"):
        toolkit = cuda_home is not None and os.path.exists(os.path.join(cuda_home, "bin", "nvcc"))
        if _flag("FORCE_CUDA") and not toolkit:
            sys.exit("irnet_fast: FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME to it "
                     "(the folder holding bin/nvcc)")
        if _flag("FORCE_CUDA") and torch.version.cuda is None:
            sys.exit("irnet_fast: FORCE_CUDA=1 but this torch is a CPU-only build; install a CUDA build")
        with_cuda = toolkit and torch.version.cuda is not None
    if with_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        cpp_extension.CUDA_HOME = cuda_home
        # Without a visible GPU torch cannot guess the architectures (and raises IndexError).
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;8.6;9.0+PTX")  # CUDA 13 dropped < 7.5

    sources = [os.path.relpath(p, ROOT) for p in
               sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) +
                      glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))]
    cxx = ["-O3", "-g0", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"]
    define_macros = []
    extra = {"cxx": cxx}
    if with_cuda:
        sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))]
        define_macros += [("WITH_CUDA", None), ("CUDA_VERSION_STRING", f'"{torch.version.cuda}"')]
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    print(f"irnet_fast: building _C with {'CPU + CUDA' if with_cuda else 'CPU'} kernels")
    ext = ext_cls("irnet_fast._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
                  define_macros=define_macros, extra_compile_args=extra, extra_link_args=["-fopenmp"])
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)
    return [ext], {"build_ext": build_ext}


class BuildPyWithKernels(build_py):
    """Ships csrc/kernels in wheels as irnet_fast/_kernels: the CuPy backend compiles them."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "irnet_fast", "_kernels")
        os.makedirs(target, exist_ok=True)
        for path in glob.glob(os.path.join(ROOT, "csrc", "kernels", "*.h")) + \
                glob.glob(os.path.join(ROOT, "csrc", "kernels", "*.cuh")):
            shutil.copy2(path, target)


ext_modules, cmdclass = _extensions()
cmdclass["build_py"] = BuildPyWithKernels
setup(ext_modules=ext_modules, cmdclass=cmdclass)
