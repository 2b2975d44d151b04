//! A walk over a data set's element headers before dicom-rs reads it: no value may claim more
//! bytes than its container has. dicom-rs reserves and zero-fills a value's declared length before
//! reading it, so a 300-byte file that claims a 3.7 GB value would cost 3.7 GB and seconds.

use dicom_core::{DataDictionary, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

/// An element whose declared length runs past the end of what contains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overrun {
    pub tag: Tag,
    pub declared: u64,
    pub available: usize,
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "element {} declares {} bytes but only {} remain", self.tag, self.declared, self.available)
    }
}

const UNDEFINED: u32 = u32::MAX;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
/// Deeper nesting than this is not walked (nor is it seen in real files).
const MAX_DEPTH: u32 = 64;

/// Checks every element header of `bytes` (a data set without its meta group). A header cut short
/// at the very end is left for dicom-rs to report.
pub(crate) fn check(bytes: &[u8], encoding: Encoding) -> Result<(), Overrun> {
    Walker { bytes, encoding }.elements(0, bytes.len(), 0).map(|_| ())
}

/// Checks the file meta group (explicit VR little endian, group 0002) at the start of `bytes`,
/// which dicom-rs reads with the same reserve-first habit.
pub(crate) fn check_meta(bytes: &[u8]) -> Result<(), Overrun> {
    let walker = Walker { bytes, encoding: Encoding::ExplicitLe };
    let mut at = 0;
    while let Some(header) = walker.header(at, bytes.len()).filter(|h| h.tag.group() == 0x0002) {
        let value = at + header.size;
        let available = bytes.len().saturating_sub(value);
        if header.length == UNDEFINED || header.length as usize > available {
            return Err(Overrun { tag: header.tag, declared: header.length as u64, available });
        }
        at = value + header.length as usize;
    }
    Ok(())
}

struct Walker<'a> {
    bytes: &'a [u8],
    encoding: Encoding,
}

struct Header {
    tag: Tag,
    vr: Option<VR>,
    length: u32,
    size: usize,
}

