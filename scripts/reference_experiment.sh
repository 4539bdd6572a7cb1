#!/usr/bin/env bash
# The reference experiment (README "The reference experiment"): DETR, Deformable DETR,
# + iterative box refinement and + two-stage trained on FashionDet with the same backbone,
# epochs and optimiser settings, then scored by `evaluate` on the 1000 val images.
# Two runs share the 2 cores at a time (one OpenMP thread each, the longest two first); the
# table is printed at the end and written to runs/experiment/table.md.
#   scripts/reference_experiment.sh [epochs]       (default 4: each run under 40 minutes)
# A quick check of the pipeline: TRAIN_ARGS="--max-steps 2 --val-images 16" EVAL_ARGS="--images 16"
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-4}
OUT=runs/experiment
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target train evaluate make_fashion_det
[ -d data/fashion_det/annotations ] || ./build/examples/make_fashion_det --out data/fashion_det
mkdir -p "$OUT"

run() {  # model
  local m=$1
  local t0=$(date +%s)
  ./build/examples/train --model "$m" --data data/fashion_det --out "$OUT/$m" --threads 1 --workers 1 \
      --epochs "$EPOCHS" --image-size 128 --batch 8 --lr 2e-4 --lr-backbone 2e-4 --weight-decay 1e-4 \
      --clip 0.1 --dropout 0.1 --seed 42 --eval-every 1 --overwrite ${TRAIN_ARGS:-} > "$OUT/$m.log" 2>&1
  echo $(( $(date +%s) - t0 )) > "$OUT/$m.seconds"  # training wall time, evaluations included
  ./build/examples/evaluate --checkpoint "$(printf '%s/%s/epoch_%04d.safetensors' "$OUT" "$m" "$EPOCHS")" \
    --data data/fashion_det --threads 1 --metrics "$OUT/$m.eval.json" ${EVAL_ARGS:-} > "$OUT/$m.eval.log" 2>&1
  echo "$m: trained in $(cat "$OUT/$m.seconds") s"
}

run deformable-two-stage & run deformable-refine & wait
run deformable & run detr & wait
python3 scripts/experiment_table.py "$OUT" | tee "$OUT/table.md"
