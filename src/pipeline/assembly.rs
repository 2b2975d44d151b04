//! Assembly (work in flight, owned by the wiring): a series case's slices come back from inference one at a time, in any order. Each
//! lands here as a bit-packed mask with its counts (and its comparison with ground truth); a few
//! of them are kept drawn for the montage; the last one hands the whole volume to emit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::{GrayImage, RgbImage};

use super::errors::EvaluateError;
use crate::case::{CaseMeta, Failure, SeriesCase, SeriesSlice, SliceOutcome, Stage, Timings};
use crate::dicom::{DicomError, SegTruth};
use crate::metrics::Confusion;
use crate::postprocess::PackedMask;

/// Slices drawn in the montage: those with the most foreground.
pub const MONTAGE_SLICES: usize = 4;

/// A series case between decode and emit, shared by its slices.
pub struct SeriesWork {
    pub meta: CaseMeta,
    pub case: Arc<SeriesCase>,
    state: Mutex<State>,
    /// Ground-truth SEGs, parsed once for all the slices they cover.
    truths: Mutex<HashMap<PathBuf, Option<Arc<SegTruth>>>>,
}

#[derive(Default)]
struct State {
    masks: Vec<Option<PackedMask>>,
    slices: Vec<SliceOutcome>,
    remaining: usize,
    timings: Timings,
    kind: Option<String>,
    /// A ground truth that could not be read: the case fails at evaluate.
    truth_error: Option<Failure>,
    /// (slice, foreground, overlay), the best [`MONTAGE_SLICES`] so far.
    montage: Vec<(usize, u64, RgbImage)>,
}

/// Everything the slices came to, once the last one is in.
pub struct Assembled {
    /// Per slice in order; None where the slice failed.
    pub masks: Vec<Option<PackedMask>>,
    pub slices: Vec<SliceOutcome>,
    pub timings: Timings,
    pub kind: Option<String>,
    pub truth_error: Option<Failure>,
    /// Overlays of the slices with the most foreground, in slice order.
    pub montage: Vec<RgbImage>,
}

impl Assembled {
    pub fn foreground(&self) -> u64 {
        self.slices.iter().filter_map(|s| s.foreground).sum()
    }

    /// The comparison over every voxel of the slices with ground truth (3D, not a mean of slices).
    pub fn confusion(&self) -> Option<Confusion> {
        self.slices.iter().filter_map(|s| s.confusion).reduce(|a, b| Confusion {
            tp: a.tp + b.tp,
            fp: a.fp + b.fp,
            fn_: a.fn_ + b.fn_,
            tn: a.tn + b.tn,
        })
    }

    /// The first failure in `stage`, with how many slices failed in it.
    pub fn failures(&self, stage: Stage) -> Option<(usize, Failure)> {
        let mut failed = self.slices.iter().filter_map(|s| s.error.as_ref()).filter(|f| f.stage == stage);
        let first = failed.next()?.clone();
        Some((failed.count() + 1, first))
    }
}

impl SeriesWork {
    pub fn new(meta: CaseMeta, case: Arc<SeriesCase>) -> Arc<SeriesWork> {
        let n = case.slices.len();
        let state = State {
            masks: vec![None; n],
            slices: vec![SliceOutcome::default(); n],
            remaining: n,
            ..Default::default()
        };
        Arc::new(SeriesWork { meta, case, state: Mutex::new(state), truths: Mutex::new(HashMap::new()) })
    }

    /// Slice `index` failed: the case goes on without it. Returns the assembled case when it was
    /// the last slice.
    pub fn slice_failed(&self, index: usize, failure: Failure, timings: Timings) -> Option<Assembled> {
        let mut state = self.state.lock().expect("series lock");
        state.slices[index].error = Some(failure);
        add_timings(&mut state.timings, &timings);
        self.count_down(state)
    }

