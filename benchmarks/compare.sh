#!/usr/bin/env bash
# compare.sh <case>... : run a C++ benchmark and its Python twin (benchmarks/reference/) on the
# same inputs, print both absolute times and the ratio. `compare.sh all` runs every case.
#
# Adding a case: write a function `case_<name>` below (build its target with `build_target`,
# run both sides, end with `echo "<name>: speedup vs <peer> = X.XXx"`). Nothing else to edit.
#
# Environment: BUILD_DIR (default <repo>/build, configured Release if missing), PYTHON (python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
PYTHON="${PYTHON:-python3}"
# The peer at its best on this 2-core machine (see DESIGN.md, Performance).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

build_target() {
  [ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target "$1" >/dev/null
}

# json_field <json-line> <python expression over d>
json_field() { "$PYTHON" -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }

# --- cases ------------------------------------------------------------------------------------

# COCO bbox evaluation, 1000 images x 100 detections: detr::CocoEvaluator vs pycocotools.
case_cocoeval() {
  build_target cocoeval_bench
  local dir; dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  local cpp py cpp1
  cpp="$("$BUILD_DIR/benchmarks/cocoeval_bench" "$dir" 5)"
  cpp1="$(OMP_NUM_THREADS=1 "$BUILD_DIR/benchmarks/cocoeval_bench" "$dir" 5)"
  py="$("$PYTHON" "$ROOT/benchmarks/reference/cocoeval_bench.py" "$dir" 3)"
  "$PYTHON" - "$cpp" "$cpp1" "$py" <<'PY'
import json, sys
cpp, cpp1, py = (json.loads(a) for a in sys.argv[1:4])
names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
print(f"{'stat':<6} {'C++':>20} {'pycocotools':>20}")
for n, a, b in zip(names, cpp["stats"], py["stats"]):
    print(f"{n:<6} {a:20.15f} {b:20.15f}")
diff = max(abs(a - b) for a, b in zip(cpp["stats"], py["stats"]))
print(f"max |C++ - pycocotools| over the 12 numbers = {diff:.3g}" + ("  (identical)" if diff <= 1e-12 else "  MISMATCH"))
print(f"C++ (2 threads)  median {cpp['median_s']*1e3:9.1f} ms   runs {[round(r*1e3,1) for r in cpp['runs']]}")
print(f"C++ (1 thread)   median {cpp1['median_s']*1e3:9.1f} ms   ({py['median_s']/cpp1['median_s']:.2f}x vs pycocotools)")
print(f"pycocotools      median {py['median_s']*1e3:9.1f} ms   runs {[round(r*1e3,1) for r in py['runs']]}")
print(f"cocoeval: speedup vs pycocotools = {py['median_s']/cpp['median_s']:.2f}x")
sys.exit(0 if diff <= 1e-12 else 1)
PY
}

# --- dispatcher -------------------------------------------------------------------------------
cases() { declare -F | awk '{print $3}' | sed -n 's/^case_//p'; }
if [ $# -eq 0 ]; then
  echo "usage: $0 <case>... | all     cases: $(cases | tr '\n' ' ')" >&2
  exit 2
fi
[ "$1" = all ] && set -- $(cases)
for c in "$@"; do
  if ! declare -F "case_$c" >/dev/null; then
    echo "unknown case '$c'; cases: $(cases | tr '\n' ' ')" >&2
    exit 2
  fi
  "case_$c"
done
