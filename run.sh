#!/usr/bin/env bash
# The main job: build the examples, generate FashionDet (data/fashion_det, on first use), train
# the default detector -- Deformable DETR as configured in examples/models.hpp -- for 2 epochs
# (about 12 minutes on 2 cores), print its COCO numbers, and draw its detections on four
# validation images in runs/default/detections/. README.md "Training" says what to expect.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target train detect
OUT=runs/default
./build/examples/train --model deformable --epochs 2 --eval-every 2 --image-size 128 --lr 2e-4 --lr-backbone 2e-4 \
  --out "$OUT" --overwrite
./build/examples/detect --checkpoint "$OUT/epoch_0002.safetensors" --score 0.25 --out "$OUT/detections" \
  data/fashion_det/val/00000{1,2,3,4}.png
echo "detections drawn in $OUT/detections/ (metrics: $OUT/metrics.jsonl, chart: $OUT/chart.png)"
