//! Reading: bytes → a parsed object (with or without the preamble and file meta group) and the
//! image attributes that decoding needs, checked once so that decoding can trust them.

use dicom_core::{DataDictionary, Tag, header::HasLength, value::Value};
use dicom_dictionary_std::{StandardDataDictionary, tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{
    DefaultDicomObject, InMemDicomObject, OpenFileOptions, file::ReadPreamble, meta::FileMetaTableBuilder,
};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::{DicomError, guard};
use super::lengths::{self, Encoding};
use crate::error::chain;

/// True when `bytes` look like DICOM: "DICM" at 128 (Part 10), "DICM" at 0 (preamble stripped),
/// or a plausible data set with no preamble and no meta group.
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    (bytes.len() >= 132 && &bytes[128..132] == b"DICM") || bytes.starts_with(b"DICM") || sniff_data_set(bytes).is_some()
}

/// How the file was framed, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Part10,
    NoPreamble,
    /// A bare data set; the transfer syntax was guessed from its first element.
    BareDataSet,
}

pub(crate) fn read_object(bytes: &[u8]) -> Result<(DefaultDicomObject, Framing), DicomError> {
    if bytes.is_empty() {
        return Err(DicomError::Empty);
    }
    let (preamble, framing) = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        (ReadPreamble::Always, Framing::Part10)
    } else if bytes.starts_with(b"DICM") {
        (ReadPreamble::Never, Framing::NoPreamble)
    } else {
        let (ts, skip) = sniff_data_set(bytes).ok_or(DicomError::NotDicom)?;
        return read_bare(&bytes[skip..], ts).map(|obj| (obj, Framing::BareDataSet));
    };
    let magic = if framing == Framing::Part10 { 128 } else { 0 };
    lengths::check_meta(&bytes[magic + 4..])
        .map_err(|overrun| DicomError::Truncated { reason: overrun.to_string() })?;
    // The meta group, read once here for the length walk and the mislabelled fallback (dicom-rs
    // reads it again itself). One that cannot be read is left to dicom-rs to report.
    let meta = guard("reading the meta group", || read_meta(&bytes[magic..])).ok().flatten();
    let mislabelled = || {
        let (meta, data_set) = meta.clone()?;
        guard("reading the data set", || read_mislabelled(meta, &bytes[magic + data_set..])).ok().flatten()
    };
    if let Some((meta, data_set)) = &meta
        && let Err(overrun) = check_data_set_lengths(meta, &bytes[magic + data_set..])
    {
        // Not readable as labelled; perhaps an implicit VR data set under an explicit label.
        return mislabelled().map(|obj| (obj, framing)).ok_or(DicomError::Truncated { reason: overrun.to_string() });
    }
    let read = guard("reading the data set", || OpenFileOptions::new().read_preamble(preamble).from_reader(bytes))?;
    match read {
        Ok(obj) => Ok((obj, framing)),
        Err(error) => mislabelled().map(|obj| (obj, framing)).ok_or_else(|| read_error(error)),
    }
}

/// The file meta group that starts at "DICM", and where the data set after it starts.
fn read_meta(from_magic: &[u8]) -> Option<(dicom_object::FileMetaTable, usize)> {
    let mut cursor = std::io::Cursor::new(from_magic);
    let meta = dicom_object::FileMetaTable::from_reader(&mut cursor).ok()?;
    Some((meta, cursor.position() as usize))
}

/// Some writers put an implicit VR data set under an explicit VR transfer syntax (pydicom reads
/// these with a warning). Reads the data set as implicit VR and keeps the meta group's transfer
/// syntax for the pixel data. `None` unless the data set really looks implicit.
fn read_mislabelled(meta: dicom_object::FileMetaTable, rest: &[u8]) -> Option<DefaultDicomObject> {
    let ts = meta.transfer_syntax().trim_end_matches('\0');
    if ts == uids::IMPLICIT_VR_LITTLE_ENDIAN
        || sniff_data_set(rest)?.0 != uids::IMPLICIT_VR_LITTLE_ENDIAN
        || lengths::check(rest, Encoding::ImplicitLe).is_err()
    {
        return None;
    }
    let implicit = TransferSyntaxRegistry.get(uids::IMPLICIT_VR_LITTLE_ENDIAN)?;
    let obj = InMemDicomObject::read_dataset_with_ts(rest, implicit).ok()?;
    Some(obj.with_exact_meta(meta))
}

