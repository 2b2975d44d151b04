//! The blocking work of a case, as plain functions that the wiring runs on blocking threads:
//! [`prepare`] (decode → plan → canvas) and [`cut_tiles`] before inference, [`add_tile`] as each
//! tile comes back, and [`finish`] (evaluate → emit) once the mask is whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::GrayImage;

use super::assembly::{Assembled, SeriesWork};
use super::errors::EvaluateError;
use super::stage_cpu::{CpuStage, Meter};
use super::work::{Assembly, CaseWork, SliceOf, TileJob};
use crate::case::{CaseMeta, Evaluation, Failure, Outcome, Stage, Succeeded, Timings};
use crate::dicom::{DicomError, DicomInput};
use crate::error::CaseError;
use crate::infer::InferError;
use crate::model::ModelCard;
use crate::output::EmitError;
use crate::postprocess::Accumulator;
use crate::preprocess::{Canvas, Fit, Flip, Plan, Tiling};
use crate::{decode, metrics, output, postprocess};

/// Everything the CPU stages need, shared by all cases of a run.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub card: ModelCard,
    pub model_sha256: String,
    pub pipeline: String,
    pub fit: Fit,
    pub tiling: Tiling,
    /// The passes of every tile: unflipped, then the mirrored ones (`preprocess.mirror`).
    pub passes: Vec<Flip>,
    pub threshold: f32,
    /// Small components, the largest only, holes: applied to the mask after the threshold.
    pub cleanup: crate::postprocess::Cleanup,
    pub outputs: crate::output::OutputConfig,
    pub out_dir: PathBuf,
    pub dicom: crate::dicom::DicomConfig,
    /// The service's `[dicom.sr]`: whether `sr.dcm` goes beside each SEG.
    pub sr: crate::dicom::SrConfig,
    /// CPU workers per stage (`engine.workers`): a series' slices are decoded on this many threads.
    pub workers: usize,
}

