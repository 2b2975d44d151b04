//! Emit: a case's files under `<out>/<case id>/`: `mask.png` (0/255), `overlay.png` (the image with
//! the predicted outline, and the ground-truth outline when there is one) and `result.json`
//! ([`CaseResult`]). Every file is written to a temporary name and renamed, so a reader never sees
//! half a file; a write that fails is retried a few times ([`retrying`]). `nifti.rs`: a series'
//! mask volume as `mask.nii.gz`.

pub mod montage;
pub mod nifti;

use std::path::{Path, PathBuf};

use image::{GrayImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::case::{Frame, OutputPaths, Timings};
use crate::metrics::{Confusion, Scores};

use crate::postprocess::Probabilities;

/// The pipeline's `[outputs]` section: which files a case writes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub mask: bool,
    pub overlay: bool,
    /// `probabilities.png`: the blended probability map as 16-bit gray (0..65535 = 0..1).
    #[serde(default)]
    pub probabilities: bool,
    /// The longer side of `overlay.png` in pixels: a larger image's overlay is scaled down to it
    /// (the outline drawn at that size). 0 writes the overlay at the image's size.
    #[serde(default)]
    pub overlay_max_size: u32,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { mask: true, overlay: true, probabilities: false, overlay_max_size: 0 }
    }
}

/// Predicted outline: yellow. Ground truth: cyan. Both stay visible on gray and on colour images.
pub const PREDICTED: Rgb<u8> = Rgb([255, 221, 0]);
pub const TRUTH: Rgb<u8> = Rgb([0, 200, 255]);

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode {}: {source}", path.display())]
    Encode { path: PathBuf, source: image::ImageError },
    #[error("cannot write the DICOM SEG: {source}")]
    Seg { source: crate::dicom::DicomError },
    #[error("cannot write the DICOM SR: {source}")]
    Sr { source: crate::dicom::SrError },
}

impl crate::error::CaseError for EmitError {
    fn error_type(&self) -> &'static str {
        match self {
            EmitError::Write { .. } => "write_output",
            EmitError::Encode { .. } => "encode_output",
            EmitError::Seg { source } => crate::error::CaseError::error_type(source),
            EmitError::Sr { source } => crate::error::CaseError::error_type(source),
        }
    }

    /// Without the case's folder: the file's name says which output it was.
    fn reason(&self) -> String {
        let name = |path: &Path| path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        match self {
            EmitError::Write { path, source } => format!("cannot write {}: {source}", name(path)),
            EmitError::Encode { path, source } => format!("cannot encode {}: {source}", name(path)),
            other => other.to_string(),
        }
    }
}

/// `result.json`: one case as its folder describes it.
#[derive(Debug, Serialize)]
pub struct CaseResult<'a> {
    pub case_id: &'a str,
    pub source_path: &'a Path,
    pub source_sha256: &'a str,
    pub size_bytes: u64,
    pub pipeline: &'a str,
    pub model: ModelRef<'a>,
    pub efen_version: &'static str,
    pub image: ImageInfo<'a>,
    pub status: &'static str,
    pub threshold: f32,
    pub foreground_fraction: f64,
    pub ground_truth: Option<&'a Path>,
    pub metrics: Option<Scores>,
    pub counts: Option<Counts>,
    pub timings_ms: Timings,
    pub outputs: ResultOutputs<'a>,
    pub frame: Option<Frame>,
    pub dicom: Option<DicomResult<'a>>,
    /// A series case: its stack, slices, geometry and volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesResult<'a>>,
}

/// What `result.json` says of a series case.
#[derive(Debug, Serialize)]
pub struct SeriesResult<'a> {
    pub series_instance_uid: &'a str,
    pub stack: u32,
    pub stacks: u32,
    /// What sets this stack apart from the series' others.
    pub stack_reason: Option<&'a str>,
    pub slices: usize,
    pub instances: usize,
    pub slice_spacing_mm: Option<f64>,
    pub geometry_warnings: &'a [String],
    pub volume_ml: Option<f64>,
    pub truth_volume_ml: Option<f64>,
    /// Slices left out, each with its instance, frame and reason.
    pub failed_slices: Vec<FailedSlice>,
    /// Where the emit time went.
    pub emit_ms: EmitTimes,
}

