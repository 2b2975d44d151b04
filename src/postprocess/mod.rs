//! Postprocess: tile outputs → one binary mask at the source image's size.
//!
//! Each tile's map goes through the sigmoid when the model emits logits, then is added to the
//! canvas with its importance weights. When the last tile is in, the weighted mean is cropped to
//! the content, resized back to the source size (bilinear) and thresholded.

use fast_image_resize::Resizer;
use fast_image_resize::images::TypedImage;
use fast_image_resize::pixels::F32;
use image::{GrayImage, Luma};

use crate::model::Activation;
use crate::preprocess::{Plan, Weighting, bilinear};
use serde::{Deserialize, Serialize};

/// The pipeline's `[postprocess]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessConfig {
    /// Probability threshold; the model card's when absent.
    pub threshold: Option<f32>,
    /// Remove connected components of the mask smaller than this many pixels (0: keep all).
    #[serde(default)]
    pub min_component_px: u32,
    /// Keep only the largest connected component.
    #[serde(default)]
    pub largest_component_only: bool,
    /// Fill background enclosed by foreground.
    #[serde(default)]
    pub fill_holes: bool,
}

impl PostprocessConfig {
    /// The mask clean-up these settings ask for.
    pub fn cleanup(&self) -> Cleanup {
        Cleanup {
            min_component_px: self.min_component_px,
            largest_component_only: self.largest_component_only,
            fill_holes: self.fill_holes,
        }
    }

    pub fn problems(&self) -> Vec<String> {
        match self.threshold {
            Some(t) if !(0.0..=1.0).contains(&t) => {
                vec![format!("postprocess.threshold must be within 0..1 (got {t})")]
            }
            _ => Vec::new(),
        }
    }
}

mod components;
mod packed;

pub use components::Cleanup;
pub use packed::{PackedMask, concat_bits};

/// Foreground value in masks written by efen.
pub const FOREGROUND: u8 = 255;

/// The blended probabilities of one case, filled tile by tile.
pub struct Accumulator {
    plan: Plan,
    tile_weights: Vec<f32>,
    sum: Vec<f32>,
    weight: Vec<f32>,
    remaining: usize,
}

impl Accumulator {
    pub fn new(plan: Plan) -> Accumulator {
        Accumulator::with_passes(plan, 1)
    }

    /// An accumulator that waits for `passes` outputs of every tile (test-time mirroring: the
    /// outputs, flipped back, are averaged by the same weighted mean that blends the tiles).
    pub fn with_passes(plan: Plan, passes: usize) -> Accumulator {
        let (w, h) = plan.canvas;
        let tile_weights = weights(plan.tile, plan.weights, plan.sigma_scale);
        let remaining = plan.tiles.len() * passes.max(1);
        Accumulator {
            plan,
            tile_weights,
            sum: vec![0.0; (w * h) as usize],
            weight: vec![0.0; (w * h) as usize],
            remaining,
        }
    }

    /// Adds tile `index`'s output map; true when it was the last one.
    pub fn add(&mut self, index: usize, output: &[f32], activation: Activation) -> bool {
        let (tx, ty) = self.plan.tiles[index];
        let (tw, th) = self.plan.tile;
        let (cw, ch) = self.plan.canvas;
        for y in 0..th.min(ch - ty) {
            let src = (y * tw) as usize;
            let dst = ((ty + y) * cw + tx) as usize;
            for x in 0..tw.min(cw - tx) as usize {
                let v = output[src + x];
                let p = if activation == Activation::Logits { sigmoid(v) } else { v };
                let w = self.tile_weights[src + x];
                self.sum[dst + x] += p * w;
                self.weight[dst + x] += w;
            }
        }
        self.remaining -= 1;
        self.remaining == 0
    }

    /// Counts a tile that produced nothing (its inference failed); true when it was the last.
    pub fn skip(&mut self) -> bool {
        self.remaining -= 1;
        self.remaining == 0
    }

