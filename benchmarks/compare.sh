#!/usr/bin/env bash
# Side-by-side benchmarks: our C++ kernels against their PyTorch (or OpenBLAS) twins, run back
# to back on this machine, each at its best (2 threads, warm-up, medians). Each case ends with
# one line `<case>: <ratio name> = X.XXx`.
#   benchmarks/compare.sh <case>... | all        (cases: gemm, mha, msda, cocoeval, ...)
# Adding a case: define a function `case_<name>` below; the dispatcher finds it by name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
# Each side at its best: PyTorch's two thread pools fight over the 2 cores unless its OpenMP
# threads sleep (PASSIVE); ours have one pool and lose ~20-60% if they sleep between regions.
TORCH_ENV="OMP_WAIT_POLICY=PASSIVE"
# Debian's OpenBLAS (the gemm peer, and torch's BLAS) picks its kernels from the CPU model; in
# this VM it sees "Prescott" and falls back to SSE3 kernels (~25 GFLOP/s). Give it its AVX-512
# kernels so the peers run at their best (check with openblas_get_corename).
if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}; fi

build() {
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target "$@" >/dev/null
}

need_torch() {
  "$PY" -c "import torch" 2>/dev/null || {
    echo "compare.sh: PyTorch is needed for the reference side; install python3-torch (apt) or torch (pip)" >&2
    exit 1
  }
  # Debian's torch calls BLAS through libblas.so.3: with no OpenBLAS installed that is the netlib
  # reference, ~30x slower at GEMM, and the peer would not be at its best.
  local blas=$("$PY" -c "import torch; print(next((l.split()[-1] for l in open('/proc/self/maps') if 'libblas.so' in l), 'bundled'))")
  case "$blas" in
    */blas/libblas.so*)
      echo "compare.sh: torch runs on the reference BLAS ($blas); install libopenblas0-pthread" >&2
      exit 1 ;;
  esac
  echo "torch BLAS: $blas"
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

