//! SR: a case's SEG and measurements → a TID 1500 Measurement Report (Comprehensive 3D SR,
//! Part 10 bytes), the structured report that IHE AI Results expects beside an AI segmentation.
//!
//! The report is built from the SEG efen has just written ([`write_sr`] reads it back): it takes
//! the SEG's patient and study (already made valid), goes into its own SR series (one per SEG
//! series), names the device and the algorithm as the SEG does, and holds one measurement group
//! per segment that references that segment and the source series (TID 1411, volume) or, for a
//! one-frame case, the SEG frame and its source image (TID 1410, area), with the agreement
//! measures against ground truth when there is one.
//!
//! Comprehensive 3D SR rather than Enhanced SR: it is what IHE AIR names for AI results and what
//! highdicom writes by default, and it leaves room for 3D coordinates (SCOORD3D) later.

mod codes;
mod content;

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use self::content::{ImageRef, Relation, code, container, image, item, num, seq, text, text_item, uidref};
use super::read::{read_object, string};
use super::{Code, SEGMENTATION_STORAGE, derived_uid};
use crate::metrics::Scores;

/// Comprehensive 3D SR Storage.
pub const COMPREHENSIVE_3D_SR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.88.34";

/// The service's `[dicom.sr]` section: the measurement report written beside each SEG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrConfig {
    /// Write `sr.dcm` beside every `seg.dcm` (and send it wherever the SEG goes).
    pub enabled: bool,
    /// Series Number of the SR series.
    pub series_number: u32,
    /// Series Description of the SR series.
    pub series_description: String,
}

impl Default for SrConfig {
    fn default() -> Self {
        SrConfig { enabled: true, series_number: 901, series_description: "EFEN measurement report".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("cannot read the SEG the report refers to: {reason}")]
    ReadSeg { reason: String },
    #[error("cannot build the measurement report: {reason}")]
    Build { reason: String },
}

crate::error_types!(SrError { ReadSeg => "read_seg_for_sr", Build => "build_sr" });

/// Which TID 1500 measurement group the segment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roi {
    /// A stack: TID 1411, referencing the segment and the source series.
    Volumetric,
    /// One frame: TID 1410, referencing the SEG frame and its source image.
    Planar,
}

/// What the report measures of the (single) segment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measurements {
    pub volume_ml: Option<f64>,
    pub area_mm2: Option<f64>,
    /// Agreement with the ground truth.
    pub agreement: Option<Scores>,
}

/// Who made the report and of what.
#[derive(Debug, Clone, Copy)]
pub struct SrOrigin<'a> {
    /// The model card's name (Device Observer Name).
    pub model_name: &'a str,
    pub model_sha256: &'a str,
    /// The source's Modality, for Procedure Reported.
    pub modality: Option<&'a str>,
}

/// What the report takes from the SEG.
struct SegSummary {
    obj: InMemDicomObject,
    instance: String,
    series: String,
    instance_number: String,
    /// (number, label, category, property type) of each segment.
    segments: Vec<(u16, String, Code, Code)>,
    algorithm: Vec<(Code, String)>,
    /// (series UID, [(class, instance)]) of the sources.
    sources: Vec<(String, Vec<(String, String)>)>,
    /// The source image of the first frame (for a planar group).
    first_source: Option<ImageRef>,
}

