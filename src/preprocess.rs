//! Preprocess: an RGB image → model-input tiles (CHW, `f32`, mean/std normalized).
//!
//! Every case is a *canvas* covered by one or more tiles of the model's input size:
//! - `resize` and `letterbox`: the image is scaled onto a canvas of exactly the input size (one
//!   tile); letterbox keeps the aspect ratio and pads with the mean colour (0 after normalization);
//! - tiling (`tile = true`, for images larger than the input): the canvas is the image at its own
//!   resolution, covered by overlapping tiles whose outputs postprocess blends with importance
//!   weights, as nnU-Net does.
//!
//! Tiles are cut one at a time ([`Canvas::tile`]), so memory follows the tiles in flight, not the
//! number of tiles.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::model::ModelCard;

/// The pipeline's `[preprocess]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// `resize` (stretch) or `letterbox` (keep aspect ratio, pad): for every image, or with tiling
    /// for those that fit inside one tile.
    #[serde(default)]
    pub fit: Fit,
    /// Tiling of images larger than the model input, blended with importance weights.
    #[serde(default)]
    pub tiling: Tiling,
    /// Model input (and tile) size `[height, width]` instead of the card's, for models with
    /// dynamic height and width.
    pub input_size: Option<[u32; 2]>,
    /// Test-time mirroring: each tile is also inferred flipped along these axes (every
    /// combination, batched with the other tiles), and the flipped-back outputs are averaged in
    /// probability space.
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

/// An axis of test-time mirroring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mirror {
    /// Left–right.
    Horizontal,
    /// Top–bottom.
    Vertical,
}

/// One pass of a tile through the model: as it is, or flipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flip {
    pub horizontal: bool,
    pub vertical: bool,
}

impl Flip {
    /// Every combination of the mirrored axes, the unflipped pass first.
    pub fn passes(mirror: &[Mirror]) -> Vec<Flip> {
        let (h, v) = (mirror.contains(&Mirror::Horizontal), mirror.contains(&Mirror::Vertical));
        let mut passes = vec![Flip::default()];
        if h {
            passes.push(Flip { horizontal: true, vertical: false });
        }
        if v {
            passes.push(Flip { horizontal: false, vertical: true });
        }
        if h && v {
            passes.push(Flip { horizontal: true, vertical: true });
        }
        passes
    }

    /// Flips every `width`×`height` plane of `data` in place. Flipping twice restores it, so the
    /// same call flips a tile before inference and its output back after.
    pub fn apply(self, data: &mut [f32], (width, height): (u32, u32)) {
        let (w, h) = (width as usize, height as usize);
        for plane in data.chunks_exact_mut(w * h) {
            if self.horizontal {
                plane.chunks_exact_mut(w).for_each(<[f32]>::reverse);
            }
            if self.vertical {
                for y in 0..h / 2 {
                    let (top, bottom) = plane.split_at_mut((h - 1 - y) * w);
                    top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
                }
            }
        }
    }
}

impl PreprocessConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let overlap = self.tiling.overlap;
        if !(0.0..=0.9).contains(&overlap) {
            problems.push(format!("preprocess.tiling.overlap must be within 0..0.9 (got {overlap})"));
        }
        if self.input_size.is_some_and(|[h, w]| h == 0 || w == 0) {
            problems.push("preprocess.input_size must be positive".to_string());
        }
        let mut seen = Vec::new();
        for axis in &self.mirror {
            if seen.contains(axis) {
                problems.push(format!("preprocess.mirror names {axis:?} twice"));
            }
            seen.push(*axis);
        }
        if self.tiling.sigma_scale <= 0.0 {
            problems.push("preprocess.tiling.sigma_scale must be positive".to_string());
        }
        problems
    }
}

/// How an image that fits the model's input (or every image, without tiling) is fitted to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Stretch to the input size (what the bundled model was trained with).
    #[default]
    Resize,
    /// Scale to fit inside the input size, keep the aspect ratio, pad with the mean colour.
    Letterbox,
}

/// How overlapping tile outputs are blended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// A Gaussian centred on the tile (σ = `sigma_scale` × tile size): the border, where the
    /// network sees least context, counts least.
    #[default]
    Gaussian,
    /// Every pixel of every tile counts the same.
    Constant,
}

/// Tiling of images larger than the model input.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tiling {
    /// Tile images larger than the model input at their own resolution instead of shrinking them.
    pub enabled: bool,
    /// Fraction of a tile shared with its neighbour, 0 to 0.9.
    pub overlap: f32,
    pub weights: Weighting,
    /// σ of the Gaussian weights as a fraction of the tile size.
    pub sigma_scale: f32,
}

impl Default for Tiling {
    fn default() -> Self {
        Tiling { enabled: false, overlap: 0.5, weights: Weighting::Gaussian, sigma_scale: 0.125 }
    }
}

