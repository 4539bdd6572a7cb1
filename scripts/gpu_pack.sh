#!/usr/bin/env bash
# Packs what the CUDA build needs and a GPU machine lacks (Eigen, nlohmann-json, Catch2, stb,
# zlib: headers, static libraries and CMake package files) into .gpu_deps/ (git-ignored), laid
# out as a prefix, so that it travels with the working tree and scripts/gpu_check.sh builds
# against it. Run on this (Debian) machine after scripts/install_deps.sh; about 12 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
P=.gpu_deps/usr
rm -rf .gpu_deps
mkdir -p "$P/include/stb" "$P/lib/cmake" "$P/share/eigen3" "$P/share/cmake"
cp -r /usr/include/eigen3 "$P/include/"
cp -r /usr/share/eigen3/cmake "$P/share/eigen3/"
cp -r /usr/include/nlohmann "$P/include/"
cp -r /usr/share/cmake/nlohmann_json "$P/share/cmake/"
cp -r /usr/include/catch2 "$P/include/"
cp -r /usr/lib/cmake/Catch2 "$P/lib/cmake/"
cp /usr/lib/libCatch2WithMain.a "$P/lib/"
cp /usr/include/stb/stb_image.h /usr/include/stb/stb_easy_font.h /usr/include/stb/stb_image_write.h "$P/include/stb/"
cp /usr/lib/x86_64-linux-gnu/libstb.a "$P/lib/"
cp /usr/include/zlib.h /usr/include/zconf.h "$P/include/"
cp /usr/lib/x86_64-linux-gnu/libz.a "$P/lib/"
du -sh .gpu_deps