/// Builds the measurement report of `seg` (the bytes of efen's `seg.dcm`).
pub fn write_sr(
    seg: &[u8],
    roi: Roi,
    measurements: &Measurements,
    origin: &SrOrigin,
    settings: &SrConfig,
) -> Result<Vec<u8>, SrError> {
    let build = |reason: String| SrError::Build { reason };
    let summary = SegSummary::read(seg)?;
    let [(number, label, category, property)] = summary.segments.as_slice() else {
        return Err(build(format!("the SEG has {} segments; efen reports on one", summary.segments.len())));
    };
    let src = &summary.obj;
    let mut obj = InMemDicomObject::new_empty();
    let (date, time) = super::seg::now_utc();
    // The same SEG, the same report: a resend or a rewrite keeps its UID.
    let sop_instance = derived_uid("sr", &summary.instance);

    // SOP Common.
    obj.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    obj.put(text(tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_3D_SR_STORAGE));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance));
    obj.put(text(tags::INSTANCE_CREATION_DATE, VR::DA, &date));
    obj.put(text(tags::INSTANCE_CREATION_TIME, VR::TM, &time));
    obj.put(text(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"));
    // The private scheme, named where its codes are used.
    if measurements.agreement.is_some() {
        obj.put(seq(
            tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
            vec![item(|o| {
                o.put(text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, codes::PRIVATE_SCHEME));
                o.put(text(tags::CODING_SCHEME_NAME, VR::ST, codes::PRIVATE_SCHEME_NAME));
                o.put(text(tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION, VR::ST, "efen"));
            })],
        ));
    }

    // Patient and General Study: the SEG's, which efen already made valid.
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::ISSUER_OF_PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::PATIENT_AGE,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::STUDY_ID,
        tags::ACCESSION_NUMBER,
        tags::STUDY_DESCRIPTION,
        tags::STUDY_INSTANCE_UID,
    ] {
        if let Some(element) = src.get(tag) {
            obj.put(element.clone());
        }
    }
    let Some(study) = string(src, tags::STUDY_INSTANCE_UID) else {
        return Err(build("the SEG has no Study Instance UID".into()));
    };

    // SR Document Series: one SR series per SEG series.
    obj.put(text(tags::MODALITY, VR::CS, "SR"));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &derived_uid("sr series", &summary.series)));
    obj.put(text(tags::SERIES_NUMBER, VR::IS, &settings.series_number.to_string()));
    obj.put(text(tags::SERIES_DESCRIPTION, VR::LO, &settings.series_description));
    obj.put(text(tags::SERIES_DATE, VR::DA, &date));
    obj.put(text(tags::SERIES_TIME, VR::TM, &time));
    obj.put(seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, Vec::new()));

    // General and Enhanced General Equipment, as the SEG has them.
    for tag in [tags::MANUFACTURER, tags::MANUFACTURER_MODEL_NAME, tags::DEVICE_SERIAL_NUMBER, tags::SOFTWARE_VERSIONS]
    {
        if let Some(element) = src.get(tag) {
            obj.put(element.clone());
        }
    }

    // SR Document General.
    obj.put(text(tags::INSTANCE_NUMBER, VR::IS, &summary.instance_number));
    obj.put(text(tags::CONTENT_DATE, VR::DA, &date));
    obj.put(text(tags::CONTENT_TIME, VR::TM, &time));
    obj.put(text(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"));
    obj.put(text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"));
    obj.put(seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new()));
    obj.put(seq(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, vec![summary.evidence(&study)]));

    // SR Document Content: the TID 1500 tree.
    let group = measurement_group(&summary, roi, measurements, (*number, label, category, property))?;
    let mut children = vec![code(Relation::HasConceptMod, &codes::language_of_content(), &codes::english_us())];
    children.extend(observer_context(origin));
    let procedure = codes::procedure_for(origin.modality.unwrap_or_default());
    children.push(code(Relation::HasConceptMod, &codes::procedure_reported(), &procedure));
    children.push(container(Some(Relation::Contains), &codes::imaging_measurements(), None, vec![group]));
    let root = container(None, &codes::imaging_measurement_report(), Some("1500"), children);
    for element in root.into_iter() {
        obj.put(element);
    }

    let file = obj.with_meta(super::file_meta()).map_err(|e| build(crate::error::chain(&e)))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| build(crate::error::chain(&e)))?;
    Ok(bytes)
}

