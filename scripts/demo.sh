#!/usr/bin/env bash
# Sets everything up and runs the main job: the bundled EFEN model on the sample drop, recorded in
# the embedded SQLite store (state/efen.db); outputs in out/<case id>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
"$EFEN_BIN" doctor
"$EFEN_BIN" run samples/synthetic
