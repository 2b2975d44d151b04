//! A DICOM Segmentation as ground truth: which source instances (and frames) it was derived from,
//! and the mask it gives one source frame.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use image::GrayImage;

use super::read::{read_object, string, strings};
use super::{DicomError, SEGMENTATION_STORAGE};

/// The mask value inside a segment (the pipeline's foreground value).
const INSIDE: u8 = 255;

/// One source frame a SEG frame was derived from. `frame_number` is 1-based; None means the
/// reference names the instance only (a single-frame source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegReference {
    pub sop_instance_uid: String,
    pub frame_number: Option<u32>,
}

impl SegReference {
    fn covers(&self, sop_instance_uid: &str, frame_number: u32) -> bool {
        self.sop_instance_uid == sop_instance_uid && self.frame_number.is_none_or(|n| n == frame_number)
    }
}

/// Whether the first bytes of a file name the Segmentation Storage class: a cheap test before
/// parsing (the class UID is in the meta group, or near the start of a bare data set).
pub fn may_be_seg(head: &[u8]) -> bool {
    let uid = SEGMENTATION_STORAGE.as_bytes();
    head.windows(uid.len() + 1).any(|w| w.starts_with(uid) && !w[uid.len()].is_ascii_digit())
}

/// The source frames of each frame of a SEG, in frame order; None when `bytes` are not a SEG.
pub fn seg_references(bytes: &[u8]) -> Option<Vec<Vec<SegReference>>> {
    let (obj, _) = read_object(bytes).ok()?;
    if string(&obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
        return None;
    }
    Some(frame_references(&obj))
}

/// The ground-truth mask of frame `frame_number` (1-based) of instance `sop_instance_uid`: the
/// union of every segment's frame derived from it, 255 inside and 0 outside.
pub fn seg_mask(bytes: &[u8], sop_instance_uid: &str, frame_number: u32) -> Result<GrayImage, DicomError> {
    SegTruth::parse(bytes)?.mask(sop_instance_uid, frame_number)
}

/// A ground-truth SEG parsed once, for the many slices of a series that it covers.
pub struct SegTruth {
    file: super::DicomFile,
    references: Vec<Vec<SegReference>>,
}

impl SegTruth {
    pub fn parse(bytes: &[u8]) -> Result<SegTruth, DicomError> {
        let file = super::open(bytes)?;
        if string(&file.obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
            return Err(DicomError::NotSegmentation);
        }
        let references = frame_references(&file.obj);
        Ok(SegTruth { file, references })
    }

    /// The mask of one source frame; [`DicomError::NotReferenced`] when no frame of the SEG was
    /// derived from it (for a series, a slice where the truth has nothing).
    pub fn mask(&self, sop_instance_uid: &str, frame_number: u32) -> Result<GrayImage, DicomError> {
        let frames: Vec<u32> = self
            .references
            .iter()
            .enumerate()
            .filter(|(_, refs)| refs.iter().any(|r| r.covers(sop_instance_uid, frame_number)))
            .map(|(index, _)| index as u32)
            .collect();
        if frames.is_empty() {
            return Err(DicomError::NotReferenced { sop_instance_uid: sop_instance_uid.into(), frame_number });
        }
        let mut mask = GrayImage::new(self.file.columns(), self.file.rows());
        for frame in frames {
            let samples = self.file.frame_samples(frame)?;
            for (out, value) in mask.iter_mut().zip(&samples.values) {
                if *value > 0 {
                    *out = INSIDE;
                }
            }
        }
        Ok(mask)
    }

    /// The size of its frames (columns, rows).
    pub fn dimensions(&self) -> (u32, u32) {
        (self.file.columns(), self.file.rows())
    }
}

/// Per frame, the Source Image Sequence of its Derivation Image Sequence. A SEG without per-frame
/// derivation gives every frame the instances of its Referenced Series Sequence.
fn frame_references(obj: &InMemDicomObject) -> Vec<Vec<SegReference>> {
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    let mut frames: Vec<Vec<SegReference>> = per_frame
        .iter()
        .map(|group| {
            items(group, tags::DERIVATION_IMAGE_SEQUENCE)
                .iter()
                .flat_map(|derivation| items(derivation, tags::SOURCE_IMAGE_SEQUENCE))
                .flat_map(references)
                .collect()
        })
        .collect();
    if frames.iter().all(Vec::is_empty) {
        let series: Vec<SegReference> = items(obj, tags::REFERENCED_SERIES_SEQUENCE)
            .iter()
            .flat_map(|s| items(s, tags::REFERENCED_INSTANCE_SEQUENCE))
            .flat_map(references)
            .collect();
        let count = frames.len().max(1);
        frames = vec![series; count];
    }
    frames
}

/// The references of one Source Image (or Referenced Instance) item: one per frame it names.
fn references(item: &InMemDicomObject) -> Vec<SegReference> {
    let Some(uid) = string(item, tags::REFERENCED_SOP_INSTANCE_UID) else {
        return Vec::new();
    };
    let numbers: Vec<u32> =
        strings(item, tags::REFERENCED_FRAME_NUMBER).iter().filter_map(|n| n.trim().parse().ok()).collect();
    if numbers.is_empty() {
        return vec![SegReference { sop_instance_uid: uid, frame_number: None }];
    }
    numbers.into_iter().map(|n| SegReference { sop_instance_uid: uid.clone(), frame_number: Some(n) }).collect()
}

fn items(obj: &InMemDicomObject, tag: dicom_core::Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.value().items()).unwrap_or(&[])
}
