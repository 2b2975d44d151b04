#!/usr/bin/env bash
# Creates (once per machine) or updates the Python environment of the deployment checks, from
# deploy/requirements.txt; a checksum of that file says when to reinstall. Prints its folder.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${EFEN_DEPLOY_VENV:-$HOME/.cache/efen/deploy-venv}"
want=$(sha256sum deploy/requirements.txt | cut -d' ' -f1)
if [[ "$(cat "$tools/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  [[ -x "$tools/bin/python" ]] || python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt >&2
  echo "$want" > "$tools/.requirements.sha256"
fi
echo "$tools"