/// Milliseconds spent writing each of a series' files.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EmitTimes {
    pub seg_ms: f64,
    pub sr_ms: f64,
    pub nifti_ms: f64,
    pub overlay_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct FailedSlice {
    /// 1-based place in the stack.
    pub slice: usize,
    pub sop_instance_uid: Option<String>,
    pub frame: u32,
    pub stage: crate::case::Stage,
    /// The failure's type (the stage error's variant) and its whole message.
    pub error_type: &'static str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ModelRef<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ImageInfo<'a> {
    pub kind: &'a str,
    pub width: u32,
    pub height: u32,
}

/// The confusion counts under the names users read (`fn`, not `fn_`).
#[derive(Debug, Serialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl From<Confusion> for Counts {
    fn from(c: Confusion) -> Counts {
        Counts { tp: c.tp, fp: c.fp, fn_: c.fn_, tn: c.tn }
    }
}

/// The files beside `result.json`.
#[derive(Debug, Serialize)]
pub struct ResultOutputs<'a> {
    pub mask: Option<&'a Path>,
    pub overlay: Option<&'a Path>,
    pub probabilities: Option<&'a Path>,
    pub seg: Option<&'a Path>,
    pub sr: Option<&'a Path>,
}

impl<'a> From<&'a OutputPaths> for ResultOutputs<'a> {
    fn from(p: &'a OutputPaths) -> ResultOutputs<'a> {
        ResultOutputs {
            mask: p.mask.as_deref(),
            overlay: p.overlay.as_deref(),
            probabilities: p.probabilities.as_deref(),
            seg: p.seg.as_deref(),
            sr: p.sr.as_deref(),
        }
    }
}

/// What `result.json` says of a DICOM input.
#[derive(Debug, Serialize)]
pub struct DicomResult<'a> {
    pub identity: &'a crate::dicom::Identity,
    pub decoder: &'a str,
    /// The SEG's path, or why none was written (`no findings: …`).
    pub seg: Option<String>,
}

/// What a case's image outputs are made from.
pub struct Images<'a> {
    pub image: &'a RgbImage,
    pub mask: &'a GrayImage,
    pub truth: Option<&'a GrayImage>,
    pub probabilities: Option<&'a Probabilities>,
}

/// Writes the mask, the overlay and the probability map as configured; `result.json` is written
/// by [`write_result`] once everything else about the case is known.
pub fn write_images(dir: &Path, images: &Images, settings: &OutputConfig) -> Result<OutputPaths, EmitError> {
    create_dir(dir)?;
    let mut paths = OutputPaths::default();
    if settings.mask {
        let path = dir.join("mask.png");
        // A 0/255 mask: Sub is as small as Adaptive (2.7 kB at 512×512) at a third of the time.
        save_png(&path, images.mask, image::codecs::png::FilterType::Sub)?;
        paths.mask = Some(path);
    }
    if settings.overlay {
        let path = dir.join("overlay.png");
        let truth = images.truth.filter(|t| t.dimensions() == images.image.dimensions());
        match shrunk(images.image, images.mask, truth, settings.overlay_max_size) {
            Some((image, mask, truth)) => save_overlay(&path, &image, &mask, truth.as_ref())?,
            None => save_overlay(&path, images.image, images.mask, truth)?,
        }
        paths.overlay = Some(path);
    }
    if let Some(map) = images.probabilities {
        let path = dir.join("probabilities.png");
        save_png(&path, map, image::codecs::png::FilterType::Adaptive)?;
        paths.probabilities = Some(path);
    }
    Ok(paths)
}

/// Writes `result.json`.
pub fn write_result(dir: &Path, result: &CaseResult) -> Result<PathBuf, EmitError> {
    write_json(dir, result)
}

