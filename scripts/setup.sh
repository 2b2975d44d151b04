#!/usr/bin/env bash
# Sets up efen on a Debian machine with Rust and Python 3: installs the ONNX Runtime shared
# library from its Python wheel into .efen/onnxruntime (git-ignored) and builds efen.
#
#   scripts/setup.sh          # CPU library (onnxruntime wheel)
#   scripts/setup.sh --gpu    # CUDA 13 library (onnxruntime-gpu wheel)
#
# The cargo target folder lives outside the clone (CARGO_TARGET_DIR, default
# ~/.cache/efen/target) so later builds and CI runs on this machine reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

wheel="onnxruntime==${EFEN_ORT_VERSION:-1.32.0}"
if [[ "${1:-}" == "--gpu" ]]; then
  wheel="onnxruntime-gpu==${EFEN_ORT_GPU_VERSION:-1.31.1}"
fi

marker=".efen/onnxruntime/.installed"
if [[ ! -f "$marker" || "$(cat "$marker")" != "$wheel" ]]; then
  echo "setup: installing the ONNX Runtime library from the $wheel wheel into .efen/onnxruntime"
  # pip only downloads (no install into any Python); the wheel is a zip we unpack ourselves.
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$download" "$wheel"
  rm -rf .efen/onnxruntime
  mkdir -p .efen/onnxruntime
  python3 -m zipfile -e "$download"/*.whl .efen/onnxruntime
  echo "$wheel" > "$marker"
fi

# CharLS (JPEG-LS decoding in dicom-pixeldata) is C++ built with cmake.
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  echo "setup: installing cmake and g++ (to build the JPEG-LS codec)"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq cmake g++ >/dev/null
fi

echo "setup: building efen (release) into $CARGO_TARGET_DIR"
cargo build --release --locked
