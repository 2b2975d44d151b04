#!/usr/bin/env bash
# Builds the container image with podman and runs it (docs/deploy.md):
#   - installs podman, runc and debootstrap when missing, and makes the local Debian base image
#     when its tag is missing (no registry is needed, none is asked);
#   - builds the Dockerfile's `prebuilt` target from the binary that scripts/setup.sh built here and
#     the ONNX Runtime library it unpacked (the image's own compile stage needs a Rust image from a
#     registry, and CI has built the binary already);
#   - in the image: the libraries resolve, it runs as uid 10001, `efen doctor` passes, `efen run` on
#     samples/synthetic (mounted read-only) succeeds on all 12, and `efen watch --http` against this
#     machine's PostgreSQL gets ready, records a dropped image, answers its healthcheck and drains
#     to exit 0 on SIGTERM; all with a read-only root file system;
#   - the compose file: it parses (podman-compose config) and its two efen services run the image
#     (podman-compose up) on this machine's PostgreSQL, each recording a run and sharing the work.
# It leaves the image tagged $EFEN_IMAGE (localhost/efen:test). Needs root (or sudo) for podman.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

image="${EFEN_IMAGE:-localhost/efen:test}"
base="${EFEN_RUNTIME_BASE:-localhost/debian:bookworm-slim}"
pg_admin="${EFEN_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
start=$SECONDS
step() { echo "container-test: $* ($((SECONDS - start)) s)"; }
fail() { echo "container-test: FAIL: $*" >&2; exit 1; }

sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
done
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq podman runc debootstrap >/dev/null
fi

work=$(mktemp -d)
# podman settings that work on this kind of machine (crun refuses its cgroups; the default ulimits
# exceed its hard limits), for every podman call here and those podman-compose makes.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
EOF
podman=("${sudo[@]}" env "CONTAINERS_CONF=$work/containers.conf" podman)
pm() { "${podman[@]}" "$@"; }

db="efen_container_test_$$"
names=("efen-ct-watch-$$")
project="efen-ct-$$"
cleanup() {
  local rc=$?
  set +e
  [[ -f "$work/compose/test.override.yml" ]] && compose -f docker-compose.yml -f test.override.yml down -t 5 >/dev/null 2>&1
  for name in "${names[@]}"; do pm rm -f -t 5 "$name" >/dev/null 2>&1; done
  for d in "$db" "${db}_compose"; do psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1; done
  "${sudo[@]}" rm -rf "$work"
  ((rc == 0)) || echo "container-test: failed after $((SECONDS - start)) s" >&2
}
trap cleanup EXIT

# The local stand-in for debian:bookworm-slim: minbase, without apt's caches, manuals and locales
# (as the official slim image).
if ! pm image exists "$base"; then
  step "making $base with debootstrap"
  rootfs="$work/rootfs"
  "${sudo[@]}" debootstrap --variant=minbase bookworm "$rootfs" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  "${sudo[@]}" bash -c "cd '$rootfs' && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/man/* \
    usr/share/info/* usr/share/locale/* && find usr/share/doc -type f ! -name copyright -delete"
  "${sudo[@]}" tar -C "$rootfs" -c . | pm import --quiet - "$base" >/dev/null
  "${sudo[@]}" rm -rf "$rootfs"
fi

# The binary and library, as CI and the other tests use them.
scripts/setup.sh >/dev/null
scripts/postgres.sh
ort=$(ls .efen/onnxruntime/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)
[[ -n "$ort" ]] || fail "no libonnxruntime.so.* under .efen/onnxruntime (scripts/setup.sh)"
ort_version="${ort##*.so.}"
rm -rf .efen/dist
mkdir -p .efen/dist/lib
cp "$EFEN_BIN" .efen/dist/efen
# Line tables stay in the build folder; the image needs none.
strip --strip-debug .efen/dist/efen
cp "$ort" .efen/dist/lib/

previous=$(pm image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
step "building $image (--target prebuilt on $base, ONNX Runtime $ort_version)"
# docker format: OCI images cannot carry HEALTHCHECK. Host network: RUN steps need no bridge.
pm build --quiet --pull=never --network host --format docker --target prebuilt \
  --build-arg "RUNTIME_BASE=$base" --build-arg "ORT_VERSION=$ort_version" -t "$image" . >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; fail "podman build"; }
