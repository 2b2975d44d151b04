//! Intensity: stored values → 8-bit RGB. Gray images go through the Modality LUT (rescale slope
//! and intercept), then a VOI window chosen by [`WindowSetting`], then MONOCHROME1 is inverted.
//! Colour images are scaled to 8 bits; palette images go through their palette.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::error::DicomError;
use super::pixels::{FrameSamples, ImageInfo};

/// How gray values become 8 bits. In TOML: `window = "fromfile"`,
/// `window = { fixed = { center = 40.0, width = 400.0 } }` or
/// `window = { percentile = { low = 1.0, high = 99.0 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum WindowSetting {
    /// The file's first Window Center/Width (with its VOI LUT Function), else its VOI LUT,
    /// else the frame's minimum and maximum.
    #[default]
    #[serde(alias = "from_file")]
    FromFile,
    /// A window in modality units (after rescale), e.g. center 40, width 400 for CT soft tissue.
    Fixed { center: f64, width: f64 },
    /// Percentiles (0–100) of the frame's modality values map to black and white.
    Percentile { low: f64, high: f64 },
}

impl WindowSetting {
    /// Every problem with the setting, for config validation.
    pub fn validate(&self) -> Result<(), DicomError> {
        let bad = |reason: String| Err(DicomError::InvalidWindow { reason });
        match *self {
            WindowSetting::FromFile => Ok(()),
            WindowSetting::Fixed { center, width } => {
                if !center.is_finite() || !width.is_finite() || width < 1.0 {
                    return bad(format!("fixed window center {center}, width {width}: width must be 1 or more"));
                }
                Ok(())
            }
            WindowSetting::Percentile { low, high } => {
                if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                    return bad(format!("percentiles {low}–{high}: need 0 ≤ low < high ≤ 100"));
                }
                Ok(())
            }
        }
    }
}

/// What was applied, for the record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Voi {
    Linear { center: f64, width: f64 },
    LinearExact { center: f64, width: f64 },
    Sigmoid { center: f64, width: f64 },
    Range { low: f64, high: f64 },
    Lut,
}

pub(crate) fn to_rgb(samples: &FrameSamples, info: &ImageInfo, window: &WindowSetting) -> Result<RgbImage, DicomError> {
    window.validate()?;
    let (w, h) = (samples.columns, samples.rows);
    let mut out = RgbImage::new(w, h);
    match samples.photometric.as_str() {
        "RGB" => {
            let max = ((1u64 << samples.bits_stored) - 1) as f64;
            for (dst, src) in out.as_mut().iter_mut().zip(&samples.values) {
                *dst = if samples.bits_stored == 8 {
                    (*src).clamp(0, 255) as u8
                } else {
                    (*src as f64 * 255.0 / max).round().clamp(0.0, 255.0) as u8
                };
            }
        }
        "PALETTE COLOR" => {
            let palette = info.palette.as_ref().expect("checked at open");
            for (dst, v) in out.as_mut().chunks_exact_mut(3).zip(&samples.values) {
                for (channel, lut) in dst.iter_mut().zip(palette) {
                    let entry = lut.lookup(*v);
                    *channel = if lut.bits > 8 { (entry >> 8) as u8 } else { entry as u8 };
                }
            }
        }
        _ => {
            let gray = gray8(samples, info, window);
            let invert = samples.photometric == "MONOCHROME1";
            for (dst, g) in out.as_mut().chunks_exact_mut(3).zip(gray) {
                let g = if invert { 255 - g } else { g };
                dst.copy_from_slice(&[g, g, g]);
            }
        }
    }
    Ok(out)
}

fn gray8(samples: &FrameSamples, info: &ImageInfo, window: &WindowSetting) -> Vec<u8> {
    if let (WindowSetting::FromFile, true, Some(lut)) = (window, info.windows.is_empty(), info.voi_lut.as_ref()) {
        // The VOI LUT takes the modality values (rounded: LUTs are indexed by integers).
        let max = ((1u64 << lut.bits.clamp(1, 16)) - 1) as f64;
        let max = max.min(lut.data.iter().copied().max().unwrap_or(1).max(1) as f64).max(1.0);
        return samples
            .values
            .iter()
            .map(|v| {
                let m = info.modality_value(*v).round() as i64;
                (lut.lookup(m) as f64 * 255.0 / max).round().clamp(0.0, 255.0) as u8
            })
            .collect();
    }
    let modality: Vec<f64> = samples.values.iter().map(|v| info.modality_value(*v)).collect();
    let voi = choose(&modality, info, window);
    if voi == Voi::Lut {
        unreachable!("handled above");
    }
    modality.iter().map(|x| apply(voi, *x)).collect()
}

