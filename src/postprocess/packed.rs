//! A binary mask at one bit per pixel: how a series keeps its whole mask volume (a 600-slice
//! 512×512 CT is 20 MB, not 157), and the layout a DICOM SEG stores (first pixel in the least
//! significant bit, row by row).

use image::GrayImage;

/// A `width`×`height` binary mask, row-major, pixel `i` in bit `i % 8` of byte `i / 8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMask {
    width: u32,
    height: u32,
    bytes: Vec<u8>,
}

impl PackedMask {
    /// Foreground is any non-zero value.
    pub fn from_gray(mask: &GrayImage) -> PackedMask {
        let mut bytes = vec![0u8; mask.as_raw().len().div_ceil(8)];
        for (chunk, byte) in mask.as_raw().chunks(8).zip(bytes.iter_mut()) {
            *byte = chunk.iter().enumerate().fold(0u8, |b, (k, v)| b | (u8::from(*v != 0) << k));
        }
        PackedMask { width: mask.width(), height: mask.height(), bytes }
    }

    /// An all-background mask.
    pub fn empty(width: u32, height: u32) -> PackedMask {
        PackedMask { width, height, bytes: vec![0; (width as usize * height as usize).div_ceil(8)] }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The packed bytes (the last one padded with zero bits).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn get(&self, i: usize) -> bool {
        self.bytes[i / 8] >> (i % 8) & 1 == 1
    }

    pub fn count(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    pub fn any(&self) -> bool {
        self.bytes.iter().any(|b| *b != 0)
    }

    /// 0/255 per pixel.
    pub fn to_gray(&self) -> GrayImage {
        let raw = (0..self.pixels()).map(|i| if self.get(i) { 255 } else { 0 }).collect();
        GrayImage::from_raw(self.width, self.height, raw).expect("one byte per pixel")
    }

    /// Appends the pixels as 0/1 bytes (a NIfTI voxel plane).
    pub fn extend_voxels(&self, out: &mut Vec<u8>) {
        out.extend((0..self.pixels()).map(|i| u8::from(self.get(i))));
    }
}

/// Concatenates masks bit after bit, with no padding between them (PS3.5 8.1.1: the frames of a
/// 1-bit Pixel Data), the whole padded to an even number of bytes.
pub fn concat_bits(masks: &[&PackedMask]) -> Vec<u8> {
    let total: usize = masks.iter().map(|m| m.pixels()).sum();
    let mut out = vec![0u8; total.div_ceil(8)];
    let mut offset = 0usize;
    for mask in masks {
        if offset % 8 == 0 {
            // Byte-aligned (every even-sized frame of a SEG): a copy.
            let start = offset / 8;
            out[start..start + mask.bytes.len()].copy_from_slice(&mask.bytes);
        } else {
            for i in (0..mask.pixels()).filter(|&i| mask.get(i)) {
                let bit = offset + i;
                out[bit / 8] |= 1 << (bit % 8);
            }
        }
        offset += mask.pixels();
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_least_significant_bit_first() {
        let gray = GrayImage::from_raw(3, 3, vec![255, 0, 1, 0, 0, 0, 0, 0, 9]).unwrap();
        let packed = PackedMask::from_gray(&gray);
        assert_eq!(packed.bytes(), &[0b0000_0101, 0b0000_0001]);
        assert_eq!(packed.count(), 3);
        assert_eq!(packed.to_gray().as_raw(), &[255, 0, 255, 0, 0, 0, 0, 0, 255]);
        let mut voxels = Vec::new();
        packed.extend_voxels(&mut voxels);
        assert_eq!(voxels, [1, 0, 1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn frames_are_concatenated_without_padding_between_them() {
        // Two 3×3 frames: 18 bits, the second starting at bit 9.
        let a = PackedMask::from_gray(&GrayImage::from_raw(3, 3, vec![1, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap());
        let b = PackedMask::from_gray(&GrayImage::from_raw(3, 3, vec![1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap());
        let bits = concat_bits(&[&a, &b]);
        assert_eq!(bits, vec![0b0000_0001, 0b0000_0011, 0, 0]);
        // Byte-aligned frames are copied as they are.
        let c = PackedMask::from_gray(&GrayImage::from_raw(4, 2, vec![0, 0, 0, 0, 0, 0, 0, 1]).unwrap());
        assert_eq!(concat_bits(&[&c, &c]), vec![0b1000_0000, 0b1000_0000]);
    }
}
