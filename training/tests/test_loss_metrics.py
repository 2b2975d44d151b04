"""Loss (eq. 10-11) and metrics on hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from efen_train.losses import bce_dice_loss, dice_loss
from efen_train.metrics import MetricAccumulator, confusion, scores


def test_loss_half_probability_one_positive():
    logits = torch.zeros(1, 1, 2, 2)                       # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # BCE = ln 2; Dice (eq. 11, squared terms) = (2*0.5 + 1) / (4*0.25 + 1 + 1) = 2/3
    assert float(bce_dice_loss(logits, target)) == pytest.approx(math.log(2) + 1 / 3, abs=1e-6)


def test_loss_perfect_prediction_is_zero_even_for_empty_masks():
    target = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    logits = (target * 2 - 1) * 30
    assert float(bce_dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)


def test_dice_is_averaged_per_image_with_squared_denominator_and_theta_one():
    probs = torch.full((2, 1, 2, 2), 0.5)
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1
    # sum p^2 = 4 * 0.25 = 1 per image (the plain sum p would be 2)
    # image 0: (1 + 1) / (1 + 1 + 1) = 2/3; image 1: (0 + 1) / (1 + 0 + 1) = 1/2
    assert float(dice_loss(probs, target)) == pytest.approx(1 - (2 / 3 + 1 / 2) / 2, abs=1e-6)
    # theta = 0: image 0: 1 / 2, image 1: 0 / 1
    assert float(dice_loss(probs, target, theta=0.0)) == pytest.approx(1 - (1 / 2) / 2, abs=1e-6)
    # a soft target: g^2 differs from g, and eq. 11 squares it too
    soft = torch.full((1, 1, 1, 2), 0.5)
    p = torch.tensor([[[[1.0, 0.0]]]])
    # (2 * 0.5 + 1) / (1 + 0.5 + 1) = 0.8
    assert float(dice_loss(p, soft)) == pytest.approx(0.2, abs=1e-6)


def test_metrics_hand_computed():
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0]], bool)
    assert confusion(pred, gt) == (1, 1, 1, 1)
    s = scores(1, 1, 1, 1)
    assert s["dsc"] == pytest.approx(0.5)
    assert s["iou"] == pytest.approx(1 / 3)
    assert s["miou"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)


def test_metrics_mean_versus_pooled_and_empty_case():
    acc = MetricAccumulator()
    acc.add(np.zeros((2, 2), bool), np.zeros((2, 2), bool))     # empty vs empty: all 1
    acc.add(np.array([[1, 1], [1, 1]], bool), np.array([[1, 0], [0, 0]], bool))
    out = acc.summary()
    assert out["n_images"] == 2
    assert out["mean_per_image"]["dsc"] == pytest.approx((1 + 2 / 5) / 2)
    assert out["pooled"]["dsc"] == pytest.approx(2 / 5)          # TP 1, FP 3, FN 0
    assert out["pooled"]["precision"] == pytest.approx(1 / 4)
    assert out["mean_per_image"]["recall"] == pytest.approx(1.0)