fn choose(modality: &[f64], info: &ImageInfo, window: &WindowSetting) -> Voi {
    match *window {
        WindowSetting::Fixed { center, width } => Voi::Linear { center, width },
        WindowSetting::Percentile { low, high } => {
            let (low, high) = percentiles(modality, low, high);
            Voi::Range { low, high }
        }
        WindowSetting::FromFile => match info.windows.first() {
            Some(&(center, width)) => match info.voi_function.as_str() {
                "LINEAR_EXACT" => Voi::LinearExact { center, width },
                "SIGMOID" => Voi::Sigmoid { center, width },
                _ => Voi::Linear { center, width: width.max(1.0) },
            },
            None => {
                let (low, high) = min_max(modality);
                Voi::Range { low, high }
            }
        },
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// Nearest-rank percentiles.
fn percentiles(values: &[f64], low: f64, high: f64) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    };
    (at(low), at(high))
}

/// DICOM PS3.3 C.11.2.1.2 (linear, linear exact, sigmoid) and a plain range map.
fn apply(voi: Voi, x: f64) -> u8 {
    let y = match voi {
        Voi::Linear { center, width } => {
            if width <= 1.0 {
                if x <= center - 0.5 { 0.0 } else { 1.0 }
            } else if x <= center - 0.5 - (width - 1.0) / 2.0 {
                0.0
            } else if x > center - 0.5 + (width - 1.0) / 2.0 {
                1.0
            } else {
                (x - (center - 0.5)) / (width - 1.0) + 0.5
            }
        }
        Voi::LinearExact { center, width } => ((x - center) / width + 0.5).clamp(0.0, 1.0),
        Voi::Sigmoid { center, width } => 1.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
        Voi::Range { low, high } => {
            if high > low {
                ((x - low) / (high - low)).clamp(0.0, 1.0)
            } else {
                0.0
            }
        }
        Voi::Lut => 0.0,
    };
    (y * 255.0).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        let voi = Voi::Linear { center: 40.0, width: 400.0 };
        assert_eq!(apply(voi, -1000.0), 0);
        assert_eq!(apply(voi, 1000.0), 255);
        assert_eq!(apply(voi, 39.5), 128);
        let exact = Voi::LinearExact { center: 0.0, width: 100.0 };
        assert_eq!(apply(exact, 50.0), 255);
        assert_eq!(apply(exact, -50.0), 0);
        assert_eq!(apply(Voi::Sigmoid { center: 0.0, width: 10.0 }, 0.0), 128);
        assert_eq!(apply(Voi::Range { low: 5.0, high: 5.0 }, 5.0), 0);
    }

    #[test]
    fn percentiles_and_min_max() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(percentiles(&values, 1.0, 99.0), (1.0, 99.0));
        assert_eq!(min_max(&values), (0.0, 100.0));
    }

    #[test]
    fn window_setting_reads_lowercase_tags_and_validates() {
        #[derive(Deserialize)]
        struct Holder {
            window: WindowSetting,
        }
        let read = |text: &str| serde_json::from_str::<Holder>(text).map(|h| h.window);
        assert_eq!(read(r#"{"window":"fromfile"}"#).unwrap(), WindowSetting::FromFile);
        assert_eq!(
            read(r#"{"window":{"fixed":{"center":40,"width":400}}}"#).unwrap(),
            WindowSetting::Fixed { center: 40.0, width: 400.0 }
        );
        assert_eq!(
            read(r#"{"window":{"percentile":{"low":1,"high":99}}}"#).unwrap(),
            WindowSetting::Percentile { low: 1.0, high: 99.0 }
        );
        assert!(read(r#"{"window":"FromFile"}"#).is_err());
        let toml: Holder = toml::from_str("window = { fixed = { center = 40.0, width = 400.0 } }").unwrap();
        assert_eq!(toml.window, WindowSetting::Fixed { center: 40.0, width: 400.0 });
        let toml: Holder = toml::from_str("window = \"fromfile\"").unwrap();
        assert_eq!(toml.window, WindowSetting::FromFile);
        assert!(WindowSetting::Percentile { low: 50.0, high: 10.0 }.validate().is_err());
        assert!(WindowSetting::Fixed { center: 0.0, width: 0.0 }.validate().is_err());
    }
}