impl Walker<'_> {
    /// Walks elements from `at` to `end` (or to a delimiter); returns where it stopped.
    fn elements(&self, mut at: usize, end: usize, depth: u32) -> Result<usize, Overrun> {
        while at < end {
            let Some(header) = self.header(at, end) else { return Ok(end) };
            let value = at + header.size;
            if header.tag == ITEM_END || header.tag == SEQUENCE_END {
                return Ok(value);
            }
            at = if header.length == UNDEFINED {
                self.undefined(&header, value, end, depth)?
            } else {
                let length = header.length as usize;
                if length > end - value {
                    return Err(Overrun { tag: header.tag, declared: header.length as u64, available: end - value });
                }
                if self.is_sequence(&header) && depth < MAX_DEPTH {
                    self.items(value, value + length, depth + 1)?;
                }
                value + length
            };
        }
        Ok(at)
    }

    /// A value of undefined length: a sequence of items (walked), or encapsulated pixel data
    /// (fragments skipped by their lengths), up to its sequence delimiter. PS3.5 6.2.2 says a UN
    /// of undefined length holds implicit VR little endian, but dicom-rs 0.10 reads its items in
    /// the outer encoding; the walk follows dicom-rs, since what matters is what it would allocate.
    fn undefined(&self, header: &Header, value: usize, end: usize, depth: u32) -> Result<usize, Overrun> {
        if header.tag == PIXEL_DATA || depth >= MAX_DEPTH {
            return self.fragments(value, end);
        }
        self.items(value, end, depth + 1)
    }

    /// Items of a sequence from `at` to `end` or to the sequence delimiter.
    fn items(&self, mut at: usize, end: usize, depth: u32) -> Result<usize, Overrun> {
        while at < end {
            let Some(header) = self.header(at, end) else { return Ok(end) };
            let value = at + header.size;
            match header.tag {
                SEQUENCE_END => return Ok(value),
                ITEM if header.length == UNDEFINED => at = self.elements(value, end, depth)?,
                _ => {
                    let length = header.length as usize;
                    if header.length == UNDEFINED || length > end - value {
                        return Err(Overrun {
                            tag: header.tag,
                            declared: header.length as u64,
                            available: end - value,
                        });
                    }
                    if header.tag == ITEM {
                        self.elements(value, value + length, depth)?;
                    }
                    at = value + length;
                }
            }
        }
        Ok(at)
    }

    /// Fragments of encapsulated pixel data: items skipped by length, up to the delimiter.
    fn fragments(&self, mut at: usize, end: usize) -> Result<usize, Overrun> {
        let fragment = Walker { bytes: self.bytes, encoding: Encoding::ImplicitLe };
        while at < end {
            let Some(header) = fragment.header(at, end) else { return Ok(end) };
            let value = at + header.size;
            if header.tag == SEQUENCE_END {
                return Ok(value);
            }
            let length = header.length as usize;
            if header.length == UNDEFINED || length > end - value {
                return Err(Overrun { tag: header.tag, declared: header.length as u64, available: end - value });
            }
            at = value + length;
        }
        Ok(at)
    }

    /// Whether a value of defined length holds items. UN of defined length is opaque bytes.
    fn is_sequence(&self, header: &Header) -> bool {
        match header.vr {
            Some(vr) => vr == VR::SQ,
            None => StandardDataDictionary.by_tag(header.tag).is_some_and(|e| e.vr.relaxed() == VR::SQ),
        }
    }

    fn header(&self, at: usize, end: usize) -> Option<Header> {
        let b = self.bytes.get(at..end)?;
        let be = self.encoding == Encoding::ExplicitBe;
        let u16_at = |i: usize| {
            let pair = [*b.get(i)?, *b.get(i + 1)?];
            Some(if be { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) })
        };
        let u32_at = |i: usize| {
            let quad = [*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?];
            Some(if be { u32::from_be_bytes(quad) } else { u32::from_le_bytes(quad) })
        };
        let tag = Tag(u16_at(0)?, u16_at(2)?);
        // Items and delimiters never carry a VR, in any encoding.
        if tag.group() == 0xFFFE || self.encoding == Encoding::ImplicitLe {
            return Some(Header { tag, vr: None, length: u32_at(4)?, size: 8 });
        }
        // dicom-rs reads bytes that are no VR as UN (a long-form header), and so does the walk.
        let vr = VR::from_binary([*b.get(4)?, *b.get(5)?]).unwrap_or(VR::UN);
        if long_form(vr) {
            Some(Header { tag, vr: Some(vr), length: u32_at(8)?, size: 12 })
        } else {
            Some(Header { tag, vr: Some(vr), length: u16_at(6)? as u32, size: 8 })
        }
    }
}

fn long_form(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }

    #[test]
    fn a_value_longer_than_the_file_is_an_overrun() {
        let mut bytes = explicit((0x0008, 0x0016), b"UI", b"1.2.3\0");
        // (0008,1115) SQ claiming 3.7 GB.
        bytes.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFE, 0xFF, 0xFF, 0xDF]);
        bytes.extend([0u8; 16]);
        let overrun = check(&bytes, Encoding::ExplicitLe).unwrap_err();
        assert_eq!(overrun.tag, Tag(0x0008, 0x1115));
        assert_eq!(overrun.available, 16);
    }

    #[test]
    fn a_meta_element_longer_than_the_file_is_an_overrun() {
        let mut meta = explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0");
        assert_eq!(check_meta(&meta), Ok(()));
        // (0002,0001) OB claiming 1 GB.
        meta.extend([0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 0, 0, 0, 0x40, 0, 1]);
        assert_eq!(check_meta(&meta).unwrap_err().tag, Tag(0x0002, 0x0001));
    }

    #[test]
    fn nested_items_are_walked_and_fragments_skipped() {
        // SQ of undefined length with one item of defined length holding a too-long element.
        let inner = explicit((0x0008, 0x1150), b"UI", b"1.2\0");
        let mut bad_inner = inner.clone();
        bad_inner[6] = 0xFF; // length 0x04FF: past the item's end
        for (content, ok) in [(inner, true), (bad_inner, false)] {
            let mut bytes = vec![0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
            bytes.extend([0xFE, 0xFF, 0x00, 0xE0]);
            bytes.extend((content.len() as u32).to_le_bytes());
            bytes.extend(&content);
            bytes.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            // Encapsulated pixel data: an offset table and one fragment of JPEG-like bytes.
            bytes.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
            bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xFF]);
            bytes.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            assert_eq!(check(&bytes, Encoding::ExplicitLe).is_ok(), ok);
        }
    }
}
