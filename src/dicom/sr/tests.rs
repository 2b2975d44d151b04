//! The report built from a SEG of an in-memory image: its identity, its references and its
//! measurements, read back with dicom-rs. Peers (dciodvfy, highdicom, dcmqi) judge real cases in
//! tests/series_cases.rs and tests/dicom_pipeline.rs.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::*;
use crate::dicom::{SegConfig, SegOrigin, open, write_seg};

/// A 4×3 8-bit CT slice with pixel spacing, and a SEG of its diagonal.
fn seg() -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| obj.put(DataElement::new(tag, vr, value));
    put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1".into());
    put(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.2".into());
    put(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.3".into());
    put(tags::PATIENT_ID, VR::LO, "P1".into());
    put(tags::PATIENT_NAME, VR::PN, "Doe^Jane".into());
    put(tags::MODALITY, VR::CS, "CT".into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(3u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(4u16));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8((0..12u8).collect()));
    let file = obj.with_meta(crate::dicom::file_meta()).unwrap();
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    let source = open(&bytes).unwrap();
    let mask = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([if x == y { 255 } else { 0 }]));
    write_seg(&source, 0, &mask, &SegConfig::default(), &SegOrigin::new("ab12cd34ef56ab12cd34", "test")).unwrap()
}

const ORIGIN: SrOrigin =
    SrOrigin { model_name: "efen-small", model_sha256: "ab12cd34ef56ab12cd34", modality: Some("CT") };

fn read(bytes: &[u8]) -> InMemDicomObject {
    read_object(bytes).unwrap().0.into_inner()
}

/// The content items under `obj`, depth first, as (concept name code value, the item).
fn walk<'a>(obj: &'a InMemDicomObject, out: &mut Vec<(String, &'a InMemDicomObject)>) {
    for child in items(obj, tags::CONTENT_SEQUENCE) {
        let name = items(child, tags::CONCEPT_NAME_CODE_SEQUENCE)[0];
        out.push((string(name, tags::CODE_VALUE).unwrap(), child));
        walk(child, out);
    }
}

fn find<'a>(tree: &[(String, &'a InMemDicomObject)], code: &str) -> Vec<&'a InMemDicomObject> {
    tree.iter().filter(|(c, _)| c == code).map(|(_, o)| *o).collect()
}

fn number(item: &InMemDicomObject) -> f64 {
    let measured = items(item, tags::MEASURED_VALUE_SEQUENCE)[0];
    string(measured, tags::NUMERIC_VALUE).unwrap().parse().unwrap()
}