/// TID 1002/1004: the device that observed, efen's model, named as its card names it.
fn observer_context(origin: &SrOrigin) -> Vec<InMemDicomObject> {
    let obs = Relation::HasObsContext;
    vec![
        code(obs, &codes::observer_type(), &codes::device()),
        uidref(obs, &codes::device_observer_uid(), &derived_uid("device", origin.model_sha256)),
        text_item(obs, &codes::device_observer_name(), origin.model_name),
        text_item(obs, &codes::device_observer_manufacturer(), "efen"),
        text_item(obs, &codes::device_observer_model_name(), origin.model_name),
    ]
}

/// TID 1410 or 1411 for the segment: tracking, finding, algorithm, measurements, references
/// (in highdicom's order).
fn measurement_group(
    summary: &SegSummary,
    roi: Roi,
    measurements: &Measurements,
    (number, label, category, property): (u16, &str, &Code, &Code),
) -> Result<InMemDicomObject, SrError> {
    let mut children = vec![
        text_item(Relation::HasObsContext, &codes::tracking_identifier(), label),
        uidref(
            Relation::HasObsContext,
            &codes::tracking_uid(),
            &derived_uid("sr tracking", &format!("{}\0{number}", summary.instance)),
        ),
        code(Relation::Contains, &codes::finding_category(), category),
        code(Relation::Contains, &codes::finding(), property),
    ];
    for (name, value) in &summary.algorithm {
        children.push(text_item(Relation::HasConceptMod, name, value));
    }
    if let Some(volume) = measurements.volume_ml {
        children.push(num(&codes::volume(), volume, &codes::milliliter()));
    }
    if let Some(area) = measurements.area_mm2 {
        children.push(num(&codes::area(), area, &codes::square_millimeter()));
    }
    if let Some(s) = &measurements.agreement {
        for (name, value) in [
            (codes::dice(), s.dsc),
            (codes::jaccard(), s.iou),
            (codes::mean_jaccard(), s.miou),
            (codes::precision(), s.precision),
            (codes::recall(), s.recall),
        ] {
            children.push(num(&name, value, &codes::no_units()));
        }
    }
    let segment = ImageRef {
        class: SEGMENTATION_STORAGE.into(),
        instance: summary.instance.clone(),
        frame: None,
        segment: Some(number),
    };
    let template = match roi {
        Roi::Volumetric => {
            let Some((series, _)) = summary.sources.first() else {
                return Err(SrError::Build { reason: "the SEG references no source series".into() });
            };
            children.push(image(&codes::referenced_segment(), &segment));
            children.push(uidref(Relation::Contains, &codes::source_series_for_segmentation(), series));
            "1411"
        }
        Roi::Planar => {
            let Some(source) = &summary.first_source else {
                return Err(SrError::Build { reason: "the SEG's frame names no source image".into() });
            };
            // A reference to a SEG frame names no segment (PS3.3 Table 10-3: Referenced Segment
            // Number only when the reference is to segments, not frames).
            let frame = ImageRef { frame: Some(1), segment: None, ..segment };
            children.push(image(&codes::referenced_segmentation_frame(), &frame));
            children.push(image(&codes::source_image_for_segmentation(), source));
            "1410"
        }
    };
    Ok(container(Some(Relation::Contains), &codes::measurement_group(), Some(template), children))
}

