//! The overlay as a Secondary Capture image, for PACS viewers that do not display SEG: overlay.png
//! (RGB) with the patient and study of the SEG beside it, in a series of its own.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

/// Patient and study attributes copied from the SEG, so the overlay files under the same study.
const COPIED: &[dicom_core::Tag] = &[
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::REFERRING_PHYSICIAN_NAME,
];

/// `overlay.dcm` beside the SEG, made once from the SEG (its patient and study) and the overlay
/// image; a retry sends the same SOP Instance again.
pub fn overlay_dicom(seg_path: &Path, overlay_path: &Path) -> Result<std::path::PathBuf, String> {
    let target = seg_path.with_file_name("overlay.dcm");
    if target.is_file() {
        return Ok(target);
    }
    let seg = dicom_object::open_file(seg_path).map_err(|e| format!("cannot read {}: {e}", seg_path.display()))?;
    let overlay = image::open(overlay_path).map_err(|e| format!("cannot read {}: {e}", overlay_path.display()))?;
    let rgb = overlay.to_rgb8();
    let mut obj = InMemDicomObject::new_empty();
    for tag in COPIED {
        if let Ok(element) = seg.element(*tag) {
            obj.put(element.clone());
        }
    }
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let sop_instance = crate::dicom::new_uid();
    let now = chrono::Utc::now();
    obj.put(text(tags::SOP_CLASS_UID, VR::UI, uids::SECONDARY_CAPTURE_IMAGE_STORAGE));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance));
    // One overlay series per SEG series (per source series, pipeline and model), as for the SEGs.
    let seg_series = seg.element(tags::SERIES_INSTANCE_UID).ok().and_then(|e| e.to_str().ok()).unwrap_or_default();
    let series = crate::dicom::derived_uid("overlay series", seg_series.trim_end_matches('\0'));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &series));
    obj.put(text(tags::MODALITY, VR::CS, "OT"));
    obj.put(text(tags::SERIES_NUMBER, VR::IS, "9902"));
    obj.put(text(tags::SERIES_DESCRIPTION, VR::LO, "efen overlay"));
    obj.put(text(tags::INSTANCE_NUMBER, VR::IS, "1"));
    // Type 2C, present but empty: unknown for a derived picture.
    obj.put(text(tags::LATERALITY, VR::CS, ""));
    obj.put(text(tags::PATIENT_ORIENTATION, VR::CS, ""));
    obj.put(text(tags::CONVERSION_TYPE, VR::CS, "WSD"));
    obj.put(text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"));
    obj.put(text(tags::CONTENT_DATE, VR::DA, &now.format("%Y%m%d").to_string()));
    obj.put(text(tags::CONTENT_TIME, VR::TM, &now.format("%H%M%S").to_string()));
    obj.put(text(tags::DERIVATION_DESCRIPTION, VR::ST, "efen segmentation overlay, not for diagnosis"));
    obj.put(text(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"));
    obj.put(us(tags::SAMPLES_PER_PIXEL, 3));
    obj.put(text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"));
    obj.put(us(tags::PLANAR_CONFIGURATION, 0));
    obj.put(us(tags::ROWS, rgb.height() as u16));
    obj.put(us(tags::COLUMNS, rgb.width() as u16));
    obj.put(us(tags::BITS_ALLOCATED, 8));
    obj.put(us(tags::BITS_STORED, 8));
    obj.put(us(tags::HIGH_BIT, 7));
    obj.put(us(tags::PIXEL_REPRESENTATION, 0));
    let mut pixels = rgb.into_raw();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(pixels.into())));
    let file =
        obj.with_meta(crate::dicom::file_meta()).map_err(|e| format!("cannot make the overlay's meta group: {e}"))?;
    let part = target.with_file_name(".overlay.dcm.part");
    file.write_to_file(&part).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    std::fs::rename(&part, &target).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(target)
}
