//! Preprocess: an RGB image → the model's input tensor (CHW, `f32`, mean/std normalized) at the
//! model card's size, by stretching (`resize`) or by keeping the aspect ratio and padding
//! (`letterbox`). The [`Geometry`] it returns lets postprocess map the output back.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::model::ModelCard;

/// How an image is fitted to the model's input size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Stretch to the input size (what the bundled model was trained with).
    #[default]
    Resize,
    /// Scale to fit inside the input size, keep the aspect ratio, pad with the mean colour.
    Letterbox,
}

/// Where the image sits inside the model input, so that the output can be mapped back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub source_width: u32,
    pub source_height: u32,
    /// The content box inside the model input: left, top, width, height.
    pub content: (u32, u32, u32, u32),
}

/// One image ready for the network: `3 × height × width` values.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub data: Vec<f32>,
    pub geometry: Geometry,
}

/// The resize every stage uses: PIL-style bilinear (antialiased when shrinking), as in training.
pub(crate) fn bilinear() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

/// Fits `image` to the card's input size and normalizes it.
pub fn preprocess(image: &RgbImage, card: &ModelCard, fit: Fit) -> Tensor {
    let (target_w, target_h) = (card.input.width, card.input.height);
    let (source_w, source_h) = image.dimensions();
    let content = match fit {
        Fit::Resize => (0, 0, target_w, target_h),
        Fit::Letterbox => letterbox_box(source_w, source_h, target_w, target_h),
    };
    let (left, top, content_w, content_h) = content;
    let mut resized = RgbImage::new(content_w, content_h);
    Resizer::new()
        .resize(image, &mut resized, &bilinear())
        .expect("RGB to RGB resize with matching pixel types cannot fail");

    // Padding is the mean colour, which normalizes to 0.
    let plane = (target_w * target_h) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    let scale = card.input.scale;
    for (x, y, pixel) in resized.enumerate_pixels() {
        let index = ((y + top) * target_w + (x + left)) as usize;
        for c in 0..3 {
            data[c * plane + index] = (pixel.0[c] as f32 / scale - card.mean[c]) / card.std[c];
        }
    }
    Tensor { data, geometry: Geometry { source_width: source_w, source_height: source_h, content } }
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

    #[test]
    fn resize_normalizes_every_channel() {
        let image = RgbImage::from_pixel(10, 6, image::Rgb([255, 0, 128]));
        let tensor = preprocess(&image, &card(4, 4), Fit::Resize);
        assert_eq!(tensor.data.len(), 3 * 16);
        assert!(tensor.data[..16].iter().all(|v| (v - 2.0).abs() < 1e-6));
        assert!(tensor.data[16..32].iter().all(|v| (v + 2.0).abs() < 1e-6));
        assert!(tensor.data[32..].iter().all(|v| (v - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6));
        assert_eq!(tensor.geometry.content, (0, 0, 4, 4));
    }

    #[test]
    fn letterbox_keeps_aspect_ratio_and_pads_with_the_mean() {
        let image = RgbImage::from_pixel(20, 10, image::Rgb([255, 255, 255]));
        let tensor = preprocess(&image, &card(8, 8), Fit::Letterbox);
        assert_eq!(tensor.geometry.content, (0, 2, 8, 4));
        // Row 0 is padding (0 after normalization); row 4 is image (white → 2).
        assert_eq!(tensor.data[0], 0.0);
        assert!((tensor.data[4 * 8 + 3] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn letterbox_box_is_centred_and_never_empty() {
        assert_eq!(letterbox_box(100, 100, 64, 32), (16, 0, 32, 32));
        assert_eq!(letterbox_box(1, 10_000, 64, 64), (31, 0, 1, 64));
    }
}