impl SegSummary {
    fn read(bytes: &[u8]) -> Result<SegSummary, SrError> {
        let fail = |reason: String| SrError::ReadSeg { reason };
        let (obj, _) = read_object(bytes).map_err(|e| fail(e.to_string()))?;
        let obj = obj.into_inner();
        if string(&obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
            return Err(fail("not a Segmentation".into()));
        }
        let required =
            |o: &InMemDicomObject, tag, name: &str| string(o, tag).ok_or_else(|| fail(format!("it has no {name}")));
        let instance = required(&obj, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
        let series = required(&obj, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
        let instance_number = string(&obj, tags::INSTANCE_NUMBER).unwrap_or_else(|| "1".into());
        let code_of = |o: &InMemDicomObject, tag| {
            items(o, tag).first().map(|c| {
                let part = |t| string(c, t).unwrap_or_default();
                Code::new(&part(tags::CODE_VALUE), &part(tags::CODING_SCHEME_DESIGNATOR), &part(tags::CODE_MEANING))
            })
        };
        let mut segments = Vec::new();
        let mut algorithm = Vec::new();
        for segment in items(&obj, tags::SEGMENT_SEQUENCE) {
            let number = string(segment, tags::SEGMENT_NUMBER).and_then(|n| n.parse().ok());
            let label = string(segment, tags::SEGMENT_LABEL).unwrap_or_else(|| "segment".into());
            let category = code_of(segment, tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE);
            let property = code_of(segment, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE);
            let (Some(number), Some(category), Some(property)) = (number, category, property) else {
                return Err(fail("a segment lacks its number or its coded property".into()));
            };
            segments.push((number, label, category, property));
            // TID 4019 from the segment's algorithm identification, so SEG and SR agree.
            if let Some(id) = items(segment, tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE).first() {
                for (tag, name) in [
                    (tags::ALGORITHM_NAME, codes::algorithm_name()),
                    (tags::ALGORITHM_VERSION, codes::algorithm_version()),
                    (tags::ALGORITHM_PARAMETERS, codes::algorithm_parameters()),
                ] {
                    if let Some(value) = string(id, tag) {
                        algorithm.push((name, value));
                    }
                }
            }
        }
        let sources = items(&obj, tags::REFERENCED_SERIES_SEQUENCE)
            .iter()
            .filter_map(|s| {
                let uid = string(s, tags::SERIES_INSTANCE_UID)?;
                let instances = items(s, tags::REFERENCED_INSTANCE_SEQUENCE)
                    .iter()
                    .filter_map(|i| {
                        Some((
                            string(i, tags::REFERENCED_SOP_CLASS_UID)?,
                            string(i, tags::REFERENCED_SOP_INSTANCE_UID)?,
                        ))
                    })
                    .collect();
                Some((uid, instances))
            })
            .collect();
        let first_source = items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .first()
            .and_then(|f| items(f, tags::DERIVATION_IMAGE_SEQUENCE).first().copied())
            .and_then(|d| items(d, tags::SOURCE_IMAGE_SEQUENCE).first().copied())
            .and_then(|s| {
                Some(ImageRef {
                    class: string(s, tags::REFERENCED_SOP_CLASS_UID)?,
                    instance: string(s, tags::REFERENCED_SOP_INSTANCE_UID)?,
                    frame: string(s, tags::REFERENCED_FRAME_NUMBER).and_then(|n| n.parse().ok()),
                    segment: None,
                })
            });
        Ok(SegSummary { obj, instance, series, instance_number, segments, algorithm, sources, first_source })
    }

    /// Current Requested Procedure Evidence: the SEG and every source instance, by series.
    fn evidence(&self, study: &str) -> InMemDicomObject {
        let sop = |class: &str, instance: &str| {
            item(|o| {
                o.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class));
                o.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance));
            })
        };
        let series = |uid: &str, sops: Vec<InMemDicomObject>| {
            item(|o| {
                o.put(text(tags::SERIES_INSTANCE_UID, VR::UI, uid));
                o.put(seq(tags::REFERENCED_SOP_SEQUENCE, sops));
            })
        };
        let mut all = vec![series(&self.series, vec![sop(SEGMENTATION_STORAGE, &self.instance)])];
        for (uid, instances) in &self.sources {
            all.push(series(uid, instances.iter().map(|(c, i)| sop(c, i)).collect()));
        }
        item(|o| {
            o.put(text(tags::STUDY_INSTANCE_UID, VR::UI, study));
            o.put(seq(tags::REFERENCED_SERIES_SEQUENCE, all));
        })
    }
}

/// The items of a sequence element; none when absent or not a sequence.
fn items(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Vec<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).map(|items| items.iter().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
