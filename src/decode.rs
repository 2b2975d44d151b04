//! Decode: the bytes of one input → an 8-bit RGB image plus a description of what it was.
//!
//! The format is sniffed from the content, not trusted from the extension. 16-bit samples are
//! scaled to 8 bits, gray is copied into three channels and alpha is dropped: the model sees RGB.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, Limits, RgbImage};

/// Formats the decoder accepts, for messages.
pub const SUPPORTED: &str = "PNG, JPEG, TIFF, BMP";

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a supported image ({SUPPORTED}): the content is not a recognised image format")]
    UnknownFormat,
    #[error("{format:?} images are not supported (use {SUPPORTED})")]
    UnsupportedFormat { format: ImageFormat },
    #[error("corrupt or truncated {format:?} image: {source}")]
    Corrupt { format: ImageFormat, source: image::ImageError },
}

crate::error_types!(DecodeError {
    Empty => "empty_file",
    UnknownFormat => "unknown_format",
    UnsupportedFormat => "unsupported_format",
    Corrupt => "corrupt_image",
});

/// One decoded input.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    /// e.g. `png/L16`: the container and the sample layout it had before conversion.
    pub kind: String,
}

/// Decodes an image from its bytes.
pub fn decode(bytes: &[u8]) -> Result<DecodedImage, DecodeError> {
    let image = decode_dynamic(bytes)?;
    let kind = format!("{}/{:?}", image.1.extensions_str()[0], image.0.color());
    Ok(DecodedImage { rgb: to_rgb8(image.0), kind })
}

/// Decodes a ground-truth mask: foreground is any value above half the mask's maximum, so 0/1,
/// 0/255 and JPEG-compressed masks all read right. Same formats and limits as [`decode`].
pub fn mask(bytes: &[u8]) -> Result<GrayImage, DecodeError> {
    let gray = decode_dynamic(bytes)?.0.into_luma16();
    let max = gray.as_raw().iter().copied().max().unwrap_or(0) as u32;
    let mut mask = GrayImage::new(gray.width(), gray.height());
    for (out, &v) in mask.iter_mut().zip(gray.as_raw()) {
        *out = if max > 0 && (v as u32) * 2 > max { crate::postprocess::FOREGROUND } else { 0 };
    }
    Ok(mask)
}

/// Sniffs the format, refuses what is not PNG, JPEG, TIFF or BMP, and decodes within the limits.
fn decode_dynamic(bytes: &[u8]) -> Result<(DynamicImage, ImageFormat), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("reading from memory cannot fail");
    let format = reader.format().ok_or(DecodeError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::Bmp) {
        return Err(DecodeError::UnsupportedFormat { format });
    }
    let mut limits = Limits::default();
    // Room for 16-bit RGBA images of 8192² and beyond; anything larger is refused, not swapped.
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    let image = reader.decode().map_err(|source| DecodeError::Corrupt { format, source })?;
    Ok((image, format))
}

/// RGB, with the common layouts converted by hand: `image`'s generic conversion takes about 2 ms
/// for a 512×512 gray image, three times the PNG decode itself (measured with 50 gray PNGs).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let rgb = match &image {
        DynamicImage::ImageLuma8(gray) => Some(gray.as_raw().iter().flat_map(|&v| [v, v, v]).collect()),
        DynamicImage::ImageRgba8(rgba) => {
            Some(rgba.as_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
        }
        _ => None,
    };
    match (rgb, image) {
        (Some(raw), _) => RgbImage::from_raw(w, h, raw).expect("three samples per pixel"),
        (None, DynamicImage::ImageRgb8(rgb)) => rgb,
        (None, other) => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgba, RgbaImage};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn gray16_is_scaled_to_eight_bits_in_three_channels() {
        let gray: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 3, |x, _| Luma([if x == 0 { 65535 } else { 0 }]));
        let decoded = decode(&encode(DynamicImage::ImageLuma16(gray), ImageFormat::Png)).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (4, 3));
        assert_eq!(decoded.rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(decoded.rgb.get_pixel(1, 0).0, [0, 0, 0]);
        assert_eq!(decoded.kind, "png/L16");
    }

    #[test]
    fn rgba_drops_alpha_and_bmp_tiff_jpeg_decode() {
        let rgba = RgbaImage::from_pixel(5, 5, Rgba([10, 200, 30, 7]));
        let decoded = decode(&encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).unwrap();
        assert_eq!(decoded.rgb.get_pixel(2, 2).0, [10, 200, 30]);
        let gray = DynamicImage::ImageLuma8(GrayImage::from_pixel(8, 8, Luma([90])));
        for format in [ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::Jpeg] {
            let decoded = decode(&encode(gray.clone(), format)).unwrap();
            assert_eq!(decoded.rgb.dimensions(), (8, 8), "{format:?}");
            assert!(decoded.rgb.get_pixel(4, 4).0[0].abs_diff(90) <= 2, "{format:?}");
        }
    }

    #[test]
    fn masks_read_any_scale_of_foreground() {
        for (on, off) in [(1u8, 0u8), (255, 0)] {
            let gray = GrayImage::from_fn(4, 1, |x, _| Luma([if x < 2 { on } else { off }]));
            let mask = mask(&encode(DynamicImage::ImageLuma8(gray), ImageFormat::Png)).unwrap();
            assert_eq!(mask.as_raw(), &[255, 255, 0, 0]);
        }
        assert!(matches!(mask(b"not a mask"), Err(DecodeError::UnknownFormat)));
    }

    #[test]
    fn bad_bytes_give_reasons_not_panics() {
        assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"hello, not an image"), Err(DecodeError::UnknownFormat)));
        let png = encode(DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 64, Luma([1]))), ImageFormat::Png);
        let truncated = &png[..png.len() / 2];
        let message = decode(truncated).unwrap_err().to_string();
        assert!(message.starts_with("corrupt or truncated Png image"), "{message}");
        // Every prefix of a valid file fails cleanly.
        for end in 0..png.len() {
            let _ = decode(&png[..end]);
        }
    }
}
