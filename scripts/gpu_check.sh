#!/usr/bin/env bash
# The whole GPU check in one run (under 8 minutes on an H200 machine): builds the CUDA backend
# and every CUDA target for sm_90, runs every CUDA test and the GPU benchmarks, and writes the
# logs to one folder: $1, else $OUT (the device tool's), else ./gpu_check_logs. Builds against
# .gpu_deps/ when present (scripts/gpu_pack.sh: the GPU machines have nvcc and CMake but not the
# project's other dependencies). Prints a summary; exits non-zero when a step failed.
# GPU_CMAKE_ARGS adds configure arguments (e.g. -DCMAKE_IGNORE_PREFIX_PATH=/usr, to check the pack).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${1:-${OUT:-gpu_check_logs}}
mkdir -p "$LOGS"
BUILD=${GPU_BUILD_DIR:-build-gpu}
status=0
step() {  # step NAME COMMAND...: runs, logs to $LOGS/NAME.log, prints one line
  local name=$1
  shift
  local t0=$SECONDS
  if "$@" >"$LOGS/$name.log" 2>&1; then
    echo "ok    $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL  $name ($((SECONDS - t0)) s): see $name.log; its end:"
    tail -n 25 "$LOGS/$name.log"
    status=1
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$LOGS/gpu.txt" 2>&1 || true
cat "$LOGS/gpu.txt"
args=(-DCMAKE_BUILD_TYPE=Release -DDETR_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DDETR_EXAMPLES=OFF
      -DDETR_BENCHMARKS=OFF)
DEPS=$PWD/.gpu_deps/usr
if [ -d "$DEPS" ]; then
  args+=(-DCMAKE_PREFIX_PATH="$DEPS" -DZLIB_ROOT="$DEPS" -DDETR_STB_INCLUDE_DIR="$DEPS/include/stb"
         -DDETR_STB_LIBRARY="$DEPS/lib/libstb.a")
fi
command -v ninja >/dev/null && args+=(-G Ninja)
# shellcheck disable=SC2206
args+=(${GPU_CMAKE_ARGS:-})  # extra configure arguments
step configure cmake -S . -B "$BUILD" "${args[@]}"
targets=(detr_cuda test_gpu_kernels_host)
for f in tests/cuda_test_*.cu tests/cuda_test_*.cpp; do
  [ -e "$f" ] && targets+=("$(basename "${f%.*}")")
done
step build cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"
# Every CUDA test; on a GPU machine none may be skipped (exit 77 counts as a failure here).
cuda_tests() {
  (cd "$BUILD" && ctest -R '^(cuda_test_|test_gpu_kernels_host)' --output-on-failure --timeout 300) >"$LOGS/ctest.txt" 2>&1
  local rc=$?
  cat "$LOGS/ctest.txt"
  grep -q 'Skipped\|Not Run' "$LOGS/ctest.txt" && return 1
  grep -q '100% tests passed, 0 tests failed out of [1-9]' "$LOGS/ctest.txt" || return 1
  return $rc
}
step tests cuda_tests
step bench_msda "$BUILD/tests/cuda_test_ms_deform_attn" --bench
cat "$LOGS/bench_msda.log" 2>/dev/null | tail -n 20
exit $status
