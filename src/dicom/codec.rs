//! Codecs this module runs itself instead of dicom-rs's: RLE Lossless (dicom-rs 0.10.1 panics on
//! some cut streams and refuses 32 bits) and JPEG with Photometric Interpretation RGB (dicom-rs
//! always applies a YCbCr transform). Both work on one frame's compressed stream.

use dicom_dictionary_std::uids;

use super::error::DicomError;
use super::image_info::ImageInfo;

/// The decoder this module uses instead of dicom-rs's for this image, if any.
pub(crate) fn own_codec(info: &ImageInfo) -> Option<&'static str> {
    if !info.encapsulated {
        None
    } else if info.ts_uid == uids::RLE_LOSSLESS {
        Some("efen RLE")
    } else if raw_rgb_jpeg(info) {
        Some("jpeg-decoder 0.3, colour as the stream declares")
    } else {
        None
    }
}

/// RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one PackBits segment per
/// byte of each sample (most significant byte first). Returns interleaved little-endian samples.
pub(crate) fn decode_rle(stream: &[u8], info: &ImageInfo) -> Result<Vec<u8>, String> {
    if info.bits_allocated == 1 {
        return Err("1-bit RLE is not supported".into());
    }
    let width = info.bits_allocated as usize / 8;
    let samples = info.samples as usize;
    let pixels = info.rows as usize * info.columns as usize;
    let header: Vec<usize> = stream
        .get(..64)
        .ok_or("the RLE header is cut short")?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let segments = header[0];
    if segments != width * samples {
        return Err(format!(
            "{segments} RLE segments, expected {} ({samples} sample(s) × {width} byte(s))",
            width * samples
        ));
    }
    let mut out = vec![0u8; pixels * samples * width];
    for segment in 0..segments {
        let start = header[1 + segment];
        let end = if segment + 1 < segments { header[2 + segment] } else { stream.len() };
        let data = stream
            .get(start..end.min(stream.len()))
            .filter(|_| start >= 64 && start <= end)
            .ok_or_else(|| format!("RLE segment {segment} at {start}..{end} is outside the frame"))?;
        let (sample, byte_from_msb) = (segment / width, segment % width);
        let byte_le = width - 1 - byte_from_msb;
        let mut pixel = 0usize;
        let mut at = 0usize;
        let mut emit = |value: u8, pixel: &mut usize| {
            if *pixel < pixels {
                out[(*pixel * samples + sample) * width + byte_le] = value;
            }
            *pixel += 1;
        };
        while at < data.len() && pixel < pixels {
            let n = data[at] as i8;
            at += 1;
            if n >= 0 {
                let run = data.get(at..at + n as usize + 1).ok_or("an RLE literal run is cut short")?;
                run.iter().for_each(|v| emit(*v, &mut pixel));
                at += n as usize + 1;
            } else if n != -128 {
                let value = *data.get(at).ok_or("an RLE repeat run is cut short")?;
                (0..(1 - n as isize) as usize).for_each(|_| emit(value, &mut pixel));
                at += 1;
            }
        }
        if pixel < pixels {
            return Err(format!("RLE segment {segment} gives {pixel} of {pixels} pixels"));
        }
    }
    Ok(out)
}

/// JPEG baseline/extended with Photometric Interpretation RGB: the samples were compressed as
/// they are, but jpeg-decoder (inside dicom-rs) assumes YCbCr unless the stream says otherwise.
pub(crate) fn raw_rgb_jpeg(info: &ImageInfo) -> bool {
    info.samples == 3
        && info.photometric == "RGB"
        && info.bits_allocated == 8
        && matches!(info.ts_uid.as_str(), "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51")
}

