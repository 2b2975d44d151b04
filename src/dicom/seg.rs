//! SEG: predicted masks → a binary DICOM Segmentation (Part 10 bytes): one frame for one source
//! frame ([`write_seg`]), or one frame per slice of a stack ([`write_series_seg`]).
//!
//! The SEG copies the source's Patient and General Study modules (it belongs to the same study),
//! goes into the one SEG series of its source series, pipeline and model, references the source
//! instances and frames (Derivation Image, Source Image, Referenced Series), and carries the
//! geometry (Frame of Reference, Plane Position/Orientation, Pixel Measures) when the source has
//! all of it.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use super::DicomFile;
use super::error::DicomError;
use super::read::{string, strings as strings_of};
use crate::error::chain;
use crate::postprocess::{PackedMask, concat_bits};

/// A coded concept: (code value, coding scheme designator, code meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Code { value: value.into(), scheme: scheme.into(), meaning: meaning.into() }
    }
}

/// What the SEG says about the segment and the algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegConfig {
    /// Segment Label (0062,0005), e.g. "lesion".
    pub segment_label: String,
    /// Segmented Property Category (CID 7150); default SCT 49755003 "Morphologically Altered Structure".
    pub category: Code,
    /// Segmented Property Type (CID 7151 or 7152); default SCT 52988006 "Lesion".
    pub property_type: Code,
    /// Algorithm Name (0066,0036) and Segment Algorithm Name (0062,0009).
    pub algorithm_name: String,
    /// Algorithm Version (0066,0031). Empty: the first 16 hex digits of the model's SHA-256.
    /// The whole SHA-256 always goes into Algorithm Parameters (0066,0032).
    pub algorithm_version: String,
    /// Write a SEG with an all-zero frame when the mask is empty; when false, `write_seg`
    /// returns [`DicomError::EmptyMask`] ("no findings").
    pub write_empty: bool,
    /// Series Number of the new SEG series.
    pub series_number: u32,
    /// Series Description of the new SEG series.
    pub series_description: String,
    /// Content Label (0070,0080): a code string, upper case, at most 16 characters.
    pub content_label: String,
}

impl Default for SegConfig {
    fn default() -> Self {
        SegConfig {
            segment_label: "lesion".into(),
            category: Code::new("49755003", "SCT", "Morphologically Altered Structure"),
            property_type: Code::new("52988006", "SCT", "Lesion"),
            algorithm_name: "EFEN".into(),
            algorithm_version: String::new(),
            write_empty: false,
            series_number: 900,
            series_description: "EFEN segmentation".into(),
            content_label: "EFEN".into(),
        }
    }
}

/// A new UID of the form `2.25.<random UUID as a decimal integer>` (PS3.5 B.2).
/// SOP classes whose instances hold one frame: a reference to one never names a frame.
const SINGLE_FRAME_CLASSES: [&str; 16] = [
    "1.2.840.10008.5.1.4.1.1.1",      // CR
    "1.2.840.10008.5.1.4.1.1.1.1",    // DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  // DX for processing
    "1.2.840.10008.5.1.4.1.1.1.2",    // MG for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  // MG for processing
    "1.2.840.10008.5.1.4.1.1.1.3",    // IO for presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1",  // IO for processing
    "1.2.840.10008.5.1.4.1.1.2",      // CT
    "1.2.840.10008.5.1.4.1.1.4",      // MR
    "1.2.840.10008.5.1.4.1.1.6.1",    // US
    "1.2.840.10008.5.1.4.1.1.7",      // Secondary Capture
    "1.2.840.10008.5.1.4.1.1.128",    // PET
    "1.2.840.10008.5.1.4.1.1.77.1.1", // VL Endoscopic
    "1.2.840.10008.5.1.4.1.1.77.1.2", // VL Microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.3", // VL Slide-Coordinates Microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.4", // VL Photographic
];