/// Checks the element lengths of a data set in the encoding its meta group's transfer syntax names;
/// a deflated data set is inflated first. A stream that does not inflate is left to dicom-rs.
fn check_data_set_lengths(meta: &dicom_object::FileMetaTable, data_set: &[u8]) -> Result<(), lengths::Overrun> {
    let ts_uid = meta.transfer_syntax().trim_end_matches('\0');
    if !is_deflated(ts_uid) {
        return lengths::check(data_set, encoding_of(ts_uid));
    }
    let mut inflated = Vec::new();
    match std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(data_set), &mut inflated) {
        Ok(_) => lengths::check(&inflated, Encoding::ExplicitLe),
        Err(_) => Ok(()),
    }
}

fn is_deflated(ts_uid: &str) -> bool {
    TransferSyntaxRegistry.get(ts_uid).is_some_and(|ts| matches!(ts.codec(), dicom_encoding::Codec::Dataset(_)))
}

/// How a transfer syntax that is not deflated encodes the data set.
fn encoding_of(ts_uid: &str) -> Encoding {
    #[allow(deprecated)]
    match ts_uid {
        uids::IMPLICIT_VR_LITTLE_ENDIAN => Encoding::ImplicitLe,
        uids::EXPLICIT_VR_BIG_ENDIAN => Encoding::ExplicitBe,
        _ => Encoding::ExplicitLe,
    }
}

fn read_bare(bytes: &[u8], ts_uid: &'static str) -> Result<DefaultDicomObject, DicomError> {
    let ts = TransferSyntaxRegistry.get(ts_uid).expect("the registry knows the three native transfer syntaxes");
    lengths::check(bytes, encoding_of(ts_uid))
        .map_err(|overrun| DicomError::Truncated { reason: overrun.to_string() })?;
    let obj =
        guard("reading the data set", || InMemDicomObject::read_dataset_with_ts(bytes, ts))?.map_err(read_error)?;
    let sop_class = string(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let sop_instance = string(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance);
    obj.with_meta(meta).map_err(|e| DicomError::ReadDataSet { reason: chain(&e) })
}

fn read_error(error: impl std::error::Error) -> DicomError {
    let reason = chain(&error);
    let lower = reason.to_lowercase();
    if lower.contains("fill whole buffer")
        || lower.contains("unexpected end")
        || lower.contains("unexpectedeof")
        || lower.contains("end of file")
    {
        DicomError::Truncated { reason }
    } else {
        DicomError::ReadDataSet { reason }
    }
}

const VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF", b"OL",
    b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US",
    b"UT", b"UV",
];

fn is_vr(bytes: &[u8]) -> bool {
    VRS.iter().any(|vr| &vr[..] == bytes)
}