/// The bytes of one frame's compressed stream: one fragment per frame, all fragments for a
/// single frame, or the fragments the Basic Offset Table assigns to the frame.
pub(crate) fn frame_fragments(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    info: &ImageInfo,
    frame: u32,
) -> Result<Vec<u8>, DicomError> {
    let missing = |reason: String| DicomError::DecodeFrame { frame, transfer_syntax: info.ts_label(), reason };
    if info.frames == 1 {
        return Ok(fragments.concat());
    }
    if fragments.len() == info.frames as usize {
        return Ok(fragments[frame as usize].clone());
    }
    if offsets.len() != info.frames as usize {
        return Err(missing(format!(
            "{} fragments for {} frames and no usable offset table",
            fragments.len(),
            info.frames
        )));
    }
    let (start, end) = (offsets[frame as usize] as usize, offsets.get(frame as usize + 1).map(|o| *o as usize));
    let mut at = 0usize;
    let mut stream = Vec::new();
    for fragment in fragments {
        if at >= start && end.is_none_or(|end| at < end) {
            stream.extend_from_slice(fragment);
        }
        at += fragment.len() + 8;
    }
    if stream.is_empty() {
        return Err(missing(format!("no fragment at offset {start}")));
    }
    Ok(stream)
}

/// Decodes an RGB JPEG without a colour transform when the stream says nothing about colour (no
/// JFIF, no Adobe APP14), as Photometric Interpretation RGB means (PS3.5 8.2.1); otherwise the
/// decoder follows the markers (and the component identifiers 'R', 'G', 'B').
pub(crate) fn decode_rgb_jpeg(stream: &[u8], info: &ImageInfo) -> Result<Vec<u8>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    // The header's size, not the stream's, decides the allocation: cap it at this frame's.
    decoder.set_max_decoding_buffer_size(info.rows as usize * info.columns as usize * 3 + 4096);
    if !has_colour_marker(stream) {
        decoder.set_color_transform(jpeg_decoder::ColorTransform::None);
    }
    decoder.decode().map_err(|e| format!("JPEG decoder failure: {e}"))
}

/// True when the markers before the first scan include JFIF or a complete Adobe APP14.
fn has_colour_marker(stream: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= stream.len() && stream[at] == 0xFF {
        let marker = stream[at + 1];
        if marker == 0xDA {
            break;
        }
        let length = u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize;
        let body = &stream[(at + 4).min(stream.len())..(at + 2 + length).min(stream.len())];
        if marker == 0xE0 && body.starts_with(b"JFIF") {
            return true;
        }
        // A complete APP14 (with its transform byte); a cut one is ignored, as libjpeg does.
        if marker == 0xEE && body.starts_with(b"Adobe") && body.len() >= 12 {
            return true;
        }
        at += 2 + length;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::pixels::tests::info;

    fn rle_frame(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut header = [0u32; 16];
        header[0] = segments.len() as u32;
        let mut at = 64;
        for (i, segment) in segments.iter().enumerate() {
            header[i + 1] = at as u32;
            at += segment.len();
        }
        let mut out: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
        segments.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn rle_decodes_runs_and_literals_msb_segment_first() {
        // 16-bit gray, pixels 0x0102, 0x0102, 0x0304, 0x0506: high bytes then low bytes.
        let high = vec![0xFF, 0x01, 0x01, 0x03, 0x05]; // repeat 0x01 twice, literal 03 05
        let low = vec![0x03, 0x02, 0x02, 0x04, 0x06];
        let decoded = decode_rle(&rle_frame(&[high, low]), &info(1, 16, "MONOCHROME2")).unwrap();
        assert_eq!(decoded, vec![0x02, 0x01, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05]);
        // Cut streams and wrong segment counts are errors, not panics.
        let stream = rle_frame(&[vec![0x03, 1, 2, 3, 4]]);
        assert!(decode_rle(&stream, &info(1, 16, "MONOCHROME2")).is_err());
        for end in 0..stream.len() {
            let _ = decode_rle(&stream[..end], &info(1, 8, "MONOCHROME2"));
        }
    }

    #[test]
    fn jpeg_colour_markers() {
        let jfif = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07, b'J', b'F', b'I', b'F', 0, 0xFF, 0xDA];
        assert!(has_colour_marker(&jfif));
        let cut_adobe = [0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x07, b'A', b'd', b'o', b'b', b'e', 0xFF, 0xDA];
        assert!(!has_colour_marker(&cut_adobe));
        assert!(!has_colour_marker(&[0xFF, 0xD8]));
    }
}