fn write_json(dir: &Path, value: &impl Serialize) -> Result<PathBuf, EmitError> {
    create_dir(dir)?;
    let path = dir.join("result.json");
    write_bytes(&path, &serde_json::to_vec_pretty(value).expect("result values serialize"))?;
    Ok(path)
}

/// Writes a file through a temporary name and a rename.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), EmitError> {
    let tmp = temporary(path);
    std::fs::write(&tmp, bytes).map_err(|source| EmitError::Write { path: path.into(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| EmitError::Write { path: path.into(), source })
}

/// Creates a case's folder, removing temporaries a killed process left there.
pub fn create_dir(dir: &Path) -> Result<(), EmitError> {
    std::fs::create_dir_all(dir).map_err(|source| EmitError::Write { path: dir.into(), source })?;
    // A process killed mid-write leaves its temporary behind; the redo cleans up.
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && !name.contains(&format!(".{}.", std::process::id())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// PNG with fast compression (fdeflate): outputs are written for every case, so encoding time is
/// pipeline overhead; they are larger than at the default level.
fn save_png<P, C>(
    path: &Path,
    image: &image::ImageBuffer<P, C>,
    filter: image::codecs::png::FilterType,
) -> Result<(), EmitError>
where
    P: image::Pixel + image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    use image::codecs::png::{CompressionType, PngEncoder};
    let tmp = temporary(path);
    let file = std::fs::File::create(&tmp).map_err(|source| EmitError::Write { path: path.into(), source })?;
    let encoder = PngEncoder::new_with_quality(std::io::BufWriter::new(file), CompressionType::Fast, filter);
    image.write_with_encoder(encoder).map_err(|source| EmitError::Encode { path: path.into(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| EmitError::Write { path: path.into(), source })
}

/// The image, its mask and the ground truth scaled down so that the longer side is `max_size`, or
/// `None` when the image is no larger (or `max_size` is 0). The image is scaled bilinearly, the masks
/// by nearest neighbour (they stay 0/255).
fn shrunk(
    image: &RgbImage,
    mask: &GrayImage,
    truth: Option<&GrayImage>,
    max_size: u32,
) -> Option<(RgbImage, GrayImage, Option<GrayImage>)> {
    use fast_image_resize::{ResizeAlg, ResizeOptions, Resizer};
    let (w, h) = image.dimensions();
    if max_size == 0 || w.max(h) <= max_size {
        return None;
    }
    let scale = |side: u32| ((side as u64 * max_size as u64 + w.max(h) as u64 / 2) / w.max(h) as u64).max(1) as u32;
    let (sw, sh) = (scale(w), scale(h));
    let mut resizer = Resizer::new();
    let mut small = RgbImage::new(sw, sh);
    resizer.resize(image, &mut small, &crate::preprocess::bilinear()).expect("RGB to RGB resize cannot fail");
    let nearest = ResizeOptions::new().resize_alg(ResizeAlg::Nearest);
    let mut shrink_mask = |m: &GrayImage| {
        let mut out = GrayImage::new(sw, sh);
        resizer.resize(m, &mut out, &nearest).expect("gray to gray resize cannot fail");
        out
    };
    let small_mask = shrink_mask(mask);
    let small_truth = truth.map(&mut shrink_mask);
    Some((small, small_mask, small_truth))
}

/// Writes `overlay.png`: the image is copied row by row and the outlines painted into each row
/// while it is in cache (one pass, no clone followed by a second pass per outline), then encoded
/// whole with fdeflate and the Sub filter: on 512×512 gray images 0.87 ms against 1.16 ms for
/// Adaptive, 5% larger. (png's row-by-row StreamWriter was tried: 1.18 ms, slower than the whole
/// image's encode by more than the copy it saves.)
fn save_overlay(
    path: &Path,
    image: &RgbImage,
    predicted: &GrayImage,
    truth: Option<&GrayImage>,
) -> Result<(), EmitError> {
    let (w, h) = image.dimensions();
    let thickness = overlay_thickness(w, h);
    let mut truth = truth.filter(|t| t.dimensions() == (w, h)).map(|t| Outline::new(t, thickness));
    let mut predicted = Outline::new(predicted, thickness);
    let mut data = Vec::with_capacity(image.as_raw().len());
    for (y, source) in image.as_raw().chunks_exact((3 * w as usize).max(1)).enumerate() {
        let start = data.len();
        data.extend_from_slice(source);
        let row = &mut data[start..];
        if let Some(truth) = &mut truth {
            truth.paint(y, row, TRUTH);
        }
        predicted.paint(y, row, PREDICTED);
    }
    let overlay = RgbImage::from_raw(w, h, data).expect("the overlay has the image's size");
    save_png(path, &overlay, image::codecs::png::FilterType::Sub)
}

/// The outline's width on an overlay: 1 px per 200 px of the shorter side, at least 1.
fn overlay_thickness(w: u32, h: u32) -> u32 {
    (w.min(h) / 200).max(1)
}

/// The image with the outlines drawn on it (ground truth first, prediction on top).
pub fn overlay(image: &RgbImage, predicted: &GrayImage, truth: Option<&GrayImage>) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = image.dimensions();
    let thickness = overlay_thickness(w, h);
    if let Some(truth) = truth.filter(|t| t.dimensions() == (w, h)) {
        draw_outline(&mut out, truth, thickness, TRUTH);
    }
    draw_outline(&mut out, predicted, thickness, PREDICTED);
    out
}

/// Paints foreground pixels that lie within `thickness` of the background (or of the border).
pub fn draw_outline(image: &mut RgbImage, mask: &GrayImage, thickness: u32, colour: Rgb<u8>) {
    assert_eq!(image.dimensions(), mask.dimensions(), "an outline is drawn on an image of the mask's size");
    let mut outline = Outline::new(mask, thickness);
    let stride = 3 * image.width() as usize;
    for (y, row) in image.as_mut().chunks_exact_mut(stride.max(1)).enumerate() {
        outline.paint(y, row, colour);
    }
}

/// A mask's outline, one row at a time, top to bottom: the foreground pixels that lie within `t` of
/// the background or of the border. A pixel is inside when its whole (2t+1)² window is foreground:
/// an erosion by a square, done as a pass along each row and a running count down each column, so
/// it costs O(width × height) whatever `t`, reads the mask in order and holds two rows of counts.
struct Outline<'a> {
    mask: &'a [u8],
    w: usize,
    h: usize,
    t: usize,
    /// Mask rows already counted into `down`.
    fed: usize,
    /// Scratch for one row: the run of foreground that ends at each column.
    across: Vec<u32>,
    /// For each column, how many consecutive rows up to the last one fed have their whole
    /// horizontal window (2t+1 wide) in the foreground.
    down: Vec<u32>,
}

impl<'a> Outline<'a> {
    fn new(mask: &'a GrayImage, thickness: u32) -> Outline<'a> {
        let (w, h) = (mask.width() as usize, mask.height() as usize);
        Outline { mask: mask.as_raw(), w, h, t: thickness as usize, fed: 0, across: vec![0; w], down: vec![0; w] }
    }

    fn row(&self, y: usize) -> &'a [u8] {
        &self.mask[y * self.w..(y + 1) * self.w]
    }

    /// Counts mask row `y` (the next one) into `down`.
    fn feed(&mut self, y: usize) {
        let (w, t) = (self.w, self.t);
        let line = self.row(y);
        if !any_foreground(line) {
            self.down.fill(0);
            return;
        }
        let mut count = 0;
        for (run, v) in self.across.iter_mut().zip(line) {
            count = if *v > 0 { count + 1 } else { 0 };
            *run = count;
        }
        let window = 2 * t as u32;
        for (x, down) in self.down.iter_mut().enumerate() {
            let inside = x >= t && x + t < w && self.across[x + t] > window;
            *down = if inside { *down + 1 } else { 0 };
        }
    }

    /// Paints the outline pixels of row `y` into `row` (RGB, the mask's width). Rows must come in
    /// order, each once.
    fn paint(&mut self, y: usize, row: &mut [u8], colour: Rgb<u8>) {
        let t = self.t;
        // A pixel can be inside only when rows y - t ..= y + t all exist.
        let deep = y >= t && y + t < self.h;
        if deep {
            while self.fed <= y + t {
                self.feed(self.fed);
                self.fed += 1;
            }
        }
        let line = self.row(y);
        if !any_foreground(line) {
            return;
        }
        let window = 2 * t as u32;
        for ((pixel, v), down) in row.chunks_exact_mut(3).zip(line).zip(&self.down) {
            if *v > 0 && !(deep && *down > window) {
                pixel.copy_from_slice(&colour.0);
            }
        }
    }
}

/// Whether a mask row holds any foreground (an OR over the row, which the compiler vectorizes).
fn any_foreground(line: &[u8]) -> bool {
    line.iter().fold(0u8, |acc, v| acc | v) != 0
}

/// Writing can fail for a moment (a full disk being cleaned, a network share): a few attempts with
/// backoff, then the error.
pub fn retrying<T>(mut write: impl FnMut() -> Result<T, EmitError>) -> Result<T, EmitError> {
    let mut delay = std::time::Duration::from_millis(200);
    for _ in 1..EMIT_ATTEMPTS {
        match write() {
            Ok(done) => return Ok(done),
            Err(e) => {
                tracing::warn!("writing outputs failed, retrying in {delay:?}: {e}");
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
    }
    write()
}

const EMIT_ATTEMPTS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use image::GenericImageView;

    #[test]
    fn outline_marks_the_border_not_the_inside() {
        let image = RgbImage::new(9, 9);
        let mut mask = GrayImage::new(9, 9);
        for y in 2..7 {
            for x in 2..7 {
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        let out = overlay(&image, &mask, None);
        assert_eq!(*out.get_pixel(2, 2), PREDICTED);
        assert_eq!(*out.get_pixel(4, 4), Rgb([0, 0, 0]), "interior untouched");
        assert_eq!(*out.get_pixel(0, 0), Rgb([0, 0, 0]), "background untouched");
    }

    #[test]
    fn a_thick_outline_is_the_band_within_thickness_of_the_background() {
        let mut mask = GrayImage::new(12, 10);
        for y in 1..9 {
            for x in 2..11 {
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        let mut image = RgbImage::new(12, 10);
        draw_outline(&mut image, &mask, 2, PREDICTED);
        // The brute-force definition: foreground with background (or the border) within 2 pixels.
        for (x, y, p) in mask.enumerate_pixels() {
            let near_background = (-2i64..=2).any(|dy| {
                (-2i64..=2).any(|dx| {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    nx < 0 || ny < 0 || nx >= 12 || ny >= 10 || mask.get_pixel(nx as u32, ny as u32).0[0] == 0
                })
            });
            let painted = *image.get_pixel(x, y) == PREDICTED;
            assert_eq!(painted, p.0[0] > 0 && near_background, "pixel ({x}, {y})");
        }
    }

    /// Foreground with background (or the border) within `t` pixels: the definition, brute force.
    fn brute_outline(mask: &GrayImage, t: i64) -> Vec<bool> {
        let (w, h) = (mask.width() as i64, mask.height() as i64);
        let on = |x: i64, y: i64| x >= 0 && y >= 0 && x < w && y < h && mask.get_pixel(x as u32, y as u32).0[0] > 0;
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let near = (-t..=t).any(|dy| (-t..=t).any(|dx| !on(x + dx, y + dy)));
                out.push(on(x, y) && near);
            }
        }
        out
    }

    #[test]
    fn outlines_of_random_masks_match_the_definition() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for (w, h, t) in [(17, 13, 1), (20, 9, 2), (5, 30, 3), (3, 3, 1), (31, 24, 4), (1, 7, 1)] {
            // Blocky masks (runs of foreground), so that some pixels are inside.
            let mut mask = GrayImage::new(w, h);
            for _ in 0..6 {
                let (x0, y0) = (next() % w, next() % h);
                let (bw, bh) = (1 + next() % w, 1 + next() % h);
                for y in y0..(y0 + bh).min(h) {
                    for x in x0..(x0 + bw).min(w) {
                        mask.put_pixel(x, y, image::Luma([255]));
                    }
                }
            }
            let mut image = RgbImage::new(w, h);
            draw_outline(&mut image, &mask, t, PREDICTED);
            let painted: Vec<bool> = image.pixels().map(|p| *p == PREDICTED).collect();
            assert_eq!(painted, brute_outline(&mask, t as i64), "{w}×{h}, thickness {t}");
        }
    }

    #[test]
    fn the_streamed_overlay_is_the_drawn_overlay_and_the_mask_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let image = RgbImage::from_fn(450, 410, |x, y| Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 7) as u8]));
        let disc = |cx: i64, cy: i64, r: i64| {
            GrayImage::from_fn(450, 410, |x, y| {
                let d = (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2);
                image::Luma([if d < r * r { 255 } else { 0 }])
            })
        };
        let (mask, truth) = (disc(200, 180, 90), disc(230, 200, 100));
        let images = Images { image: &image, mask: &mask, truth: Some(&truth), probabilities: None };
        let paths = write_images(dir.path(), &images, &OutputConfig::default()).unwrap();
        let written = image::open(paths.overlay.unwrap()).unwrap().to_rgb8();
        assert!(written == overlay(&image, &mask, Some(&truth)), "overlay.png differs from overlay()");
        let read_mask = image::open(paths.mask.unwrap()).unwrap().to_luma8();
        assert!(read_mask == mask, "mask.png differs from the mask");
    }

    #[test]
    fn overlay_max_size_scales_the_longer_side_down() {
        let dir = tempfile::tempdir().unwrap();
        let image = RgbImage::from_pixel(800, 300, Rgb([90, 90, 90]));
        let mask = GrayImage::from_fn(800, 300, |x, _| image::Luma([if x < 400 { 255 } else { 0 }]));
        let images = Images { image: &image, mask: &mask, truth: None, probabilities: None };
        let settings = OutputConfig { overlay_max_size: 200, ..OutputConfig::default() };
        let paths = write_images(dir.path(), &images, &settings).unwrap();
        let written = image::open(paths.overlay.unwrap()).unwrap().to_rgb8();
        assert_eq!(written.dimensions(), (200, 75));
        assert_eq!(*written.get_pixel(99, 40), PREDICTED, "the outline at the mask's edge");
        assert_eq!(*written.get_pixel(150, 40), Rgb([90, 90, 90]));
        assert_eq!(image::open(paths.mask.unwrap()).unwrap().dimensions(), (800, 300), "the mask keeps its size");
        // No larger than the limit: written as it is.
        let settings = OutputConfig { overlay_max_size: 800, ..OutputConfig::default() };
        let paths = write_images(&dir.path().join("b"), &images, &settings).unwrap();
        assert_eq!(image::open(paths.overlay.unwrap()).unwrap().dimensions(), (800, 300));
    }

    #[test]
    fn files_are_written_and_no_temporaries_remain() {
        let dir = tempfile::tempdir().unwrap();
        let case = dir.path().join("case");
        let image = RgbImage::new(4, 4);
        let mask = GrayImage::from_pixel(4, 4, image::Luma([255]));
        let images = Images { image: &image, mask: &mask, truth: Some(&mask), probabilities: None };
        let settings = OutputConfig { mask: true, overlay: true, probabilities: false, overlay_max_size: 0 };
        let paths = write_images(&case, &images, &settings).unwrap();
        write_json(&case, &serde_json::json!({"ok": true})).unwrap();
        assert!(paths.mask.unwrap().is_file() && paths.overlay.unwrap().is_file());
        let names: Vec<String> =
            std::fs::read_dir(&case).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
