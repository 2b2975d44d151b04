//! A DICOM series as one case. Ingest gathers instances by Series Instance UID ([`Gatherer`]);
//! a complete series splits into stacks ([`cases_of`]), each one case whose slices run through the
//! tile queue like images and come back into one bit-packed mask volume ([`assembly`]); the case
//! then writes one multi-frame SEG, one `mask.nii.gz` and one montage, and records one row.

pub mod assembly;
mod gather;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::case::DicomInput;
use crate::dicom::{SliceHeader, SlicePlane};
pub use assembly::SeriesWork;
pub use gather::{Gatherer, Instance};

/// One stack of one series: what a series case is made of.
#[derive(Debug)]
pub struct SeriesCase {
    pub series_uid: String,
    /// 1-based, in the order of each stack's first slice; `stacks` in the series.
    pub stack: u32,
    pub stacks: u32,
    /// What sets this stack apart from the series' others (None when the series is one stack).
    pub distinct: Option<String>,
    /// The typical distance between neighbouring slices along the normal, in mm.
    pub spacing: Option<f64>,
    /// Geometry problems that do not stop the case (gap, irregular spacing, duplicates, tilt).
    pub warnings: Vec<String>,
    /// Where the user put the series: the folder its files have in common, or its one file.
    pub folder: PathBuf,
    /// The instance files with slices in this stack.
    pub files: Vec<SeriesFile>,
    /// The slices in spatial order.
    pub slices: Vec<SeriesSlice>,
}

/// One instance file of a series case.
#[derive(Debug)]
pub struct SeriesFile {
    /// Where the user put it, and where its bytes are now (the claimed copy in watch mode).
    pub original: PathBuf,
    pub current: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    /// Parsed at ingest, without its pixel data (decoded from `current` when its slices are).
    pub input: Arc<DicomInput>,
    /// How many cases (stacks) hold slices of this file: it is moved once all are recorded.
    pub cases: u32,
}

/// One slice: frame `frame` (from 0) of `files[file]`.
#[derive(Debug, Clone)]
pub struct SeriesSlice {
    pub file: usize,
    pub frame: u32,
    pub plane: Option<SlicePlane>,
    /// Its ground truth: a mask image found by pattern next to the instance, or a DICOM SEG (by
    /// pattern, or one that references the series: a slice it has no frame for is empty there).
    pub truth: Option<PathBuf>,
}

impl SeriesCase {
    /// The case's identity: the hash of its slices' identities (file hash and frame), so the same
    /// instances make the same case however they arrive, and each stack is a case of its own.
    pub fn sha256(&self) -> String {
        let mut slices: Vec<String> =
            self.slices.iter().map(|s| format!("{}#{}", self.files[s.file].sha256, s.frame)).collect();
        slices.sort();
        let mut hasher = Sha256::new();
        hasher.update(b"efen series\0");
        for slice in slices {
            hasher.update(slice.as_bytes());
            hasher.update([0]);
        }
        hex::encode(hasher.finalize())
    }

    /// What the record calls it: the folder, the series and, when the series was split, the stack.
    pub fn source_path(&self) -> String {
        let mut name = format!("{}#series={}", self.folder.display(), self.series_uid);
        if self.stacks > 1 {
            name += &format!("#stack={}", self.stack);
        }
        name
    }

    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }

    /// Slices with usable geometry, in order, when every slice has it.
    pub fn planes(&self) -> Option<Vec<&SlicePlane>> {
        self.slices.iter().map(|s| s.plane.as_ref()).collect()
    }

    /// The volume of one voxel in mL, when pixel spacing and slice spacing are both known (a
    /// single slice uses its thickness).
    pub fn voxel_ml(&self) -> Option<f64> {
        let plane = self.slices.first()?.plane.as_ref()?;
        let step = self.spacing.or(plane.thickness).filter(|s| *s > 0.0)?;
        Some(plane.spacing[0] * plane.spacing[1] * step / 1000.0)
    }
}

/// Splits a complete series into its stacks, one case each. `truth_of` finds a SEG that
/// references a slice (instance UID, 1-based frame number).
pub fn cases_of(instances: Vec<Instance>, mut truth_of: impl FnMut(&str, u32) -> Option<PathBuf>) -> Vec<SeriesCase> {
    let Some(series_uid) = instances.first().map(|i| i.series_uid.clone()) else {
        return Vec::new();
    };
    // Every frame of every instance is a slice.
    let mut slices: Vec<(usize, u32)> = Vec::new();
    let mut headers: Vec<SliceHeader> = Vec::new();
    for (file, instance) in instances.iter().enumerate() {
        for frame in 0..instance.input.file.frame_count() {
            slices.push((file, frame));
            headers.push(SliceHeader::of(&instance.input.file, frame));
        }
    }
    let stacks = crate::dicom::stacks(&headers);
    let holders: Vec<u32> = (0..instances.len())
        .map(|file| stacks.iter().filter(|s| s.slices.iter().any(|&i| slices[i].0 == file)).count() as u32)
        .collect();
    // Where the series is: its one file (an enhanced multi-frame object), or the folder its files
    // have in common.
    let folder = match instances.as_slice() {
        [one] => one.original.clone(),
        _ => common_folder(instances.iter().map(|i| i.original.as_path())),
    };
    // A SEG that references any slice is the truth of the whole stack (it has no frame where the
    // truth is empty).
    let count = stacks.len() as u32;
    let mut cases = Vec::with_capacity(stacks.len());
    for (n, stack) in stacks.into_iter().enumerate() {
        let mut files: Vec<SeriesFile> = Vec::new();
        let mut file_index = std::collections::HashMap::new();
        let mut members = Vec::with_capacity(stack.slices.len());
        for &i in &stack.slices {
            let (file, frame) = slices[i];
            let instance = &instances[file];
            let local = *file_index.entry(file).or_insert_with(|| {
                files.push(SeriesFile {
                    original: instance.original.clone(),
                    current: instance.current.clone(),
                    sha256: instance.sha256.clone(),
                    size_bytes: instance.size_bytes,
                    input: instance.input.clone(),
                    cases: holders[file],
                });
                files.len() - 1
            });
            let by_pattern = instance.truth.clone().filter(|_| instance.input.file.frame_count() == 1);
            members.push(SeriesSlice { file: local, frame, plane: headers[i].plane.clone(), truth: by_pattern });
        }
        let seg = members.iter().find_map(|slice| {
            let uid = files[slice.file].input.identity.sop_instance_uid.as_deref()?;
            truth_of(uid, slice.frame + 1)
        });
        if let Some(seg) = seg {
            for slice in &mut members {
                slice.truth = Some(seg.clone());
            }
        }
        cases.push(SeriesCase {
            series_uid: series_uid.clone(),
            stack: n as u32 + 1,
            stacks: count,
            distinct: stack.distinct,
            spacing: stack.spacing,
            warnings: stack.warnings,
            folder: folder.clone(),
            files,
            slices: members,
        });
    }
    cases
}

/// The deepest folder that holds every path.
fn common_folder<'a>(paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for path in paths {
        let parent = path.parent().unwrap_or(Path::new(""));
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_folder_of_a_series() {
        let paths = [Path::new("drop/ct/a/1.dcm"), Path::new("drop/ct/b/2.dcm"), Path::new("drop/ct/3.dcm")];
        assert_eq!(common_folder(paths.into_iter()), PathBuf::from("drop/ct"));
        assert_eq!(common_folder([Path::new("1.dcm")].into_iter()), PathBuf::from(""));
    }
}