# The image this tag had before, so that CI machines do not pile up old ones.
[[ -z "$previous" || "$previous" == "$(pm image inspect --format '{{.Id}}' "$image")" ]] || pm rmi "$previous" >/dev/null 2>&1 || true
size=$(pm image inspect --format '{{.Size}}' "$image")
base_size=$(pm image inspect --format '{{.Size}}' "$base")
step "image $image: $((size / 1000000)) MB ($(((size - base_size) / 1000000)) MB above the base's $((base_size / 1000000)) MB)"

[[ "$(pm image inspect --format '{{.Config.User}}' "$image")" == "10001:10001" ]] || fail "the image's user is not 10001:10001"
pm image inspect --format '{{json .Config.Healthcheck}}' "$image" | grep -q efen-healthcheck \
  || fail "the image has no HEALTHCHECK (built without --format docker?)"

# Every run below as Kubernetes runs it: read-only root (podman mounts /tmp and /run as tmpfs),
# every capability dropped, writable paths as volumes.
# (--no-healthcheck: podman schedules healthchecks with systemd timers, which one-shot runs do not need.)
run=(pm run --rm --no-healthcheck --read-only --cap-drop ALL --security-opt no-new-privileges)

step "shared libraries, user, trust store"
ldd_out=$("${run[@]}" --network none --entrypoint ldd "$image" /usr/local/bin/efen "/opt/efen/lib/libonnxruntime.so.$ort_version") \
  || fail "ldd in the image: $ldd_out"
if grep -q "not found" <<<"$ldd_out"; then echo "$ldd_out"; fail "a shared library is missing in the image"; fi
[[ "$("${run[@]}" --network none --entrypoint id "$image" -u)" == 10001 ]] || fail "the container does not run as uid 10001"
"${run[@]}" --network none --entrypoint test "$image" -s /etc/ssl/certs/ca-certificates.crt \
  || fail "the image has no trust store (https destinations need it)"

# Volumes owned by the image's user, as an orchestrator's fsGroup or a chowned host folder.
data() { mkdir -p "$work/$1"/{drop,state,out}; "${sudo[@]}" chown -R 10001:10001 "$work/$1"; }

step "efen doctor"
data doctor
doctor_out=$("${run[@]}" --network none -v "$work/doctor:/data" "$image" doctor 2>&1) \
  || { echo "$doctor_out"; fail "efen doctor in the image"; }
for want in "ok    onnxruntime: /opt/efen/lib/libonnxruntime.so.$ort_version" "found by ORT_DYLIB_PATH" \
  "ok    provider cpu: loads" "ok    store:" "ok    pipeline: /opt/efen/pipelines/default.toml"; do
  grep -qF "$want" <<<"$doctor_out" || { echo "$doctor_out"; fail "efen doctor does not say: $want"; }
done

step "efen run on samples/synthetic (mounted read-only)"
data run
run_out=$("${run[@]}" --network none -v "$PWD/samples/synthetic:/samples:ro" -v "$work/run:/data" "$image" run /samples 2>&1) \
  || { echo "$run_out"; fail "efen run in the image exited non-zero"; }
grep -q "cases: 12 succeeded, 0 failed" <<<"$run_out" || { echo "$run_out"; fail "efen run: not 12 succeeded"; }
succeeded=$(python3 - "$work/run/out" <<'EOF'
import json, pathlib, sys
results = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*/result.json")]
print(sum(r["status"] == "succeeded" and r.get("metrics") is not None for r in results))
EOF
)
[[ "$succeeded" == 12 ]] || fail "efen run: $succeeded result.json files say succeeded with metrics, not 12"

# A port nothing listens on, on the host network.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2" || true; }
wait_ready() { # port container-or-label
  for _ in $(seq 1 120); do
    [[ "$(http_code "$1" /readyz)" == 200 ]] && return 0
    sleep 1
  done
  curl -s "http://127.0.0.1:$1/readyz" || true
  echo "container-test: $2: /readyz is not 200 after 120 s" >&2
  return 1
}
sql_db="$db"
sql() { psql -Atq "${pg_admin%/*}/$sql_db" -c "$1"; }
# Drops one file as a scanner should: written beside the folder, then renamed into it.
drop() { # source folder
  cp "$1" "$work/staged" && "${sudo[@]}" chown 10001:10001 "$work/staged" && "${sudo[@]}" mv "$work/staged" "$2/$(basename "$1")"
}
wait_recorded() { # expected-count what
  for _ in $(seq 1 120); do
    [[ "$(sql "SELECT count(*) FROM results WHERE status = 'succeeded'")" == "$1" ]] && return 0
    sleep 1
  done
  echo "container-test: $2: $1 succeeded results are not in PostgreSQL after 120 s (found $(sql 'SELECT count(*) FROM results'))" >&2
  return 1
}

