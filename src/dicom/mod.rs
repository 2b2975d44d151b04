//! DICOM: Part 10 bytes → frames as 8-bit RGB, an identity for the record, and a DICOM SEG for a
//! predicted mask.
//!
//! Takes the bytes of one input; hands on [`DicomFile`] (parsed, pixel data not decoded yet),
//! from which the decode stage takes [`DicomFile::frame_rgb`] per frame and the emit stage writes
//! [`write_seg`]. `README.md` beside this file lists which transfer syntaxes and photometric
//! interpretations decode, and why the others do not.
//!
//! - `read`: framing (preamble or not, meta group or not) and attribute access.
//! - `lengths`: element lengths checked against the file before dicom-rs allocates them.
//! - `pixels`: image attributes checked at open; one frame's stored values.
//! - `codec`: RLE and RGB JPEG, decoded here rather than by dicom-rs.
//! - `window`: Modality LUT, VOI window, MONOCHROME1, palette → RGB.
//! - `identity`: UIDs, geometry and the pseudonymised patient ID.
//! - `seg`: the binary Segmentation IOD.
//! - `truth`: a Segmentation read back as ground truth.
//! - `sr`: the TID 1500 measurement report written beside a SEG.

mod codec;
mod config;
mod error;
mod geometry;
mod identity;
mod image_info;
mod input;
mod lengths;
mod pixels;
mod read;
mod seg;
mod sr;
pub mod status;
mod truth;
mod window;

pub use config::{DicomConfig, PatientIdConfig, Unit};
pub use error::DicomError;
pub use geometry::{SliceGrid, SliceHeader, SlicePlane, Stack, nifti_affine, slice_grid, stacks};
pub use identity::{Identity, PatientIdForm, TransferSyntaxId, pseudonym};
pub use input::DicomInput;
pub use pixels::FrameSamples;
pub use read::{looks_like_dicom, sop_class_name, transfer_syntax_name};
pub(crate) use seg::derived_uid;
pub use seg::{Code, SegConfig, SegOrigin, SegSlice, new_uid, write_seg, write_series_seg};
pub use sr::{Measurements, Roi, SrConfig, SrError, SrOrigin, write_sr};
pub use truth::{SegReference, SegTruth, may_be_seg, seg_mask, seg_references};
pub use window::WindowSetting;

use dicom_object::DefaultDicomObject;

use identity::PatientIdPolicy;
use image_info::ImageInfo;
use read::Framing;

/// efen's implementation class UID and version name, for the file meta group of every object it
/// writes (SEG, overlay Secondary Capture, instances received by the DICOM node).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.300792171151486009236592950232925011389";
pub const IMPLEMENTATION_VERSION: &str = concat!("EFEN_", env!("CARGO_PKG_VERSION"));

/// A file meta group for an object efen writes in Explicit VR Little Endian.
pub fn file_meta() -> dicom_object::meta::FileMetaTableBuilder {
    dicom_object::meta::FileMetaTableBuilder::new()
        .transfer_syntax(dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION)
}

/// Segmentation Storage: what efen writes, and what it reads as ground truth; never an image.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// The dicom-rs version the decoders come from, for [`DicomFile::decoder_name`].
const DICOM_RS: &str = "dicom-rs 0.10.1";

/// A parsed DICOM image: header in memory, pixel data as stored (decoded per frame on demand).
pub struct DicomFile {
    obj: DefaultDicomObject,
    info: ImageInfo,
    framing: Framing,
}

impl std::fmt::Debug for DicomFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomFile")
            .field("transfer_syntax", &self.info.ts_uid)
            .field("rows", &self.info.rows)
            .field("columns", &self.info.columns)
            .field("frames", &self.info.frames)
            .field("photometric", &self.info.photometric)
            .finish()
    }
}

/// Parses a DICOM file (Part 10, without preamble, or a bare data set) and checks its image
/// attributes. Fails on objects without pixel data and on pixel data too short for its frames.
pub fn open(bytes: &[u8]) -> Result<DicomFile, DicomError> {
    let (obj, framing) = read::read_object(bytes)?;
    let info = ImageInfo::read(&obj)?;
    check_transfer_syntax(&info)?;
    if info.encapsulated && !has_sequence_delimiter(bytes) {
        // dicom-rs keeps the fragments it could read; decoding a cut stream is slow and useless.
        return Err(DicomError::Truncated {
            reason: "the encapsulated pixel data ends without its sequence delimiter".into(),
        });
    }
    Ok(DicomFile { obj, info, framing })
}

