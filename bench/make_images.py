"""Write N gray PNG images (8-bit, default 512x512), each a bright soft blob on a shaded, noisy
background, into a folder: the inputs of bench/compare.sh.

    python bench/make_images.py --out IMAGES                    # 200 images of 512x512
    python bench/make_images.py --out IMAGES -n 20 --size 256x320

Image i is drawn from seed `--seed + i`, so the output is the same on every run. Only NumPy and
Pillow are needed. No ground-truth masks are written: efen would score them and the baseline
would not, and this benchmark compares the same work.
"""
import argparse
import os

import numpy as np
from PIL import Image


def make_image(seed: int, height: int, width: int) -> np.ndarray:
    """One gray uint8 (height, width) image: illumination gradient + noise + a bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gy, gx = rng.uniform(-0.15, 0.15, 2)
    img = 0.35 + gy * (yy / height - 0.5) + gx * (xx / width - 0.5)
    # The blob: a rotated, stretched disc with a soft edge, 7-22 % of the shorter side in radius.
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    r0 = rng.uniform(0.07, 0.22) * min(height, width)
    rot, stretch = rng.uniform(0, np.pi), rng.uniform(0.7, 1.3)
    u = ((xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)) / stretch
    v = (-(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)) * stretch
    rho = np.sqrt(u * u + v * v) / r0
    alpha = np.clip((1.0 - rho) / 0.15 + 0.5, 0.0, 1.0)
    img += alpha * rng.uniform(0.3, 0.45)
    img += rng.normal(0.0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write the images into (created)")
    ap.add_argument("-n", "--count", type=int, default=200)
    ap.add_argument("--size", default="512x512", help="WIDTHxHEIGHT (default 512x512)")
    ap.add_argument("--seed", type=int, default=7_000_000)
    a = ap.parse_args(argv)
    width, height = (int(v) for v in a.size.lower().split("x"))
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.count):
        img = make_image(a.seed + i, height, width)
        Image.fromarray(img).save(os.path.join(a.out, f"img{i:05d}.png"))
    print(f"make_images: {a.count} gray {width}x{height} PNG images in {a.out}")


if __name__ == "__main__":
    main()
