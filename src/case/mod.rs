//! The vocabulary of a case: the values that travel between the stages for one case, and how it
//! ends. Every stage speaks it; it belongs to none of them, and it imports only the value types of
//! [`crate::dicom`] and [`crate::metrics`]. Work in flight (canvases, accumulators, a series'
//! assembly) lives with the wiring that owns its lifetime ([`crate::pipeline`]).

mod failure;
mod series;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::dicom::DicomInput;
use crate::metrics::{Confusion, Scores};
pub use failure::{CaseError, Failure};
pub use series::{SeriesCase, SeriesFile, SeriesSlice};

/// The stage a case failed in, as recorded in `results.error_stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Ingest,
    Decode,
    Preprocess,
    Infer,
    Postprocess,
    Evaluate,
    Emit,
    Record,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Decode => "decode",
            Stage::Preprocess => "preprocess",
            Stage::Infer => "infer",
            Stage::Postprocess => "postprocess",
            Stage::Evaluate => "evaluate",
            Stage::Emit => "emit",
            Stage::Record => "record",
        }
    }
}

/// Where a case's input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Named on `efen run`'s command line (or found in a folder it named).
    Given,
    /// Dropped into the watched folder.
    DropFolder,
    /// Received by the DICOM node: its results go back to the node's destinations.
    DicomNode,
}

/// An input file as every stage that holds one names it: where it is, what it holds, where it
/// came from.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where the user put the file (for a series case: the folder its instances share).
    pub original: PathBuf,
    /// Where the bytes are now (the claimed copy in watch mode; the original in run mode).
    pub current: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    pub size_bytes: u64,
    pub origin: Origin,
}

/// Identity of a case, fixed at ingest.
#[derive(Debug, Clone)]
pub struct CaseMeta {
    pub case_id: String,
    /// The input file.
    pub file: SourceFile,
    /// The case's identity hash: the file's SHA-256, or for one frame of a multi-frame file the
    /// hash of the file's hash and the frame number.
    pub sha256: String,
    pub ground_truth: Option<PathBuf>,
    /// The frame of a multi-frame DICOM file this case is (each frame is a case of its own).
    pub frame: Option<Frame>,
    /// A DICOM input, parsed once at ingest and shared by its frames. For a series case: its
    /// first instance (the identity the record keeps).
    pub dicom: Option<Arc<DicomInput>>,
    /// A DICOM series (one stack of it) as one case: its instances and slices in order.
    pub series: Option<Arc<SeriesCase>>,
    pub started: Instant,
}

/// Frame `index` of `count` in one DICOM file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub index: u32,
    pub count: u32,
}

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
    pub postprocess_ms: f64,
    pub evaluate_ms: f64,
    pub emit_ms: f64,
}

/// The comparison with ground truth.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Evaluation {
    pub counts: Confusion,
    pub scores: Scores,
}

/// How a case ended, handed to the record stage.
pub struct Outcome {
    pub meta: CaseMeta,
    pub kind: Option<String>,
    pub size: Option<(u32, u32)>,
    pub timings: Timings,
    pub result: Result<Succeeded, Failure>,
    /// What a series case's slices came to (None for images and single frames).
    pub series: Option<Box<SeriesSummary>>,
}

/// A series case's volumes and slices, for the record.
#[derive(Debug, Clone, Default)]
pub struct SeriesSummary {
    pub volume_ml: Option<f64>,
    pub truth_volume_ml: Option<f64>,
    pub slices: Vec<SliceOutcome>,
}

/// What one slice of a series case came to.
#[derive(Debug, Clone, Default)]
pub struct SliceOutcome {
    /// Foreground pixels of the predicted mask (None when the slice failed).
    pub foreground: Option<u64>,
    /// Against ground truth, when the slice has some.
    pub confusion: Option<Confusion>,
    /// Why the slice was left out, and in which stage.
    pub error: Option<Failure>,
}

/// The files written for one case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputPaths {
    pub mask: Option<PathBuf>,
    pub overlay: Option<PathBuf>,
    pub probabilities: Option<PathBuf>,
    pub seg: Option<PathBuf>,
    /// `sr.dcm`, the measurement report beside the SEG.
    pub sr: Option<PathBuf>,
    pub result: Option<PathBuf>,
}

pub struct Succeeded {
    pub evaluation: Option<Evaluation>,
    pub outputs: OutputPaths,
    pub foreground_fraction: f64,
}

/// What reaches the record stage: a case that ended, or an input that repeated another case.
pub enum Message {
    Outcome(Box<Outcome>),
    /// The same bytes are already a case for this pipeline and model (`of` describes it);
    /// `recorded` says whether the repeat went into the `duplicates` table.
    Duplicate {
        meta: CaseMeta,
        of: String,
        recorded: bool,
    },
}

impl CaseMeta {
    /// The recorded source: the file, and the frame for a multi-frame DICOM file; for a series,
    /// its folder, series and stack.
    pub fn source_path(&self) -> String {
        if let Some(series) = &self.series {
            return series.source_path();
        }
        match self.frame {
            Some(frame) => format!("{}#frame={}", self.file.original.display(), frame.index + 1),
            None => self.file.original.display().to_string(),
        }
    }
}

impl Outcome {
    pub fn failed(meta: CaseMeta, failure: Failure) -> Outcome {
        Outcome { meta, kind: None, size: None, timings: Timings::default(), result: Err(failure), series: None }
    }
}