fn long_vr(vr: &[u8]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

/// Guesses the transfer syntax of a data set with no preamble and no "DICM": returns it and how
/// many bytes of a leading (magic-less) meta group to skip. The first element must be in group
/// 0002 or 0008 with a small element number, which real data sets start with.
pub(crate) fn sniff_data_set(bytes: &[u8]) -> Option<(&'static str, usize)> {
    if bytes.len() < 8 {
        return None;
    }
    let group_le = u16::from_le_bytes([bytes[0], bytes[1]]);
    let element_le = u16::from_le_bytes([bytes[2], bytes[3]]);
    let group_be = u16::from_be_bytes([bytes[0], bytes[1]]);
    let element_be = u16::from_be_bytes([bytes[2], bytes[3]]);
    if group_le == 0x0002 && element_le <= 0x0100 && is_vr(&bytes[4..6]) {
        return skip_meta_group(bytes);
    }
    if group_le == 0x0008 && element_le <= 0x0100 {
        if is_vr(&bytes[4..6]) {
            return Some((uids::EXPLICIT_VR_LITTLE_ENDIAN, 0));
        }
        let length = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if length <= bytes.len() - 8 && length < 1 << 16 {
            return Some((uids::IMPLICIT_VR_LITTLE_ENDIAN, 0));
        }
    }
    if group_be == 0x0008 && element_be <= 0x0100 && is_vr(&bytes[4..6]) {
        #[allow(deprecated)]
        return Some((uids::EXPLICIT_VR_BIG_ENDIAN, 0));
    }
    None
}

/// A file meta group without its "DICM": read its transfer syntax, then skip it.
fn skip_meta_group(bytes: &[u8]) -> Option<(&'static str, usize)> {
    let mut at = 0usize;
    let mut ts: Option<String> = None;
    while at + 8 <= bytes.len() && u16::from_le_bytes([bytes[at], bytes[at + 1]]) == 0x0002 {
        let element = u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]);
        let vr = &bytes[at + 4..at + 6];
        let (header, length) = if long_vr(vr) {
            let b = bytes.get(at + 8..at + 12)?;
            (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        } else {
            (8, u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize)
        };
        let value = bytes.get(at + header..at + header + length)?;
        if element == 0x0010 {
            ts = Some(String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).to_string());
        }
        at += header + length;
    }
    #[allow(deprecated)]
    let known = [uids::EXPLICIT_VR_LITTLE_ENDIAN, uids::IMPLICIT_VR_LITTLE_ENDIAN, uids::EXPLICIT_VR_BIG_ENDIAN];
    let ts = known.into_iter().find(|k| Some(*k) == ts.as_deref())?;
    Some((ts, at))
}

// --- attribute access --------------------------------------------------------------------------

pub(crate) fn tag_name(tag: Tag) -> &'static str {
    StandardDataDictionary.by_tag(tag).map(|entry| entry.alias).unwrap_or("(unknown)")
}

/// The trimmed string value of an element, `None` when absent or empty.
pub(crate) fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.get(tag)?;
    let text = match element.value() {
        // A text element that a writer stored as UN keeps its characters as bytes (seen in the
        // wild for SOP Class UID); dicom-rs would print the byte values.
        Value::Primitive(dicom_core::PrimitiveValue::U8(bytes)) if element.vr() == dicom_core::VR::UN => {
            String::from_utf8_lossy(bytes).into_owned().into()
        }
        value => value.to_str().ok()?,
    };
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.to_string())
}

/// All string values of a multi-valued element (e.g. Window Center).
pub(crate) fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    match obj.get(tag).map(|e| e.value()) {
        Some(Value::Primitive(p)) => p
            .to_multi_str()
            .iter()
            .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn floats(obj: &InMemDicomObject, tag: Tag) -> Result<Vec<f64>, DicomError> {
    let Some(element) = obj.get(tag) else {
        return Ok(Vec::new());
    };
    if element.value().primitive().is_some_and(|p| p.is_empty()) {
        return Ok(Vec::new());
    }
    element.value().to_multi_float64().map_err(|e| DicomError::InvalidAttribute {
        name: tag_name(tag),
        value: element.value().to_str().map(|s| s.to_string()).unwrap_or_default(),
        reason: e.to_string(),
    })
}

pub(crate) fn float(obj: &InMemDicomObject, tag: Tag) -> Result<Option<f64>, DicomError> {
    Ok(floats(obj, tag)?.first().copied())
}

pub(crate) fn uint(obj: &InMemDicomObject, tag: Tag) -> Result<Option<u32>, DicomError> {
    let Some(element) = obj.get(tag) else {
        return Ok(None);
    };
    if element.value().primitive().is_some_and(|p| p.is_empty()) {
        return Ok(None);
    }
    element.value().to_int::<i64>().ok().and_then(|v| u32::try_from(v).ok()).map(Some).ok_or_else(|| {
        DicomError::InvalidAttribute {
            name: tag_name(tag),
            value: element.value().to_str().map(|s| s.to_string()).unwrap_or_default(),
            reason: "expected a non-negative integer".into(),
        }
    })
}

pub(crate) fn required_uint(obj: &InMemDicomObject, tag: Tag) -> Result<u32, DicomError> {
    uint(obj, tag)?.ok_or_else(|| DicomError::MissingAttribute { name: tag_name(tag), tag: tag.to_string() })
}

/// The raw bytes of a primitive value in little-endian order, whatever the file's byte order was
/// (dicom-rs keeps OW/US values as native integers).
pub(crate) fn le_bytes(value: &dicom_core::PrimitiveValue) -> Vec<u8> {
    use dicom_core::PrimitiveValue as P;
    match value {
        P::U8(v) => v.to_vec(),
        P::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => other.to_bytes().to_vec(),
    }
}

/// Bytes `start..end` of [`le_bytes`], converting only the values that cover them.
pub(crate) fn le_bytes_range(value: &dicom_core::PrimitiveValue, start: usize, end: usize) -> Vec<u8> {
    use dicom_core::PrimitiveValue as P;
    fn part<T: Copy, const N: usize>(v: &[T], start: usize, end: usize, to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        let (first, last) = (start / N, end.div_ceil(N).min(v.len()));
        let bytes: Vec<u8> = v[first.min(last)..last].iter().flat_map(|x| to(*x)).collect();
        let offset = start - first * N;
        bytes[offset.min(bytes.len())..(end - first * N).min(bytes.len())].to_vec()
    }
    match value {
        P::U8(v) => v[start.min(v.len())..end.min(v.len())].to_vec(),
        P::U16(v) => part(v, start, end, u16::to_le_bytes),
        P::I16(v) => part(v, start, end, i16::to_le_bytes),
        P::U32(v) => part(v, start, end, u32::to_le_bytes),
        P::I32(v) => part(v, start, end, i32::to_le_bytes),
        P::F32(v) => part(v, start, end, f32::to_le_bytes),
        P::F64(v) => part(v, start, end, f64::to_le_bytes),
        other => {
            let all = le_bytes(other);
            all[start.min(all.len())..end.min(all.len())].to_vec()
        }
    }
}

/// A transfer syntax's name from the registry, or "unknown transfer syntax".
pub fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| "unknown transfer syntax".to_string())
}

