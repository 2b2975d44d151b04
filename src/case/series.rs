//! A DICOM series as one case: one stack of one series, its instance files and its slices in
//! spatial order. Admission makes these ([`crate::ingest::gather`]); the wiring runs their slices
//! and assembles their masks; the record stage stores them.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::SourceFile;
use crate::dicom::{DicomInput, SlicePlane};

/// One stack of one series: what a series case is made of.
#[derive(Debug)]
pub struct SeriesCase {
    pub series_uid: String,
    /// 1-based, in the order of each stack's first slice; `stacks` in the series.
    pub stack: u32,
    pub stacks: u32,
    /// The Instance Number of its SEG in the SEG series of the source series: after the SEGs of
    /// the series' earlier cases, so a newer result follows the one it supersedes.
    pub seg_instance_number: u32,
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
    /// Instance files none of whose slices is in the stack: at the position of another slice
    /// (the case's warnings say so). They are settled with the case.
    pub left_out: Vec<SeriesFile>,
}

/// One instance file of a series case.
#[derive(Debug)]
pub struct SeriesFile {
    pub file: SourceFile,
    /// Parsed at ingest, without its pixel data (decoded from `file.current` when its slices are).
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
            self.slices.iter().map(|s| format!("{}#{}", self.files[s.file].file.sha256, s.frame)).collect();
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
        self.files.iter().map(|f| f.file.size_bytes).sum()
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
