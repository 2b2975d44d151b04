"""Loss of the paper (eq. 10-11): L = L_BCE + L_Dice with smoothing theta = 1.

    L_BCE  = -mean[ g log p + (1 - g) log(1 - p) ]            (over every pixel of the batch)
    L_Dice = 1 - (2 sum(p g) + theta) / (sum(p^2) + sum(g^2) + theta)   (per image, averaged)

p = sigmoid(logits); BCE is computed from the logits for numerical stability.
"""
import torch
import torch.nn.functional as F


def dice_loss(probs: torch.Tensor, target: torch.Tensor, theta: float = 1.0) -> torch.Tensor:
    dims = tuple(range(1, probs.dim()))
    inter = (probs * target).sum(dims)
    # eq. 11: squared terms in the denominator (for a 0/1 mask g^2 = g; p^2 <= p)
    denom = (probs * probs).sum(dims) + (target * target).sum(dims)
    dice = (2.0 * inter + theta) / (denom + theta)
    return 1.0 - dice.mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, theta: float = 1.0) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_loss(torch.sigmoid(logits), target, theta)
