"""Write the committed sample drop samples/synthetic/: 12 synthetic images in assorted formats,
each with its ground truth `{stem}_mask.png` (8-bit, 0/255).

    cd training && python make_samples.py            # -> ../samples/synthetic/

Seeds start at 5_000_000, far from the training set's (0 .. n-1), so none of these images was
seen in training. The output is deterministic.
"""
import argparse
import os
import struct
import zlib

import numpy as np
from PIL import Image

from efen_train.synthetic import make_example

SEED0 = 5_000_000

# (file name, height, width, n_lesions, format note)
SAMPLES = [
    ("case01.png", 192, 256, 1, "RGB PNG"),
    ("case02.png", 240, 320, 2, "RGB PNG"),
    ("case03.jpg", 224, 288, 1, "RGB JPEG, quality 92"),
    ("case04.tif", 200, 240, 1, "RGB TIFF, LZW"),
    ("case05.bmp", 160, 200, 1, "RGB BMP, 24-bit"),
    ("case06_16bit.png", 208, 256, 1, "RGB PNG, 16 bits per channel"),
    ("case 07 – Zürich.png", 256, 304, 1, "RGB PNG, name with spaces, en dash, umlaut"),
    ("case08_gray.png", 192, 240, 1, "8-bit grayscale PNG"),
    ("case09_rgba.png", 224, 272, 1, "RGBA PNG (opaque alpha)"),
    ("case10_empty.png", 176, 224, 0, "RGB PNG, no lesion: empty mask"),
    ("case11_large.png", 320, 400, 3, "RGB PNG, largest"),
    ("case12.png", 272, 336, 2, "RGB PNG"),
]


def write_png16_rgb(path: str, rgb16: np.ndarray) -> None:
    """Minimal PNG writer for 16-bit RGB (Pillow cannot write 16-bit colour PNGs)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def save_image(path: str, img: np.ndarray) -> None:
    name = os.path.basename(path)
    if name.endswith("_16bit.png"):
        write_png16_rgb(path, img.astype(np.uint16) * 257)
    elif name.endswith("_gray.png"):
        Image.fromarray(img).convert("L").save(path, optimize=True)
    elif name.endswith("_rgba.png"):
        Image.fromarray(img).convert("RGBA").save(path, optimize=True)
    elif name.endswith(".jpg"):
        Image.fromarray(img).save(path, quality=92)
    elif name.endswith(".tif"):
        Image.fromarray(img).save(path, compression="tiff_lzw")
    else:
        Image.fromarray(img).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "samples", "synthetic"))
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    total = 0
    for i, (name, h, w, n, _) in enumerate(SAMPLES):
        img, mask = make_example(SEED0 + i, h, w, n_lesions=n)
        path = os.path.join(a.out, name)
        save_image(path, img)
        mask_path = os.path.join(a.out, os.path.splitext(name)[0] + "_mask.png")
        Image.fromarray(mask).save(mask_path, optimize=True)
        total += os.path.getsize(path) + os.path.getsize(mask_path)
        print(f"{name:28s} {w}x{h} lesion pixels {int((mask > 0).sum())}")
    print(f"total {total / 1e6:.2f} MB in {a.out}")


if __name__ == "__main__":
    main()
