//! Postprocess: the network's output map → a binary mask at the source image's size. Applies the
//! sigmoid when the model emits logits, crops the letterbox padding away, resizes the
//! probabilities back (bilinear) and thresholds them.

use fast_image_resize::Resizer;
use fast_image_resize::images::TypedImage;
use fast_image_resize::pixels::F32;
use image::{GrayImage, Luma};

use crate::model::Activation;
use crate::preprocess::{Geometry, bilinear};

/// Foreground value in masks written by efen.
pub const FOREGROUND: u8 = 255;

/// Turns one output map (`model_w × model_h` values, row-major) into a 0/255 mask.
pub fn postprocess(
    output: &[f32],
    model_w: u32,
    model_h: u32,
    activation: Activation,
    geometry: &Geometry,
    threshold: f32,
) -> GrayImage {
    let probabilities: Vec<F32> =
        output.iter().map(|&v| F32::new(if activation == Activation::Logits { sigmoid(v) } else { v })).collect();
    let source =
        TypedImage::from_pixels(model_w, model_h, probabilities).expect("output map has model_w × model_h values");
    let mut resized = TypedImage::<F32>::new(geometry.source_width, geometry.source_height);
    let (left, top, width, height) = geometry.content;
    let options = bilinear().crop(left as f64, top as f64, width as f64, height as f64);
    Resizer::new().resize_typed(&source, &mut resized, &options).expect("F32 to F32 resize cannot fail");

    let values = resized.pixels();
    GrayImage::from_fn(geometry.source_width, geometry.source_height, |x, y| {
        let p = values[(y * geometry.source_width + x) as usize].0;
        Luma([if p >= threshold { FOREGROUND } else { 0 }])
    })
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(w: u32, h: u32, content: (u32, u32, u32, u32)) -> Geometry {
        Geometry { source_width: w, source_height: h, content }
    }

    #[test]
    fn probabilities_are_thresholded_at_the_source_size() {
        // Left half foreground in a 4×4 map, mapped to 8×2.
        let map: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 0.9 } else { 0.1 }).collect();
        let mask = postprocess(&map, 4, 4, Activation::Sigmoid, &geometry(8, 2, (0, 0, 4, 4)), 0.5);
        assert_eq!(mask.dimensions(), (8, 2));
        assert_eq!(mask.get_pixel(0, 0).0[0], FOREGROUND);
        assert_eq!(mask.get_pixel(7, 1).0[0], 0);
    }

    #[test]
    fn logits_go_through_the_sigmoid() {
        let map = vec![2.0f32; 4];
        let mask = postprocess(&map, 2, 2, Activation::Logits, &geometry(2, 2, (0, 0, 2, 2)), 0.85);
        assert!(mask.pixels().all(|p| p.0[0] == FOREGROUND), "sigmoid(2) = 0.88 ≥ 0.85");
        let mask = postprocess(&map, 2, 2, Activation::Logits, &geometry(2, 2, (0, 0, 2, 2)), 0.9);
        assert!(mask.pixels().all(|p| p.0[0] == 0));
    }

    #[test]
    fn letterbox_padding_is_cropped_away() {
        // 4×4 map whose content is rows 1..3; the padding rows say foreground and must not leak.
        let map: Vec<f32> = (0..16).map(|i| if (4..12).contains(&i) { 0.0 } else { 1.0 }).collect();
        let mask = postprocess(&map, 4, 4, Activation::Sigmoid, &geometry(8, 4, (0, 1, 4, 2)), 0.5);
        assert!(mask.pixels().all(|p| p.0[0] == 0));
    }
}
