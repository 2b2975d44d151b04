#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 with trust auth for local connections (what the
# tests use): starts the machine's cluster, or installs Debian's postgresql first.
set -euo pipefail
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && exit 0

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
if ! command -v pg_ctlcluster >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! $sudo grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
  $sudo sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || $sudo pg_ctlcluster "$version" main start || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
echo "postgres: nothing answers on 127.0.0.1:5432" >&2
exit 1