step "efen watch with the HTTP face, against PostgreSQL"
psql -q "$pg_admin" -c "CREATE DATABASE $db" >/dev/null
data watch
port=$(free_port)
watch_name="${names[0]}"
# The image's CMD (watch /data/drop), its HTTP address moved to a free port on the host network: the
# healthcheck reads EFEN_HTTP__LISTEN, so the address is set there, not with --http.
pm run -d --name "$watch_name" --read-only --cap-drop ALL --security-opt no-new-privileges --network host \
  -v "$work/watch:/data" -e "DATABASE_URL=${pg_admin%/*}/$db" -e EFEN_WATCH__WORKER=ct \
  -e "EFEN_HTTP__LISTEN=127.0.0.1:$port" "$image" >/dev/null 2>"$work/podman-run.err" \
  || { cat "$work/podman-run.err"; fail "podman run efen watch"; }
watch_fail() { pm logs "$watch_name" 2>&1 | tail -40; fail "$@"; }
wait_ready "$port" "efen watch" || watch_fail "efen watch did not get ready"
[[ "$(http_code "$port" /healthz)" == 200 ]] || watch_fail "/healthz is not 200"
# The image's HEALTHCHECK as the engine runs it (podman's timer needs systemd; the check itself
# does not), and the compose file's readiness check.
pm healthcheck run "$watch_name" >/dev/null 2>&1 || watch_fail "the image's HEALTHCHECK fails on a ready watch"
pm exec "$watch_name" efen-healthcheck /readyz || watch_fail "efen-healthcheck /readyz in the container"
pm exec "$watch_name" efen-healthcheck /nowhere 2>/dev/null && watch_fail "efen-healthcheck passes on a 404"
drop samples/synthetic/case01.png "$work/watch/drop"
sha=$(sha256sum samples/synthetic/case01.png | cut -d' ' -f1)
wait_recorded 1 "efen watch" || watch_fail "the dropped image was not recorded"
[[ "$(sql "SELECT count(*) FROM cases JOIN results USING (case_id) WHERE source_sha256 = '$sha' AND status = 'succeeded'")" == 1 ]] \
  || watch_fail "the case recorded is not the dropped image"
metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || watch_fail "/metrics"
grep -q '^efen_queue_depth{' <<<"$metrics" || watch_fail "/metrics has no efen_queue_depth (what the Kubernetes scaler reads)"
grep -Eq '^efen_cases_total\{.*status="succeeded".*\} 1$' <<<"$metrics" \
  || { grep efen_cases_total <<<"$metrics"; watch_fail "efen_cases_total does not count the case"; }
# SIGTERM drains and exits 0: the run is closed in the store and the file is in done/.
pm stop -t 70 "$watch_name" >/dev/null 2>&1
[[ "$(pm inspect --format '{{.State.ExitCode}}' "$watch_name")" == 0 ]] || watch_fail "efen watch did not exit 0 on SIGTERM"
pm logs "$watch_name" 2>&1 | grep -q "signal received: draining" || watch_fail "no drain in the log"
[[ "$(sql "SELECT count(*) FROM runs WHERE command = 'watch' AND ended_at IS NOT NULL")" == 1 ]] || watch_fail "the watch run was not closed"
"${sudo[@]}" find "$work/watch/state/done" -name case01.png | grep -q . || watch_fail "case01.png is not in state/done/"

step "docker-compose.yml: podman-compose config"
tools=$(scripts/deploy-tools.sh)
compose_dir="$work/compose"
mkdir -p "$compose_dir/config"
cp docker-compose.yml "$compose_dir/"
cp config/prometheus.yml "$compose_dir/config/"
compose() {
  (cd "$compose_dir" && "${sudo[@]}" env "CONTAINERS_CONF=$work/containers.conf" "EFEN_IMAGE=$image" \
    "$tools/bin/podman-compose" --in-pod false -p "$project" "$@")
}
# The file as it is: it parses, its efen services run EFEN_IMAGE as the image's user, read-only,
# with the image's healthcheck on /readyz, under two worker names.
compose -f docker-compose.yml config > "$work/compose-config.yml" 2>"$work/compose.err" \
  || { cat "$work/compose.err"; fail "podman-compose config"; }