/// A DA value from a source: YYYYMMDD, also from the ACR-NEMA form YYYY.MM.DD; anything else
/// becomes empty (the attributes copied are type 2, where empty is valid and garbage is not).
fn date_value(text: &str) -> String {
    let digits: String = text.chars().filter(|c| *c != '.').collect();
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) { digits } else { String::new() }
}

/// A TM value from a source: HHMMSS.FFFFFF (or a prefix), also from the form HH:MM:SS.
fn time_value(text: &str) -> String {
    let value: String = text.chars().filter(|c| *c != ':').collect();
    let (whole, fraction) = value.split_once('.').unwrap_or((&value, ""));
    let valid = matches!(whole.len(), 2 | 4 | 6)
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 6
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && (fraction.is_empty() || whole.len() == 6);
    if valid { value } else { String::new() }
}

/// A UID derived from `seed` (the same seed, the same UID): `2.25.` and 128 bits of its SHA-256.
pub(crate) fn derived_uid(purpose: &str, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("efen {purpose} {seed}").as_bytes());
    let bits = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
    format!("2.25.{bits}")
}

pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// One frame of a SEG: the mask (0 background, anything else foreground) over frame `frame`
/// (from 0) of `source`, at the source's size.
#[derive(Debug, Clone, Copy)]
pub struct SegSlice<'a> {
    pub source: &'a DicomFile,
    pub frame: u32,
    pub mask: &'a PackedMask,
}

/// What made a SEG: the model and the pipeline, which with the source series name its SEG series
/// (one SEG series per source series, pipeline and model), and its Instance Number there.
#[derive(Debug, Clone, Copy)]
pub struct SegOrigin<'a> {
    pub model_sha256: &'a str,
    pub pipeline: &'a str,
    /// A series' stacks are instances 1, 2, … of its SEG series.
    pub instance_number: u32,
}

impl<'a> SegOrigin<'a> {
    /// The first instance of a SEG series of `pipeline` and `model_sha256`.
    pub fn new(model_sha256: &'a str, pipeline: &'a str) -> SegOrigin<'a> {
        SegOrigin { model_sha256, pipeline, instance_number: 1 }
    }
}

/// Writes a binary SEG for `mask` over frame `frame` (from 0) of `source`.
pub fn write_seg(
    source: &DicomFile,
    frame: u32,
    mask: &GrayImage,
    settings: &SegConfig,
    origin: &SegOrigin,
) -> Result<Vec<u8>, DicomError> {
    let mask = PackedMask::from_gray(mask);
    write_series_seg(&[SegSlice { source, frame, mask: &mask }], None, settings, origin)
}

