#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (the real binary against SQLite and
# PostgreSQL), the deployment files and the container image (podman, as root or with sudo), then
# the Python tests of training/. Needs PostgreSQL on 127.0.0.1:5432 with trust
# auth: scripts/postgres.sh starts (or installs) one when none answers; EFEN_TEST_POSTGRES
# overrides the admin URL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# Debian packages (dcmtk, dicom3tools, chromium, orthanc, prometheus, cmake), then the Python environment:
# the DICOM fixtures are made and checked with pydicom, the series fixtures with highdicom.
scripts/system-packages.sh
scripts/python-env.sh
scripts/dicom-fixtures.sh
scripts/series-fixtures.sh
scripts/setup.sh
scripts/postgres.sh

echo "test: import graph (docs/layout.md#the-floors)"
python3 scripts/import-graph.py

echo "test: rust (unit + integration)"
cargo test --release --locked -- --test-threads 2

echo "test: deployment (manifests and unit, then the container image)"
scripts/deploy-check.sh
scripts/container-test.sh

echo "test: python (training/)"
(cd training && "$EFEN_VENV/bin/python" -m pytest -q)
