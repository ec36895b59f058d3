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
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _is_toolkit(home):
    """A CUDA toolkit folder: nvcc, the runtime headers and libcudart where torch links them."""
    if not home or not os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return False
    libs = [os.path.join(home, d, "libcudart.so") for d in ("lib64", "lib")]
    return any(os.path.exists(p) for p in libs) and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))


def _nvcc_top(nvcc):
    """The toolkit an nvcc runs from, asked from nvcc itself (``nvcc`` may be a wrapper script)."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-v", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("#$ TOP="):
            return os.path.normpath(line[len("#$ TOP="):].strip().strip('"'))
    return None


def _cuda_home():
    """``(toolkit folder or None, where the guesses looked)``, in torch's order of guesses: CUDA_HOME /
    CUDA_PATH, torch.utils.cpp_extension.CUDA_HOME, the real path of ``nvcc`` on PATH, the toolkit
    that nvcc reports (wrapper scripts), /usr/local/cuda. A guess counts only when it holds a toolkit."""
    from torch.utils import cpp_extension
    guesses = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), cpp_extension.CUDA_HOME]
    nvcc = shutil.which("nvcc")
    if nvcc:
        guesses.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        guesses.append(_nvcc_top(nvcc))
    guesses.append("/usr/local/cuda")
    tried = [g for g in dict.fromkeys(guesses) if g]
    return next((g for g in tried if _is_toolkit(g)), None), tried


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

    with_cuda = False
    cuda_home = None
    if not _flag("FORCE_ONLY_CPU"):
        cuda_home, tried = _cuda_home()
        if _flag("FORCE_CUDA") and cuda_home is None:
            sys.exit("irnet_fast: FORCE_CUDA=1 but no CUDA toolkit was found (looked in "
                     f"{', '.join(tried) or 'nothing: no CUDA_HOME, no nvcc on PATH'}); set CUDA_HOME to the "
                     "folder holding bin/nvcc, include/cuda_runtime.h and lib64/libcudart.so")
        if _flag("FORCE_CUDA") and torch.version.cuda is None:
            sys.exit("irnet_fast: FORCE_CUDA=1 but this torch is a CPU-only build; install a CUDA build")
        with_cuda = cuda_home is not None and torch.version.cuda is not None
        if not with_cuda:
            why = ("this torch is a CPU-only build" if torch.version.cuda is None and cuda_home else
                   f"no CUDA toolkit found (looked in {', '.join(tried) or 'nothing: no nvcc on PATH'})")
            if torch.version.cuda is not None or cuda_home:
                print(f"irnet_fast: WARNING: building the CPU kernels only: {why}. For the CUDA kernels set "
                      "CUDA_HOME to the toolkit (bin/nvcc, lib64/libcudart.so) and rebuild; FORCE_ONLY_CPU=1 "
                      "silences this.", file=sys.stderr)
    if with_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        cpp_extension.CUDA_HOME = cuda_home
        # Without a visible GPU torch cannot guess the architectures (and raises IndexError).
        # CUDA 13 dropped < 7.5; sm_80 code also runs on 8.6 and 8.9, the PTX on anything newer than 9.0.
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;9.0+PTX")

    sources = [os.path.relpath(p, ROOT) for p in
               sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) +
                      glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))]
    # IRNET_FAST_CXX_OPT replaces "-O3 -g0": make sanitize uses "-O1 -g1" (ASan's usual -O1, line
    # numbers in its reports, and about a fifth less compile time)
    opt = os.environ.get("IRNET_FAST_CXX_OPT", "-O3 -g0").split()
    cxx = opt + ["-fopenmp", "-ffp-contract=fast", "-Wno-psabi"]
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