/// The (FFFE,E0DD) sequence delimitation item that closes encapsulated pixel data (always
/// little endian).
fn has_sequence_delimiter(bytes: &[u8]) -> bool {
    const DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
    bytes.windows(8).rev().any(|w| w == DELIMITER)
}

/// Refuses, before any decoding, what this build cannot decode.
fn check_transfer_syntax(info: &ImageInfo) -> Result<(), DicomError> {
    use dicom_encoding::{Codec, TransferSyntaxIndex};
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let uid = info.ts_uid.as_str();
    let name = transfer_syntax_name(uid);
    let Some(ts) = TransferSyntaxRegistry.get(uid) else {
        return Err(DicomError::UnsupportedTransferSyntax {
            uid: uid.into(),
            name,
            hint: "not a transfer syntax dicom-rs knows; check the file meta group".into(),
        });
    };
    let decodable = match ts.codec() {
        Codec::None => true,
        Codec::EncapsulatedPixelData(reader, _) => reader.is_some() || uid == "1.2.840.10008.1.2.1.98",
        _ => ts.can_decode_all(),
    };
    if !decodable {
        return Err(DicomError::UnsupportedTransferSyntax {
            uid: uid.into(),
            name,
            hint: "no decoder in this build (dicom-pixeldata features: jpeg, rle, openjp2, charls); \
                   transcode it to an uncompressed syntax first, e.g. with gdcmconv --raw"
                .into(),
        });
    }
    if uid == "1.2.840.10008.1.2.4.51" && info.bits_stored > 8 {
        return Err(DicomError::UnsupportedTransferSyntax {
            uid: uid.into(),
            name: format!("{name}, {}-bit", info.bits_stored),
            hint: "12-bit JPEG extended is not decoded by dicom-rs (jpeg-decoder reads 8-bit DCT only); \
                   decompress it first with dcmtk: `dcmdjpeg in.dcm out.dcm`"
                .into(),
        });
    }
    Ok(())
}

impl DicomFile {
    pub fn frame_count(&self) -> u32 {
        self.info.frames
    }

    pub fn rows(&self) -> u32 {
        self.info.rows
    }

    pub fn columns(&self) -> u32 {
        self.info.columns
    }

    /// One frame's stored values (before the Modality LUT), YBR converted to RGB; palette
    /// images give their indices. For tests and for callers that want more than 8 bits.
    pub fn frame_samples(&self, frame: u32) -> Result<FrameSamples, DicomError> {
        pixels::frame_samples(&self.obj, &self.info, frame)
    }

    /// Decoded frame as 8-bit RGB: Modality LUT then VOI window for gray images, MONOCHROME1
    /// inverted, palette and YBR converted. Frames are numbered from 0.
    pub fn frame_rgb(&self, frame: u32, window: &WindowSetting) -> Result<image::RgbImage, DicomError> {
        let samples = self.frame_samples(frame)?;
        let info = self.info.for_frame(&self.obj, frame)?;
        window::to_rgb(&samples, &info, window)
    }

    /// Identity for the record. With a key, the patient ID is its HMAC-SHA256 (hex); without
    /// one it is withheld. Use [`DicomFile::identity_with_raw_patient_id`] to keep it as is.
    pub fn identity(&self, pseudonym_key: Option<&[u8]>) -> Identity {
        let policy = match pseudonym_key {
            Some(key) => PatientIdPolicy::Keyed(key),
            None => PatientIdPolicy::Withheld,
        };
        identity::identity(self, policy)
    }

    /// Identity with the patient ID exactly as in the file: only for sites that chose that.
    pub fn identity_with_raw_patient_id(&self) -> Identity {
        identity::identity(self, PatientIdPolicy::Raw)
    }

    /// Which decoder path is used, e.g. `efen native (Explicit VR Little Endian; parsed by
    /// dicom-rs 0.10.1)`, `efen RLE (RLE Lossless, 1.2.840.10008.1.2.5)` or
    /// `dicom-rs 0.10.1 JPEG Lossless, Non-Hierarchical (Process 14) (1.2.840.10008.1.2.4.57)`.
    pub fn decoder_name(&self) -> String {
        let name = transfer_syntax_name(&self.info.ts_uid);
        let framing = match self.framing {
            Framing::Part10 => "",
            Framing::NoPreamble => ", no preamble",
            Framing::BareDataSet => ", bare data set",
        };
        if let Some(own) = codec::own_codec(&self.info) {
            format!("{own} ({name}, {}{framing})", self.info.ts_uid)
        } else if self.info.encapsulated {
            format!("{DICOM_RS} {name} ({}{framing})", self.info.ts_uid)
        } else {
            format!("efen native ({name}{framing}; parsed by {DICOM_RS})")
        }
    }