# A Google Benchmark binary against its PyTorch twin: per-case medians side by side, then the
# summary line from one case (the encoder forward+backward unless named). Both sides warm up
# first (the twins run untimed steps; a first step pays page faults and first-touch of state).
#   gbench_vs_torch <name> <benchmark target> <twin script> <twin repetitions> [summary case]
gbench_vs_torch() {
  local name=$1 target=$2 script=$3 reps=$4 summary=${5:-encoder_forward_backward}
  need_torch
  build "$target"
  local out=$(mktemp) ref=$(mktemp)
  "$BUILD/benchmarks/$target" --benchmark_repetitions=5 --benchmark_min_time=0.5 --benchmark_min_warmup_time=1 \
    --benchmark_out="$out" --benchmark_out_format=json --benchmark_report_aggregates_only=true
  env $TORCH_ENV "$PY" "$ROOT/benchmarks/reference/$script" "$reps" | tee "$ref"
  "$PY" - "$out" "$ref" "$name" "$summary" <<'PYEOF'
import json, sys
name, summary = sys.argv[3], sys.argv[4]
ours = {b["run_name"].split("/")[0].replace(f"BM_{name}_", ""): b["real_time"]
        for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
ref = dict(l.split() for l in open(sys.argv[2]) if not l.startswith("torch"))
for case, ms in ours.items():
    t = float(ref[case])
    print(f"{case:32s} detr {ms:8.2f} ms   pytorch {t:8.2f} ms   speedup {t / ms:5.2f}x")
print(f"{name}: speedup vs pytorch = {float(ref[summary]) / ours[summary]:.2f}x")
PYEOF
}

case_mha() { gbench_vs_torch mha bench_mha mha.py 20; }
case_msda() { gbench_vs_torch msda bench_ms_deform_attn msda.py 5; }
# One DETR training step (transformer + heads + matcher + loss + AdamW, no backbone).
case_detr_step() { gbench_vs_torch detr_step bench_detr_step detr_step.py 10 train_step; }
# One training step of the transformer + heads + loss + AdamW (no backbone).
case_deformable_step() { gbench_vs_torch deformable_step bench_deformable_step deformable_step.py 3 train; }

# Under load: two busy processes (`yes`) take the 2 cores' worth of time from both sides. Our MHA
# decoder cross-attention forward+backward and the DETR step, quiet then loaded, and PyTorch's
# under the same load. A step may slow down about in proportion to the cores it lost (2 of our 2
# threads now share the machine with 2 more: ~2x), never by an order of magnitude.
case_contention() {
  need_torch
  build bench_mha bench_detr_step
  local q=$(mktemp) l=$(mktemp) ref=$(mktemp) pids=()
  ours() {  # out-file
    "$BUILD/benchmarks/bench_mha" --benchmark_filter='decoder_cross_forward_backward' --benchmark_repetitions=5 \
      --benchmark_min_time=0.5 --benchmark_min_warmup_time=1 --benchmark_format=json \
      --benchmark_report_aggregates_only=true > "$1.mha"
    "$BUILD/benchmarks/bench_detr_step" --benchmark_repetitions=3 --benchmark_min_warmup_time=1 \
      --benchmark_format=json --benchmark_report_aggregates_only=true > "$1.step"
  }
  ours "$q"
  yes > /dev/null & pids+=($!)
  yes > /dev/null & pids+=($!)
  trap 'kill ${pids[*]} 2>/dev/null' RETURN
  ours "$l"
  env $TORCH_ENV "$PY" "$ROOT/benchmarks/reference/mha.py" 20 decoder_cross_forward_backward | tee "$ref"
  env $TORCH_ENV "$PY" "$ROOT/benchmarks/reference/detr_step.py" 3 | grep -v '^torch' | tee -a "$ref"
  kill "${pids[@]}" 2>/dev/null
  "$PY" - "$q" "$l" "$ref" <<'PYEOF'
import json, sys
q, l, ref = sys.argv[1:4]
def med(f, case):
    return next(b["real_time"] for b in json.load(open(f))["benchmarks"]
                if b.get("aggregate_name") == "median" and case in b["run_name"])
torch = dict(x.split() for x in open(ref) if not x.startswith("torch"))
rows = [("mha decoder fwd+bwd", med(q + ".mha", "decoder_cross_forward_backward"),
         med(l + ".mha", "decoder_cross_forward_backward"), float(torch["decoder_cross_forward_backward"])),
        ("detr_step", med(q + ".step", "train_step"), med(l + ".step", "train_step"), float(torch["train_step"]))]
for name, quiet, loaded, t in rows:
    print(f"{name:22s} detr quiet {quiet:8.2f} ms   loaded {loaded:8.2f} ms ({loaded / quiet:4.2f}x)   "
          f"pytorch loaded {t:8.2f} ms ({t / loaded:4.2f}x ours)")
print(f"contention: slowdown under load = {max(r[2] / r[1] for r in rows):.2f}x")
print(f"contention: speedup vs pytorch under load = {min(r[3] / r[2] for r in rows):.2f}x")
PYEOF
}

# Matching: linear_sum_assignment vs scipy, and the whole matcher vs DETR's torch + scipy code.
case_matcher() {
  need_torch
  build bench_matcher
  local out=$(mktemp) ref=$(mktemp)
  "$BUILD/benchmarks/bench_matcher" --benchmark_repetitions=5 --benchmark_min_time=0.2 \
    --benchmark_out="$out" --benchmark_out_format=json --benchmark_report_aggregates_only=true
  env $TORCH_ENV "$PY" "$ROOT/benchmarks/reference/matcher.py" 50 | tee "$ref"
  "$PY" - "$out" "$ref" <<'PYEOF'
import json, math, sys
ours = {b["run_name"].replace("BM_", "").replace("/real_time", ""): b["real_time"]
        for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
ref = dict(l.split() for l in open(sys.argv[2]))
ratios = []
for name, us in ours.items():
    t = float(ref[name])
    print(f"{name:16s} detr {us:10.1f} us   reference {t:10.1f} us   speedup {t / us:6.2f}x")
    if name.startswith("lsa"):
        ratios.append(t / us)
print(f"matcher: speedup vs scipy = {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x")
print(f"matcher: speedup vs pytorch+scipy = {float(ref['matcher']) / ours['matcher']:.2f}x")
PYEOF
}

# COCO bbox evaluation, 1000 images x 100 detections: detr::CocoEvaluator vs pycocotools.
case_cocoeval() {
  # pycocotools is a pip package: take $PY if it has it, else the python3 on PATH.
  local PY="$PY"
  "$PY" -c "import pycocotools" 2>/dev/null || PY=python3
  "$PY" -c "import pycocotools" 2>/dev/null || {
    echo "compare.sh: pycocotools is needed for the reference side; pip install pycocotools numpy" >&2
    exit 1
  }
  build cocoeval_bench
  local dir; dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  local cpp py cpp1
  cpp="$("$BUILD/benchmarks/cocoeval_bench" "$dir" 5)"
  cpp1="$(OMP_NUM_THREADS=1 "$BUILD/benchmarks/cocoeval_bench" "$dir" 5)"
  py="$(env $TORCH_ENV "$PY" "$ROOT/benchmarks/reference/cocoeval_bench.py" "$dir" 3)"
  "$PY" - "$cpp" "$cpp1" "$py" <<'PY'
import json, sys
cpp, cpp1, py = (json.loads(a) for a in sys.argv[1:4])
names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
print(f"{'stat':<6} {'C++':>20} {'pycocotools':>20}")
for n, a, b in zip(names, cpp["stats"], py["stats"]):
    print(f"{n:<6} {a:20.15f} {b:20.15f}")
diff = max(abs(a - b) for a, b in zip(cpp["stats"], py["stats"]))
print(f"max |C++ - pycocotools| over the 12 numbers = {diff:.3g}" + ("  (bit-identical)" if diff == 0 else "  (MISMATCH)"))
print(f"C++ (2 threads)  median {cpp['median_s']*1e3:9.1f} ms   runs {[round(r*1e3,1) for r in cpp['runs']]}")
print(f"C++ (1 thread)   median {cpp1['median_s']*1e3:9.1f} ms   ({py['median_s']/cpp1['median_s']:.2f}x vs pycocotools)")
print(f"pycocotools      median {py['median_s']*1e3:9.1f} ms   runs {[round(r*1e3,1) for r in py['runs']]}")
print(f"cocoeval: speedup vs pycocotools = {py['median_s']/cpp['median_s']:.2f}x")
sys.exit(0 if diff == 0 else 1)
PY
}

# --- dispatcher: every function case_<name> is a case ----------------------------------------
cases() { declare -F | awk '{print $3}' | sed -n 's/^case_//p'; }
[ $# -eq 0 ] && set -- all
[ "$1" = all ] && set -- $(cases)
for c in "$@"; do
  if ! declare -F "case_$c" >/dev/null; then
    echo "usage: $0 <case>... | all     (cases: $(cases | tr '\n' ' '))" >&2
    exit 2
  fi
  "case_$c"
done
