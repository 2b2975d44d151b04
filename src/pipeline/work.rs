//! Work in flight: a case between preprocess and postprocess (its canvas, the accumulator its
//! tiles' outputs fill, the slice of a series it is), and one tile on its way through inference.
//! The wiring owns their lifetime; they never reach the record stage.

use std::sync::{Arc, Mutex};

use image::RgbImage;

use super::assembly::SeriesWork;
use crate::case::{CaseMeta, Failure, Outcome, Succeeded, Timings};
use crate::infer::InferError;
use crate::postprocess::Accumulator;
use crate::preprocess::{Canvas, Flip};

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
    pub series: Arc<SeriesWork>,
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
    pub flip: Flip,
}