#[test]
fn a_planar_report_references_the_seg_frame_and_carries_area_and_dice() {
    let seg_bytes = seg();
    let seg = read(&seg_bytes);
    let scores = Scores { dsc: 0.75, iou: 0.6, miou: 0.7, precision: 1.0, recall: 0.6 };
    let measured = Measurements { volume_ml: None, area_mm2: Some(2.25), agreement: Some(scores) };
    let sr = read(&write_sr(&seg_bytes, Roi::Planar, &measured, &ORIGIN, &SrConfig::default()).unwrap());

    assert_eq!(string(&sr, tags::SOP_CLASS_UID).as_deref(), Some(COMPREHENSIVE_3D_SR_STORAGE));
    assert_eq!(string(&sr, tags::MODALITY).as_deref(), Some("SR"));
    for tag in [tags::STUDY_INSTANCE_UID, tags::PATIENT_ID, tags::PATIENT_NAME, tags::INSTANCE_NUMBER] {
        assert_eq!(string(&sr, tag), string(&seg, tag), "{tag}");
    }
    assert_ne!(string(&sr, tags::SERIES_INSTANCE_UID), string(&seg, tags::SERIES_INSTANCE_UID));
    let template = items(&sr, tags::CONTENT_TEMPLATE_SEQUENCE)[0];
    assert_eq!(string(template, tags::TEMPLATE_IDENTIFIER).as_deref(), Some("1500"));

    let mut tree = Vec::new();
    walk(&sr, &mut tree);
    let frame = find(&tree, "121214");
    assert_eq!(frame.len(), 1, "one Referenced Segmentation Frame");
    let reference = items(frame[0], tags::REFERENCED_SOP_SEQUENCE)[0];
    assert_eq!(string(reference, tags::REFERENCED_SOP_INSTANCE_UID), string(&seg, tags::SOP_INSTANCE_UID));
    assert_eq!(string(reference, tags::REFERENCED_FRAME_NUMBER).as_deref(), Some("1"));
    assert!(reference.get(tags::REFERENCED_SEGMENT_NUMBER).is_none(), "a frame reference names no segment");
    let source = items(find(&tree, "121233")[0], tags::REFERENCED_SOP_SEQUENCE)[0];
    assert_eq!(string(source, tags::REFERENCED_SOP_INSTANCE_UID).as_deref(), Some("2.25.1"));
    assert_eq!(number(find(&tree, "42798000")[0]), 2.25);
    assert_eq!(number(find(&tree, "DSC")[0]), 0.75);
    assert!(find(&tree, "118565006").is_empty(), "no volume for one frame");
    let group = find(&tree, "125007")[0];
    let template = items(group, tags::CONTENT_TEMPLATE_SEQUENCE)[0];
    assert_eq!(string(template, tags::TEMPLATE_IDENTIFIER).as_deref(), Some("1410"));
    let name = find(&tree, "121013")[0];
    assert_eq!(string(name, tags::TEXT_VALUE).as_deref(), Some("efen-small"));
    let parameters = find(&tree, "111002")[0];
    assert_eq!(string(parameters, tags::TEXT_VALUE).as_deref(), Some("model_sha256=ab12cd34ef56ab12cd34"));
    // The private scheme is named in the instance.
    let scheme = items(&sr, tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE)[0];
    assert_eq!(string(scheme, tags::CODING_SCHEME_DESIGNATOR).as_deref(), Some("99EFEN"));
}

#[test]
fn a_volumetric_report_names_the_source_series_and_the_volume_and_repeats_its_uids() {
    let seg_bytes = seg();
    let measured = Measurements { volume_ml: Some(12.345_678_901_234), ..Default::default() };
    let settings = SrConfig::default();
    let bytes = write_sr(&seg_bytes, Roi::Volumetric, &measured, &ORIGIN, &settings).unwrap();
    let sr = read(&bytes);
    let mut tree = Vec::new();
    walk(&sr, &mut tree);
    let source_series = find(&tree, "121232")[0];
    assert_eq!(string(source_series, tags::UID).as_deref(), Some("2.25.3"));
    let volume = find(&tree, "118565006")[0];
    assert!((number(volume) - 12.345_678_901_234).abs() < 1e-9);
    let unit = items(items(volume, tags::MEASURED_VALUE_SEQUENCE)[0], tags::MEASUREMENT_UNITS_CODE_SEQUENCE)[0];
    assert_eq!(string(unit, tags::CODE_VALUE).as_deref(), Some("ml"));
    assert!(find(&tree, "DSC").is_empty(), "no ground truth, no Dice");
    assert!(sr.get(tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE).is_none());
    // The same SEG again: the same SR instance in the same SR series.
    let again = read(&write_sr(&seg_bytes, Roi::Volumetric, &measured, &ORIGIN, &settings).unwrap());
    for tag in [tags::SOP_INSTANCE_UID, tags::SERIES_INSTANCE_UID] {
        assert_eq!(string(&sr, tag), string(&again, tag));
    }
    // Evidence: the SEG and its source, in the study.
    let evidence = items(&sr, tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)[0];
    assert_eq!(string(evidence, tags::STUDY_INSTANCE_UID).as_deref(), Some("2.25.2"));
    assert_eq!(items(evidence, tags::REFERENCED_SERIES_SEQUENCE).len(), 2);
}

#[test]
fn what_is_not_a_seg_is_refused_with_a_reason() {
    let error = write_sr(b"not dicom", Roi::Volumetric, &Measurements::default(), &ORIGIN, &SrConfig::default())
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("cannot read the SEG the report refers to"), "{error}");
}

#[test]
fn procedures_follow_the_modality() {
    assert_eq!(codes::procedure_for("CT").value, "25045-6");
    assert_eq!(codes::procedure_for("OT").value, "363679005");
}