/// Writes one binary SEG for a stack: `slices` in spatial order, one SEG frame for each slice with
/// foreground (each slice with `write_empty`), each placed at its source's position and referencing
/// its source instance (and frame, for a multi-frame source). Patient, study and equipment come
/// from the first slice's source; the Referenced Series Sequence lists every source instance.
pub fn write_series_seg(
    slices: &[SegSlice],
    spacing_between_slices: Option<f64>,
    settings: &SegConfig,
    origin: &SegOrigin,
) -> Result<Vec<u8>, DicomError> {
    let model_sha256 = origin.model_sha256;
    let invalid = |reason: String| Err(DicomError::WriteSeg { reason });
    let Some(first) = slices.first() else {
        return invalid("a SEG needs at least one slice".into());
    };
    for slice in slices {
        let info = &slice.source.info;
        if slice.frame >= info.frames {
            return Err(DicomError::FrameOutOfRange { frame: slice.frame, frames: info.frames });
        }
        let (mask_width, mask_height) = slice.mask.dimensions();
        if (mask_width, mask_height) != (info.columns, info.rows)
            || (info.rows, info.columns) != (first.source.info.rows, first.source.info.columns)
        {
            return Err(DicomError::MaskSize { mask_width, mask_height, columns: info.columns, rows: info.rows });
        }
    }
    // Which slices get a frame: those with foreground, or all of them with write_empty.
    let framed: Vec<usize> = (0..slices.len()).filter(|&k| settings.write_empty || slices[k].mask.any()).collect();
    if framed.is_empty() {
        return Err(DicomError::EmptyMask);
    }
    let (source, info) = (first.source, &first.source.info);
    let label = &settings.content_label;
    if label.is_empty()
        || label.len() > 16
        || !label.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == ' ')
    {
        return invalid(format!("content_label {label:?} must be 1–16 characters of A–Z, 0–9, space or underscore"));
    }
    if settings.segment_label.is_empty() || settings.algorithm_name.is_empty() {
        return invalid("segment_label and algorithm_name must not be empty".into());
    }
    let src = source.object();
    let mut references = Vec::with_capacity(slices.len());
    for slice in slices {
        let obj = slice.source.object();
        let Some(instance) = string(obj, tags::SOP_INSTANCE_UID) else {
            return invalid("a source has no SOP Instance UID to reference".into());
        };
        let class = string(obj, tags::SOP_CLASS_UID).unwrap_or_default();
        let series = string(obj, tags::SERIES_INSTANCE_UID);
        references.push(SourceRef { class, instance, series });
    }
    let source_sop_instance = references[0].instance.clone();
    // A source without a Study Instance UID (not conformant) gets one derived from its instance,
    // so that every SEG of that instance lands in the same study.
    let study_uid = string(src, tags::STUDY_INSTANCE_UID).unwrap_or_else(|| derived_uid("study", &source_sop_instance));
    let source_series = string(src, tags::SERIES_INSTANCE_UID).unwrap_or_else(new_uid);

    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };
    let (date, time) = now_utc();
    let sop_instance = new_uid();

    // SOP Common.
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192".into());
    put(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, sop_instance.clone().into());
    put(tags::INSTANCE_CREATION_DATE, VR::DA, date.clone().into());
    put(tags::INSTANCE_CREATION_TIME, VR::TM, time.clone().into());
    put(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000".into());

    // Patient and General Study, copied (type 2 attributes are written empty when absent).
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::ACCESSION_NUMBER, VR::SH),
    ] {
        let value = copied_value(tag, vr, &string(src, tag).unwrap_or_default());
        put(tag, vr, value.into());
    }
    for (tag, vr) in
        [(tags::ISSUER_OF_PATIENT_ID, VR::LO), (tags::STUDY_DESCRIPTION, VR::LO), (tags::PATIENT_AGE, VR::AS)]
    {
        let value = copied_value(tag, vr, &string(src, tag).unwrap_or_default());
        if !value.is_empty() {
            put(tag, vr, value.into());
        }
    }
    put(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.into());

    // General Series and Segmentation Series.
    // The same for every SEG of this source series, pipeline and model: one SEG series for them.
    let series_uid = derived_uid("seg series", &format!("{source_series}\0{}\0{model_sha256}", origin.pipeline));
    put(tags::MODALITY, VR::CS, "SEG".into());
    put(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.into());
    put(tags::SERIES_NUMBER, VR::IS, settings.series_number.to_string().into());
    put(tags::SERIES_DESCRIPTION, VR::LO, settings.series_description.clone().into());
    put(tags::SERIES_DATE, VR::DA, date.clone().into());
    put(tags::SERIES_TIME, VR::TM, time.clone().into());

    // General Equipment and Enhanced General Equipment.
    put(tags::MANUFACTURER, VR::LO, "efen".into());
    put(tags::MANUFACTURER_MODEL_NAME, VR::LO, settings.algorithm_name.clone().into());
    put(tags::DEVICE_SERIAL_NUMBER, VR::LO, "1".into());
    put(tags::SOFTWARE_VERSIONS, VR::LO, concat!("efen ", env!("CARGO_PKG_VERSION")).into());

    // Geometry: only when the source gives all of it (a Frame of Reference without positions
    // would be a SEG that claims a space it cannot place its frame in).
    let geometries: Option<Vec<Geometry>> = slices
        .iter()
        .map(|slice| Geometry::of(slice.source, slice.frame))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .collect();
    // One frame of reference for all, or no geometry at all.
    let geometries = geometries.filter(|all| all.iter().all(|g| g.frame_of_reference == all[0].frame_of_reference));
    let geometry = geometries.as_ref().map(|all| &all[0]);
    if geometry.is_none() {
        // General Image: type 2C when there is no Image Orientation/Position (Patient).
        let orientation = strings_of(src, tags::PATIENT_ORIENTATION);
        let value = if orientation.len() == 2 {
            PrimitiveValue::Strs(orientation.into_iter().collect())
        } else {
            PrimitiveValue::Empty
        };
        put(tags::PATIENT_ORIENTATION, VR::CS, value);
    }
    if let Some(g) = geometry {
        put(tags::FRAME_OF_REFERENCE_UID, VR::UI, g.frame_of_reference.clone().into());
        put(tags::POSITION_REFERENCE_INDICATOR, VR::LO, g.position_reference.clone().into());
    }

    // General Image, Segmentation Image, Image Pixel.
    put(tags::IMAGE_TYPE, VR::CS, PrimitiveValue::Strs(["DERIVED", "PRIMARY"].map(String::from).into()));
    put(tags::INSTANCE_NUMBER, VR::IS, origin.instance_number.to_string().into());
    put(tags::CONTENT_DATE, VR::DA, date.into());
    put(tags::CONTENT_TIME, VR::TM, time.into());
    put(tags::CONTENT_LABEL, VR::CS, settings.content_label.clone().into());
    put(tags::CONTENT_DESCRIPTION, VR::LO, format!("{} by {}", settings.segment_label, settings.algorithm_name).into());
    put(tags::CONTENT_CREATOR_NAME, VR::PN, "".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(info.rows as u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(info.columns as u16));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(1u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(1u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(0u16));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00".into());
    put(tags::SEGMENTATION_TYPE, VR::CS, "BINARY".into());
    put(tags::SEGMENTS_OVERLAP, VR::CS, "NO".into());
    put(tags::NUMBER_OF_FRAMES, VR::IS, framed.len().to_string().into());
    if info.rows > u16::MAX as u32 || info.columns > u16::MAX as u32 {
        return invalid(format!("{}×{} does not fit Rows/Columns (US)", info.columns, info.rows));
    }

    // Segment Sequence.
    let version = if settings.algorithm_version.is_empty() {
        model_sha256.chars().take(16).collect::<String>()
    } else {
        settings.algorithm_version.clone()
    };
    if version.is_empty() {
        return invalid("algorithm_version is empty and no model SHA-256 was given".into());
    }
    let algorithm = item(|o| {
        o.put(seq(
            tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
            vec![code_item(&Code::new("123110", "DCM", "Artificial Intelligence"))],
        ));
        o.put(text(tags::ALGORITHM_NAME, VR::LO, &settings.algorithm_name));
        o.put(text(tags::ALGORITHM_VERSION, VR::LO, &version));
        o.put(text(tags::ALGORITHM_PARAMETERS, VR::LT, &format!("model_sha256={model_sha256}")));
    });
    let segment = item(|o| {
        o.put(DataElement::new(tags::SEGMENT_NUMBER, VR::US, PrimitiveValue::from(1u16)));
        o.put(text(tags::SEGMENT_LABEL, VR::LO, &settings.segment_label));
        o.put(text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"));
        o.put(text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &settings.algorithm_name));
        o.put(seq(tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE, vec![algorithm]));
        o.put(seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, vec![code_item(&settings.category)]));
        o.put(seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![code_item(&settings.property_type)]));
    });
    obj.put(seq(tags::SEGMENT_SEQUENCE, vec![segment]));

    // Multi-frame Dimension: segment number, then position when there is geometry.
    let organization = new_uid();
    obj.put(seq(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![item(|o| o.put(text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &organization)))],
    ));
    let mut indices = vec![dimension(
        &organization,
        tags::REFERENCED_SEGMENT_NUMBER,
        tags::SEGMENT_IDENTIFICATION_SEQUENCE,
        "Segment Number",
    )];
    if geometry.is_some() {
        indices.push(dimension(
            &organization,
            tags::IMAGE_POSITION_PATIENT,
            tags::PLANE_POSITION_SEQUENCE,
            "Image Position Patient",
        ));
    }
    let with_position = indices.len() > 1;
    obj.put(seq(tags::DIMENSION_INDEX_SEQUENCE, indices));

    // Shared functional groups: orientation and pixel measures.
    let shared = item(|o| {
        if let Some(g) = geometry {
            o.put(seq(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(|p| p.put(decimals(tags::IMAGE_ORIENTATION_PATIENT, &g.orientation)))],
            ));
            o.put(seq(
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![item(|p| {
                    p.put(decimals(tags::PIXEL_SPACING, &g.spacing));
                    p.put(decimals(tags::SLICE_THICKNESS, &[g.thickness]));
                    if let Some(between) = spacing_between_slices.filter(|s| *s > 0.0) {
                        p.put(decimals(tags::SPACING_BETWEEN_SLICES, &[between]));
                    }
                })],
            ));
        }
    });
    obj.put(seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]));

    // Per-frame functional groups: derivation, frame content, position, segment.
    // A frame is named only in a multi-frame instance of a class that may hold several frames
    // (a single-frame class with Number of Frames > 1 is not conformant; naming its frame would
    // make the SEG invalid too).
    let per_frame: Vec<InMemDicomObject> = framed
        .iter()
        .map(|&k| {
            let (slice, reference) = (&slices[k], &references[k]);
            let multi_frame_source =
                slice.source.info.frames > 1 && !SINGLE_FRAME_CLASSES.contains(&reference.class.as_str());
            let source_image = item(|o| {
                o.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &reference.class));
                o.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &reference.instance));
                if multi_frame_source {
                    o.put(DataElement::new(
                        tags::REFERENCED_FRAME_NUMBER,
                        VR::IS,
                        PrimitiveValue::from((slice.frame + 1).to_string()),
                    ));
                }
                o.put(seq(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![code_item(&Code::new("121322", "DCM", "Source image for image processing operation"))],
                ));
            });
            let derivation = item(|o| {
                o.put(seq(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![code_item(&Code::new("113076", "DCM", "Segmentation"))],
                ));
                o.put(seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source_image]));
            });
            // Dimension index values: segment 1, then the slice's place in the stack.
            let index_values: Vec<u32> = if with_position { vec![1, k as u32 + 1] } else { vec![1] };
            item(|o| {
                o.put(seq(tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation]));
                o.put(seq(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![item(|p| {
                        p.put(DataElement::new(
                            tags::DIMENSION_INDEX_VALUES,
                            VR::UL,
                            PrimitiveValue::U32(index_values.iter().copied().collect()),
                        ))
                    })],
                ));
                if let Some(g) = geometries.as_ref().map(|all| &all[k]) {
                    o.put(seq(
                        tags::PLANE_POSITION_SEQUENCE,
                        vec![item(|p| p.put(decimals(tags::IMAGE_POSITION_PATIENT, &g.position)))],
                    ));
                }
                o.put(seq(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![item(|p| {
                        p.put(DataElement::new(tags::REFERENCED_SEGMENT_NUMBER, VR::US, PrimitiveValue::from(1u16)))
                    })],
                ));
            })
        })
        .collect();
    obj.put(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));

    // Common Instance Reference: every source instance, by series.
    let mut by_series: Vec<(String, Vec<&SourceRef>)> = Vec::new();
    for reference in &references {
        let series = reference.series.clone().unwrap_or_else(|| source_series.clone());
        match by_series.iter_mut().find(|(s, _)| *s == series) {
            Some((_, refs)) if refs.iter().any(|r| r.instance == reference.instance) => {}
            Some((_, refs)) => refs.push(reference),
            None => by_series.push((series, vec![reference])),
        }
    }
    let series_items = by_series
        .into_iter()
        .map(|(series, refs)| {
            item(|o| {
                o.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &series));
                o.put(seq(
                    tags::REFERENCED_INSTANCE_SEQUENCE,
                    refs.iter()
                        .map(|r| {
                            item(|p| {
                                p.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &r.class));
                                p.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &r.instance));
                            })
                        })
                        .collect(),
                ));
            })
        })
        .collect();
    obj.put(seq(tags::REFERENCED_SERIES_SEQUENCE, series_items));

    let masks: Vec<&PackedMask> = framed.iter().map(|&k| slices[k].mask).collect();
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(concat_bits(&masks).into())));

    let file = obj.with_meta(super::file_meta()).map_err(|e| DicomError::WriteSeg { reason: chain(&e) })?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| DicomError::WriteSeg { reason: chain(&e) })?;
    Ok(bytes)
}

