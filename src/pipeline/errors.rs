//! The errors the wiring itself ends a case with: reading the ground truth (evaluate), reading a
//! series' instance again for its slices (decode), and a series whose slices failed. Each carries
//! the stage error it came from, so its type and its reason stay typed to the record.

use std::path::PathBuf;

use crate::case::Failure;
use crate::decode::DecodeError;
use crate::dicom::DicomError;
use crate::error::CaseError;
use crate::metrics::SizeMismatch;

/// The ground truth could not be read, or does not fit the mask.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("cannot read ground truth {}: {source}", path.display())]
    ReadGroundTruth { path: PathBuf, source: std::io::Error },
    #[error("cannot decode ground truth {}: {source}", path.display())]
    DecodeGroundTruth { path: PathBuf, source: DecodeError },
    #[error("cannot read ground truth {}: {source}", path.display())]
    ReadSegGroundTruth { path: PathBuf, source: DicomError },
    #[error("ground truth {} is DICOM, which is ground truth only for a DICOM input", path.display())]
    DicomGroundTruthForImage { path: PathBuf },
    #[error("{source}: {}", path.display())]
    GroundTruthSize { path: PathBuf, source: SizeMismatch },
    /// One slice of a series (1-based), for a series case.
    #[error("slice {slice}: {source}")]
    Slice { slice: usize, source: Box<EvaluateError> },
}

impl CaseError for EvaluateError {
    fn error_type(&self) -> &'static str {
        match self {
            EvaluateError::ReadGroundTruth { .. } => "read_ground_truth",
            EvaluateError::DecodeGroundTruth { .. } => "decode_ground_truth",
            EvaluateError::ReadSegGroundTruth { .. } => "read_seg_ground_truth",
            EvaluateError::DicomGroundTruthForImage { .. } => "dicom_ground_truth_for_image",
            EvaluateError::GroundTruthSize { .. } => "ground_truth_size",
            EvaluateError::Slice { source, .. } => source.error_type(),
        }
    }

    /// Without the ground truth's path (and the slice): the same problem of many cases reads as one.
    fn reason(&self) -> String {
        match self {
            EvaluateError::ReadGroundTruth { source, .. } => format!("cannot read ground truth: {source}"),
            EvaluateError::DecodeGroundTruth { source, .. } => format!("cannot decode ground truth: {source}"),
            EvaluateError::ReadSegGroundTruth { source, .. } => format!("cannot read ground truth: {source}"),
            EvaluateError::DicomGroundTruthForImage { .. } => {
                "the ground truth is DICOM, which is ground truth only for a DICOM input".into()
            }
            EvaluateError::GroundTruthSize { source, .. } => source.to_string(),
            EvaluateError::Slice { source, .. } => source.reason(),
        }
    }
}

/// A series' instance could not be read again for its slices' pixels.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("{}: cannot read: {source}", path.display())]
    ReadInstance { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    OpenInstance { path: PathBuf, source: DicomError },
    /// `frame` is 1-based, None for a single-frame instance.
    #[error("{}{}: {source}", path.display(), frame.map(|f| format!(" frame {f}")).unwrap_or_default())]
    DecodeSlice { path: PathBuf, frame: Option<u32>, source: DicomError },
}

impl CaseError for SliceError {
    fn error_type(&self) -> &'static str {
        match self {
            SliceError::ReadInstance { .. } => "read_instance",
            SliceError::OpenInstance { source, .. } | SliceError::DecodeSlice { source, .. } => source.error_type(),
        }
    }

    fn reason(&self) -> String {
        match self {
            SliceError::ReadInstance { source, .. } => format!("cannot read an instance: {source}"),
            SliceError::OpenInstance { source, .. } | SliceError::DecodeSlice { source, .. } => source.reason(),
        }
    }
}

/// A series case whose slices failed: none could be segmented, or some failed in inference. The
/// type and reason are the first slice failure's, which is what a user acts on.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("no slice of the {case} could be segmented; {}", first.message())]
    NoSliceSegmented { case: String, first: Failure },
    #[error("{count} slice(s) failed in inference; {}", first.message())]
    SlicesFailed { count: usize, first: Failure },
}

impl CaseError for SeriesError {
    fn error_type(&self) -> &'static str {
        match self {
            SeriesError::NoSliceSegmented { first, .. } | SeriesError::SlicesFailed { first, .. } => first.error_type(),
        }
    }

    /// Without the series' UID and the slice count, which differ from case to case.
    fn reason(&self) -> String {
        match self {
            SeriesError::NoSliceSegmented { first, .. } => format!("no slice could be segmented; {}", first.reason()),
            SeriesError::SlicesFailed { first, .. } => format!("slices failed in inference; {}", first.reason()),
        }
    }
}
