"""Evaluate a checkpoint or an ONNX export on a split: DSC, IoU, mIoU, Recall, Precision, both
mean-of-per-image and pooled over all pixels.

Each image is processed as the pipeline does it: resize (bilinear, no letterbox) to the model's
input size, normalise, predict probabilities, resize them back to the original size (bilinear),
threshold, compare with the original mask.

    python -m efen_train.evaluate --checkpoint runs/small/best.pt --dataset synthetic
    python -m efen_train.evaluate --onnx ../models/efen-small.onnx --dataset synthetic
"""
import argparse
import json

import cv2
import numpy as np
import torch

from .data import dataset_items, normalise, split_811
from .metrics import MetricAccumulator, format_summary
from .model import EFEN


def load_checkpoint(path: str):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = EFEN(**ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


def torch_predictor(model):
    model.eval()
    device = next(model.parameters()).device

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(batch).to(device))).cpu().numpy()
    return run


def onnx_predictor(path: str, threads: int = 1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda batch: sess.run(["mask"], {"image": batch})[0]


def to_gray_rgb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def evaluate_items(predict, items, size, mean, std, threshold=0.5, batch=8, gray=False,
                   via=None) -> dict:
    """via = (h', w'): a diagnostic. The image is reduced to `size` as usual, then enlarged to
    via before the model runs, so the model sees only what survives at `size`, but at the pixel
    scale of via (tells lost information from a network that fails at small pixel scales)."""
    acc = MetricAccumulator()
    h, w = size

    def model_input(img):
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        return x if via is None else cv2.resize(x, (via[1], via[0]),
                                                interpolation=cv2.INTER_LINEAR)

    for start in range(0, len(items), batch):
        pairs = [it() for it in items[start:start + batch]]
        if gray:
            pairs = [(to_gray_rgb(img), gt) for img, gt in pairs]
        x = np.stack([normalise(model_input(img), mean, std) for img, _ in pairs])
        probs = predict(x)[:, 0]
        for (img, gt), p in zip(pairs, probs):
            p = cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            acc.add(p > threshold, gt > 0)
    return acc.summary()


CARD_SIZES = (128, 192, 256, 320, 384)   # the square sizes a bundled card is measured at


def metrics_by_size(predict, items, sizes, mean, std, threshold=0.5) -> dict:
    """{"HxW": {"dsc", "iou", "n_images"}} at each (h, w): mean-of-per-image DSC and IoU of
    the model run at that input size (the card's `test_metrics_by_size`)."""
    out = {}
    for h, w in sizes:
        s = evaluate_items(predict, items, (h, w), mean, std, threshold)
        out[f"{h}x{w}"] = {"dsc": s["mean_per_image"]["dsc"], "iou": s["mean_per_image"]["iou"],
                           "n_images": s["n_images"]}
    return out


def add_data_args(ap):
    ap.add_argument("--dataset", default="synthetic", choices=["synthetic", "cvc", "isic", "dsb"])
    ap.add_argument("--data-root", default=None, help="root folder of a public data set")
    ap.add_argument("--n-synthetic", type=int, default=800, help="size of the synthetic set")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set")
    ap.add_argument("--split-seed", type=int, default=42, help="seed of the 8:1:1 split")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--onnx")
    add_data_args(ap)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                    help="model input size (default: the checkpoint's, or 128 128 for ONNX)")
    ap.add_argument("--sizes", type=int, nargs="+", metavar="S",
                    help="also report mean DSC / IoU at each of these square input sizes")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--gray", action="store_true",
                    help="feed grey-scale versions of the images (robustness check)")
    ap.add_argument("--via-size", type=int, nargs=2, metavar=("H", "W"),
                    help="diagnostic: enlarge each image, once reduced to the input size, to "
                         "this size before the model runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the summary to this JSON file")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    if a.checkpoint:
        model, ck = load_checkpoint(a.checkpoint)
        predict, size = torch_predictor(model), a.input_size or ck["input_size"]
        mean, std = ck["mean"], ck["std"]
    else:
        predict, size = onnx_predictor(a.onnx, a.threads), a.input_size or (128, 128)
        from .data import IMAGENET_MEAN as mean, IMAGENET_STD as std
    items = dataset_items(a.dataset, a.data_root, a.n_synthetic, a.data_seed)
    split = dict(zip(("train", "val", "test"), split_811(items, a.split_seed)))[a.split]
    summary = evaluate_items(predict, split, size, mean, std, a.threshold, gray=a.gray,
                             via=a.via_size)
    summary["split"] = (f"{a.dataset} {a.split} (8:1:1, split seed {a.split_seed})"
                        + (", grey-scale inputs" if a.gray else "")
                        + (f", run at {a.via_size[0]}x{a.via_size[1]} after reduction to "
                           f"{size[0]}x{size[1]}" if a.via_size else ""))
    print(format_summary(summary, summary["split"]))
    if a.sizes:
        by_size = metrics_by_size(predict, split, [(s, s) for s in a.sizes], mean, std,
                                  a.threshold)
        for k, m in by_size.items():
            print(f"{k:>9}: DSC {m['dsc']:.4f}  IoU {m['iou']:.4f}  ({m['n_images']} images)")
        summary["by_size"] = by_size
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
