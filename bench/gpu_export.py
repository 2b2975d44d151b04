"""An untrained EFEN graph of any width, exported for speed benchmarks (scripts/gpu-bench.sh).

    python bench/gpu_export.py --width 1.0 --size 288 384 --out build/gpu/efen-w1.onnx

Needs only PyTorch and onnx (not the training data stack), so it runs on a GPU machine's stock
image. The card is the bundled model's with this graph's name, size, parameters and checksum,
and says the weights are untrained: efen's masks from it mean nothing, its speed is real.
"""
import argparse
import hashlib
import json
import os
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "training"))
from efen_train.model import EFEN, WithSigmoid, count_parameters  # noqa: E402

BUNDLED_CARD = os.path.join(HERE, "..", "models", "efen-small.card.json")
OPSET = 17


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, nargs=2, default=[288, 384], metavar=("H", "W"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    h, w = args.size

    torch.manual_seed(0)
    net = EFEN(args.width).eval()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithSigmoid(net).eval(), (torch.zeros(1, 3, h, w),), args.out, dynamo=False,
            opset_version=OPSET, input_names=["image"], output_names=["mask"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "mask": {0: "batch", 2: "height", 3: "width"}})

    card = json.load(open(BUNDLED_CARD))
    for key in ("training", "test_metrics", "parity_max_abs_diff", "flops_at_input", "training_data",
                "validated_input_sizes", "test_metrics_by_size"):
        card.pop(key, None)
    stem = os.path.splitext(os.path.basename(args.out))[0]
    card.update({
        "name": stem,
        "file": os.path.basename(args.out),
        "sha256": hashlib.sha256(open(args.out, "rb").read()).hexdigest(),
        "architecture": f"EFEN (width multiplier {args.width}), untrained",
        "parameters": count_parameters(net),
        "training_data": "none (untrained weights, for benchmarks only)",
        "intended_use": "benchmarks only: untrained weights, their masks mean nothing",
        "exported_by": "bench/gpu_export.py",
    })
    card["input"].update({"height": h, "width": w})
    json.dump(card, open(os.path.splitext(args.out)[0] + ".card.json", "w"), indent=2)
    print(f"wrote {args.out} ({count_parameters(net):,} parameters, {h}x{w})")


if __name__ == "__main__":
    main()
