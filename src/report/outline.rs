//! Case images for the HTML report: the input with the predicted outline and the input with the
//! ground-truth outline, side by side, as base64 PNGs. When the input cannot be read any more (moved
//! to `<state>/done/` by `watch`, deleted, or a DICOM frame), the case's overlay.png stands in.

use std::path::Path;

use base64::Engine;
use image::imageops::FilterType;
use image::{GrayImage, RgbImage};

use crate::output::{PREDICTED, TRUTH, draw_outline};

/// The outlines are 2 px wide, so they show at any size.
const OUTLINE_WIDTH: u32 = 2;
/// Panels are at most this wide in the page (the report stays small).
const MAX_WIDTH: u32 = 360;

pub struct Panel {
    pub caption: String,
    /// `data:image/png;base64,…`
    pub src: String,
}

/// The images of one case, and a note when they are not what was asked for.
pub struct Figure {
    pub panels: Vec<Panel>,
    pub note: Option<String>,
}

pub fn figure(source: &str, mask: Option<&str>, truth: Option<&str>, overlay: Option<&str>) -> Figure {
    match outlined(source, mask, truth) {
        Ok(panels) => Figure { panels, note: None },
        Err(reason) => match overlay.map(|o| read_rgb(Path::new(o))) {
            Some(Ok(image)) => Figure {
                panels: vec![Panel {
                    caption: "overlay.png: prediction yellow, ground truth cyan".into(),
                    src: data_uri(&shrink(&image, FilterType::Triangle)),
                }],
                note: Some(format!("{reason}; showing the overlay.png written with the case")),
            },
            Some(Err(e)) => Figure { panels: vec![], note: Some(format!("{reason}; and no overlay: {e}")) },
            None => Figure { panels: vec![], note: Some(format!("{reason}; and no overlay.png was written")) },
        },
    }
}

/// A series case's montage (its overlay.png: the slices with the most foreground).
pub fn montage(overlay: Option<&str>) -> Figure {
    match overlay.map(|o| read_rgb(Path::new(o))) {
        Some(Ok(image)) => Figure {
            panels: vec![Panel {
                caption: "the slices with the most foreground: prediction yellow, ground truth cyan".into(),
                src: data_uri(&shrink(&image, FilterType::Triangle)),
            }],
            note: None,
        },
        Some(Err(e)) => Figure { panels: vec![], note: Some(format!("no montage: {e}")) },
        None => Figure { panels: vec![], note: Some("no overlay.png was written".into()) },
    }
}

/// Two panels from the input, the mask and the ground truth, or why not.
fn outlined(source: &str, mask: Option<&str>, truth: Option<&str>) -> Result<Vec<Panel>, String> {
    let bytes = std::fs::read(source).map_err(|e| format!("the input {source} cannot be read ({e})"))?;
    let image =
        crate::decode::decode(&bytes).map_err(|e| format!("the input {source} is not a plain image ({e})"))?.rgb;
    let mask = read_mask(mask.ok_or("no mask.png was written")?, image.dimensions())?;
    let truth = read_mask(truth.ok_or("the case has no ground truth")?, image.dimensions())?;
    let small = shrink(&image, FilterType::Triangle);
    let size = small.dimensions();
    let resize = |m: &GrayImage| image::imageops::resize(m, size.0, size.1, FilterType::Nearest);
    let mut predicted = small.clone();
    draw_outline(&mut predicted, &resize(&mask), OUTLINE_WIDTH, PREDICTED);
    let mut expected = small;
    draw_outline(&mut expected, &resize(&truth), OUTLINE_WIDTH, TRUTH);
    Ok(vec![
        Panel { caption: "Prediction (yellow outline)".into(), src: data_uri(&predicted) },
        Panel { caption: "Ground truth (cyan outline)".into(), src: data_uri(&expected) },
    ])
}

fn read_mask(path: &str, size: (u32, u32)) -> Result<GrayImage, String> {
    let mask = image::open(path).map_err(|e| format!("{path} cannot be read ({e})"))?.to_luma8();
    if mask.dimensions() != size {
        return Err(format!("{path} is {:?} but the input is {size:?}", mask.dimensions()));
    }
    Ok(mask)
}

fn read_rgb(path: &Path) -> Result<RgbImage, String> {
    Ok(image::open(path).map_err(|e| format!("{} cannot be read ({e})", path.display()))?.to_rgb8())
}

fn shrink(image: &RgbImage, filter: FilterType) -> RgbImage {
    let (w, h) = image.dimensions();
    if w <= MAX_WIDTH {
        return image.clone();
    }
    let height = ((h as u64 * MAX_WIDTH as u64) / w as u64).max(1) as u32;
    image::imageops::resize(image, MAX_WIDTH, height, filter)
}

fn data_uri(image: &RgbImage) -> String {
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).expect("encoding a PNG in memory");
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_input_falls_back_to_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.png");
        RgbImage::new(8, 6).save(&overlay).unwrap();
        let figure = figure("/nonexistent/case.png", None, None, Some(overlay.to_str().unwrap()));
        assert_eq!(figure.panels.len(), 1);
        assert!(figure.note.unwrap().contains("cannot be read"));
        assert!(figure.panels[0].src.starts_with("data:image/png;base64,"));
    }

    #[test]
    fn outlines_are_drawn_on_the_border_only() {
        let mut image = RgbImage::new(12, 12);
        let mut mask = GrayImage::new(12, 12);
        for y in 2..10 {
            for x in 2..10 {
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        draw_outline(&mut image, &mask, OUTLINE_WIDTH, TRUTH);
        assert_eq!(*image.get_pixel(2, 2), TRUTH);
        assert_eq!(*image.get_pixel(6, 6), image::Rgb([0, 0, 0]));
        assert_eq!(*image.get_pixel(0, 0), image::Rgb([0, 0, 0]));
    }
}