    /// The mask at the source size (weighted mean, crop, resize back, threshold), and the
    /// probability map itself as 16-bit gray when `probabilities` is asked for.
    pub fn finish(self, threshold: f32, probabilities: bool) -> (GrayImage, Option<Probabilities>) {
        let Accumulator { plan, mut sum, weight, .. } = self;
        // The weighted mean, in place: large tiled images hold one canvas-sized buffer, not three.
        for (s, w) in sum.iter_mut().zip(&weight) {
            *s = if *w > 0.0 { *s / w } else { 0.0 };
        }
        drop(weight);
        let (cw, ch) = plan.canvas;
        let (sw, sh) = plan.source;
        let (left, top, width, height) = plan.content;
        let values: Vec<f32> = if (left, top, width, height, cw) == (0, 0, sw, sh, sw) {
            // Tiling at native resolution: the canvas is the image (plus padding below). No resize.
            sum.truncate((sw * sh) as usize);
            sum
        } else {
            let blended: Vec<F32> = sum.into_iter().map(F32::new).collect();
            let canvas = TypedImage::from_pixels(cw, ch, blended).expect("canvas has cw × ch values");
            let mut resized = TypedImage::<F32>::new(sw, sh);
            let options = bilinear().crop(left as f64, top as f64, width as f64, height as f64);
            Resizer::new().resize_typed(&canvas, &mut resized, &options).expect("F32 to F32 resize cannot fail");
            resized.pixels().iter().map(|p| p.0).collect()
        };
        // Straight over the buffer: `from_fn`'s per-pixel (x, y) calls cost more than the threshold.
        let bytes = values.iter().map(|&v| if v >= threshold { FOREGROUND } else { 0 }).collect();
        let mask = GrayImage::from_raw(sw, sh, bytes).expect("one value per pixel");
        let map = probabilities.then(|| {
            let levels = values.iter().map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16).collect();
            Probabilities::from_raw(sw, sh, levels).expect("one value per pixel")
        });
        (mask, map)
    }
}

/// A probability map as 16-bit gray, 0..65535 for 0..1.
pub type Probabilities = image::ImageBuffer<Luma<u16>, Vec<u16>>;