/// Where the content lies on the canvas and where the tiles are.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub source: (u32, u32),
    pub canvas: (u32, u32),
    /// The image on the canvas: left, top, width, height.
    pub content: (u32, u32, u32, u32),
    pub tile: (u32, u32),
    /// Top-left corners of the tiles, row by row.
    pub tiles: Vec<(u32, u32)>,
    pub weights: Weighting,
    pub sigma_scale: f32,
}

impl Plan {
    pub fn new(source_w: u32, source_h: u32, card: &ModelCard, fit: Fit, tiling: &Tiling) -> Plan {
        let tile = (card.input.width, card.input.height);
        let larger = source_w > tile.0 || source_h > tile.1;
        if tiling.enabled && larger {
            let canvas = (source_w.max(tile.0), source_h.max(tile.1));
            let xs = positions(canvas.0, tile.0, tiling.overlap);
            let ys = positions(canvas.1, tile.1, tiling.overlap);
            let tiles = ys.iter().flat_map(|&y| xs.iter().map(move |&x| (x, y))).collect();
            return Plan {
                source: (source_w, source_h),
                canvas,
                content: (0, 0, source_w, source_h),
                tile,
                tiles,
                weights: tiling.weights,
                sigma_scale: tiling.sigma_scale,
            };
        }
        let content = match fit {
            Fit::Resize => (0, 0, tile.0, tile.1),
            Fit::Letterbox => letterbox_box(source_w, source_h, tile.0, tile.1),
        };
        Plan {
            source: (source_w, source_h),
            canvas: tile,
            content,
            tile,
            tiles: vec![(0, 0)],
            weights: Weighting::Constant,
            sigma_scale: tiling.sigma_scale,
        }
    }

    /// Whether the canvas is the image at its own resolution (tiling) rather than a rescaled copy.
    pub fn is_native(&self) -> bool {
        self.content.2 == self.source.0 && self.content.3 == self.source.1 && self.content.0 == 0 && self.content.1 == 0
    }
}

/// Tile origins along one axis: evenly spread from 0 to `length - tile`, with steps of at most
/// `tile × (1 - overlap)`.
fn positions(length: u32, tile: u32, overlap: f32) -> Vec<u32> {
    if length <= tile {
        return vec![0];
    }
    let step = (tile as f32 * (1.0 - overlap.clamp(0.0, 0.9))).max(1.0);
    let span = (length - tile) as f32;
    let steps = (span / step).ceil() as u32;
    (0..=steps).map(|i| (span * i as f32 / steps as f32).round() as u32).collect()
}

/// The image as the tiles see it: rescaled (resize, letterbox) or as it is (tiling).
pub struct Canvas {
    content: RgbImage,
    pub plan: Plan,
}

/// The resize every stage uses: PIL-style bilinear (antialiased when shrinking), as in training.
pub(crate) fn bilinear() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

impl Canvas {
    /// Takes the decoded image; rescales it only when the plan says so.
    pub fn new(image: RgbImage, plan: Plan) -> (Canvas, Option<RgbImage>) {
        if plan.is_native() {
            return (Canvas { content: image, plan }, None);
        }
        let (_, _, w, h) = plan.content;
        let mut resized = RgbImage::new(w, h);
        Resizer::new().resize(&image, &mut resized, &bilinear()).expect("RGB to RGB resize cannot fail");
        (Canvas { content: resized, plan }, Some(image))
    }

    /// The image on the canvas (the source itself when tiling).
    pub fn image(&self) -> &RgbImage {
        &self.content
    }

    /// Tile `index` as a normalized `3 × tile_h × tile_w` tensor; outside the content it is 0.
    pub fn tile(&self, index: usize, card: &ModelCard) -> Vec<f32> {
        let (tx, ty) = self.plan.tiles[index];
        let (tw, th) = self.plan.tile;
        let (left, top, cw, ch) = self.plan.content;
        let plane = (tw * th) as usize;
        let mut data = vec![0.0f32; 3 * plane];
        let scale: Vec<f32> = (0..3).map(|c| 1.0 / (card.input.scale * card.std[c])).collect();
        let shift: Vec<f32> = (0..3).map(|c| card.mean[c] / card.std[c]).collect();
        // Rows and columns of the tile that fall on the content.
        let x0 = left.max(tx);
        let x1 = (left + cw).min(tx + tw);
        let y0 = top.max(ty);
        let y1 = (top + ch).min(ty + th);
        for y in y0..y1 {
            let row = ((y - ty) * tw) as usize;
            for x in x0..x1 {
                let pixel = self.content.get_pixel(x - left, y - top).0;
                let index = row + (x - tx) as usize;
                for c in 0..3 {
                    data[c * plane + index] = pixel[c] as f32 * scale[c] - shift[c];
                }
            }
        }
        data
    }
}

