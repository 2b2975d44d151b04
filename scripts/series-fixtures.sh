#!/usr/bin/env bash
# Builds tests/fixtures/series/ for series-level work (one SEG per series, NIfTI, 3D metrics) with
# scripts/series-fixtures.py: a CT series with a sphere lesion and its ground truth (SEG and .npy),
# an Enhanced MR multi-frame file, a series with two orientations, one with a missing slice, a 4D
# CT told apart by Acquisition Number, a gantry tilt, a CT with a localizer, and manifest.json that
# describes them. dciodvfy checks every file; an Error fails the build.
# Idempotent: it does nothing when the manifest is up to date.
# Installs what it needs when missing: dicom3tools (apt), pydicom, highdicom and nibabel (into
# $EFEN_VENV, which scripts/python-env.sh creates when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# The same pins as training/requirements.txt.
PYDICOM_VERSION=3.0.2
HIGHDICOM_VERSION=0.28.2
NIBABEL_VERSION=5.4.2
# Bump when the fixture set changes, so that an old folder is rebuilt.
FIXTURES_VERSION=3
out=tests/fixtures/series

if ! command -v dciodvfy >/dev/null; then
  echo "series-fixtures: installing dicom3tools (dciodvfy)"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq dicom3tools >/dev/null
fi

if [[ ! -x "$EFEN_VENV/bin/python" ]]; then
  scripts/python-env.sh
fi
if ! "$EFEN_VENV/bin/python" - "$PYDICOM_VERSION" "$HIGHDICOM_VERSION" "$NIBABEL_VERSION" 2>/dev/null <<'PYTHON'
import sys
import highdicom, nibabel, pydicom
sys.exit((pydicom.__version__, highdicom.__version__, nibabel.__version__) != tuple(sys.argv[1:]))
PYTHON
then
  echo "series-fixtures: installing pydicom, highdicom and nibabel into $EFEN_VENV"
  "$EFEN_VENV/bin/pip" install --quiet --disable-pip-version-check "pydicom==$PYDICOM_VERSION" \
    "highdicom==$HIGHDICOM_VERSION" "nibabel==$NIBABEL_VERSION"
fi

stamp="$PYDICOM_VERSION/$HIGHDICOM_VERSION/$FIXTURES_VERSION/$(cat "$0" scripts/series-fixtures.py | sha256sum | cut -d' ' -f1)"
if [[ -f "$out/manifest.json" && "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "series-fixtures: $out is up to date"
  exit 0
fi
rm -rf "$out"
"$EFEN_VENV/bin/python" scripts/series-fixtures.py "$out"
echo "$stamp" > "$out/.stamp"
echo "series-fixtures: wrote $(find "$out" -name '*.dcm' | wc -l) DICOM files to $out"
