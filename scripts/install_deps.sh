#!/usr/bin/env bash
# Installs the Debian packages DETR++ builds with, only when one is missing.
set -euo pipefail
pkgs=(cmake g++ make pkg-config libeigen3-dev catch2 libstb-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
      libbenchmark-dev dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
