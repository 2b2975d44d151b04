#!/usr/bin/env bash
# Creates (once per machine) or updates the Python environment for training/ outside the clone,
# from training/requirements.txt; a checksum of that file says when to reinstall.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

want=$(sha256sum training/requirements.txt | cut -d' ' -f1)
if [[ ! -x "$EFEN_VENV/bin/python" ]]; then
  echo "python-env: creating $EFEN_VENV"
  python3 -m venv "$EFEN_VENV"
fi
if [[ "$(cat "$EFEN_VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  echo "python-env: installing training/requirements.txt"
  "$EFEN_VENV/bin/pip" install --quiet --disable-pip-version-check -r training/requirements.txt
  echo "$want" > "$EFEN_VENV/.requirements.sha256"
fi
