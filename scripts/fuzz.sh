#!/usr/bin/env bash
# Fuzzes the decode stage (src/dicom and src/decode.rs) with cargo fuzz and libFuzzer:
#
#   scripts/fuzz.sh [seconds]     # default 600
#
# Seeds are the DICOM fixtures and the sample images. Crashes land in fuzz/artifacts/decode/.
# Not part of .ci/run: it is meant to run for minutes to hours.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# cargo fuzz passes nightly-only flags (sanitizers, coverage); this lets the stable toolchain
# accept them.
export RUSTC_BOOTSTRAP=1
[[ -f tests/fixtures/dicom/manifest.json ]] || scripts/dicom-fixtures.sh
corpus=fuzz/corpus/decode
mkdir -p "$corpus"
cp -n tests/fixtures/dicom/*.dcm samples/synthetic/*.png "$corpus"/
cargo fuzz run --fuzz-dir fuzz --target-dir "$HOME/.cache/efen/fuzz-target" decode "$corpus" -- \
  -max_total_time="${1:-600}" -max_len=1048576 -rss_limit_mb=4096 -print_final_stats=1