/// Frame geometry of the source, from its per-frame or shared functional groups (enhanced
/// multi-frame) or from its top-level attributes (classic images).
struct Geometry {
    frame_of_reference: String,
    position_reference: String,
    position: Vec<f64>,
    orientation: Vec<f64>,
    spacing: Vec<f64>,
    thickness: f64,
}

impl Geometry {
    fn of(source: &DicomFile, frame: u32) -> Result<Option<Geometry>, DicomError> {
        let src = source.object();
        let Some(frame_of_reference) = string(src, tags::FRAME_OF_REFERENCE_UID) else {
            return Ok(None);
        };
        let groups = super::geometry::FrameGroups::of(src, frame);
        let find = |group: Tag, tag: Tag| groups.floats(group, tag);
        let position = find(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT);
        let orientation = find(tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT);
        let spacing = find(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING);
        let thickness = find(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS);
        if position.len() != 3 || orientation.len() != 6 || spacing.len() != 2 {
            return Ok(None);
        }
        // A source's orientation off unit length by a rounding goes into the SEG normalised, as
        // the stack was built with it (dciodvfy refuses a non-unit one); beyond that, none.
        let Ok((orientation, _)) = super::geometry::unit_orientation(orientation.try_into().expect("six values"))
        else {
            return Ok(None);
        };
        let orientation = orientation.to_vec();
        Ok(Some(Geometry {
            frame_of_reference,
            position_reference: string(src, tags::POSITION_REFERENCE_INDICATOR).unwrap_or_default(),
            position,
            orientation,
            spacing,
            // Pixel Measures needs a thickness with the spacing; 1 mm when the source has none.
            thickness: thickness.first().copied().filter(|t| *t > 0.0).unwrap_or(1.0),
        }))
    }
}

