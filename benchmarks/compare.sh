#!/usr/bin/env bash
# Side-by-side benchmarks: our C++ kernels against their PyTorch (or OpenBLAS) twins, run back
# to back on this machine, each at its best (2 threads, warm-up, medians). Each case ends with
# one line `<case>: <ratio name> = X.XXx`.
#   benchmarks/compare.sh mha | msda | gemm | all
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE

build() {
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target "$@" >/dev/null
}

need_torch() {
  "$PY" -c "import torch" 2>/dev/null || {
    echo "compare.sh: PyTorch is needed for the reference side; install python3-torch (apt) or torch (pip)" >&2
    exit 1
  }
}

# Median real time (ms) of one Google Benchmark case from its JSON output.
gbench_ms() {  # file case
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b["run_name"].split("/")[0] == sys.argv[2] and b.get("aggregate_name") == "median"]
print(runs[0]["real_time"])
PYEOF
}

case_gemm() {
  build bench_gemm
  local out=$(mktemp)
  "$BUILD/benchmarks/bench_gemm" --benchmark_filter='/1024/1024/1024' --benchmark_repetitions=5 \
    --benchmark_min_time=0.5 --benchmark_out="$out" --benchmark_out_format=json \
    --benchmark_report_aggregates_only=true
  local ours=$(gbench_ms "$out" BM_detr_sgemm) theirs=$(gbench_ms "$out" BM_openblas_sgemm)
  "$PY" -c "
o, t = $ours, $theirs
print(f'gemm 1024^3 on 2 threads: detr {o:.2f} ms ({2*1024**3/o/1e6:.1f} GFLOP/s), openblas {t:.2f} ms ({2*1024**3/t/1e6:.1f} GFLOP/s)')
print(f'gemm: fraction of openblas = {t/o:.2f}')"
}

case_mha() {
  need_torch
  build bench_mha
  local out=$(mktemp) ref=$(mktemp)
  "$BUILD/benchmarks/bench_mha" --benchmark_repetitions=5 --benchmark_min_time=0.5 \
    --benchmark_out="$out" --benchmark_out_format=json --benchmark_report_aggregates_only=true
  "$PY" "$ROOT/benchmarks/reference/mha.py" 20 | tee "$ref"
  "$PY" - "$out" "$ref" <<'PYEOF'
import json, sys
ours = {b["run_name"].split("/")[0].replace("BM_mha_", ""): b["real_time"] for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
ref = dict(l.split() for l in open(sys.argv[2]) if not l.startswith("torch"))
for name, ms in ours.items():
    t = float(ref[name])
    print(f"{name:32s} detr {ms:8.2f} ms   pytorch {t:8.2f} ms   speedup {t / ms:5.2f}x")
print(f"mha: speedup vs pytorch = {float(ref['encoder_forward_backward']) / ours['encoder_forward_backward']:.2f}x")
PYEOF
}

case_msda() {
  need_torch
  build bench_ms_deform_attn
  local out=$(mktemp) ref=$(mktemp)
  "$BUILD/benchmarks/bench_ms_deform_attn" --benchmark_repetitions=5 --benchmark_min_time=0.5 \
    --benchmark_out="$out" --benchmark_out_format=json --benchmark_report_aggregates_only=true
  "$PY" "$ROOT/benchmarks/reference/msda.py" 5 | tee "$ref"
  "$PY" - "$out" "$ref" <<'PYEOF'
import json, sys
ours = {b["run_name"].split("/")[0].replace("BM_msda_", ""): b["real_time"] for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
ref = dict(l.split() for l in open(sys.argv[2]) if not l.startswith("torch"))
for name, ms in ours.items():
    t = float(ref[name])
    print(f"{name:32s} detr {ms:8.2f} ms   pytorch {t:8.2f} ms   speedup {t / ms:5.2f}x")
print(f"msda: speedup vs pytorch = {float(ref['encoder_forward_backward']) / ours['encoder_forward_backward']:.2f}x")
PYEOF
}

what=${1:-all}
case "$what" in
  gemm) case_gemm ;;
  mha) case_mha ;;
  msda) case_msda ;;
  all) case_gemm; case_mha; case_msda ;;
  *) echo "usage: $0 gemm|mha|msda|all" >&2; exit 2 ;;
esac