/// Per-pixel weights of one tile. Gaussian weights are scaled so their maximum is 1 and floored
/// at a small positive value, so that every pixel of the canvas gets some weight.
fn weights((w, h): (u32, u32), kind: Weighting, sigma_scale: f32) -> Vec<f32> {
    match kind {
        Weighting::Constant => vec![1.0; (w * h) as usize],
        Weighting::Gaussian => {
            let axis = |n: u32| -> Vec<f32> {
                let sigma = (n as f32 * sigma_scale).max(1e-3);
                let centre = (n as f32 - 1.0) / 2.0;
                (0..n).map(|i| (-((i as f32 - centre).powi(2)) / (2.0 * sigma * sigma)).exp()).collect()
            };
            let (wx, wy) = (axis(w), axis(h));
            let floor = 1e-3;
            wy.iter().flat_map(|a| wx.iter().map(move |b| (a * b).max(floor))).collect()
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::tests::card;
    use crate::preprocess::{Fit, Tiling};

    fn single(source: (u32, u32), model: (u32, u32), map: &[f32], activation: Activation, threshold: f32) -> GrayImage {
        let plan = Plan::new(source.0, source.1, &card(model.0, model.1), Fit::Resize, &Tiling::default());
        let mut acc = Accumulator::new(plan);
        assert!(acc.add(0, map, activation));
        acc.finish(threshold, false).0
    }

    #[test]
    fn probabilities_are_thresholded_at_the_source_size() {
        // Left half foreground in a 4×4 map, mapped to 8×2.
        let map: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 0.9 } else { 0.1 }).collect();
        let mask = single((8, 2), (4, 4), &map, Activation::Sigmoid, 0.5);
        assert_eq!(mask.dimensions(), (8, 2));
        assert_eq!(mask.get_pixel(0, 0).0[0], FOREGROUND);
        assert_eq!(mask.get_pixel(7, 1).0[0], 0);
    }

    #[test]
    fn logits_go_through_the_sigmoid() {
        let map = vec![2.0f32; 4];
        let mask = single((2, 2), (2, 2), &map, Activation::Logits, 0.85);
        assert!(mask.pixels().all(|p| p.0[0] == FOREGROUND), "sigmoid(2) = 0.88 ≥ 0.85");
        let mask = single((2, 2), (2, 2), &map, Activation::Logits, 0.9);
        assert!(mask.pixels().all(|p| p.0[0] == 0));
    }

    #[test]
    fn mirrored_passes_average_in_probability_space() {
        let card = card(4, 4);
        let plan = Plan::new(4, 4, &card, Fit::Resize, &Tiling::default());
        let mut acc = Accumulator::with_passes(plan, 2);
        let left: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        let mut right_flipped_back = left.clone(); // a model that saw the mirror and said the same
        crate::preprocess::Flip { horizontal: true, vertical: false }.apply(&mut right_flipped_back, (4, 4));
        assert!(!acc.add(0, &left, Activation::Sigmoid), "one pass of two");
        assert!(acc.add(0, &right_flipped_back, Activation::Sigmoid));
        let (mask, _) = acc.finish(0.4, false);
        // Every pixel is 0.5 after averaging: all foreground at threshold 0.4, none at 0.6.
        assert!(mask.as_raw().iter().all(|v| *v == FOREGROUND));
    }

    #[test]
    fn letterbox_padding_is_cropped_away() {
        // 8×4 image letterboxed into 4×4: content rows 1..3. Padding rows say foreground.
        let plan = Plan::new(8, 4, &card(4, 4), Fit::Letterbox, &Tiling::default());
        assert_eq!(plan.content, (0, 1, 4, 2));
        let map: Vec<f32> = (0..16).map(|i| if (4..12).contains(&i) { 0.0 } else { 1.0 }).collect();
        let mut acc = Accumulator::new(plan);
        acc.add(0, &map, Activation::Sigmoid);
        assert!(acc.finish(0.5, false).0.pixels().all(|p| p.0[0] == 0));
    }

    #[test]
    fn overlapping_tiles_blend_without_seams() {
        // Two 4-wide tiles on a 6-wide canvas that both say 0.8 blend to 0.8 everywhere, whatever
        // the weights; a tile saying 0.2 pulls the shared columns towards it, never past it.
        let tiling = Tiling { enabled: true, ..Tiling::default() };
        let plan = Plan::new(6, 4, &card(4, 4), Fit::Resize, &tiling);
        assert_eq!(plan.tiles, [(0, 0), (2, 0)]);
        let mut acc = Accumulator::new(plan.clone());
        acc.add(0, &[0.8; 16], Activation::Sigmoid);
        acc.add(1, &[0.8; 16], Activation::Sigmoid);
        assert!(acc.sum.iter().zip(&acc.weight).all(|(s, w)| (s / w - 0.8).abs() < 1e-6));
        let mut acc = Accumulator::new(plan);
        acc.add(0, &[0.8; 16], Activation::Sigmoid);
        acc.add(1, &[0.2; 16], Activation::Sigmoid);
        let row: Vec<f32> = (0..6).map(|x| acc.sum[x] / acc.weight[x]).collect();
        assert!(row.windows(2).all(|p| p[1] <= p[0] + 1e-6), "monotone across the seam: {row:?}");
        assert!((row[0] - 0.8).abs() < 1e-6 && (row[5] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn gaussian_weights_peak_in_the_centre_and_never_vanish() {
        let w = weights((5, 5), Weighting::Gaussian, 0.125);
        assert_eq!(w[12], 1.0);
        assert!(w[0] > 0.0 && w[0] < w[6] && w[6] < w[12]);
    }
}