"$tools/bin/python" - "$image" "$work/compose-config.yml" <<'PY' || fail "docker-compose.yml is not as this test expects"
import sys, yaml
image, path = sys.argv[1], sys.argv[2]
services = yaml.safe_load(open(path))["services"]
assert set(services) == {"db", "efen", "efen-2", "prometheus"}, sorted(services)
workers = {name: s for name, s in services.items() if name.startswith("efen")}
for name, s in workers.items():
    assert s["image"] == image, (name, s["image"])
    assert s["command"] == ["watch", "/data/drop"], (name, s["command"])
    assert s["user"] == "10001:10001" and s["read_only"] is True and s["cap_drop"] == ["ALL"], name
    assert s["healthcheck"]["test"] == ["CMD", "efen-healthcheck", "/readyz"], (name, s["healthcheck"])
    assert s["environment"]["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in s["environment"]["DATABASE_URL"]
    assert s["volumes"] == ["./data:/data"], s["volumes"]
names = {s["environment"]["EFEN_WATCH__WORKER"] for s in workers.values()}
assert len(names) == len(workers) == 2, f"two workers with their own names expected: {names}"
PY

step "docker-compose.yml: the two efen services, on this machine's PostgreSQL"
# db and prometheus cannot be pulled here: a test-only override puts the efen services on the host
# network, against this machine's PostgreSQL, each on its own port. Everything else (image,
# command, user, read-only root, volumes, worker names, healthcheck) is the file's.
psql -q "$pg_admin" -c "CREATE DATABASE ${db}_compose" >/dev/null
ports=("$(free_port)" "$(free_port)")
cat > "$compose_dir/test.override.yml" <<YAML
services:
  efen:
    network_mode: host
    depends_on: !reset []
    environment:
      DATABASE_URL: ${pg_admin%/*}/${db}_compose
      EFEN_HTTP__LISTEN: 127.0.0.1:${ports[0]}
  efen-2:
    network_mode: host
    depends_on: !reset []
    environment:
      DATABASE_URL: ${pg_admin%/*}/${db}_compose
      EFEN_HTTP__LISTEN: 127.0.0.1:${ports[1]}
YAML
mkdir -p "$compose_dir"/data/{drop,state,out}
"${sudo[@]}" chown -R 10001:10001 "$compose_dir/data"
compose_fail() { pm logs "${project}_efen_1" 2>&1 | tail -20; pm logs "${project}_efen-2_1" 2>&1 | tail -20; fail "$@"; }
compose -f docker-compose.yml -f test.override.yml up -d --no-deps --no-build --pull never efen efen-2 \
  >"$work/compose-up.log" 2>&1 || { cat "$work/compose-up.log"; fail "podman-compose up"; }
sql_db="${db}_compose"
wait_ready "${ports[0]}" "compose service efen" || compose_fail "efen (compose) did not get ready"
wait_ready "${ports[1]}" "compose service efen-2" || compose_fail "efen-2 (compose) did not get ready"
for service in efen efen-2; do
  pm healthcheck run "${project}_${service}_1" >/dev/null 2>&1 || compose_fail "the compose healthcheck of $service fails"
done
inputs=(case01.png case02.png case03.jpg case04.tif case05.bmp case12.png)
for input in "${inputs[@]}"; do drop "samples/synthetic/$input" "$compose_dir/data/drop"; done
wait_recorded "${#inputs[@]}" "compose" || compose_fail "the compose workers did not record ${#inputs[@]} cases"
# Each file once, by whichever worker claimed it; both workers ran against the store.
[[ "$(sql "SELECT count(DISTINCT source_sha256) FROM cases")" == "${#inputs[@]}" ]] || compose_fail "a file was recorded twice"
[[ "$(sql "SELECT count(*) FROM runs WHERE command = 'watch'")" == 2 ]] || compose_fail "not two watch runs in the store"
split=$(sql "SELECT string_agg(worker || ': ' || n, ', ' ORDER BY worker) FROM (SELECT worker, count(*) AS n FROM cases GROUP BY worker) w")
# podman-compose does not pass stop_grace_period on (docker compose does): give down the drain's 60 s.
compose -f docker-compose.yml -f test.override.yml down -t 70 >"$work/compose-down.log" 2>&1 \
  || { cat "$work/compose-down.log"; fail "podman-compose down"; }
[[ "$(sql "SELECT count(*) FROM runs WHERE command = 'watch' AND ended_at IS NOT NULL")" == 2 ]] \
  || fail "the compose workers did not both drain and close their runs on down"
step "compose: ${#inputs[@]} cases, each once ($split); both workers drained on down"

step "passed; image $image ($((size / 1000000)) MB)"
