//! The image's attributes, read and checked once at open: the Image Pixel module, rescale and
//! the LUTs ([`ImageInfo`]). The pixel decoders ([`super::pixels`], [`super::codec`]) read them.

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use super::error::DicomError;
use super::read::{float, floats, le_bytes, required_uint, string, strings, transfer_syntax_name, uint};

/// The largest frame decoded (8192 × 8192, beyond any mammogram): more would be a whole-slide
/// image, which needs tiling, or a corrupt header asking for gigabytes.
pub(crate) const MAX_FRAME_PIXELS: u64 = 1 << 26;

/// The attributes of the Image Pixel module and the LUTs, read once at open.
#[derive(Debug, Clone)]
pub(crate) struct ImageInfo {
    pub rows: u32,
    pub columns: u32,
    pub samples: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub photometric: String,
    pub planar: bool,
    pub frames: u32,
    pub slope: f64,
    pub intercept: f64,
    /// The Modality LUT Sequence's LUT, which replaces Rescale Slope/Intercept when present.
    pub modality_lut: Option<Lut>,
    /// Window Center/Width pairs, in file order.
    pub windows: Vec<(f64, f64)>,
    pub voi_function: String,
    pub voi_lut: Option<Lut>,
    pub palette: Option<[Lut; 3]>,
    pub encapsulated: bool,
    pub ts_uid: String,
}

