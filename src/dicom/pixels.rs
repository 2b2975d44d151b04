//! Pixels: the image attributes checked at open, and one frame's stored values.
//!
//! Native (uncompressed, also deflated and big endian) pixel data is unpacked here from the raw
//! bytes, for every bit depth (1, 8, 16, 32), planar configuration and YBR_FULL/YBR_FULL_422.
//! Encapsulated pixel data goes through dicom-pixeldata's codecs (JPEG, JPEG-LS, JPEG 2000, RLE),
//! inside a panic guard; what comes back is unpacked by the same code.

use dicom_core::value::Value;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;

use super::codec::{decode_rgb_jpeg, decode_rle, frame_fragments, raw_rgb_jpeg};
use super::error::{DicomError, chain, guard};
use super::read::{
    float, floats, le_bytes, le_bytes_range, required_uint, string, strings, transfer_syntax_name, uint,
};

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

/// One decoded frame: stored values (before any LUT), gray or RGB interleaved.
#[derive(Debug, Clone)]
pub struct FrameSamples {
    pub rows: u32,
    pub columns: u32,
    /// 1 (gray or palette indices) or 3 (RGB, interleaved).
    pub samples_per_pixel: u16,
    /// After conversion: MONOCHROME1, MONOCHROME2, PALETTE COLOR or RGB.
    pub photometric: String,
    /// Bits stored of the values (RGB values keep their bit depth; YBR converts at the same depth).
    pub bits_stored: u16,
    pub values: Vec<i64>,
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
    fn frame_bytes_bits(&self) -> usize {
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

/// Stored values of one frame.
pub(crate) fn frame_samples(
    file: &DefaultDicomObject,
    info: &ImageInfo,
    frame: u32,
) -> Result<FrameSamples, DicomError> {
    if frame >= info.frames {
        return Err(DicomError::FrameOutOfRange { frame, frames: info.frames });
    }
    let pixel_data = file.get(tags::PIXEL_DATA).expect("checked at open");
    let (bytes, bits_allocated, photometric, planar) = match pixel_data.value() {
        Value::Primitive(p) => {
            let bytes = native_frame(p, info, frame, big_endian(&info.ts_uid));
            (bytes, info.bits_allocated, info.photometric.clone(), info.planar)
        }
        Value::PixelSequence(sequence) if info.ts_uid == uids::RLE_LOSSLESS => {
            // Our own RLE: dicom-rs 0.10.1 panics on some cut streams and refuses 32 bits.
            let stream = frame_fragments(sequence.fragments(), sequence.offset_table(), info, frame)?;
            let bytes = decode_rle(&stream, info).map_err(|reason| DicomError::DecodeFrame {
                frame,
                transfer_syntax: info.ts_label(),
                reason,
            })?;
            (bytes, info.bits_allocated, info.photometric.clone(), false)
        }
        Value::PixelSequence(sequence) if raw_rgb_jpeg(info) => {
            let stream = frame_fragments(sequence.fragments(), sequence.offset_table(), info, frame)?;
            let bytes = guard("decoding a JPEG frame", || decode_rgb_jpeg(&stream, info))?
                .map_err(|reason| DicomError::DecodeFrame { frame, transfer_syntax: info.ts_label(), reason })?;
            (bytes, 8, "RGB".to_string(), false)
        }
        _ => {
            let decoded = guard("decoding pixel data", || {
                file.decode_pixel_data_frame(frame)
                    .map(|d| (d.data().to_vec(), d.bits_allocated(), d.photometric_interpretation().to_string()))
            })?
            .map_err(|e| decode_error(info, frame, &e))?;
            let (bytes, bits, decoded_pi) = decoded;
            // dicom-rs labels every decoded 3-sample frame RGB. JPEG and JPEG 2000 decoders
            // do convert colour; JPEG-LS hands back the samples as encoded.
            let photometric = if info.samples == 3
                && info.photometric == "YBR_FULL"
                && info.ts_uid.starts_with("1.2.840.10008.1.2.4.8")
            {
                "YBR_FULL".to_string()
            } else {
                decoded_pi.trim().to_uppercase()
            };
            (bytes, bits, photometric, false)
        }
    };
    unpack(info, frame, &bytes, bits_allocated, &photometric, planar)
}

fn big_endian(ts_uid: &str) -> bool {
    #[allow(deprecated)]
    let be = uids::EXPLICIT_VR_BIG_ENDIAN;
    ts_uid == be
}

/// Slices one frame out of native pixel data and puts it in little-endian sample order.
/// Only this frame's bytes are copied, so frames of a large multi-frame object cost the same.
fn native_frame(value: &dicom_core::PrimitiveValue, info: &ImageInfo, frame: u32, big_endian: bool) -> Vec<u8> {
    let was_bytes = matches!(value, dicom_core::PrimitiveValue::U8(_));
    let frame_bits = info.frame_bytes_bits();
    if info.bits_allocated == 1 {
        // Bits run on across frames: unpack this frame's bits into one byte each.
        let start = frame_bits * frame as usize;
        let bytes = le_bytes_range(value, start / 8, (start + frame_bits).div_ceil(8));
        let skip = start % 8;
        return (skip..skip + frame_bits).map(|bit| (bytes[bit / 8] >> (bit % 8)) & 1).collect();
    }
    let size = frame_bits / 8;
    let mut bytes = le_bytes_range(value, size * frame as usize, size * (frame as usize + 1));
    let width = info.bits_allocated as usize / 8;
    if big_endian && width > 1 {
        if was_bytes {
            // OB in big endian: the stream order, swap each sample.
            bytes.chunks_exact_mut(width).for_each(|c| c.reverse());
        } else if width == 4 {
            // Read as 16-bit words already swapped: swap the words within each sample.
            bytes.chunks_exact_mut(4).for_each(|c| {
                c.swap(0, 2);
                c.swap(1, 3);
            });
        }
    }
    bytes
}

fn decode_error(info: &ImageInfo, frame: u32, error: &dicom_pixeldata::Error) -> DicomError {
    let reason = chain(error);
    let name = transfer_syntax_name(&info.ts_uid);
    let lower = reason.to_lowercase();
    if info.ts_uid == "1.2.840.10008.1.2.4.51" && info.bits_stored > 8 {
        return DicomError::UnsupportedTransferSyntax {
            uid: info.ts_uid.clone(),
            name: format!("{name}, {}-bit", info.bits_stored),
            hint: "12-bit JPEG extended is not decoded by dicom-rs (jpeg-decoder); \
                   decompress it first with dcmtk: `dcmdjpeg in.dcm out.dcm`"
                .into(),
        };
    }
    if lower.contains("unsupported transfer syntax")
        || lower.contains("unknown transfer syntax")
        || lower.contains("cannot decode") && lower.contains("transfer syntax")
    {
        return DicomError::UnsupportedTransferSyntax {
            uid: info.ts_uid.clone(),
            name,
            hint: "no decoder in this build; decompress it first with dcmtk \
                   (`dcmdjpeg`, `dcmdrle`, `dcmdjpls`) or gdcmconv --raw"
                .into(),
        };
    }
    DicomError::DecodeFrame { frame, transfer_syntax: info.ts_label(), reason }
}

/// Bytes of one frame (little endian samples, one byte per sample for 1-bit) → stored values.
fn unpack(
    info: &ImageInfo,
    frame: u32,
    bytes: &[u8],
    bits_allocated: u16,
    photometric: &str,
    planar: bool,
) -> Result<FrameSamples, DicomError> {
    let (rows, columns) = (info.rows, info.columns);
    let pixels = rows as usize * columns as usize;
    let subsampled = photometric == "YBR_FULL_422" && !info.encapsulated;
    let count = if subsampled { pixels * 2 } else { pixels * info.samples as usize };
    let width = (bits_allocated as usize).div_ceil(8).max(1);
    let needed = if bits_allocated == 1 { count } else { count * width };
    if bytes.len() < needed {
        return Err(DicomError::DecodeFrame {
            frame,
            transfer_syntax: info.ts_label(),
            reason: format!("the decoder gave {} bytes, the frame needs {needed}", bytes.len()),
        });
    }
    let shift = (info.high_bit + 1).saturating_sub(info.bits_stored) as u32;
    let bits_stored = info.bits_stored.min(bits_allocated).max(1) as u32;
    let mask: u64 = if bits_stored >= 64 { u64::MAX } else { (1u64 << bits_stored) - 1 };
    let signed = info.signed && photometric.starts_with("MONOCHROME");
    let read = |i: usize| -> i64 {
        let raw: u64 = match width {
            1 => bytes[i] as u64,
            2 => u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u64,
            _ => u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]) as u64,
        };
        let raw = if bits_allocated == 1 { raw & 1 } else { (raw >> shift) & mask };
        if signed && bits_allocated > 1 && raw >> (bits_stored - 1) & 1 == 1 {
            raw as i64 - (1i64 << bits_stored)
        } else {
            raw as i64
        }
    };
    let mut values: Vec<i64> = if planar && info.samples == 3 {
        (0..pixels).flat_map(|p| [p, pixels + p, 2 * pixels + p]).map(read).collect()
    } else {
        (0..count).map(read).collect()
    };
    if subsampled {
        values = (0..pixels / 2)
            .flat_map(|pair| {
                let [y1, y2, cb, cr] = [0, 1, 2, 3].map(|k| values[pair * 4 + k]);
                [y1, cb, cr, y2, cb, cr]
            })
            .collect();
    }
    let mut photometric = photometric.to_string();
    if matches!(photometric.as_str(), "YBR_FULL" | "YBR_FULL_422") {
        let max = mask as f64;
        let half = (1u64 << (bits_stored - 1)) as f64;
        for px in values.chunks_exact_mut(3) {
            let (y, cb, cr) = (px[0] as f64, px[1] as f64 - half, px[2] as f64 - half);
            let r = y + 1.402 * cr;
            let g = y - 0.344136 * cb - 0.714136 * cr;
            let b = y + 1.772 * cb;
            px[0] = r.round().clamp(0.0, max) as i64;
            px[1] = g.round().clamp(0.0, max) as i64;
            px[2] = b.round().clamp(0.0, max) as i64;
        }
        photometric = "RGB".into();
    } else if info.samples == 3 {
        // YBR_ICT/YBR_RCT/YBR_PARTIAL_420 come out of the JPEG 2000/JPEG decoders as RGB.
        photometric = "RGB".into();
    }
    Ok(FrameSamples {
        rows,
        columns,
        samples_per_pixel: info.samples,
        photometric,
        bits_stored: if bits_allocated == 1 { 1 } else { bits_stored as u16 },
        values,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(samples: u16, bits: u16, photometric: &str) -> ImageInfo {
        ImageInfo {
            rows: 2,
            columns: 2,
            samples,
            bits_allocated: bits,
            bits_stored: bits,
            high_bit: bits - 1,
            signed: false,
            photometric: photometric.into(),
            planar: false,
            frames: 1,
            slope: 1.0,
            intercept: 0.0,
            modality_lut: None,
            windows: Vec::new(),
            voi_function: "LINEAR".into(),
            voi_lut: None,
            palette: None,
            encapsulated: true,
            ts_uid: uids::RLE_LOSSLESS.into(),
        }
    }

    #[test]
    fn ybr_full_becomes_rgb_and_422_is_expanded() {
        let mut native = info(3, 8, "YBR_FULL");
        native.encapsulated = false;
        // Y=128, Cb=Cr=128 is mid gray; Y=76, Cb=85, Cr=255 is (almost) pure red.
        let bytes = [128, 128, 128, 76, 85, 255, 128, 128, 128, 128, 128, 128];
        let rgb = unpack(&native, 0, &bytes, 8, "YBR_FULL", false).unwrap();
        assert_eq!(rgb.photometric, "RGB");
        assert_eq!(&rgb.values[..3], &[128, 128, 128]);
        assert!(rgb.values[3] > 250 && rgb.values[4] < 5 && rgb.values[5] < 5, "{:?}", &rgb.values[3..6]);
        let mut sub = info(3, 8, "YBR_FULL_422");
        sub.encapsulated = false;
        // Two pairs: Y1 Y2 Cb Cr.
        let rgb = unpack(&sub, 0, &[10, 20, 128, 128, 30, 40, 128, 128], 8, "YBR_FULL_422", false).unwrap();
        assert_eq!(rgb.values, vec![10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40]);
    }

    #[test]
    fn modality_lut_replaces_rescale() {
        let mut gray = info(1, 16, "MONOCHROME2");
        gray.slope = 2.0;
        gray.intercept = -10.0;
        assert_eq!(gray.modality_value(5), 0.0);
        gray.modality_lut = Some(Lut { first: 10, bits: 16, data: vec![100, 200, 300] });
        assert_eq!(gray.modality_value(11), 200.0, "the LUT wins over rescale");
        assert_eq!(gray.modality_value(0), 100.0, "below the LUT: its first entry");
        assert_eq!(gray.modality_value(99), 300.0, "above: its last entry");
    }

    #[test]
    fn signed_and_high_bit_samples() {
        let mut gray = info(1, 16, "MONOCHROME2");
        gray.bits_stored = 12;
        gray.high_bit = 11;
        gray.signed = true;
        let bytes: Vec<u8> = [0x0FFFu16, 0x0800, 0x07FF, 0xF001].iter().flat_map(|v| v.to_le_bytes()).collect();
        let values = unpack(&gray, 0, &bytes, 16, "MONOCHROME2", false).unwrap().values;
        assert_eq!(values, vec![-1, -2048, 2047, 1]);
    }
}