/// The centred box of the largest `w × h`-shaped rectangle inside `target_w × target_h`.
fn letterbox_box(w: u32, h: u32, target_w: u32, target_h: u32) -> (u32, u32, u32, u32) {
    let scale = f64::min(target_w as f64 / w as f64, target_h as f64 / h as f64);
    let content_w = ((w as f64 * scale).round() as u32).clamp(1, target_w);
    let content_h = ((h as f64 * scale).round() as u32).clamp(1, target_h);
    ((target_w - content_w) / 2, (target_h - content_h) / 2, content_w, content_h)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Activation, InputSpec, OutputSpec};

    pub(crate) fn card(width: u32, height: u32) -> ModelCard {
        ModelCard {
            name: "test".into(),
            sha256: String::new(),
            input: InputSpec { name: "image".into(), channels: 3, height, width, scale: 255.0 },
            mean: [0.5, 0.5, 0.5],
            std: [0.25, 0.25, 0.25],
            output: OutputSpec { name: "mask".into(), activation: Activation::Sigmoid },
            threshold: 0.5,
            extra: Default::default(),
        }
    }

    fn one_tile(image: RgbImage, card: &ModelCard, fit: Fit) -> (Plan, Vec<f32>) {
        let plan = Plan::new(image.width(), image.height(), card, fit, &Tiling::default());
        let (canvas, _) = Canvas::new(image, plan.clone());
        (plan, canvas.tile(0, card))
    }

    #[test]
    fn resize_normalizes_every_channel() {
        let card = card(4, 4);
        let (plan, data) = one_tile(RgbImage::from_pixel(10, 6, image::Rgb([255, 0, 128])), &card, Fit::Resize);
        assert_eq!(data.len(), 3 * 16);
        assert!(data[..16].iter().all(|v| (v - 2.0).abs() < 1e-5));
        assert!(data[16..32].iter().all(|v| (v + 2.0).abs() < 1e-5));
        assert!(data[32..].iter().all(|v| (v - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-5));
        assert_eq!(plan.content, (0, 0, 4, 4));
        assert_eq!(plan.tiles, [(0, 0)]);
    }

    #[test]
    fn letterbox_keeps_aspect_ratio_and_pads_with_the_mean() {
        let card = card(8, 8);
        let (plan, data) = one_tile(RgbImage::from_pixel(20, 10, image::Rgb([255, 255, 255])), &card, Fit::Letterbox);
        assert_eq!(plan.content, (0, 2, 8, 4));
        // Row 0 is padding (0 after normalization); row 4 is image (white → 2).
        assert_eq!(data[0], 0.0);
        assert!((data[4 * 8 + 3] - 2.0).abs() < 1e-5);
    }

    #[test]
    fn letterbox_box_is_centred_and_never_empty() {
        assert_eq!(letterbox_box(100, 100, 64, 32), (16, 0, 32, 32));
        assert_eq!(letterbox_box(1, 10_000, 64, 64), (31, 0, 1, 64));
    }

    #[test]
    fn tiles_cover_the_image_with_the_configured_overlap() {
        assert_eq!(positions(128, 128, 0.5), [0]);
        assert_eq!(positions(256, 128, 0.5), [0, 64, 128]);
        assert_eq!(positions(300, 128, 0.5), [0, 57, 115, 172]);
        assert_eq!(positions(300, 128, 0.0), [0, 86, 172]);
        let card = card(128, 128);
        let tiling = Tiling { enabled: true, ..Tiling::default() };
        let plan = Plan::new(300, 100, &card, Fit::Resize, &tiling);
        assert_eq!(plan.canvas, (300, 128), "a short side is padded to one tile");
        assert_eq!(plan.tiles.len(), 4);
        assert!(plan.is_native());
        // A small image is fitted, not tiled.
        assert_eq!(Plan::new(100, 100, &card, Fit::Resize, &tiling).tiles, [(0, 0)]);
    }

    #[test]
    fn a_tile_beyond_the_image_is_mean_padded() {
        let card = card(4, 4);
        let tiling = Tiling { enabled: true, ..Tiling::default() };
        let image = RgbImage::from_fn(6, 3, |x, _| image::Rgb([if x < 3 { 255 } else { 0 }; 3]));
        let plan = Plan::new(6, 3, &card, Fit::Resize, &tiling);
        let (canvas, original) = Canvas::new(image, plan);
        assert!(original.is_none(), "tiling keeps the image as it is");
        let last = canvas.tile(canvas.plan.tiles.len() - 1, &card);
        // Bottom row (y = 3) lies below the image: padded with 0.
        assert!(last[12..16].iter().all(|v| *v == 0.0));
        assert!((last[3] - -2.0).abs() < 1e-5, "black pixel → (0 - 0.5) / 0.25");
    }
}
