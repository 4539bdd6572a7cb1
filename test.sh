#!/usr/bin/env bash
# Installs what is missing, builds everything in Release and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install_deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" --timeout 900