/// A SOP class's name from the standard dictionary, or "unknown SOP class".
pub fn sop_class_name(uid: &str) -> String {
    use dicom_core::dictionary::{UidDictionary, UidDictionaryEntry};
    dicom_dictionary_std::sop_class::StandardSopClassDictionary
        .by_uid(uid)
        .map(|entry| entry.name().to_string())
        .unwrap_or_else(|| "unknown SOP class".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_accepts_bare_data_sets_and_refuses_images() {
        // (0008,0005) CS "ISO_IR 100" explicit LE
        let explicit = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100";
        assert_eq!(sniff_data_set(explicit), Some((uids::EXPLICIT_VR_LITTLE_ENDIAN, 0)));
        let implicit = b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100";
        assert_eq!(sniff_data_set(implicit), Some((uids::IMPLICIT_VR_LITTLE_ENDIAN, 0)));
        for not in [&b"\x89PNG\r\n\x1a\n"[..], b"\xff\xd8\xff\xe0\x00\x10JFIF", b"II*\x00\x08\x00\x00\x00", b"BM"] {
            assert!(!looks_like_dicom(not));
        }
        let mut part10 = vec![0u8; 128];
        part10.extend_from_slice(b"DICM");
        assert!(looks_like_dicom(&part10));
    }

    #[test]
    fn byte_ranges_of_word_values_are_little_endian() {
        let words = dicom_core::PrimitiveValue::U16([0x0102u16, 0x0304, 0x0506].into_iter().collect());
        assert_eq!(le_bytes(&words), vec![2, 1, 4, 3, 6, 5]);
        assert_eq!(le_bytes_range(&words, 1, 4), vec![1, 4, 3]);
        assert_eq!(le_bytes_range(&words, 4, 99), vec![6, 5]);
        assert_eq!(le_bytes_range(&words, 9, 99), Vec::<u8>::new());
    }

    #[test]
    fn every_prefix_of_garbage_fails_cleanly() {
        assert_eq!(read_object(&[]).unwrap_err(), DicomError::Empty);
        assert_eq!(read_object(b"hello").unwrap_err(), DicomError::NotDicom);
        let mut part10 = vec![0u8; 128];
        part10.extend_from_slice(b"DICM\x02\x00\x00\x00UL\x04\x00");
        for end in 0..part10.len() {
            let _ = read_object(&part10[..end]);
        }
    }
}
