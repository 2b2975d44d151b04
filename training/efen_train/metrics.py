"""Segmentation metrics of the paper: DSC, IoU, mIoU, precision, recall.

Two aggregations, always labelled:
  - mean_per_image: the metric of each image, averaged over images;
  - pooled: TP/FP/FN/TN summed over every pixel of the split, metric computed once.
Conventions for empty denominators (an image with no lesion and no prediction): DSC, IoU,
precision and recall are 1 when their denominator is 0 (nothing to find, nothing wrongly found).
mIoU is the mean of the foreground IoU and the background IoU.
"""
import numpy as np


def confusion(pred: np.ndarray, gt: np.ndarray):
    pred, gt = pred.astype(bool), gt.astype(bool)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    tn = int(pred.size - tp - fp - fn)
    return tp, fp, fn, tn


def _ratio(num, den):
    return 1.0 if den == 0 else num / den


def scores(tp, fp, fn, tn) -> dict:
    iou = _ratio(tp, tp + fp + fn)
    iou_bg = _ratio(tn, tn + fp + fn)
    return {
        "dsc": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": iou,
        "miou": (iou + iou_bg) / 2.0,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


class MetricAccumulator:
    def __init__(self):
        self.per_image = []
        self.total = np.zeros(4, dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray):
        c = confusion(pred, gt)
        self.per_image.append(scores(*c))
        self.total += np.array(c, dtype=np.int64)

    def summary(self) -> dict:
        keys = ["dsc", "iou", "miou", "precision", "recall"]
        mean = {k: float(np.mean([s[k] for s in self.per_image])) for k in keys}
        return {"n_images": len(self.per_image), "mean_per_image": mean,
                "pooled": {k: float(v) for k, v in scores(*self.total.tolist()).items()}}


def format_summary(summary: dict, title: str = "test") -> str:
    lines = [f"{title}: {summary['n_images']} images",
             f"{'':16}{'DSC':>8}{'IoU':>8}{'mIoU':>8}{'Recall':>8}{'Precision':>10}"]
    for label in ("mean_per_image", "pooled"):
        s = summary[label]
        lines.append(f"{label:16}{s['dsc']:8.4f}{s['iou']:8.4f}{s['miou']:8.4f}"
                     f"{s['recall']:8.4f}{s['precision']:10.4f}")
    return "\n".join(lines)
