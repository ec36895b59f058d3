# The README's commands. `make demo` and `make test` set everything up on a fresh machine:
# a venv in .venv, torch (2.14.1, from local disk here), the project with its extras, and the
# compiled extension (CUDA kernels too when nvcc and a CUDA torch are present).
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
CUDA_HOME ?= $(shell [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda)
SOURCES   := $(wildcard csrc/*.cpp csrc/*.h csrc/kernels/*.h csrc/kernels/*.cuh csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.h)
EMU_SOURCES := $(SOURCES) $(wildcard csrc/emulate/*)
# ninja from the venv must be on PATH for a parallel build
BUILD_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CUDA_HOME="$(CUDA_HOME)" MAX_JOBS=2

.PHONY: setup build emulated test test-fast install-check demo bench bench-quick gpu-check cmake sanitize clean

setup: $(VENV)/.deps $(VENV)/.built

$(VENV)/.deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_PIN)
	$(PIP) install -q "numpy>=1.22" "scipy>=1.9" "pillow>=9" "numba>=0.58" "pytest>=7" "pytest-benchmark>=4" \
		"matplotlib>=3.6" "tqdm>=4.60" pydensecrf2 "pycocotools>=2.0" "cityscapesscripts>=2.2" ninja setuptools wheel
	touch $@

$(VENV)/.built: $(VENV)/.deps setup.py $(SOURCES)
	$(BUILD_ENV) $(PIP) install --no-build-isolation --no-deps -e .
	$(PY) -c "import irnet_fast, json; print(json.dumps(irnet_fast.backends.info()))"
	touch $@

build: $(VENV)/.built

# The test extension irnet_fast._C_emu: the CUDA launchers and kernels on the CPU SIMT emulator
# (csrc/emulate), so the tests run every CUDA kernel and the CuPy launch path without a GPU.
$(VENV)/.emulated: $(VENV)/.deps setup.py $(EMU_SOURCES)
	$(BUILD_ENV) IRNET_FAST_EMULATED=1 $(PY) setup.py -q build_ext --inplace
	touch $@

emulated: $(VENV)/.emulated

# The numba kernels once more as plain Python (NUMBA_DISABLE_JIT=1), where an index out of range
# raises instead of reading garbage. Interpreted, a walk costs seconds per small map, so this run
# keeps the small and odd sizes and leaves the large maps and the float64 tolerance sweep to the
# compiled run above.
NOJIT_TESTS ?= numba and not large_batch and not float32_matches and not list_of_sizes \
	and not float64_within_tol and not affinity_walk and not non_contiguous and not propagate_to_edge_shapes \
	and not (random_walk_matches_reference and (size3 or size4 or size5) and (steps or dtype1))
test: setup $(VENV)/.emulated
	$(PY) -m pytest tests -q
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest tests/ops -q -k "$(NOJIT_TESTS)"
	$(MAKE) install-check

# sdist -> wheel (CPU kernels) -> a fresh venv outside the checkout -> tests/install_smoke.py
install-check: $(VENV)/.deps
	bash tests/install_check.sh $(PY)

demo: setup
	$(PY) -m irnet_fast.cli demo --out demo_out

bench: setup
	$(PY) -m benchmarks.report

bench-quick: setup
	$(PY) -m benchmarks.report --quick

gpu-check:
	bash benchmarks/gpu_check.sh

# The CPU kernels built with AddressSanitizer + UndefinedBehaviorSanitizer into $(SANITIZE_DIR), and
# the op tests (direct calls and fuzzing included) run against that build: a copy of the package and
# the tests there, so nothing imports the regular build. Any sanitizer report aborts the run.
SANITIZE_DIR   ?= build-sanitize
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANITIZE_TESTS ?= cpp or portable or compiled or direct or fuzz or centroid
sanitize: $(VENV)/.deps
	rm -rf $(SANITIZE_DIR)/pkg && mkdir -p $(SANITIZE_DIR)/pkg
	$(BUILD_ENV) FORCE_ONLY_CPU=1 IRNET_FAST_CXX_OPT="-O1 -g1" CFLAGS="$(SANITIZE_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
		$(PY) setup.py build_ext --build-lib $(SANITIZE_DIR)/lib --build-temp $(SANITIZE_DIR)/tmp
	cp -r irnet_fast tests pyproject.toml $(SANITIZE_DIR)/pkg/
	rm -f $(SANITIZE_DIR)/pkg/irnet_fast/_C*.so && cp $(SANITIZE_DIR)/lib/irnet_fast/_C*.so $(SANITIZE_DIR)/pkg/irnet_fast/
	cd $(SANITIZE_DIR)/pkg && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(CURDIR)/$(PY) -m pytest tests/ops -q -p no:cacheprovider -k "$(SANITIZE_TESTS)"

# The same sources against libtorch, e.g. cmake -DIRNET_FAST_SANITIZE=ON for an ASan/UBSan build.
cmake: $(VENV)/.deps
	cmake -S . -B build-cmake -G Ninja -DPython3_EXECUTABLE="$(CURDIR)/$(PY)" \
		-DCMAKE_MAKE_PROGRAM="$(CURDIR)/$(VENV)/bin/ninja" \
		$(if $(CUDA_HOME),-DCMAKE_CUDA_COMPILER=$(CUDA_HOME)/bin/nvcc "-DCMAKE_CUDA_ARCHITECTURES=75;80;90") $(CMAKE_ARGS)
	cmake --build build-cmake
	./build-cmake/irnet_fast_smoke

clean:
	rm -rf build build-cmake build-sanitize *.egg-info irnet_fast/_C*.so $(VENV)/.built $(VENV)/.emulated
