#!/usr/bin/env bash
# One call on a lent GPU machine (H100/H200: torch, nvcc 13, cupy-cuda13x, numba and
# pytest-benchmark preinstalled, no internet): build the extension with the CUDA kernels, run the
# CUDA and CuPy tests, run the GPU benchmark, and leave everything under $OUT:
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh      # OUT defaults to ./gpu_out
#
#   $OUT/gpu_results.md   the GPU figures (python -m benchmarks.report --gpu)
#   $OUT/build.log, $OUT/tests.log, $OUT/bench.log, $OUT/env.txt
#
# Exit status: 0 when the build, the tests (or their absence) and the benchmark all succeeded;
# otherwise the number of failed stages. Every stage runs even when an earlier one failed.
set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export PATH="$CUDA_HOME/bin:$PATH"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
PY="${PYTHON:-python}"
failed=0
stage() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

stage "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi failed"
  nvcc --version 2>&1 | tail -n 2
  "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| gpu visible:", torch.cuda.is_available())
for name in ("numpy", "scipy", "numba", "cupy", "pytest_benchmark"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:  # noqa: BLE001
        print(name, "unavailable:", type(exc).__name__, exc)
EOF
} 2>&1 | tee "$OUT/env.txt"

stage "build (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, CUDA_HOME=$CUDA_HOME)"
start=$SECONDS
# --no-deps: the machine has no internet; torch and friends are preinstalled.
if FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  echo "built in $((SECONDS - start)) s"
else
  echo "BUILD FAILED after $((SECONDS - start)) s; last lines of $OUT/build.log:"
  tail -n 40 "$OUT/build.log"
  failed=$((failed + 1))
fi
"$PY" -c "import irnet_fast.backends as b; print(b.info())" 2>&1 | tee -a "$OUT/env.txt"

stage "CUDA and CuPy tests"
if [ -d tests ] && [ -n "$(find tests -name 'test_*.py' -print -quit 2>/dev/null)" ]; then
  "$PY" -m pytest tests -m "needs_cuda or needs_cupy" -q -rs 2>&1 | tee "$OUT/tests.log"
  rc=${PIPESTATUS[0]}
  # 5: no test carries those marks yet, which is not a failure of this script
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    echo "TESTS FAILED (pytest exit $rc)"
    failed=$((failed + 1))
  fi
else
  echo "no tests/ directory with test files: skipped" | tee "$OUT/tests.log"
fi
# the GPU groups of the pytest-benchmark suites, each case once (smoke test of the suites)
"$PY" -m pytest benchmarks -m needs_cuda -q -rs -p no:warnings 2>&1 | tee -a "$OUT/tests.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
  echo "GPU BENCHMARK SUITES FAILED (pytest exit $rc)"
  failed=$((failed + 1))
fi

stage "GPU benchmark"
if "$PY" -m benchmarks.report --gpu --out "$OUT/gpu_results.md" 2>&1 | tee "$OUT/bench.log"; then
  :
else
  echo "BENCHMARK FAILED"
  failed=$((failed + 1))
fi

stage "done: $failed failed stage(s); results in $OUT"
[ -f "$OUT/gpu_results.md" ] && cat "$OUT/gpu_results.md"
exit "$failed"
