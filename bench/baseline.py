"""The plain Python pipeline that `efen run` is compared against (bench/compare.sh): one image at
a time, Pillow decode, resize to the model card's input size, ONNX Runtime, threshold, resize the
mask back, write mask.png, one SQLite row per image. The math follows src/preprocess.rs and
src/postprocess.rs for the `default` pipeline (fit = "resize", no tiling).

    python bench/baseline.py --out OUT --db OUT/baseline.db [--threads 2] IMAGE_OR_FOLDER...

Less than efen does (so the comparison favours this script): no overlay.png, no result.json, no
run/audit rows, no ground-truth scoring, no claim/retry/failure bookkeeping, no DICOM; a file
that fails stops the script. 8-bit inputs only: Pillow clips 16-bit samples where efen scales them.
"""
import argparse
import hashlib
import io
import json
import os
import sqlite3
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def inputs(paths):
    """Files as given; folders searched recursively, sorted. *_mask.png is ground truth, skipped."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(EXTENSIONS) and not name.endswith("_mask.png"):
                    yield os.path.join(root, name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models", "efen-small.onnx"))
    ap.add_argument("--out", required=True, help="masks go to OUT/<image stem>/mask.png")
    ap.add_argument("--db", required=True, help="SQLite file (created)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (0: one per core)")
    a = ap.parse_args(argv)

    with open(os.path.splitext(a.model)[0] + ".card.json") as f:
        card = json.load(f)
    with open(a.model, "rb") as f:
        model_bytes = f.read()
    if hashlib.sha256(model_bytes).hexdigest() != card["sha256"].lower():  # efen checks it too
        raise SystemExit(f"baseline: {a.model} does not match its card's sha256")
    spec = card["input"]
    size = (spec["width"], spec["height"])
    # x / scale, then (x - mean) / std per channel, in float32 as efen does.
    mean = np.asarray(card["mean"], np.float32)
    std = np.asarray(card["std"], np.float32)
    scale = np.float32(spec["scale"])
    threshold = card["threshold"]

    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    os.makedirs(os.path.dirname(os.path.abspath(a.db)), exist_ok=True)
    db = sqlite3.connect(a.db)
    db.execute("CREATE TABLE IF NOT EXISTS cases (case_id TEXT PRIMARY KEY, source_path TEXT,"
               " source_sha256 TEXT, width INTEGER, height INTEGER, foreground REAL, latency_ms REAL)")
    count, started = 0, time.perf_counter()
    for path in inputs(a.paths):
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            data = f.read()
        sha256 = hashlib.sha256(data).hexdigest()
        # Decode; gray (and RGBA) become RGB, as in src/decode.rs: the model sees three channels.
        image = Image.open(io.BytesIO(data)).convert("RGB")
        width, height = image.size
        # Stretch to the input size with PIL's bilinear (antialiased when shrinking): the filter
        # efen's fast_image_resize Convolution(Bilinear) implements.
        x = np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32)
        x = ((x / scale - mean) / std).transpose(2, 0, 1)[None]
        out = session.run([card["output"]["name"]], {spec["name"]: np.ascontiguousarray(x)})[0][0, 0]
        # "sigmoid": the graph ends in a sigmoid, the output is a probability; "logits": apply it.
        if card["output"]["activation"] == "logits":
            out = 1.0 / (1.0 + np.exp(-out))
        # Probabilities back to the source size (bilinear, float), then threshold (>=).
        prob = np.asarray(Image.fromarray(out.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
        mask = np.where(prob >= threshold, 255, 0).astype(np.uint8)
        case_id = os.path.splitext(os.path.basename(path))[0]
        os.makedirs(os.path.join(a.out, case_id), exist_ok=True)
        # efen writes its PNGs with fast zlib compression too.
        Image.fromarray(mask).save(os.path.join(a.out, case_id, "mask.png"), compress_level=1)
        # Not written (efen does): overlay.png, result.json.
        latency_ms = (time.perf_counter() - t0) * 1000.0
        db.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (case_id, os.path.abspath(path), sha256, width, height, float((mask > 0).mean()), latency_ms))
        db.commit()  # one transaction per case, as efen records each case when it is done
        count += 1
    seconds = time.perf_counter() - started
    db.close()
    print(f"baseline: {count} images in {seconds:.2f} s, {count / max(seconds, 1e-9):.2f} images/s "
          f"(loop only; {a.threads} intra-op threads)")


if __name__ == "__main__":
    main()
