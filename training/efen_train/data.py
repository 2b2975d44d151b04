"""Data sets, the fixed 8:1:1 split and the on-the-fly augmentation.

An *item* is a zero-argument callable returning (image uint8 (H, W, 3) RGB, mask uint8 (H, W)
with 0/1 values) at the item's native resolution. Loaders for the public data sets only list
files; reading happens when the item is called.
"""
import glob
import os
from functools import partial

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from .synthetic import example_size, make_example

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_rgb(path: str) -> np.ndarray:
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I"):  # 16-bit grey: keep the top 8 bits
        a = np.asarray(im, dtype=np.uint32) >> 8
        return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def read_mask(path: str) -> np.ndarray:
    return (np.asarray(Image.open(path).convert("L")) > 127).astype(np.uint8)


def _load_pair(image_path, mask_paths):
    mask = np.zeros(0)
    for p in mask_paths:  # several masks (DSB nuclei) are merged with a logical or
        m = read_mask(p)
        mask = m if mask.size == 0 else np.maximum(mask, m)
    return read_rgb(image_path), mask


def _synthetic_item(seed):
    h, w = example_size(seed)
    img, mask = make_example(seed, h, w)
    return img, (mask > 0).astype(np.uint8)


def synthetic_items(n: int, seed: int = 0):
    """n synthetic examples; item i is generated from seed (seed * 1_000_003 + i)."""
    return [partial(_synthetic_item, seed * 1_000_003 + i) for i in range(n)]


def cvc_clinicdb_items(root: str):
    """CVC-ClinicDB: root/Original/<name> with root/Ground Truth/<name> (same file name)."""
    out = []
    for p in sorted(os.listdir(os.path.join(root, "Original"))):
        if p.lower().endswith(IMAGE_EXTS):
            m = os.path.join(root, "Ground Truth", p)
            if not os.path.exists(m):
                raise FileNotFoundError(f"no ground truth for {p}: expected {m}")
            out.append(partial(_load_pair, os.path.join(root, "Original", p), [m]))
    return out


def isic2018_items(root: str):
    """ISIC-2018 Task 1: input ISIC_xxx.jpg and mask ISIC_xxx_segmentation.png anywhere under
    root (the official archives unpack to two sibling folders: point root at their parent)."""
    files = glob.glob(os.path.join(root, "**", "*"), recursive=True)
    masks = {os.path.basename(f)[: -len("_segmentation.png")]: f
             for f in files if f.endswith("_segmentation.png")}
    out = []
    for f in sorted(files):
        stem, ext = os.path.splitext(os.path.basename(f))
        if ext.lower() in (".jpg", ".jpeg") and stem in masks:
            out.append(partial(_load_pair, f, [masks[stem]]))
    return out


def dsb2018_items(root: str):
    """2018 Data Science Bowl: root/stage1_train/<id>/images/<id>.png + masks/*.png (merged)."""
    base = os.path.join(root, "stage1_train") if os.path.isdir(
        os.path.join(root, "stage1_train")) else root
    out = []
    for case in sorted(os.listdir(base)):
        imgs = sorted(glob.glob(os.path.join(base, case, "images", "*.png")))
        masks = sorted(glob.glob(os.path.join(base, case, "masks", "*.png")))
        if imgs and masks:
            out.append(partial(_load_pair, imgs[0], masks))
    return out


def dataset_items(name: str, root: str = None, n_synthetic: int = 800, seed: int = 0):
    if name == "synthetic":
        return synthetic_items(n_synthetic, seed)
    if root is None:
        raise ValueError(f"--data-root is required for data set {name}")
    loaders = {"cvc": cvc_clinicdb_items, "isic": isic2018_items, "dsb": dsb2018_items}
    if name not in loaders:
        raise ValueError(f"unknown data set {name}: use synthetic, cvc, isic or dsb")
    items = loaders[name](root)
    if not items:
        raise ValueError(f"no image/mask pairs found under {root} for data set {name}")
    return items


def split_811(items, seed: int = 42):
    """Fixed-seed 8:1:1 split into (train, val, test)."""
    idx = np.random.default_rng(seed).permutation(len(items))
    n_tr, n_va = int(round(0.8 * len(items))), int(round(0.1 * len(items)))
    pick = lambda ids: [items[i] for i in ids]  # noqa: E731
    return pick(idx[:n_tr]), pick(idx[n_tr:n_tr + n_va]), pick(idx[n_tr + n_va:])


def train_transform(h: int, w: int, crop_scale=(0.4, 1.0), gray_prob=0.0) -> A.Compose:
    """Crops, rotations, transpose, elastic, flips, brightness/contrast/colour, blur, noise;
    optionally grey-scale conversion (3 equal channels, as a pipeline feeds a grey image)."""
    return A.Compose([
        A.Transpose(p=0.5),  # before the crop, so the output is h x w even when h != w
        A.RandomResizedCrop(size=(h, w), scale=tuple(crop_scale), ratio=(0.75, 1.333)),
        A.Rotate(limit=45, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.ElasticTransform(alpha=30, sigma=6, border_mode=cv2.BORDER_REFLECT_101, p=0.2),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomBrightnessContrast(0.15, 0.15, p=0.5),
        A.HueSaturationValue(8, 12, 8, p=0.3),
        A.GaussianBlur(blur_limit=(3, 5), p=0.15),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.ToGray(num_output_channels=3, p=gray_prob),
    ])


def eval_transform(h: int, w: int) -> A.Compose:
    return A.Compose([A.Resize(h, w, interpolation=cv2.INTER_LINEAR)])


def normalise(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W): x / 255, then (x - mean) / std."""
    x = img.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class SegDataset(torch.utils.data.Dataset):
    """Items -> (normalised image tensor, mask tensor (1, H, W) float 0/1); optional cache of
    the decoded originals (the synthetic set is generated once, augmented every epoch).

    `transform` is one albumentations transform, or a function size -> transform for
    multi-scale batches: the index is then (i, size), as SizedBatches yields it."""

    def __init__(self, items, transform, cache: bool = False):
        self.items, self.transform, self.cache = items, transform, {} if cache else None
        self._by_size = {}

    def __len__(self):
        return len(self.items)

    def raw(self, i):
        if self.cache is None:
            return self.items[i]()
        if i not in self.cache:
            self.cache[i] = self.items[i]()
        return self.cache[i]

    def _transform(self, size):
        if size is None:
            return self.transform
        if size not in self._by_size:
            self._by_size[size] = self.transform(size)
        return self._by_size[size]

    def __getitem__(self, index):
        i, size = index if isinstance(index, tuple) else (index, None)
        img, mask = self.raw(i)
        out = self._transform(size)(image=img, mask=mask)
        return (torch.from_numpy(normalise(out["image"])),
                torch.from_numpy(out["mask"].astype(np.float32))[None])


class SizedBatches(torch.utils.data.Sampler):
    """Batch sampler for multi-scale training: a fresh permutation every epoch, each batch
    drawn at one size (a square side) chosen at random; seeded, so a run is reproducible."""

    def __init__(self, n: int, batch_size: int, sizes, seed: int = 0):
        self.n, self.batch_size, self.sizes = n, batch_size, list(sizes)
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.n // self.batch_size                 # drop_last

    def __iter__(self):
        perm = self.rng.permutation(self.n)
        for b in range(len(self)):
            size = int(self.sizes[self.rng.integers(len(self.sizes))])
            yield [(int(i), size) for i in perm[b * self.batch_size:(b + 1) * self.batch_size]]
