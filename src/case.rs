//! The vocabulary of a case: what travels between the stages for one case, and how it ends.
//! Every stage speaks it; it belongs to none of them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::infer::InferError;
use crate::metrics::{Confusion, Scores};
use crate::output::OutputPaths;
use crate::postprocess::Accumulator;
use crate::preprocess::Canvas;

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

/// Identity of a case, fixed at ingest.
#[derive(Debug, Clone)]
pub struct CaseMeta {
    pub case_id: String,
    /// Where the user put the file.
    pub original: PathBuf,
    /// Where the bytes are now (the claimed copy in watch mode; the original in run mode).
    pub current: PathBuf,
    pub origin: Origin,
    /// The case's identity hash: the file's SHA-256, or for one frame of a multi-frame file the
    /// hash of the file's hash and the frame number.
    pub sha256: String,
    /// SHA-256 of the input file's bytes.
    pub file_sha256: String,
    pub size_bytes: u64,
    pub ground_truth: Option<PathBuf>,
    /// The frame of a multi-frame DICOM file this case is (each frame is a case of its own).
    pub frame: Option<Frame>,
    /// A DICOM input, parsed once at ingest and shared by its frames. For a series case: its
    /// first instance (the identity the record keeps).
    pub dicom: Option<Arc<DicomInput>>,
    /// A DICOM series (one stack of it) as one case: its instances and slices in order.
    pub series: Option<Arc<crate::series::SeriesCase>>,
    pub started: Instant,
}

/// A parsed DICOM input and what the record keeps about it.
pub struct DicomInput {
    pub file: crate::dicom::DicomFile,
    /// With the patient ID pseudonymised, withheld or raw, as `dicom` in the configuration says.
    pub identity: crate::dicom::Identity,
    pub decoder: String,
}

impl std::fmt::Debug for DicomInput {
    // Never the identity: it may hold a raw patient ID, and Debug output ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomInput").field("file", &self.file).finish_non_exhaustive()
    }
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

/// A case between preprocess and postprocess, shared by its tiles.
pub struct CaseWork {
    pub meta: CaseMeta,
    pub kind: String,
    pub canvas: Canvas,
    /// The decoded image when the canvas is a rescaled copy of it (for the overlay).
    pub original: Option<RgbImage>,
    pub assembly: Mutex<Assembly>,
    /// Set when this image is one slice of a series case: where its mask goes.
    pub slice: Option<SliceOf>,
}

/// Slice `index` of a series case.
pub struct SliceOf {
    pub series: Arc<crate::series::SeriesWork>,
    pub index: usize,
}

/// What the finish stage fills in as tile outputs arrive.
pub struct Assembly {
    pub accumulator: Option<Accumulator>,
    pub timings: Timings,
    pub error: Option<InferError>,
}

impl CaseWork {
    /// The image as decoded, at the source size.
    pub fn image(&self) -> &RgbImage {
        self.original.as_ref().unwrap_or_else(|| self.canvas.image())
    }

    /// How this case ended, with what is known of its image.
    pub fn outcome(&self, timings: Timings, result: Result<Succeeded, Failure>) -> Outcome {
        let size = Some(self.image().dimensions());
        Outcome { meta: self.meta.clone(), kind: Some(self.kind.clone()), size, timings, result, series: None }
    }
}

/// One tile of a case, on its way through inference.
pub struct TileJob {
    pub work: Arc<CaseWork>,
    pub index: usize,
    /// How the tile was flipped for this pass (test-time mirroring), to flip its output back.
    pub flip: crate::preprocess::Flip,
}

/// The comparison with ground truth.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Evaluation {
    pub counts: Confusion,
    pub scores: Scores,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
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
    pub slices: Vec<crate::series::assembly::SliceOutcome>,
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
            Some(frame) => format!("{}#frame={}", self.original.display(), frame.index + 1),
            None => self.original.display().to_string(),
        }
    }
}

impl Outcome {
    pub fn failed(meta: CaseMeta, stage: Stage, message: impl Into<String>) -> Outcome {
        Outcome {
            meta,
            kind: None,
            size: None,
            timings: Timings::default(),
            result: Err(Failure { stage, message: message.into() }),
            series: None,
        }
    }
}