/// A source instance a SEG references.
struct SourceRef {
    class: String,
    instance: String,
    series: Option<String>,
}

/// A value copied from a source into the SEG, made valid for its VR or left empty, so that a
/// SEG never inherits an error of its source: one value where the VR allows one (a two-valued
/// Accession Number), an age as nnnD/W/M/Y, a sex of M, F or O, dates and times as DA and TM.
fn copied_value(tag: Tag, vr: VR, text: &str) -> String {
    let first = text.split('\\').next().unwrap_or_default().trim();
    let limit = |max: usize| first.chars().take(max).collect::<String>();
    match vr {
        VR::DA => date_value(first),
        VR::TM => time_value(first),
        VR::SH => limit(16),
        VR::LO => limit(64),
        VR::AS => {
            let b = first.as_bytes();
            let valid = b.len() == 4 && b[..3].iter().all(u8::is_ascii_digit) && b"DWMY".contains(&b[3]);
            if valid { first.to_string() } else { String::new() }
        }
        VR::CS if tag == tags::PATIENT_SEX => {
            if ["M", "F", "O"].contains(&first) {
                first.to_string()
            } else {
                String::new()
            }
        }
        // PN keeps its components (^) and groups (=); only one value.
        _ => limit(64),
    }
}

fn item<R>(fill: impl FnOnce(&mut InMemDicomObject) -> R) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let _ = fill(&mut obj);
    obj
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn code_item(code: &Code) -> InMemDicomObject {
    item(|o| {
        o.put(text(tags::CODE_VALUE, VR::SH, &code.value));
        o.put(text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &code.scheme));
        o.put(text(tags::CODE_MEANING, VR::LO, &code.meaning));
    })
}

