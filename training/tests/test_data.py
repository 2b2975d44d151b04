"""Synthetic generator, 8:1:1 split, public-data-set loaders and augmentation."""
import numpy as np
from PIL import Image

from efen_train.data import (SegDataset, cvc_clinicdb_items, dsb2018_items, isic2018_items,
                             split_811, synthetic_items, train_transform)
from efen_train.synthetic import make_example


def test_synthetic_is_deterministic_and_varied():
    a_img, a_mask = make_example(123, 96, 128)
    b_img, b_mask = make_example(123, 96, 128)
    assert a_img.shape == (96, 128, 3) and a_img.dtype == np.uint8
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert set(np.unique(a_mask)) <= {0, 255}
    _, empty = make_example(5, 96, 128, n_lesions=0)
    assert empty.max() == 0
    img, lesion = make_example(5, 96, 128, n_lesions=1)
    frac = (lesion > 0).mean()
    assert 0.005 < frac < 0.5
    # the lesion is not a trivial colour threshold: the colour ranges overlap
    inside, outside = img[lesion > 0].mean(0), img[lesion == 0].mean(0)
    assert np.abs(inside - outside).max() < 80


def test_split_is_8_1_1_and_fixed():
    items = list(range(100))
    tr, va, te = split_811(items, seed=42)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    assert sorted(tr + va + te) == items
    assert split_811(items, seed=42) == (tr, va, te)
    assert split_811(items, seed=1) != (tr, va, te)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_public_loaders_on_their_folder_layouts(tmp_path):
    img = np.full((16, 20, 3), 100, np.uint8)
    m = np.zeros((16, 20), np.uint8)
    m[2:5, 3:7] = 255
    # CVC-ClinicDB: Original/ + "Ground Truth"/, same file names (tif)
    _save(tmp_path / "cvc" / "Original" / "1.tif", img)
    _save(tmp_path / "cvc" / "Ground Truth" / "1.tif", m)
    # ISIC-2018 Task 1: input jpg + *_segmentation.png in sibling folders
    _save(tmp_path / "isic" / "Input" / "ISIC_0000001.jpg", img)
    _save(tmp_path / "isic" / "GroundTruth" / "ISIC_0000001_segmentation.png", m)
    # DSB 2018: stage1_train/<id>/images/<id>.png, masks/*.png merged
    _save(tmp_path / "dsb" / "stage1_train" / "abc" / "images" / "abc.png", img)
    m2 = np.zeros_like(m)
    m2[10:12, 10:12] = 255
    _save(tmp_path / "dsb" / "stage1_train" / "abc" / "masks" / "a.png", m)
    _save(tmp_path / "dsb" / "stage1_train" / "abc" / "masks" / "b.png", m2)
    for loader, root, n_fg in [(cvc_clinicdb_items, "cvc", 12), (isic2018_items, "isic", 12),
                               (dsb2018_items, "dsb", 16)]:
        items = loader(str(tmp_path / root))
        assert len(items) == 1
        image, mask = items[0]()
        assert image.shape == (16, 20, 3) and mask.shape == (16, 20)
        assert int(mask.sum()) == n_fg


def test_augmented_dataset_yields_normalised_tensors():
    ds = SegDataset(synthetic_items(3, seed=1), train_transform(32, 48), cache=True)
    x, y = ds[0]
    assert x.shape == (3, 32, 48) and y.shape == (1, 32, 48)
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    assert -3 < float(x.mean()) < 3
