"""An fp16 copy of an efen model (ONNX + card), for GPUs: weights and activations in half
precision, input and output still float32, so efen feeds it exactly as it feeds the original.

    python bench/fp16.py models/efen-small.onnx build/efen-small-fp16.onnx [--images samples/synthetic]

fp16 holds values up to 65504. A network whose activations grow past that gives inf, then NaN:
the fp32 model is run on a calibration image and refused when any of its values exceeds that, naming
the largest and where it is (the bundled efen-small reaches about 1.5e10 in its first attention
block, so it stays fp32). The card beside the output says how far the fp16 copy's probabilities
and masks are from the fp32 model's on the calibration images.
"""
import argparse
import glob
import hashlib
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.transformers import float16


FP16_MAX = 65504.0


def calibration(card: dict, folder: str, limit: int) -> np.ndarray:
    """Up to `limit` images of `folder` (or smooth synthetic ones), as the card's input tensors."""
    h, w = card["input"]["height"], card["input"]["width"]
    paths = sorted(p for p in glob.glob(os.path.join(folder or "", "**", "*"), recursive=True)
                   if p.lower().endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"))
                   and "mask" not in os.path.basename(p).lower())[:limit]
    if paths:
        from PIL import Image  # only for calibration from files: a GPU image may lack Pillow
        images = [np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR), np.float32)
                  for p in paths]
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        images = [np.stack([128 + 100 * np.sin((xx + 7 * i) / 9 + c) * np.cos(yy / 13) for c in range(3)], -1)
                  .astype(np.float32) for i in range(limit)]
    x = np.stack(images).transpose(0, 3, 1, 2) / np.float32(card["input"]["scale"])
    mean = np.array(card["mean"], np.float32)[None, :, None, None]
    std = np.array(card["std"], np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def peaks(model: onnx.ModelProto, x: np.ndarray, input_name: str) -> dict:
    """The largest |value| of every float32 node output of `model` on `x`."""
    probe = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v for v in probe.graph.value_info}
    wanted = [o for n in probe.graph.node for o in n.output
              if o in typed and typed[o].type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    probe.graph.output.extend(typed[o] for o in wanted)
    names = [o.name for o in probe.graph.output]
    values = session(probe).run(names, {input_name: x})
    return {name: float(np.abs(v).max()) if v.size else 0.0 for name, v in zip(names, values)}


def convert(model: onnx.ModelProto, x: np.ndarray, input_name: str) -> onnx.ModelProto:
    """The fp16 model, after checking on `x` that no fp32 value of `model` exceeds fp16's range.

    The check is on the fp32 graph, not on the fp16 one run here: ONNX Runtime's CPU provider runs
    nodes that lack an fp16 kernel in fp32, so a model that overflows on a GPU can look finite on
    a CPU. One image is enough to find the peaks (every node output is kept in memory at once)."""
    node, top = max(peaks(model, x[:1], input_name).items(), key=lambda kv: kv[1])
    if top > FP16_MAX:
        raise SystemExit(f"fp16 overflows: this model's fp32 values reach {top:.3g} (at {node}) on a "
                         "calibration image, beyond fp16's 65504; keep it in fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    out = session(half).run(None, {input_name: x})[0]
    if not np.isfinite(out).all():
        raise SystemExit("the fp16 model's output is not finite on the calibration images; keep it in fp32")
    return half


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--images", default="", help="calibration images (default: synthetic)")
    parser.add_argument("--limit", type=int, default=8)
    args = parser.parse_args()

    card_path = os.path.splitext(args.model)[0] + ".card.json"
    card = json.load(open(card_path))
    model = onnx.load(args.model)
    x = calibration(card, args.images, args.limit)
    input_name = card["input"]["name"]
    half = convert(model, x, input_name)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save(half, args.out)

    p32 = session(model).run(None, {input_name: x})[0]
    p16 = session(half).run(None, {input_name: x})[0]
    t = card.get("threshold", 0.5)
    m32, m16 = p32 > t, p16 > t
    both = m32.sum() + m16.sum()
    dice = 2 * (m32 & m16).sum() / both if both else 1.0  # two empty masks agree
    stem = os.path.splitext(os.path.basename(args.out))[0]
    card.update({
        "name": stem,
        "file": os.path.basename(args.out),
        "sha256": hashlib.sha256(open(args.out, "rb").read()).hexdigest(),
        "precision": "fp16 (float32 input and output)",
        "fp16": {
            "from": {"file": os.path.basename(args.model), "sha256": card["sha256"]},
            "calibration_images": int(x.shape[0]),
            "max_abs_prob_diff": float(np.abs(p32 - p16).max()),
            "mask_dice_vs_fp32": float(dice),
            "mask_pixels_equal": float((m32 == m16).mean()),
            "converted_by": "bench/fp16.py (onnxruntime.transformers.float16)",
        },
    })
    json.dump(card, open(os.path.splitext(args.out)[0] + ".card.json", "w"), indent=2)
    print(json.dumps({"out": args.out, **card["fp16"]}))


if __name__ == "__main__":
    main()
