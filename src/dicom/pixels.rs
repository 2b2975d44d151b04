//! Pixels: the image attributes checked at open, and one frame's stored values.
//!
//! Native (uncompressed, also deflated and big endian) pixel data is unpacked here from the raw
//! bytes, for every bit depth (1, 8, 16, 32), planar configuration and YBR_FULL/YBR_FULL_422.
//! Encapsulated pixel data goes through dicom-pixeldata's codecs (JPEG, JPEG-LS, JPEG 2000, RLE),
//! inside a panic guard; what comes back is unpacked by the same code.

use dicom_core::value::Value;
use dicom_dictionary_std::{tags, uids};
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

use super::codec::{decode_rgb_jpeg, decode_rle, frame_fragments, raw_rgb_jpeg};
use super::error::{DicomError, guard};
pub(crate) use super::image_info::ImageInfo;
use super::read::{le_bytes_range, transfer_syntax_name};
use crate::error::chain;

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
    use crate::dicom::image_info::Lut;

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
