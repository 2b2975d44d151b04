"""Export EFEN to ONNX with its model card, and check ONNX Runtime against PyTorch.

    # the bundled model (trained checkpoint -> models/, with test metrics from ONNX Runtime)
    python -m efen_train.export --checkpoint runs/small/best.pt --out ../models/efen-small.onnx
    # a full-width, untrained graph for benchmarks (git-ignored folder)
    python -m efen_train.export --width 1.0 --input-size 288 384 --out build/efen-w1.onnx

The graph: input `image` float32 [N, 3, H, W] (N, H, W dynamic; H, W multiples of 16),
normalised as x / 255 then (x - mean) / std; output `mask` float32 [N, 1, H, W] holding
probabilities (sigmoid inside the graph). The card is written beside the file
(<stem>.card.json) and also stored in the graph's metadata_props under `model_card`
(without `sha256`, which cannot hash the file that contains it).
"""
import argparse
import hashlib
import json
import os
import warnings

import numpy as np
import onnx
import torch
from torch.utils.flop_counter import FlopCounterMode

from .data import IMAGENET_MEAN, IMAGENET_STD, normalise, split_811, dataset_items
from .model import EFEN, WithSigmoid, count_parameters
from .synthetic import make_example
from .args import train_command

OPSET = 17
PARITY_BOUND = 1e-5   # max |p_onnxruntime - p_torch|


def count_flops(h: int, w: int, **config) -> int:
    """FLOPs (2 x multiply-accumulates of conv, transposed conv and matmul) of one forward
    pass on a 1x3xHxW input of EFEN(**config), counted on the meta device (no memory, no
    weights)."""
    with torch.device("meta"):
        model = EFEN(**config).eval()
        x = torch.empty(1, 3, h, w)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    return int(fc.get_total_flops())


def export_onnx(model: torch.nn.Module, path: str, h: int, w: int) -> None:
    wrapped = WithSigmoid(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (torch.zeros(1, 3, h, w),), path, dynamo=False, opset_version=OPSET,
            input_names=["image"], output_names=["mask"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "mask": {0: "batch", 2: "height", 3: "width"}})
    model.eval()  # the exporter restores the wrapper's mode onto every child
    onnx.checker.check_model(path)