impl StageContext {
    /// Who made the SEGs of this run: they go into one SEG series per source series.
    pub fn seg_origin(&self) -> crate::dicom::SegOrigin<'_> {
        crate::dicom::SegOrigin::new(&self.model_sha256, &self.pipeline)
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Decode, plan the tiles and lay out the canvas. On failure the case is over.
pub fn prepare(ctx: &StageContext, meta: CaseMeta, bytes: &[u8]) -> Result<Arc<CaseWork>, Box<Outcome>> {
    let started = Instant::now();
    let cpu = Meter::start();
    // DICOM was parsed at ingest (one that did not parse never gets here).
    let decoded = match &meta.dicom {
        Some(input) => decode_dicom(ctx, input, meta.frame.map_or(0, |f| f.index)),
        None => decode::decode(bytes).map(|d| (d.rgb, d.kind)).map_err(|e| Failure::new(Stage::Decode, e)),
    };
    cpu.stop(CpuStage::Decode);
    let (rgb, kind) = match decoded {
        Ok(decoded) => decoded,
        Err(failure) => return Err(Box::new(Outcome::failed(meta, failure))),
    };
    Ok(plan_work(ctx, meta, rgb, kind, ms(started.elapsed()), None))
}

/// Plans the tiles of a decoded image and lays out its canvas: the case (or slice) ready to cut.
pub fn plan_work(
    ctx: &StageContext,
    meta: CaseMeta,
    rgb: image::RgbImage,
    kind: String,
    decode_ms: f64,
    slice: Option<SliceOf>,
) -> Arc<CaseWork> {
    let started = Instant::now();
    let cpu = Meter::start();
    let (w, h) = rgb.dimensions();
    let plan = Plan::new(w, h, &ctx.card, ctx.fit, &ctx.tiling);
    let accumulator = Accumulator::with_passes(plan.clone(), ctx.passes.len());
    let (canvas, original) = Canvas::new(rgb, plan);
    let timings = Timings { decode_ms, preprocess_ms: ms(started.elapsed()), ..Default::default() };
    cpu.stop(CpuStage::Preprocess);
    let assembly = Mutex::new(Assembly { accumulator: Some(accumulator), timings, error: None });
    Arc::new(CaseWork { meta, kind, canvas, original, assembly, slice })
}

/// One frame of a DICOM object, windowed as the pipeline says.
fn decode_dicom(ctx: &StageContext, input: &DicomInput, frame: u32) -> Result<(image::RgbImage, String), Failure> {
    let failed = |e: DicomError| Failure::new(Stage::Decode, e);
    if input.identity.sop_class_uid.as_deref() == Some(crate::dicom::SEGMENTATION_STORAGE) {
        return Err(failed(DicomError::SegmentationAsInput));
    }
    let rgb = input.file.frame_rgb(frame, &ctx.dicom.window).map_err(failed)?;
    Ok((rgb, format!("dicom/{}", input.decoder)))
}

/// Cuts the case's tiles one at a time and hands each to `send`, which may block (backpressure):
/// only the tiles in flight are in memory.
pub fn cut_tiles(ctx: &StageContext, work: &Arc<CaseWork>, mut send: impl FnMut(Vec<f32>, TileJob)) {
    for index in 0..work.canvas.plan.tiles.len() {
        let started = Instant::now();
        let cpu = Meter::start();
        let tensor = work.canvas.tile(index, &ctx.card);
        work.assembly.lock().expect("assembly lock").timings.preprocess_ms += ms(started.elapsed());
        // Test-time mirroring: the same tile again, flipped (each pass is a tensor of the batch).
        for &flip in &ctx.passes[1..] {
            let mut flipped = tensor.clone();
            flip.apply(&mut flipped, work.canvas.plan.tile);
            send(flipped, TileJob { work: work.clone(), index, flip });
        }
        cpu.stop(CpuStage::Preprocess);
        send(tensor, TileJob { work: work.clone(), index, flip: Flip::default() });
    }
}

/// What the last tile of an image (or of a series' slice) ended.
pub enum Ended {
    /// An image or a single frame, finished.
    Case(Box<Outcome>),
    /// The last slice of a series case is in: the wiring writes the series' outputs.
    Series { series: Arc<SeriesWork>, done: Assembled },
}

/// Adds one tile's output. Returns what ended when it was the last tile of its image; None while
/// tiles (or other slices of its series) are still out.
pub fn add_tile(
    ctx: &StageContext,
    job: TileJob,
    output: Result<Vec<f32>, InferError>,
    infer_time: Duration,
) -> Option<Ended> {
    let started = Instant::now();
    let cpu = Meter::start();
    let mut assembly = job.work.assembly.lock().expect("assembly lock");
    assembly.timings.infer_ms += ms(infer_time);
    let complete = match output {
        Ok(mut map) => {
            job.flip.apply(&mut map, job.work.canvas.plan.tile);
            let accumulator = assembly.accumulator.as_mut().expect("accumulator until the last tile");
            accumulator.add(job.index, &map, ctx.card.output.activation)
        }
        Err(e) => {
            assembly.error.get_or_insert(e);
            let accumulator = assembly.accumulator.as_mut().expect("accumulator until the last tile");
            accumulator.skip()
        }
    };
    assembly.timings.postprocess_ms += ms(started.elapsed());
    cpu.stop(CpuStage::Postprocess);
    if !complete {
        return None;
    }
    let accumulator = assembly.accumulator.take().expect("taken once");
    let (error, mut timings) = (assembly.error.take(), assembly.timings);
    drop(assembly);
    let work = &job.work;
    if let Some(e) = error {
        let failure = Failure::new(Stage::Infer, e);
        if let Some(slice) = &work.slice {
            let done = slice.series.slice_failed(slice.index, failure, timings)?;
            return Some(Ended::Series { series: slice.series.clone(), done });
        }
        return Some(Ended::Case(Box::new(work.outcome(timings, Err(failure)))));
    }
    let started = Instant::now();
    let cpu = Meter::start();
    let probabilities_wanted = ctx.outputs.probabilities && work.slice.is_none();
    let (mut mask, probabilities) = accumulator.finish(ctx.threshold, probabilities_wanted);
    ctx.cleanup.apply(&mut mask);
    timings.postprocess_ms += ms(started.elapsed());
    cpu.stop(CpuStage::Postprocess);
    if let Some(slice) = &work.slice {
        let done = slice.series.slice_done(slice.index, &mask, work.image(), &work.kind, timings)?;
        return Some(Ended::Series { series: slice.series.clone(), done });
    }
    Some(Ended::Case(Box::new(finish(ctx, work, mask, probabilities, timings))))
}

/// Evaluate against ground truth when there is one, and write the outputs.
pub fn finish(
    ctx: &StageContext,
    work: &CaseWork,
    mask: GrayImage,
    probabilities: Option<postprocess::Probabilities>,
    mut timings: Timings,
) -> Outcome {
    let (meta, image, kind) = (&work.meta, work.image(), &work.kind);
    let end = |timings, result| work.outcome(timings, result);
    fn fail<T>(stage: Stage, error: impl CaseError) -> Result<T, Failure> {
        Err(Failure::new(stage, error))
    }

    let started = Instant::now();
    let cpu = Meter::start();
    let truth = match meta.ground_truth.as_deref().map(|path| load_ground_truth(path, meta)).transpose() {
        Ok(truth) => truth,
        Err(e) => return end(timings, fail(Stage::Evaluate, e)),
    };
    let evaluation = match truth.as_ref().map(|t| metrics::confusion(&mask, t)).transpose() {
        Ok(counts) => counts.map(|counts| Evaluation { counts, scores: counts.scores() }),
        Err(source) => {
            let path = meta.ground_truth.clone().unwrap_or_default();
            return end(timings, fail(Stage::Evaluate, EvaluateError::GroundTruthSize { path, source }));
        }
    };
    timings.evaluate_ms = ms(started.elapsed());
    cpu.stop(CpuStage::Evaluate);

    let started = Instant::now();
    let cpu = Meter::start();
    let dir = ctx.out_dir.join(&meta.case_id);
    let images = output::Images { image, mask: &mask, truth: truth.as_ref(), probabilities: probabilities.as_ref() };
    let mut outputs = match output::retrying(|| output::write_images(&dir, &images, &ctx.outputs)) {
        Ok(paths) => paths,
        Err(e) => return end(timings, fail(Stage::Emit, e)),
    };
    let seg = match &meta.dicom {
        Some(input) => match write_seg(ctx, &input.file, meta, &mask, &dir) {
            Ok(seg) => Some(seg),
            Err(e) => return end(timings, fail(Stage::Emit, e)),
        },
        None => None,
    };
    let foreground_px = mask.as_raw().iter().filter(|v| **v > 0).count();
    if let (Some(SegOutcome::Written { path, bytes }), Some(input)) = (&seg, &meta.dicom) {
        outputs.seg = Some(path.clone());
        let measurements = crate::dicom::Measurements {
            volume_ml: None,
            area_mm2: input.identity.pixel_spacing.map(|s| foreground_px as f64 * s[0] * s[1]),
            agreement: evaluation.map(|e| e.scores),
        };
        let modality = input.identity.modality.as_deref();
        match save_sr(ctx, path, bytes, crate::dicom::Roi::Planar, &measurements, modality) {
            Ok(sr) => outputs.sr = sr,
            Err(e) => return end(timings, fail(Stage::Emit, e)),
        }
    }
    let foreground = foreground_px as f64 / mask.as_raw().len().max(1) as f64;
    timings.emit_ms = ms(started.elapsed());
    let result = output::CaseResult {
        case_id: &meta.case_id,
        source_path: &meta.file.original,
        source_sha256: &meta.sha256,
        size_bytes: meta.file.size_bytes,
        pipeline: &ctx.pipeline,
        model: output::ModelRef { name: &ctx.card.name, sha256: &ctx.model_sha256 },
        efen_version: env!("CARGO_PKG_VERSION"),
        image: output::ImageInfo { kind, width: image.width(), height: image.height() },
        status: "succeeded",
        threshold: ctx.threshold,
        foreground_fraction: foreground,
        ground_truth: meta.ground_truth.as_deref(),
        metrics: evaluation.map(|e| e.scores),
        counts: evaluation.map(|e| e.counts.into()),
        timings_ms: timings,
        outputs: (&outputs).into(),
        frame: meta.frame,
        dicom: meta.dicom.as_ref().map(|input| output::DicomResult {
            identity: &input.identity,
            decoder: &input.decoder,
            seg: seg.as_ref().map(SegOutcome::describe),
        }),
        series: None,
    };
    match output::retrying(|| output::write_result(&dir, &result)) {
        Ok(path) => outputs.result = Some(path),
        Err(e) => return end(timings, fail(Stage::Emit, e)),
    }
    timings.emit_ms = ms(started.elapsed());
    cpu.stop(CpuStage::Emit);
    end(timings, Ok(Succeeded { evaluation, outputs, foreground_fraction: foreground }))
}

pub(super) enum SegOutcome {
    /// Saved at `path`; `bytes` are what the measurement report is built from.
    Written { path: PathBuf, bytes: Vec<u8> },
    /// Empty mask and `dicom.seg.write_empty = false`.
    NoFindings,
}

impl SegOutcome {
    /// What `result.json` says of the SEG.
    pub(super) fn describe(&self) -> String {
        match self {
            SegOutcome::NoFindings => "no findings: empty mask, no SEG written".into(),
            SegOutcome::Written { path, .. } => path.display().to_string(),
        }
    }
}

/// Writes `seg.dcm`: a DICOM Segmentation of the mask, referencing the source frame.
fn write_seg(
    ctx: &StageContext,
    file: &crate::dicom::DicomFile,
    meta: &CaseMeta,
    mask: &GrayImage,
    dir: &Path,
) -> Result<SegOutcome, EmitError> {
    let frame = meta.frame.map_or(0, |f| f.index);
    save_seg(crate::dicom::write_seg(file, frame, mask, &ctx.dicom.seg, &ctx.seg_origin()), dir)
}

/// Saves a SEG as `seg.dcm` in `dir`, or says there were no findings.
pub(super) fn save_seg(seg: Result<Vec<u8>, DicomError>, dir: &Path) -> Result<SegOutcome, EmitError> {
    let bytes = match seg {
        Ok(bytes) => bytes,
        Err(e) if e.is_no_findings() => return Ok(SegOutcome::NoFindings),
        Err(source) => return Err(EmitError::Seg { source }),
    };
    let path = dir.join("seg.dcm");
    output::retrying(|| output::write_bytes(&path, &bytes))?;
    Ok(SegOutcome::Written { path, bytes })
}

/// Writes `sr.dcm` beside `seg.dcm`: the measurement report of the SEG just written (`seg_bytes`,
/// so the two cannot disagree); none with `[dicom.sr] enabled = false`.
pub(super) fn save_sr(
    ctx: &StageContext,
    seg: &Path,
    seg_bytes: &[u8],
    roi: crate::dicom::Roi,
    measurements: &crate::dicom::Measurements,
    modality: Option<&str>,
) -> Result<Option<PathBuf>, EmitError> {
    if !ctx.sr.enabled {
        return Ok(None);
    }
    let origin = crate::dicom::SrOrigin { model_name: &ctx.card.name, model_sha256: &ctx.model_sha256, modality };
    let sr = crate::dicom::write_sr(seg_bytes, roi, measurements, &origin, &ctx.sr)
        .map_err(|source| EmitError::Sr { source })?;
    let path = seg.with_file_name("sr.dcm");
    output::retrying(|| output::write_bytes(&path, &sr))?;
    Ok(Some(path))
}

/// Reads a ground-truth mask: an image, where foreground is any value above half the mask's
/// maximum (so 0/1, 0/255 and JPEG-compressed masks all read right), or a DICOM SEG, whose frames
/// derived from this case's instance and frame are the foreground.
fn load_ground_truth(path: &Path, meta: &CaseMeta) -> Result<GrayImage, EvaluateError> {
    let path_buf = || path.to_path_buf();
    let bytes = std::fs::read(path).map_err(|source| EvaluateError::ReadGroundTruth { path: path_buf(), source })?;
    if crate::dicom::looks_like_dicom(&bytes) {
        let uid = meta.dicom.as_ref().and_then(|d| d.identity.sop_instance_uid.as_deref());
        let uid = uid.ok_or_else(|| EvaluateError::DicomGroundTruthForImage { path: path_buf() })?;
        let frame_number = meta.frame.map_or(1, |f| f.index + 1);
        return crate::dicom::seg_mask(&bytes, uid, frame_number)
            .map_err(|source| EvaluateError::ReadSegGroundTruth { path: path_buf(), source });
    }
    decode::mask(&bytes).map_err(|source| EvaluateError::DecodeGroundTruth { path: path_buf(), source })
}
