#!/usr/bin/env bash
# Offline checks of the deployment files (docs/deploy.md), none of which needs a cluster or an
# init system:
#   - every Kubernetes manifest under deploy/kubernetes/ against the API schemas
#     (kubernetes-validate --strict: unknown fields fail, and so does an unknown kind or version);
#     KEDA's ScaledObject, a CRD the validator has no schema for, against its own schema;
#   - the manifests agree with each other and with the image and efen (selectors, names, the uid,
#     the drain, the probes, the metric the scaler reads);
#   - the systemd unit: systemd-analyze verify (with ExecStart pointed at the built binary, which
#     must exist; any warning fails) and its exposure by systemd-analyze security;
#   - efen watch under a NOTIFY_SOCKET: READY=1 after the model loads, STOPPING=1 on SIGTERM;
#   - config/prometheus.yml (promtool), which docker-compose.yml mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
tools=$(scripts/deploy-tools.sh)
fail() { echo "deploy-check: FAIL: $*" >&2; exit 1; }

echo "deploy-check: kubernetes manifests"
shopt -s nullglob
manifests=(deploy/kubernetes/*.yaml deploy/kubernetes/example/*.yaml)
keda=(deploy/kubernetes/keda/*.yaml)
((${#manifests[@]} >= 5 && ${#keda[@]} >= 1)) || fail "manifests missing under deploy/kubernetes/"
out=$("$tools/bin/kubernetes-validate" --strict --quiet "${manifests[@]}" 2>&1) || { echo "$out"; fail "kubernetes-validate"; }
# The validator only warns about a kind it has no schema for: here that is a mistake.
[[ -z "$out" ]] || { echo "$out"; fail "kubernetes-validate reported something"; }

"$tools/bin/python" - "${keda[@]}" <<'PY' || fail "the manifests do not fit together"
import json, pathlib, re, sys
import jsonschema, yaml

docs = {}
for path in sorted(pathlib.Path("deploy/kubernetes").rglob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        docs[(doc["kind"], doc["metadata"]["name"])] = (path, doc)

schema = json.loads(pathlib.Path("deploy/kubernetes/keda/scaledobject.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
for name in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(name)):
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        assert not errors, f"{name}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)

def one(kind):
    found = [doc for (k, _), (_, doc) in docs.items() if k == kind]
    assert len(found) == 1, f"one {kind} expected, found {len(found)}"
    return found[0]

sts = one("StatefulSet")
pod = sts["spec"]["template"]
labels = pod["metadata"]["labels"]
assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the selector misses the pod's labels"
def selects(selector):
    return selector and selector.items() <= labels.items()
for (kind, name), (path, doc) in docs.items():
    if kind == "Service":
        assert selects(doc["spec"]["selector"]), f"Service {name} selects no worker"
    if kind == "PodDisruptionBudget":
        assert selects(doc["spec"]["selector"]["matchLabels"]), f"PDB {name} selects no worker"
assert ("Service", sts["spec"]["serviceName"]) in docs, "the StatefulSet's serviceName is no Service"
assert docs[("Service", sts["spec"]["serviceName"])][1]["spec"].get("clusterIP") == "None", "its governing Service is not headless"

spec = pod["spec"]
(container,) = spec["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
env = {e["name"]: e for e in container["env"]}
# The uid the Dockerfile gives the image.
dockerfile = pathlib.Path("Dockerfile").read_text()
uid = int(re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M).group(1))
assert spec["securityContext"]["runAsUser"] == uid and spec["securityContext"]["runAsNonRoot"], "runAsUser is not the image's user"
sc = container["securityContext"]
assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"] and not sc["allowPrivilegeEscalation"]
assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
# Every writable path is a volume: /data (drop/, state/ and out/ on one mount, since claims rename
# from drop/ into state/) and /tmp; the init container makes the drop folder, which efen wants.
mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
assert set(mounts) == {"/data", "/tmp"} and "subPath" not in mounts["/data"], mounts
(init,) = spec["initContainers"]
assert init["image"] == container["image"] and "/data/drop" in init["command"], init
assert init["securityContext"] == container["securityContext"], "the init container runs with other rights"
assert "EFEN_PATHS__STATE_DIR=/data/state" in dockerfile and "EFEN_PATHS__OUT_DIR=/data/out" in dockerfile
assert container["args"][-1] == "/data/drop"
volumes = {v["name"]: v for v in spec["volumes"]}
claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
assert docs[("PersistentVolumeClaim", claim)][1]["spec"]["accessModes"] == ["ReadWriteMany"], "the shared volume is not RWX"
assert "emptyDir" in volumes["tmp"]
# Stable worker names: the pod's name.
assert env["EFEN_WATCH__WORKER"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
# The store from a Secret, and the example has it.
ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
secret = docs[("Secret", ref["name"])][1]
assert ref["key"] in secret["stringData"], "the example Secret lacks the key the workers read"
# The probes: the paths efen serves, on the port it listens on.
assert env["EFEN_HTTP__LISTEN"]["value"].endswith(f":{ports['http']}")
assert env["EFEN_NODE__LISTEN"]["value"].endswith(f":{ports['dicom']}")
assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
# The drain: efen waits up to STORE_GRACE for the store after SIGTERM; the grace must exceed it.
watch_rs = pathlib.Path("src/pipeline/watch.rs").read_text()
store_grace = int(re.search(r"const STORE_GRACE: Duration = Duration::from_secs\((\d+)\)", watch_rs).group(1))
grace = spec["terminationGracePeriodSeconds"]
assert grace >= store_grace + 30, f"terminationGracePeriodSeconds {grace} leaves no time after the store's {store_grace} s"
compose = yaml.safe_load(open("docker-compose.yml"))
unit = pathlib.Path("deploy/systemd/efen.service").read_text()
assert compose["services"]["efen"]["stop_grace_period"] == f"{grace}s", "compose's stop_grace_period is not the drain"
assert re.search(rf"^TimeoutStopSec={grace}$", unit, re.M), "the unit's TimeoutStopSec is not the drain"
# The scaler: the StatefulSet, on a metric efen exports (docs/service.md lists it).
(so,) = [doc for (k, _), (_, doc) in docs.items() if k == "ScaledObject"]
target = so["spec"]["scaleTargetRef"]
assert (target["kind"], target["name"]) == ("StatefulSet", sts["metadata"]["name"])
(trigger,) = so["spec"]["triggers"]
assert trigger["type"] == "prometheus" and "efen_queue_depth" in trigger["metadata"]["query"]
assert "`efen_queue_depth`" in pathlib.Path("docs/service.md").read_text(), "efen_queue_depth is not a documented metric"
assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
print(f"deploy-check: {len(docs)} resources fit together (grace {grace} s, uid {uid})")
PY

echo "deploy-check: systemd unit"
if ! command -v systemd-analyze >/dev/null; then
  echo "deploy-check: installing systemd (for systemd-analyze)"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq systemd >/dev/null
fi
[[ -x "$EFEN_BIN" ]] || fail "no $EFEN_BIN to verify the unit's ExecStart with (scripts/setup.sh)"
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
# The unit as installed, but for ExecStart's path: verify checks that the binary exists.
grep -q '^ExecStart=/usr/local/bin/efen watch ' deploy/systemd/efen.service || fail "ExecStart is not /usr/local/bin/efen watch"
sed "s|^ExecStart=/usr/local/bin/efen |ExecStart=$EFEN_BIN |" deploy/systemd/efen.service > "$unit_dir/efen.service"
# verify exits 0 on unknown keys and bad values (it only warns): any output fails here.
out=$(systemd-analyze verify "$unit_dir/efen.service" 2>&1) || { echo "$out"; fail "systemd-analyze verify"; }
[[ -z "$out" ]] || { echo "$out"; fail "systemd-analyze verify warned"; }
for line in Type=notify Restart=on-failure ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
  CapabilityBoundingSet= SystemCallFilter=@system-service LimitNOFILE=65536; do
  grep -qx "$line" deploy/systemd/efen.service || fail "the unit lacks $line"
done
# The environment file sets what the unit and efen read.
for key in EFEN_DROP_DIR EFEN_CONFIG ORT_DYLIB_PATH DATABASE_URL; do
  grep -q "^$key=" deploy/systemd/efen.env || fail "deploy/systemd/efen.env does not set $key"
done
# The drop folder and the state under one writable path: each ReadWritePaths= entry is a mount of
# its own, and claims rename from one into the other.
env_value() { sed -n "s/^$1=//p" deploy/systemd/efen.env; }
writable=$(sed -n 's/^ReadWritePaths=//p' deploy/systemd/efen.service)
[[ $(wc -w <<<"$writable") == 1 ]] || fail "the unit should have one ReadWritePaths= entry, not: $writable"
for key in EFEN_DROP_DIR EFEN_PATHS__STATE_DIR EFEN_PATHS__OUT_DIR; do
  [[ "$(env_value "$key")/" == "$writable"/* ]] || fail "$key ($(env_value "$key")) is not under ReadWritePaths=$writable"
done
exposure=$(systemd-analyze security --offline=yes --threshold=20 "$unit_dir/efen.service" 2>&1) \
  || { echo "$exposure" | tail -5; fail "the unit's exposure is above 2.0 (systemd-analyze security; --threshold counts tenths)"; }
echo "deploy-check: $(grep -o 'Overall exposure level.*' <<<"$exposure")"

echo "deploy-check: sd_notify from efen watch"
# What Type=notify relies on, with the real binary: READY=1 only once the model is loaded and the
# folder watched, STOPPING=1 on SIGTERM, then exit 0.
"$tools/bin/python" - "$EFEN_BIN" <<'PY' || fail "efen watch does not notify as Type=notify expects"
import os, signal, socket, subprocess, sys, tempfile
binary = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    os.mkdir(os.path.join(tmp, "drop"))
    env = dict(os.environ, NOTIFY_SOCKET=path, EFEN_PATHS__STATE_DIR=os.path.join(tmp, "state"),
               EFEN_PATHS__OUT_DIR=os.path.join(tmp, "out"), EFEN_WATCH__WORKER="notify-test")
    env.pop("DATABASE_URL", None)
    log = open(os.path.join(tmp, "log"), "w+")
    efen = subprocess.Popen([binary, "watch", os.path.join(tmp, "drop")], env=env, stdout=log, stderr=log)
    try:
        ready = sock.recv(4096).decode()
        log.flush(); text = open(log.name).read()
        assert ready.split("\n")[0] == "READY=1", ready
        assert "model loaded" in text and "watching" in text, "READY=1 before the model loaded:\n" + text
        efen.send_signal(signal.SIGTERM)
        stopping = sock.recv(4096).decode()
        assert stopping.split("\n")[0] == "STOPPING=1", stopping
        assert efen.wait(90) == 0, "efen watch did not exit 0 after SIGTERM"
    except Exception:
        efen.kill(); print(open(log.name).read()); raise
print("deploy-check: READY=1 after the model loaded, STOPPING=1 on SIGTERM, exit 0")
PY

echo "deploy-check: prometheus config"
command -v promtool >/dev/null || fail "promtool is missing (scripts/system-packages.sh installs prometheus)"
promtool check config config/prometheus.yml >/dev/null || fail "promtool check config config/prometheus.yml"
echo "deploy-check: passed"