/// A LUT: descriptor (entries, first mapped value, bits) and its data.
#[derive(Debug, Clone)]
pub(crate) struct Lut {
    pub first: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

impl Lut {
    pub fn lookup(&self, value: i64) -> u16 {
        let index = (value - self.first).clamp(0, self.data.len() as i64 - 1);
        self.data[index as usize]
    }
}

const SEGMENTED_PALETTE: [dicom_core::Tag; 3] = [
    tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];

impl ImageInfo {
    pub fn read(file: &DefaultDicomObject) -> Result<Self, DicomError> {
        let obj: &InMemDicomObject = file;
        let ts_uid = file.meta().transfer_syntax().trim_end_matches('\0').to_string();
        let Some(pixel_data) = obj.get(tags::PIXEL_DATA) else {
            let sop_class_uid = string(obj, tags::SOP_CLASS_UID).unwrap_or_default();
            let float_data =
                obj.get(tags::FLOAT_PIXEL_DATA).is_some() || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some();
            let sop_class_name = if float_data {
                "float pixel data (parametric map) is not supported".to_string()
            } else if sop_class_uid.is_empty() {
                "the data set has neither pixel data nor a SOP Class UID".to_string()
            } else {
                super::read::sop_class_name(&sop_class_uid)
            };
            let sop_class_uid = if sop_class_uid.is_empty() { "(none)".to_string() } else { sop_class_uid };
            return Err(DicomError::NoPixelData { sop_class_uid, sop_class_name });
        };
        let encapsulated = matches!(pixel_data.value(), Value::PixelSequence(_));
        let rows = required_uint(obj, tags::ROWS)?;
        let columns = required_uint(obj, tags::COLUMNS)?;
        let samples = uint(obj, tags::SAMPLES_PER_PIXEL)?.unwrap_or(1) as u16;
        let bits_allocated = required_uint(obj, tags::BITS_ALLOCATED)? as u16;
        let bits_stored = uint(obj, tags::BITS_STORED)?.unwrap_or(bits_allocated as u32) as u16;
        let high_bit = uint(obj, tags::HIGH_BIT)?.unwrap_or((bits_stored as u32).saturating_sub(1)) as u16;
        let signed = uint(obj, tags::PIXEL_REPRESENTATION)?.unwrap_or(0) == 1;
        let photometric = string(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_else(|| if samples == 3 { "RGB" } else { "MONOCHROME2" }.to_string())
            .to_uppercase();
        let planar = uint(obj, tags::PLANAR_CONFIGURATION)?.unwrap_or(0) == 1;
        let frames = uint(obj, tags::NUMBER_OF_FRAMES)?.unwrap_or(1).max(1);
        let unsupported = |reason: String| DicomError::UnsupportedPixelFormat {
            photometric: photometric.clone(),
            samples,
            bits_allocated,
            reason,
        };
        if rows == 0 || columns == 0 {
            return Err(unsupported(format!("the image is {columns}×{rows}")));
        }
        if rows as u64 * columns as u64 > MAX_FRAME_PIXELS {
            return Err(unsupported(format!(
                "a {columns}×{rows} frame is over the limit of {MAX_FRAME_PIXELS} pixels"
            )));
        }
        if rows as u64 * columns as u64 * frames as u64 > 1 << 40 {
            return Err(unsupported(format!("{frames} frame(s) of {columns}×{rows} is too large")));
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(unsupported("bits allocated must be 1, 8, 16 or 32".into()));
        }
        if bits_stored == 0 || bits_stored > bits_allocated || high_bit >= bits_allocated {
            return Err(unsupported(format!(
                "bits stored {bits_stored} and high bit {high_bit} do not fit {bits_allocated} bits allocated"
            )));
        }
        let expected_samples = match photometric.as_str() {
            "MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR" => 1,
            "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" | "YBR_PARTIAL_420" => 3,
            other => return Err(unsupported(format!("photometric interpretation {other} is not supported"))),
        };
        if samples != expected_samples {
            return Err(unsupported(format!("{photometric} needs {expected_samples} sample(s) per pixel")));
        }
        if photometric == "YBR_FULL_422" && !encapsulated && (columns % 2 != 0 || bits_allocated != 8) {
            return Err(unsupported("native YBR_FULL_422 needs an even number of columns and 8 bits".into()));
        }
        let (slope, intercept) =
            (float(obj, tags::RESCALE_SLOPE)?.unwrap_or(1.0), float(obj, tags::RESCALE_INTERCEPT)?.unwrap_or(0.0));
        let modality_lut = first_item(obj, tags::MODALITY_LUT_SEQUENCE)
            .and_then(|item| read_lut(item, tags::LUT_DESCRIPTOR, tags::LUT_DATA, signed).transpose())
            .transpose()?;
        let centers = floats(obj, tags::WINDOW_CENTER).unwrap_or_default();
        let widths = floats(obj, tags::WINDOW_WIDTH).unwrap_or_default();
        let windows = centers.into_iter().zip(widths).filter(|(_, w)| *w > 0.0).collect();
        let voi_function =
            strings(obj, tags::VOILUT_FUNCTION).into_iter().next().unwrap_or_else(|| "LINEAR".into()).to_uppercase();
        let voi_lut = first_item(obj, tags::VOILUT_SEQUENCE)
            .and_then(|item| read_lut(item, tags::LUT_DESCRIPTOR, tags::LUT_DATA, signed).transpose())
            .transpose()?;
        let palette = if photometric == "PALETTE COLOR" {
            if SEGMENTED_PALETTE.iter().any(|t| obj.get(*t).is_some()) {
                return Err(unsupported("segmented palette color LUTs are not supported".into()));
            }
            let lut = |descriptor, data| {
                read_lut(obj, descriptor, data, false)?
                    .ok_or_else(|| unsupported("the palette color LUT is missing".into()))
            };
            Some([
                lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
                lut(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
                lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
            ])
        } else {
            None
        };
        let info = ImageInfo {
            rows,
            columns,
            samples,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            photometric,
            planar,
            frames,
            slope,
            intercept,
            modality_lut,
            windows,
            voi_function,
            voi_lut,
            palette,
            encapsulated,
            ts_uid,
        };
        match pixel_data.value() {
            Value::Primitive(p) => {
                let actual = p.calculate_byte_len();
                let expected = info.total_native_bytes();
                if actual < expected {
                    return Err(DicomError::PixelDataSize {
                        actual,
                        expected,
                        rows,
                        columns,
                        samples,
                        bits_allocated,
                        frames,
                    });
                }
            }
            Value::PixelSequence(seq) => {
                if seq.fragments().is_empty() {
                    return Err(DicomError::DecodeFrame {
                        frame: 0,
                        transfer_syntax: info.ts_label(),
                        reason: "the encapsulated pixel data has no fragments".into(),
                    });
                }
                // Every frame takes at least one fragment (PS3.5 A.4): a larger Number of Frames
                // would make efen queue cases for frames that are not there.
                if seq.fragments().len() < frames as usize {
                    return Err(DicomError::Truncated {
                        reason: format!(
                            "Number of Frames is {frames} but the encapsulated pixel data has {} fragment(s)",
                            seq.fragments().len()
                        ),
                    });
                }
            }
            Value::Sequence(_) => {
                return Err(DicomError::InvalidAttribute {
                    name: "PixelData",
                    value: "a sequence".into(),
                    reason: "pixel data must be bytes".into(),
                });
            }
        }
        Ok(info)
    }

    /// Enhanced multi-frame images keep rescale and window in their functional groups (Pixel
    /// Value Transformation, Frame VOI LUT), per frame or shared; those win over the top level.
    pub fn for_frame<'a>(
        &'a self,
        obj: &InMemDicomObject,
        frame: u32,
    ) -> Result<std::borrow::Cow<'a, ImageInfo>, DicomError> {
        let groups: Vec<&InMemDicomObject> = [
            obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
                .and_then(|e| e.value().items())
                .and_then(|items| items.get(frame as usize)),
            first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE),
        ]
        .into_iter()
        .flatten()
        .collect();
        let find = |group| groups.iter().find_map(|g| first_item(g, group));
        let transform = find(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE);
        let voi = find(tags::FRAME_VOILUT_SEQUENCE);
        if transform.is_none() && voi.is_none() {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let mut info = self.clone();
        if let Some(t) = transform {
            info.slope = float(t, tags::RESCALE_SLOPE)?.unwrap_or(info.slope);
            info.intercept = float(t, tags::RESCALE_INTERCEPT)?.unwrap_or(info.intercept);
        }
        if let Some(v) = voi {
            let centers = floats(v, tags::WINDOW_CENTER).unwrap_or_default();
            let widths = floats(v, tags::WINDOW_WIDTH).unwrap_or_default();
            let windows: Vec<(f64, f64)> = centers.into_iter().zip(widths).filter(|(_, w)| *w > 0.0).collect();
            if !windows.is_empty() {
                info.windows = windows;
            }
            if let Some(function) = strings(v, tags::VOILUT_FUNCTION).into_iter().next() {
                info.voi_function = function.to_uppercase();
            }
        }
        Ok(std::borrow::Cow::Owned(info))
    }