    /// Slice `index`'s mask is in. `image` is the slice as decoded (for the montage), `kind` its
    /// decoder. Returns the assembled case when it was the last slice.
    pub fn slice_done(
        &self,
        index: usize,
        mask: &GrayImage,
        image: &RgbImage,
        kind: &str,
        mut timings: Timings,
    ) -> Option<Assembled> {
        let started = std::time::Instant::now();
        let slice = &self.case.slices[index];
        let (truth, unreadable) = match self.truth(slice, mask.dimensions()) {
            Ok(truth) => (truth, None),
            Err(e) => (None, Some(e)),
        };
        let in_slice = |e: EvaluateError| {
            Failure::new(Stage::Evaluate, EvaluateError::Slice { slice: index + 1, source: Box::new(e) })
        };
        let (confusion, truth_error) = match (&truth, unreadable) {
            (_, Some(e)) => (None, Some(in_slice(e))),
            (Some(truth), None) => match crate::metrics::confusion(mask, truth) {
                Ok(counts) => (Some(counts), None),
                Err(source) => {
                    let path = slice.truth.clone().unwrap_or_default();
                    (None, Some(in_slice(EvaluateError::GroundTruthSize { path, source })))
                }
            },
            (None, None) => (None, None),
        };
        let packed = PackedMask::from_gray(mask);
        let foreground = packed.count();
        timings.evaluate_ms += started.elapsed().as_secs_f64() * 1e3;

        // The montage's overlay is drawn outside the lock, so other slices of the case are not held
        // up; a slice that another overtook meanwhile is dropped again by the truncation below.
        let n = self.case.slices.len();
        let wanted = {
            let state = self.state.lock().expect("series lock");
            state.montage.len() < MONTAGE_SLICES
                || state.montage.iter().any(|(k, fg, _)| rank(foreground, index, n) > rank(*fg, *k, n))
        };
        let overlay = wanted.then(|| crate::output::overlay(image, mask, truth.as_ref()));
        let mut state = self.state.lock().expect("series lock");
        if let Some(overlay) = overlay {
            state.montage.push((index, foreground, overlay));
            state.montage.sort_by_key(|(k, fg, _)| std::cmp::Reverse(rank(*fg, *k, n)));
            state.montage.truncate(MONTAGE_SLICES);
        }
        state.masks[index] = Some(packed);
        state.slices[index].foreground = Some(foreground);
        state.slices[index].confusion = confusion;
        if let Some(error) = truth_error {
            state.truth_error.get_or_insert(error);
        }
        state.kind.get_or_insert_with(|| kind.to_string());
        add_timings(&mut state.timings, &timings);
        self.count_down(state)
    }

    fn count_down(&self, mut state: std::sync::MutexGuard<'_, State>) -> Option<Assembled> {
        state.remaining -= 1;
        if state.remaining > 0 {
            return None;
        }
        let state = std::mem::take(&mut *state);
        let mut montage = state.montage;
        montage.sort_by_key(|(k, _, _)| *k);
        Some(Assembled {
            masks: state.masks,
            slices: state.slices,
            timings: state.timings,
            kind: state.kind,
            truth_error: state.truth_error,
            montage: montage.into_iter().map(|(_, _, overlay)| overlay).collect(),
        })
    }

    /// The slice's ground truth, when it has one.
    fn truth(&self, slice: &SeriesSlice, size: (u32, u32)) -> Result<Option<GrayImage>, EvaluateError> {
        let Some(path) = &slice.truth else {
            return Ok(None);
        };
        let Some(seg) = self.seg(path)? else {
            let bytes =
                std::fs::read(path).map_err(|source| EvaluateError::ReadGroundTruth { path: path.clone(), source })?;
            return crate::decode::mask(&bytes)
                .map(Some)
                .map_err(|source| EvaluateError::DecodeGroundTruth { path: path.clone(), source });
        };
        let input = &self.case.files[slice.file].input;
        let uid = input.identity.sop_instance_uid.as_deref().unwrap_or_default();
        match seg.mask(uid, slice.frame + 1) {
            Ok(mask) => Ok(Some(mask)),
            // The SEG has no frame for this slice: its truth is empty there.
            Err(DicomError::NotReferenced { .. }) => Ok(Some(GrayImage::new(size.0, size.1))),
            Err(source) => Err(EvaluateError::ReadSegGroundTruth { path: path.clone(), source }),
        }
    }

    /// The SEG at `path`, parsed once; None when the file is not DICOM (a mask image).
    fn seg(&self, path: &Path) -> Result<Option<Arc<SegTruth>>, EvaluateError> {
        let mut truths = self.truths.lock().expect("truth lock");
        if let Some(seg) = truths.get(path) {
            return Ok(seg.clone());
        }
        let bytes = std::fs::read(path)
            .map_err(|source| EvaluateError::ReadGroundTruth { path: path.to_path_buf(), source })?;
        let seg = match crate::dicom::looks_like_dicom(&bytes) {
            true => Some(Arc::new(
                SegTruth::parse(&bytes)
                    .map_err(|source| EvaluateError::ReadSegGroundTruth { path: path.to_path_buf(), source })?,
            )),
            false => None,
        };
        truths.insert(path.to_path_buf(), seg.clone());
        Ok(seg)
    }
}

/// Which slices the montage prefers: more foreground, then nearer the middle of the stack (so a
/// series with no findings shows its middle).
fn rank(foreground: u64, index: usize, slices: usize) -> (u64, std::cmp::Reverse<usize>) {
    (foreground, std::cmp::Reverse(index.abs_diff(slices / 2)))
}

fn add_timings(total: &mut Timings, slice: &Timings) {
    total.decode_ms += slice.decode_ms;
    total.preprocess_ms += slice.preprocess_ms;
    total.infer_ms += slice.infer_ms;
    total.postprocess_ms += slice.postprocess_ms;
    total.evaluate_ms += slice.evaluate_ms;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_montage_prefers_foreground_then_the_middle() {
        assert!(rank(10, 0, 9) > rank(9, 4, 9));
        assert!(rank(0, 4, 9) > rank(0, 0, 9));
        assert!(rank(0, 5, 9) > rank(0, 8, 9));
    }
}
