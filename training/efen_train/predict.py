"""The Python path: one image -> one binary mask, exactly as the model card (and the Rust
pipeline's default `resize` fit) describe it.

    decode   -> 8-bit RGB: 16-bit samples scaled to 8 bits with rounding (round(v * 255 / 65535),
                as the Rust `image` crate does), RGBA drops alpha, grey is replicated to 3 channels
    resize   -> PIL bilinear (antialiased when shrinking) stretch to the card's height x width
    normalise-> (x / scale - mean) / std per channel, CHW float32, batch of 1
    infer    -> ONNX Runtime; the graph ends with the sigmoid (card "activation": "sigmoid")
    resize   -> the float probability map back to the source size, PIL bilinear on a mode "F" image
    threshold-> foreground where p >= card threshold; mask written as 0 / 255, 8-bit grey

    python -m efen_train.predict IMAGE --out MASK.png [--model ../models/efen-small.onnx]

tests/test_rust_parity.py compares this path with the Rust binary's `mask.png`.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image

DEFAULT_MODEL = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "models", "efen-small.onnx"))
FOREGROUND = 255


def card_path(model_path: str) -> str:
    """`name.onnx` -> `name.card.json` beside it (the Rust side's convention)."""
    base = model_path[:-len(".onnx")] if model_path.endswith(".onnx") else model_path
    return base + ".card.json"


def load_card(model_path: str) -> dict:
    with open(card_path(model_path), encoding="utf-8") as f:
        return json.load(f)


def _to_u8(a: np.ndarray) -> np.ndarray:
    """16-bit samples -> 8 bits with rounding: (v + 128) // 257 == round(v * 255 / 65535)."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def read_rgb(path: str) -> np.ndarray:
    """Decode an image to uint8 (H, W, 3) RGB the way the Rust decoder does."""
    im = Image.open(path)
    # The raw layout is only known before load() (which clears `tile`).
    rawmode = im.tile[0][-1] if getattr(im, "tile", None) else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):      # 16-bit grey
        a = np.asarray(im)
        return np.repeat(_to_u8(a)[..., None], 3, axis=2)
    if isinstance(rawmode, str) and "16" in rawmode:
        # 16-bit colour: Pillow keeps only the high byte (v >> 8); read the full samples so
        # the rounding matches the Rust side.
        import cv2
        a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if a is not None and a.dtype == np.uint16:
            a = a[..., :3][..., ::-1] if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
            return np.ascontiguousarray(_to_u8(a))
    return np.asarray(im.convert("RGB"))


def preprocess(rgb: np.ndarray, card: dict) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, 3, h, w) at the card's input size."""
    h, w = card["input"]["height"], card["input"]["width"]
    resized = np.asarray(Image.fromarray(rgb, "RGB").resize((w, h), Image.BILINEAR))
    x = resized.astype(np.float32) / np.float32(card["input"].get("scale", 255.0))
    x = (x - np.asarray(card["mean"], np.float32)) / np.asarray(card["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def postprocess(prob: np.ndarray, size, threshold: float):
    """Model-size probability map -> (probabilities at the source size, uint8 0/255 mask).

    `size` is (width, height) of the source image."""
    back = Image.fromarray(np.ascontiguousarray(prob, dtype=np.float32), "F")
    back = np.asarray(back.resize(tuple(size), Image.BILINEAR), dtype=np.float32)
    mask = np.where(back >= np.float32(threshold), FOREGROUND, 0).astype(np.uint8)
    return back, mask


class Predictor:
    def __init__(self, model_path: str = DEFAULT_MODEL, threads: int = 1):
        import onnxruntime as ort
        self.card = load_card(model_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        self.input_name = self.card["input"]["name"]
        self.output_name = self.card["output"]["name"]
        activation = self.card["output"].get("activation", "sigmoid")
        if activation not in ("sigmoid", "logits"):
            raise ValueError(f"unknown output activation {activation!r} on the card")
        self.logits = activation == "logits"

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """Probability map at the model's input size, float32 (h, w)."""
        out = self.session.run([self.output_name], {self.input_name: preprocess(rgb, self.card)})
        p = out[0][0, 0].astype(np.float32)
        if self.logits:
            p = (1.0 / (1.0 + np.exp(-p))).astype(np.float32)
        return p

    def predict(self, rgb: np.ndarray, threshold: float = None):
        """uint8 (H, W, 3) RGB -> (probabilities (H, W) float32, mask (H, W) uint8 0/255)."""
        t = self.card["threshold"] if threshold is None else threshold
        return postprocess(self.probabilities(rgb), (rgb.shape[1], rgb.shape[0]), t)

    def predict_file(self, path: str, threshold: float = None):
        return self.predict(read_rgb(path), threshold)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", help="PNG, JPEG, TIFF or BMP; 8 or 16 bits; grey, RGB or RGBA")
    ap.add_argument("--out", required=True, help="mask to write (PNG, 0 / 255)")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="ONNX model with its .card.json beside it (default: the bundled one)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="probability threshold (default: the card's)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    predictor = Predictor(a.model, a.threads)
    _, mask = predictor.predict_file(a.image, a.threshold)
    Image.fromarray(mask, "L").save(a.out)
    fg = float((mask > 0).mean())
    print(f"{a.image}: {mask.shape[1]}x{mask.shape[0]}, foreground {fg:.4f} -> {a.out}")
    return mask


if __name__ == "__main__":
    main()