    /// Forgets the pixel data and keeps the header: what a gathered series holds of each instance
    /// until its slices are decoded (from the file again), so a series costs its headers only.
    pub fn drop_pixel_data(&mut self) {
        self.obj.remove_element(dicom_dictionary_std::tags::PIXEL_DATA);
    }

    /// The parsed object, for callers that need an attribute this module does not expose.
    pub fn object(&self) -> &DefaultDicomObject {
        &self.obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};

    /// A 4×3 16-bit CT-like image written with dicom-rs: no fixtures needed.
    fn ct(window: Option<(&str, &str)>, count: u16) -> Vec<u8> {
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, value));
        };
        put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE.into());
        put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1".into());
        put(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.2".into());
        put(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.3".into());
        put(tags::PATIENT_ID, VR::LO, "P1".into());
        put(tags::MODALITY, VR::CS, "CT".into());
        put(tags::ROWS, VR::US, PrimitiveValue::from(3u16));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(4u16));
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16));
        put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
        put(tags::RESCALE_INTERCEPT, VR::DS, "-1024".into());
        put(tags::RESCALE_SLOPE, VR::DS, "1".into());
        if let Some((center, width)) = window {
            put(tags::WINDOW_CENTER, VR::DS, center.into());
            put(tags::WINDOW_WIDTH, VR::DS, width.into());
        }
        let pixels: Vec<u16> = (0..count).map(|i| i * 200).collect();
        put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into_iter().collect()));
        let file = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)).unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn open_window_and_seg_round_trip_in_memory() {
        let bytes = ct(Some(("40", "400")), 12);
        assert!(looks_like_dicom(&bytes));
        let file = open(&bytes).unwrap();
        assert_eq!((file.frame_count(), file.columns(), file.rows()), (1, 4, 3));
        assert!(file.decoder_name().starts_with("efen native (Explicit VR Little Endian"));
        // Stored 0..2200 → HU -1024..1176; window 40/400 covers -160..240.
        let rgb = file.frame_rgb(0, &WindowSetting::FromFile).unwrap();
        let gray: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(gray[..5], [0, 0, 0, 0, 0]);
        assert_eq!(gray[6], (((176.0 - 39.5) / 399.0 + 0.5) * 255.0_f64).round() as u8);
        assert_eq!(gray[11], 255);
        // No window in the file: min/max.
        let file = open(&ct(None, 12)).unwrap();
        let gray: Vec<u8> = file.frame_rgb(0, &WindowSetting::FromFile).unwrap().pixels().map(|p| p.0[0]).collect();
        assert_eq!((gray[0], gray[11]), (0, 255));

        let mask = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([if x == y { 255 } else { 0 }]));
        let seg =
            write_seg(&file, 0, &mask, &SegConfig::default(), &SegOrigin::new("0123456789abcdef0123", "test")).unwrap();
        let back = open(&seg).unwrap();
        let values = back.frame_samples(0).unwrap().values;
        assert_eq!(values, mask.as_raw().iter().map(|v| i64::from(*v != 0)).collect::<Vec<_>>());
        let identity = back.identity_with_raw_patient_id();
        assert_eq!(identity.modality.as_deref(), Some("SEG"));
        assert_eq!(identity.study_instance_uid.as_deref(), Some("2.25.2"));
        assert_eq!(identity.patient_id.as_deref(), Some("P1"));
    }

    #[test]
    fn dicom_file_moves_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DicomFile>();
        assert_send_sync::<Identity>();
    }

    #[test]
    fn short_or_cut_pixel_data_is_reported() {
        let error = open(&ct(None, 10)).unwrap_err().to_string();
        assert_eq!(error, "pixel data is 20 bytes but rows×columns×samples×bits (3×4×1×16 bits × 1 frame(s)) needs 24");
        let mut bytes = ct(None, 12);
        bytes.truncate(bytes.len() - 2);
        let error = open(&bytes).unwrap_err().to_string();
        assert!(error.starts_with("truncated file"), "{error}");
    }
}
