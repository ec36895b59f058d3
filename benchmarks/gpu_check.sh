#!/usr/bin/env bash
# One call on a lent GPU machine (H100/H200: torch, nvcc 13, cupy-cuda13x, numba and
# pytest-benchmark preinstalled, no internet): build the extension with the CUDA kernels, run the
# CUDA and CuPy tests, run the GPU benchmarks, print a results table; under 8 minutes on 16 cores
# (every stage has its own time limit, the sum is 7.5 minutes).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh      # OUT defaults to ./gpu_out
#
#   $OUT/gpu_results.md   the GPU figures (python -m benchmarks.report --gpu): walk and path
#                         affinity per backend, the walk's launch plans, the targets
#   $OUT/summary.md       one line per stage: status and seconds
#   $OUT/build.log, $OUT/tests.log, $OUT/bench.log, $OUT/env.txt
#
# Exit status: 0 when the build, the tests and the benchmark all succeeded; otherwise the number of
# failed stages. Every stage runs even when an earlier one failed.
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
printf '| stage | status | seconds |\n|---|---|---:|\n' > "$OUT/summary.md"
stage() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
# record NAME RC START: one summary line; 124 is the stage's time limit
record() {
  local status=ok
  if [ "$2" -eq 124 ]; then status="timed out"; elif [ "$2" -ne 0 ]; then status="FAILED (exit $2)"; fi
  [ "$status" = ok ] || failed=$((failed + 1))
  printf '| %s | %s | %d |\n' "$1" "$status" "$((SECONDS - $3))" >> "$OUT/summary.md"
}

stage "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi failed"
  nvcc --version 2>&1 | tail -n 2
  "$PY" - <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| gpu visible:", torch.cuda.is_available())
for name in ("numpy", "scipy", "numba", "cupy", "pytest_benchmark"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:  # noqa: BLE001
        print(name, "unavailable:", type(exc).__name__, exc)
PYEOF
} 2>&1 | tee "$OUT/env.txt"

stage "build (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
start=$SECONDS
# --no-deps: the machine has no internet; torch and friends are preinstalled.
FORCE_CUDA=1 timeout 180 "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1
rc=$?
record build "$rc" "$start"
[ "$rc" -eq 0 ] && echo "built in $((SECONDS - start)) s" || { echo "BUILD FAILED (exit $rc):"; tail -n 40 "$OUT/build.log"; }
"$PY" -c "import irnet_fast.backends as b; print(b.info())" 2>&1 | tee -a "$OUT/env.txt"

stage "CUDA and CuPy tests"
start=$SECONDS
# every backend test with a cuda/cupy parameter, and the emulator's tests on the real GPU
# (tests/ops/test_cuda_emulated.py: gpu-cuda, gpu-cupy)
timeout 120 "$PY" -m pytest tests -m "needs_cuda or needs_cupy" -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/tests.log"
rc=${PIPESTATUS[0]}
record "tests (needs_cuda or needs_cupy)" "$rc" "$start"

stage "GPU benchmark suites, each case once"
start=$SECONDS
timeout 45 "$PY" -m pytest benchmarks -m needs_cuda -q -rs -p no:warnings --benchmark-disable 2>&1 | tee -a "$OUT/tests.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 5 ] && rc=0  # no GPU case collected is not a failure of this script
record "benchmark suites (smoke)" "$rc" "$start"

stage "GPU benchmark"
start=$SECONDS
timeout 120 "$PY" -m benchmarks.report --gpu --out "$OUT/gpu_results.md" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
record "benchmark (benchmarks.report --gpu)" "$rc" "$start"

stage "done: $failed failed stage(s); results in $OUT"
[ -f "$OUT/gpu_results.md" ] && cat "$OUT/gpu_results.md"
echo
cat "$OUT/summary.md"
exit "$failed"