    pub fn ts_label(&self) -> String {
        format!("{} {}", self.ts_uid, transfer_syntax_name(&self.ts_uid))
    }

    /// Bits in one native frame.
    pub(crate) fn frame_bytes_bits(&self) -> usize {
        let per_pixel = if self.photometric == "YBR_FULL_422" { 2 } else { self.samples as usize };
        self.rows as usize * self.columns as usize * per_pixel * self.bits_allocated as usize
    }

    /// A stored value in modality units: through the Modality LUT when the file has one, else
    /// Rescale Slope and Intercept.
    pub fn modality_value(&self, stored: i64) -> f64 {
        match &self.modality_lut {
            Some(lut) => lut.lookup(stored) as f64,
            None => stored as f64 * self.slope + self.intercept,
        }
    }

    fn total_native_bytes(&self) -> usize {
        (self.frame_bytes_bits() * self.frames as usize).div_ceil(8)
    }
}

fn first_item(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.value().items()?.first()
}

fn read_lut(
    obj: &InMemDicomObject,
    descriptor_tag: dicom_core::Tag,
    data_tag: dicom_core::Tag,
    signed_first: bool,
) -> Result<Option<Lut>, DicomError> {
    let (Some(descriptor), Some(data)) = (obj.get(descriptor_tag), obj.get(data_tag)) else {
        return Ok(None);
    };
    let invalid = |reason: &str| DicomError::InvalidAttribute {
        name: super::read::tag_name(descriptor_tag),
        value: descriptor.value().to_str().map(|s| s.to_string()).unwrap_or_default(),
        reason: reason.into(),
    };
    let descriptor: Vec<i64> =
        descriptor.value().to_multi_int::<i64>().map_err(|_| invalid("expected three integers"))?;
    let [entries, first, bits] = descriptor[..] else {
        return Err(invalid("expected three integers"));
    };
    // 0 means 65536 entries (the count is an unsigned 16-bit value).
    let entries = match entries as usize & 0xFFFF {
        0 => 65536,
        n => n,
    };
    // The first mapped value is US or SS depending on the pixel representation.
    let first = if signed_first { first as u16 as i16 as i64 } else { first & 0xFFFF };
    let bits = bits as u16;
    let bytes = match data.value() {
        Value::Primitive(p) => le_bytes(p),
        _ => return Err(invalid("LUT data must be bytes")),
    };
    let data: Vec<u16> = if bits > 8 || bytes.len() >= entries * 2 {
        // 16-bit entries, or 8-bit entries stored one per 16-bit word.
        let words: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        if bits <= 8 && words.iter().all(|w| *w <= 0xFF) {
            words
        } else if bits <= 8 {
            // Two 8-bit entries per word.
            bytes.iter().map(|b| *b as u16).collect()
        } else {
            words
        }
    } else {
        bytes.iter().map(|b| *b as u16).collect()
    };
    if data.len() < entries {
        return Err(invalid(&format!("the LUT has {} entries, the descriptor says {entries}", data.len())));
    }
    let mut data = data;
    data.truncate(entries);
    Ok(Some(Lut { first, bits, data }))
}
