//! Evaluate: pure functions of a predicted and a ground-truth mask.
//!
//! Definitions (the paper's eq. 12-13): DSC = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN),
//! mIoU = mean of the foreground IoU and the background IoU TN / (TN + FP + FN),
//! precision = TP / (TP + FP), recall = TP / (TP + FN).
//!
//! Empty masks: a ratio whose denominator is 0 has nothing to get wrong, so it is 1 when both
//! masks agree there and 0 otherwise. Empty prediction vs empty ground truth: DSC = IoU = 1,
//! precision = recall = 1. Empty prediction vs a lesion: DSC = IoU = recall = 0, precision = 0.

use image::GrayImage;
use serde::{Deserialize, Serialize};

/// Pixel counts of one comparison (or of many, added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

/// The paper's columns for one case, or pooled over many.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub dsc: f64,
    pub iou: f64,
    pub miou: f64,
    pub precision: f64,
    pub recall: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("ground truth is {gt_w}×{gt_h} but the image is {w}×{h}")]
pub struct SizeMismatch {
    pub w: u32,
    pub h: u32,
    pub gt_w: u32,
    pub gt_h: u32,
}

/// Counts agreement between two masks of the same size; a pixel is foreground when non-zero.
pub fn confusion(predicted: &GrayImage, truth: &GrayImage) -> Result<Confusion, SizeMismatch> {
    if predicted.dimensions() != truth.dimensions() {
        let (w, h) = predicted.dimensions();
        let (gt_w, gt_h) = truth.dimensions();
        return Err(SizeMismatch { w, h, gt_w, gt_h });
    }
    let mut counts = Confusion::default();
    for (p, t) in predicted.as_raw().iter().zip(truth.as_raw()) {
        match (*p > 0, *t > 0) {
            (true, true) => counts.tp += 1,
            (true, false) => counts.fp += 1,
            (false, true) => counts.fn_ += 1,
            (false, false) => counts.tn += 1,
        }
    }
    Ok(counts)
}

impl std::ops::Add for Confusion {
    type Output = Confusion;
    fn add(self, o: Confusion) -> Confusion {
        Confusion { tp: self.tp + o.tp, fp: self.fp + o.fp, fn_: self.fn_ + o.fn_, tn: self.tn + o.tn }
    }
}

impl Confusion {
    pub fn scores(&self) -> Scores {
        let (tp, fp, fn_, tn) = (self.tp as f64, self.fp as f64, self.fn_ as f64, self.tn as f64);
        let iou = ratio(tp, tp + fp + fn_);
        let background_iou = ratio(tn, tn + fp + fn_);
        Scores {
            dsc: ratio(2.0 * tp, 2.0 * tp + fp + fn_),
            iou,
            miou: (iou + background_iou) / 2.0,
            // Nothing predicted: perfect only if there was nothing to find.
            precision: if tp + fp == 0.0 { ratio(0.0, fn_) } else { tp / (tp + fp) },
            // Nothing to find: perfect only if nothing was predicted.
            recall: if tp + fn_ == 0.0 { ratio(0.0, fp) } else { tp / (tp + fn_) },
        }
    }
}

/// `num / den`, with 0/0 = 1 (the masks agree on an empty set).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 1.0 } else { num / den }
}

/// Summary over cases: the mean of per-case scores and the scores of the pooled pixel counts.
/// The paper's tables mix the two; efen always reports both, labelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cases: usize,
    pub mean_per_case: Scores,
    pub pooled: Scores,
}

pub fn summarize(counts: &[Confusion]) -> Option<Summary> {
    if counts.is_empty() {
        return None;
    }
    let n = counts.len() as f64;
    let per_case: Vec<Scores> = counts.iter().map(Confusion::scores).collect();
    let mean = |f: fn(&Scores) -> f64| per_case.iter().map(f).sum::<f64>() / n;
    let pooled = counts.iter().copied().fold(Confusion::default(), |a, b| a + b).scores();
    Some(Summary {
        cases: counts.len(),
        mean_per_case: Scores {
            dsc: mean(|s| s.dsc),
            iou: mean(|s| s.iou),
            miou: mean(|s| s.miou),
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
        },
        pooled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(w: u32, h: u32, on: &[(u32, u32)]) -> GrayImage {
        let mut m = GrayImage::new(w, h);
        for &(x, y) in on {
            m.put_pixel(x, y, image::Luma([255]));
        }
        m
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_case() {
        // 4×1: predicted {0,1,2}, truth {1,2,3} → TP 2, FP 1, FN 1, TN 0.
        let c = confusion(&mask(4, 1, &[(0, 0), (1, 0), (2, 0)]), &mask(4, 1, &[(1, 0), (2, 0), (3, 0)])).unwrap();
        assert_eq!(c, Confusion { tp: 2, fp: 1, fn_: 1, tn: 0 });
        let s = c.scores();
        assert!(close(s.dsc, 4.0 / 6.0));
        assert!(close(s.iou, 0.5));
        assert!(close(s.miou, 0.25), "background IoU is 0/2 = 0");
        assert!(close(s.precision, 2.0 / 3.0));
        assert!(close(s.recall, 2.0 / 3.0));
    }

    #[test]
    fn miou_averages_foreground_and_background() {
        // 10 pixels: TP 1, FP 1, FN 0, TN 8 → IoU 1/2, background IoU 8/9.
        let c = Confusion { tp: 1, fp: 1, fn_: 0, tn: 8 };
        assert!(close(c.scores().miou, (0.5 + 8.0 / 9.0) / 2.0));
        assert!(close(c.scores().precision, 0.5));
        assert!(close(c.scores().recall, 1.0));
    }

    #[test]
    fn empty_versus_empty_is_perfect() {
        let s = confusion(&mask(3, 3, &[]), &mask(3, 3, &[])).unwrap().scores();
        assert_eq!((s.dsc, s.iou, s.miou, s.precision, s.recall), (1.0, 1.0, 1.0, 1.0, 1.0));
    }

    #[test]
    fn missing_a_lesion_and_hallucinating_one_score_zero() {
        let missed = confusion(&mask(3, 3, &[]), &mask(3, 3, &[(1, 1)])).unwrap().scores();
        assert_eq!((missed.dsc, missed.iou, missed.precision, missed.recall), (0.0, 0.0, 0.0, 0.0));
        let invented = confusion(&mask(3, 3, &[(1, 1)]), &mask(3, 3, &[])).unwrap().scores();
        assert_eq!((invented.dsc, invented.iou, invented.precision, invented.recall), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn different_sizes_are_refused() {
        let err = confusion(&mask(3, 3, &[]), &mask(4, 3, &[])).unwrap_err();
        assert_eq!(err.to_string(), "ground truth is 4×3 but the image is 3×3");
    }

    #[test]
    fn summary_gives_mean_and_pooled_separately() {
        // Case A: perfect on 1 pixel. Case B: TP 1, FP 3 (DSC 2/5).
        let a = Confusion { tp: 1, fp: 0, fn_: 0, tn: 3 };
        let b = Confusion { tp: 1, fp: 3, fn_: 0, tn: 0 };
        let s = summarize(&[a, b]).unwrap();
        assert!(close(s.mean_per_case.dsc, (1.0 + 0.4) / 2.0));
        assert!(close(s.pooled.dsc, 4.0 / 7.0), "pooled TP 2, FP 3");
        assert!(close(s.pooled.precision, 2.0 / 5.0));
        assert!(summarize(&[]).is_none());
    }
}
