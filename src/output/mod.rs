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

use crate::case::{Frame, Timings};
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
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { mask: true, overlay: true, probabilities: false }
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
}

/// The files written for one case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputPaths {
    pub mask: Option<PathBuf>,
    pub overlay: Option<PathBuf>,
    pub probabilities: Option<PathBuf>,
    pub seg: Option<PathBuf>,
    pub result: Option<PathBuf>,
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
}

impl<'a> From<&'a OutputPaths> for ResultOutputs<'a> {
    fn from(p: &'a OutputPaths) -> ResultOutputs<'a> {
        ResultOutputs {
            mask: p.mask.as_deref(),
            overlay: p.overlay.as_deref(),
            probabilities: p.probabilities.as_deref(),
            seg: p.seg.as_deref(),
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
        save_png(&path, images.mask)?;
        paths.mask = Some(path);
    }
    if settings.overlay {
        let path = dir.join("overlay.png");
        let overlay = overlay(images.image, images.mask, images.truth);
        save_png(&path, &overlay)?;
        paths.overlay = Some(path);
    }
    if let Some(map) = images.probabilities {
        let path = dir.join("probabilities.png");
        save_png(&path, map)?;
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

/// PNG with fast compression: outputs are written for every case, so encoding time is pipeline
/// overhead; they are a few percent larger than at the default level.
fn save_png<P, C>(path: &Path, image: &image::ImageBuffer<P, C>) -> Result<(), EmitError>
where
    P: image::Pixel + image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let tmp = temporary(path);
    let file = std::fs::File::create(&tmp).map_err(|source| EmitError::Write { path: path.into(), source })?;
    let encoder =
        PngEncoder::new_with_quality(std::io::BufWriter::new(file), CompressionType::Fast, FilterType::Adaptive);
    image.write_with_encoder(encoder).map_err(|source| EmitError::Encode { path: path.into(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| EmitError::Write { path: path.into(), source })
}

/// The image with the outlines drawn on it (ground truth first, prediction on top).
pub fn overlay(image: &RgbImage, predicted: &GrayImage, truth: Option<&GrayImage>) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = image.dimensions();
    let thickness = (w.min(h) / 200).max(1);
    if let Some(truth) = truth.filter(|t| t.dimensions() == (w, h)) {
        draw_outline(&mut out, truth, thickness, TRUTH);
    }
    draw_outline(&mut out, predicted, thickness, PREDICTED);
    out
}

/// Paints foreground pixels that lie within `thickness` of the background (or of the border).
pub fn draw_outline(image: &mut RgbImage, mask: &GrayImage, thickness: u32, colour: Rgb<u8>) {
    // A pixel is inside when its whole (2t+1)² window is foreground: an erosion by a square, done
    // as a row pass then a column pass (linear in t, not quadratic; the border counts as background).
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let t = thickness as usize;
    let on: Vec<bool> = mask.as_raw().iter().map(|v| *v > 0).collect();
    let window_all = |line: &[bool], out: &mut [bool]| {
        // out[i] = every line[j] with |i - j| ≤ t, using the run of `true` that ends at each place.
        let n = line.len();
        let mut run = vec![0usize; n];
        let mut count = 0;
        for i in 0..n {
            count = if line[i] { count + 1 } else { 0 };
            run[i] = count;
        }
        for i in 0..n {
            out[i] = i >= t && i + t < n && run[i + t] > 2 * t;
        }
    };
    let mut rows_inside = vec![false; w * h];
    for y in 0..h {
        window_all(&on[y * w..(y + 1) * w], &mut rows_inside[y * w..(y + 1) * w]);
    }
    let (mut column, mut inside) = (vec![false; h], vec![false; h]);
    for x in 0..w {
        for y in 0..h {
            column[y] = rows_inside[y * w + x];
        }
        window_all(&column, &mut inside);
        for y in 0..h {
            if on[y * w + x] && !inside[y] {
                image.put_pixel(x as u32, y as u32, colour);
            }
        }
    }
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

    #[test]
    fn files_are_written_and_no_temporaries_remain() {
        let dir = tempfile::tempdir().unwrap();
        let case = dir.path().join("case");
        let image = RgbImage::new(4, 4);
        let mask = GrayImage::from_pixel(4, 4, image::Luma([255]));
        let images = Images { image: &image, mask: &mask, truth: Some(&mask), probabilities: None };
        let settings = OutputConfig { mask: true, overlay: true, probabilities: false };
        let paths = write_images(&case, &images, &settings).unwrap();
        write_json(&case, &serde_json::json!({"ok": true})).unwrap();
        assert!(paths.mask.unwrap().is_file() && paths.overlay.unwrap().is_file());
        let names: Vec<String> =
            std::fs::read_dir(&case).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
