"""First C-STORE to SEG in the PACS: a CT series sent by dcmtk's storescu to `efen watch
--listen`, whose SEG efen sends on to an Orthanc started here. With efen's default settings (the
node's quiet time among them) unless EFEN_* variables in the environment say otherwise; the
pipeline is the default one with a SEG frame for every slice, so that a SEG always goes out.

Prints one JSON object per repeat: slices, the time storescu took, and the time from the first
C-STORE to the SEG stored in Orthanc.

Usage: bench/node_roundtrip.py [--slices 40] [--size 128] [--repeats 1]
Needs $EFEN_BIN (scripts/setup.sh), dcmtk's storescu and Debian's orthanc (scripts/system-packages.sh),
and the venv's pydicom (scripts/series-fixtures.sh).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from series import ct_slice  # noqa: E402  (the same CT the series benchmark writes)

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=120.0, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every)
    sys.exit(f"node_roundtrip: timed out waiting for {what}")


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def orthanc_segs(http_port):
    body = json.dumps({"Level": "Instance", "Query": {"Modality": "SEG"}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/tools/find", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)
    except OSError:
        return []


def one_round(args, work):
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    source = work / "series"
    source.mkdir()
    files = []
    for k in range(args.slices):
        ds = ct_slice(k, args.slices, args.size, series, study, frame)
        path = source / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))

    http_port, dicom_port, efen_port = free_port(), free_port(), free_port()
    config = {"Name": "bench", "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC",
              "StorageDirectory": str(work / "orthanc/storage"), "IndexDirectory": str(work / "orthanc/index"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": False}
    (work / "orthanc.json").write_text(json.dumps(config))
    logs = open(work / "logs.txt", "w")
    orthanc = subprocess.Popen(["/usr/sbin/Orthanc", str(work / "orthanc.json")], stdout=logs, stderr=logs,
                               env={**os.environ, "TCP_NODELAY": "1"})
    env = {**os.environ, "EFEN_CONFIG": str(REPO / "config/default.toml"),
           "EFEN_PATHS__STATE_DIR": str(work / "state"), "EFEN_PATHS__OUT_DIR": str(work / "out"),
           "DATABASE_URL": f"sqlite://{work / 'state/efen.db'}",
           "EFEN_NODE__LISTEN": f"127.0.0.1:{efen_port}",
           "EFEN_NODE__DESTINATIONS": json.dumps([f"ORTHANC@127.0.0.1:{dicom_port}"])}
    # The bundled model on the default pipeline, with a SEG frame for every slice: an empty mask
    # would otherwise send no SEG, and there would be nothing to wait for.
    pipeline = work / "bench.toml"
    pipeline.write_text(f'name = "bench"\nmodel = "{REPO / "models/efen-small.onnx"}"\n[dicom.seg]\nwrite_empty = true\n')
    env["EFEN_PATHS__DEFAULT_PIPELINE"] = str(pipeline)
    (work / "drop").mkdir()
    efen = subprocess.Popen([os.environ["EFEN_BIN"], "watch", str(work / "drop")], stdout=logs, stderr=logs,
                            env=env)
    try:
        wait_for("Orthanc", lambda: listening(http_port))
        wait_for("efen's DICOM node", lambda: listening(efen_port))
        started = time.monotonic()
        sent = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "EFEN", "127.0.0.1", str(efen_port), *files],
                              capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"})
        if sent.returncode != 0:
            sys.exit(f"node_roundtrip: storescu failed: {sent.stderr}")
        stored = time.monotonic()
        arrived = wait_for("the SEG in Orthanc", lambda: orthanc_segs(http_port), every=0.05)
        return {"slices": args.slices, "size": args.size, "send_s": round(stored - started, 2),
                "first_c_store_to_seg_in_orthanc_s": round(arrived - started, 2),
                "node_series_quiet_ms": os.environ.get("EFEN_NODE__SERIES_QUIET_MS", "default")}
    finally:
        for process in (efen, orthanc):
            process.terminate()
            process.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(one_round(args, Path(work))), flush=True)


if __name__ == "__main__":
    main()