fn dimension(organization: &str, pointer: Tag, group: Tag, label: &str) -> InMemDicomObject {
    item(|o| {
        o.put(DataElement::new(tags::DIMENSION_INDEX_POINTER, VR::AT, PrimitiveValue::Tags((&[pointer][..]).into())));
        o.put(DataElement::new(tags::FUNCTIONAL_GROUP_POINTER, VR::AT, PrimitiveValue::Tags((&[group][..]).into())));
        o.put(text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, organization));
        o.put(text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label));
    })
}

/// Decimal strings (DS: at most 16 characters each).
fn decimals(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let strings = values.iter().map(|v| format_ds(*v)).collect();
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(strings))
}

pub(super) fn format_ds(value: f64) -> String {
    let plain = format!("{value}");
    if plain.len() <= 16 {
        return plain;
    }
    for precision in (0..=10).rev() {
        let text = format!("{value:.precision$}");
        let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
        if text.len() <= 16 {
            return text;
        }
    }
    format!("{value:.6e}")
}

/// Today's date (YYYYMMDD) and time (HHMMSS) in UTC.
pub(super) fn now_utc() -> (String, String) {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}{month:02}{day:02}"), format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_values_never_carry_a_source_error() {
        assert_eq!(copied_value(tags::ACCESSION_NUMBER, VR::SH, "A1\\A2"), "A1");
        assert_eq!(copied_value(tags::PATIENT_AGE, VR::AS, "75Y "), "");
        assert_eq!(copied_value(tags::PATIENT_AGE, VR::AS, "075Y"), "075Y");
        assert_eq!(copied_value(tags::PATIENT_SEX, VR::CS, "N/A"), "");
        assert_eq!(copied_value(tags::PATIENT_SEX, VR::CS, "F"), "F");
        assert_eq!(copied_value(tags::STUDY_DATE, VR::DA, "1997.04.24"), "19970424");
    }

    #[test]
    fn uids_and_decimals_fit_their_vrs() {
        let uid = new_uid();
        assert!(uid.starts_with("2.25.") && uid.len() <= 64, "{uid}");
        assert!(uid[5..].chars().all(|c| c.is_ascii_digit()));
        assert_eq!(format_ds(0.5), "0.5");
        assert!(format_ds(-123.456_789_012_345_67).len() <= 16);
        assert!(format_ds(1.0 / 3.0).len() <= 16);
    }

    #[test]
    fn copied_dates_and_times_are_made_valid_or_left_empty() {
        assert_eq!(date_value("19970424"), "19970424");
        assert_eq!(date_value("1997.04.24"), "19970424", "ACR-NEMA form");
        assert_eq!(date_value("24/04/1997"), "");
        assert_eq!(time_value("14:04:38"), "140438");
        assert_eq!(time_value("140438.123"), "140438.123");
        assert_eq!(time_value("1404"), "1404");
        assert_eq!(time_value("14.5"), "");
        assert_eq!(time_value("noon"), "");
    }

    #[test]
    fn derived_uids_repeat_for_the_same_seed() {
        assert_eq!(derived_uid("study", "1.2.3"), derived_uid("study", "1.2.3"));
        assert_ne!(derived_uid("study", "1.2.3"), derived_uid("study", "1.2.4"));
        assert!(derived_uid("study", "1.2.3").len() <= 64);
    }

    #[test]
    fn civil_date_is_sane() {
        let (date, time) = now_utc();
        assert_eq!((date.len(), time.len()), (8, 6));
        assert!(date.as_str() >= "20250101");
    }
}