def parity(model: torch.nn.Module, path: str, sizes, optimized: bool = False) -> dict:
    """Max |p_onnxruntime - p_torch| over a batch of two real-looking images per size.

    By default ONNX Runtime runs the graph as exported (basic optimizations only): that checks
    the export. `optimized` adds the CPU provider's layout rewrites (blocked NCHWc kernels),
    which change the order of float sums: a figure of the deployment, not of the export
    (DECISIONS 23)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    model.eval()
    out = {}
    for h, w in sizes:
        x = np.stack([normalise(make_example(9_000 + i, h, w, n_lesions=1)[0]) for i in range(2)])
        with torch.no_grad():
            ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        got = sess.run(["mask"], {"image": x})[0]
        assert got.shape == (2, 1, h, w), got.shape
        out[f"{h}x{w}"] = float(np.abs(got - ref).max())
    return out


def sha256(path: str) -> str:
    hsh = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hsh.update(chunk)
    return hsh.hexdigest()


DSC_GOAL = 0.88   # validation DSC a size must reach to be listed in validated_input_sizes


def describe(config: dict) -> str:
    parts = [f"width multiplier {config['width']}"
             + (f" (at least {config['min_channels']} channels)"
                if config.get("min_channels", 4) != 4 else ""),
             "VGG-19-BN encoder" if config.get("vgg_bn") else "VGG-19 encoder"]
    if config.get("reextraction", True):
        parts.append("feature re-extraction encoder/decoder (D2 skips from E1 only)"
                     + (", /16 bridge" if config.get("bridge") else ""))
    skip = ("positional-encoding + cross-attention skips" if config.get("cross_attention", True)
            else "positional-encoding skips without cross-attention")
    if not config.get("use_pe", True):
        skip = skip.replace("positional-encoding + ", "").replace("positional-encoding ", "")
    elif config.get("pe_ref"):
        skip += f" (positions on the {config['pe_ref'][0]}x{config['pe_ref'][1]} training grid)"
    parts += [skip, f"attention grid >= input/{config['attn_min_stride']}"]
    return f"EFEN ({'; '.join(parts)})"


def build_card(name, file, model, width, size, ck, test_metrics, parity_diffs, by_size=None,
               val_by_size=None):
    args = (ck or {}).get("args", {})
    report = (ck or {}).get("report", {})
    h, w = size
    card = {
        "name": name, "file": file,
        "architecture": describe(model.config),
        "parameters": count_parameters(model),
        "flops_at_input": count_flops(h, w, **model.config),
        "flops_note": "2 x multiply-accumulates of conv, transposed conv and matmul, one image",
        "input": {"name": "image", "layout": "NCHW", "channels": 3, "height": h, "width": w,
                  "color": "RGB", "scale": 255.0, "dynamic_axes": ["batch", "height", "width"],
                  "multiple_of": 16, "resize": "bilinear stretch to height x width"},
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "output": {"name": "mask", "shape": ["batch", 1, "height", "width"],
                   "activation": "sigmoid"},
        "threshold": 0.5,
        "opset": OPSET, "exported_by": "training/efen_train/export.py",
        "parity_max_abs_diff": parity_diffs,
        "parity_note": "ONNX Runtime CPU, basic graph optimizations (the graph as exported)",
    }
    if ck is None:
        card["training_data"] = "none (untrained weights, for benchmarks only)"
        card["intended_use"] = "benchmarks only: untrained weights, their masks mean nothing"
        return card
    ds = args.get("dataset")
    if ds == "synthetic":
        # efen says this wherever the model's results are shown (doctor, run summary, HTML report).
        card["intended_use"] = ("trained only on synthetic data: a demonstration model, "
                                "not for clinical or research conclusions")
    card["training_data"] = (
        f"synthetic lesions (training/efen_train/synthetic.py), {args.get('n_synthetic')} "
        f"images of 160-320 px, data seed {args.get('data_seed')}, split 8:1:1 with seed "
        f"{args.get('split_seed')}" if ds == "synthetic" else f"{ds} at {args.get('data_root')}")
    card["training"] = {
        "optimizer": args.get("optimizer"), "lr": args.get("lr"),
        "batch_size": args.get("batch_size"),
        "loss": "BCE + Dice (eq. 11: squared terms in the denominator, theta = 1)",
        "train_sizes": args.get("train_sizes") or [h],
        "validation_sizes": args.get("val_sizes") or [h],
        "selection": "best validation loss (mean over the validation sizes); test split unused",
        "schedule": args.get("schedule", "plateau"),
        "epochs": report.get("total_epochs", report.get("epochs_run", ck.get("epoch"))),
        "best_epoch": ck.get("epoch"),
        "early_stop_patience": args.get("early_stop"),
        "plateau": {"patience": args.get("plateau_patience"),
                    "factor": args.get("plateau_factor")},
        "augmentation": (f"albumentations: transpose, random resized crop (area "
                         f"{args.get('crop_scale', [0.4, 1.0])}), rotate, elastic, flips, "
                         f"brightness/contrast, hue/saturation, blur, noise, grey-scale "
                         f"p={args.get('gray_prob', 0.0)} (last run)"),
        "threads": args.get("threads"),
        "seconds": report.get("total_train_seconds", report.get("train_seconds",
                                                                ck.get("seconds"))),
        "continued_from": (ck.get("prior") or {}).get("from"),
        # how each run ended: "epochs", "early-stop", or the --max-minutes safety net
        "stopped_by": ((ck.get("prior") or {}).get("stopped_by", [])
                       + [report.get("stopped_by", "?")]),
        "commands": ((ck.get("prior") or {}).get("commands", []) + [train_command(args)]),
    }
    if test_metrics:
        card["test_metrics"] = test_metrics
    if by_size:
        # which sizes to vouch for is a choice, so it is made on the validation split
        card["validated_input_sizes"] = [[int(v) for v in k.split("x")]
                                         for k, m in val_by_size.items() if m["dsc"] >= DSC_GOAL]
        card["validation_metrics_by_size"] = val_by_size
        card["test_metrics_by_size"] = by_size
    return card


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export EFEN to ONNX with a model card")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained checkpoint (best.pt)")
    src.add_argument("--width", type=float, help="export an untrained EFEN of this width")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--name", default=None, help="model name (default: file stem)")
    ap.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                    help="nominal input size (default: the checkpoint's, else 128 128)")
    ap.add_argument("--no-evaluate", action="store_true",
                    help="skip the test-split evaluation with ONNX Runtime")
    ap.add_argument("--sizes", type=int, nargs="+", metavar="S",
                    help="square sizes of test_metrics_by_size (default 128 192 256 320 384)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    ck = None
    if a.checkpoint:
        from .evaluate import load_checkpoint
        model, ck = load_checkpoint(a.checkpoint)
        width = ck["config"]["width"]
        rep = os.path.join(os.path.dirname(a.checkpoint), "report.json")
        if os.path.exists(rep):
            with open(rep) as f:
                ck["report"] = json.load(f)
    else:
        width, model = a.width, EFEN(a.width).eval()
    h, w = a.input_size or (ck["input_size"] if ck else (128, 128))
    name = a.name or os.path.splitext(os.path.basename(a.out))[0]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    export_onnx(model, tmp, h, w)
    diffs = parity(model, tmp, [(h, w), (h + 32, w + 64)])
    deployed = parity(model, tmp, [(h, w), (h + 32, w + 64)], optimized=True)
    print("parity max |onnxruntime - torch|:", diffs, "with all optimizations:", deployed)
    if max(diffs.values()) > PARITY_BOUND:
        raise SystemExit(f"parity check failed (> {PARITY_BOUND})")

    test_metrics = by_size = val_by_size = None
    if ck is not None and not a.no_evaluate:
        from .evaluate import CARD_SIZES, evaluate_items, metrics_by_size, onnx_predictor
        from .metrics import format_summary
        args = ck["args"]
        items = dataset_items(args["dataset"], args.get("data_root"), args["n_synthetic"],
                              args["data_seed"])
        _, val, test = split_811(items, args["split_seed"])
        predict = onnx_predictor(tmp, a.threads)           # one session for every evaluation
        test_metrics = evaluate_items(predict, test, (h, w),
                                      ck["mean"], ck["std"])
        test_metrics["split"] = (f"{args['dataset']} test (8:1:1, split seed "
                                 f"{args['split_seed']}), evaluated with ONNX Runtime at the "
                                 f"original resolution")
        print(format_summary(test_metrics, test_metrics["split"]))
        sizes = [(s, s) for s in (a.sizes or CARD_SIZES)]
        by_size = metrics_by_size(predict, test, sizes, ck["mean"], ck["std"])
        val_by_size = metrics_by_size(predict, val, sizes, ck["mean"], ck["std"])
        for k, m in by_size.items():
            print(f"{k:>9}: test DSC {m['dsc']:.4f}  IoU {m['iou']:.4f}  "
                  f"(validation DSC {val_by_size[k]['dsc']:.4f})")

    card = build_card(name, os.path.basename(a.out), model, width, (h, w), ck, test_metrics,
                      diffs, by_size, val_by_size)
    card["parity_max_abs_diff_all_optimizations"] = deployed
    m = onnx.load(tmp)
    meta = {"model_card": json.dumps(card, ensure_ascii=False), "name": name,
            "input_mean": json.dumps(card["mean"]), "input_std": json.dumps(card["std"]),
            "output_activation": "sigmoid", "threshold": "0.5"}
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "efen_train"
    onnx.save(m, tmp)
    card["sha256"] = sha256(tmp)
    card = {k: card[k] for k in ["name", "file", "sha256"] + [k for k in card
                                                             if k not in ("name", "file",
                                                                          "sha256")]}
    card_path = os.path.splitext(a.out)[0] + ".card.json"
    os.replace(tmp, a.out)
    write_json_atomic(card_path, card)
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes, sha256 {card['sha256']}) "
          f"and {card_path}")
    return card


if __name__ == "__main__":
    main()
