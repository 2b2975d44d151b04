"""Deterministic synthetic lesion/polyp images for tests, samples and the bundled small model.

`make_example(seed, height, width)` always returns the same pair for the same arguments:
  - background: a mucosa-like base colour, low-frequency illumination, vignette, a fine
    band-pass texture, "shadow" distractor blobs (brightness only) and specular highlights;
  - 0 to 3 lesions: smooth irregular star-convex shapes (a radius with a few low harmonics,
    stretched and rotated) with a fuzzy edge, a colour shift (sign and hue random, modest
    amplitude), a dome shading and a coarser, stronger texture than the background.
A model must combine colour and texture (brightness alone is confounded by the shadows), which
keeps the task learnable (DSC >= 0.9 for a small EFEN) without making it a constant.
"""
import numpy as np
from scipy.ndimage import gaussian_filter

LESION_COUNTS = (0, 1, 1, 1, 1, 2, 2, 3)  # P(no lesion) = 1/8


def _smooth_noise(rng, h, w, sigma, channels=1):
    n = rng.standard_normal((h, w, channels)).astype(np.float32)
    n = gaussian_filter(n, sigma=(sigma, sigma, 0), mode="reflect")
    return n / (n.std() + 1e-8)


def _blob(rng, h, w, r_min, r_max):
    """Return (rho, centre) with rho < 1 inside a random smooth irregular shape."""
    s = min(h, w)
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    r0 = rng.uniform(r_min, r_max) * s
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    rot = rng.uniform(0, np.pi)
    stretch = rng.uniform(0.7, 1.3)
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / stretch
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) * stretch
    theta = np.arctan2(v, u)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.22 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rho = np.sqrt(u * u + v * v) / (r0 * radius)
    return rho, (cy, cx)


def make_example(seed: int, height: int, width: int, n_lesions=None):
    """Return (image uint8 (H, W, 3) RGB, mask uint8 (H, W) with values 0/255)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    base = rng.uniform([0.55, 0.25, 0.20], [0.85, 0.50, 0.42]).astype(np.float32)
    illum = 1.0 + 0.18 * _smooth_noise(rng, h, w, sigma=min(h, w) / 6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vy, vx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    r2 = ((yy - vy) / h) ** 2 + ((xx - vx) / w) ** 2
    illum *= (1.0 - rng.uniform(0.4, 1.0) * r2)[..., None]
    bg_tex = _smooth_noise(rng, h, w, sigma=rng.uniform(0.8, 1.5), channels=1)
    img = base[None, None, :] * illum * (1.0 + rng.uniform(0.03, 0.06) * bg_tex)

    # distractors: soft darker/brighter patches that change brightness only
    for _ in range(rng.integers(0, 3)):
        rho, _ = _blob(rng, h, w, 0.08, 0.22)
        soft = np.clip((1.0 - rho) / 0.4 + 0.5, 0, 1)[..., None]
        img *= 1.0 + rng.uniform(-0.25, 0.15) * soft

    mask = np.zeros((h, w), bool)
    n = int(rng.choice(LESION_COUNTS)) if n_lesions is None else n_lesions
    for _ in range(n):
        rho, _ = _blob(rng, h, w, 0.07, 0.22)
        inside = rho < 1.0
        edge = rng.uniform(0.05, 0.25)
        alpha = np.clip((1.0 - rho) / edge + 0.5, 0, 1)[..., None]
        shift = rng.uniform(-1, 1, 3).astype(np.float32)
        shift *= rng.uniform(0.18, 0.30) / (np.linalg.norm(shift) + 1e-6)
        dome = 1.0 + rng.uniform(0.0, 0.15) * np.clip(1.0 - rho ** 2, 0, 1)[..., None]
        tex = _smooth_noise(rng, h, w, sigma=rng.uniform(1.8, 3.0), channels=3)
        tex = 0.6 * tex[..., :1] + 0.4 * tex  # partly luminance, partly chroma
        lesion = img * (1.0 + shift) * dome * (1.0 + rng.uniform(0.08, 0.14) * tex)
        img = img * (1 - alpha) + lesion * alpha
        mask |= inside

    # specular highlights anywhere (they look alike on lesion and background)
    for _ in range(rng.integers(0, 5)):
        rho, _ = _blob(rng, h, w, 0.006, 0.02)
        img += 0.6 * np.clip(1.0 - rho, 0, 1)[..., None] ** 2

    img += rng.uniform(0.005, 0.025) * rng.standard_normal(img.shape).astype(np.float32)
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img, mask.astype(np.uint8) * 255


def example_size(seed: int, lo=(160, 160), hi=(320, 320)):
    """A deterministic (height, width) for item `seed` of a synthetic data set."""
    rng = np.random.default_rng([seed, 7919])
    return int(rng.integers(lo[0], hi[0] + 1)), int(rng.integers(lo[1], hi[1] + 1))
