#!/usr/bin/env bash
# The main job. Until a detector can be trained (issue: detectors and training), this runs the
# most meaningful example that exists: see README.md.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
./build/examples/reverse_sequence --checkpoint build/reverse_sequence.ckpt
