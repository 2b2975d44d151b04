//! The blocking work of a series case: decode its slices one at a time into the tile queue
//! ([`prepare`]: only the slices in flight are in memory), take each slice's mask into the volume
//! ([`slice_done`]), and once the last one is in, evaluate in 3D and write one multi-frame SEG, one
//! `mask.nii.gz`, the montage and `result.json` ([`finish`]).

use std::path::Path;
use std::time::Instant;

use image::{GrayImage, RgbImage};

use super::stage_cpu::{CpuStage, Meter};
use super::stages::{self, SegOutcome, StageContext, ms, save_seg, save_sr};
use crate::case::{CaseMeta, Evaluation, Failure, Outcome, SeriesSummary, SliceOf, Stage, Succeeded, TileJob, Timings};
use crate::dicom::{DicomFile, SegSlice};
use crate::output::{self, EmitTimes, OutputPaths};
use crate::postprocess::PackedMask;
use crate::series::assembly::Assembled;
use crate::series::{SeriesCase, SeriesSlice, SeriesWork};

/// Voxel indices as millimetres when a series has no usable geometry.
const UNIT_AFFINE: [[f64; 4]; 3] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];

/// Decodes the case's slices in order and cuts each into tiles for `send` (which blocks while the
/// inference queue is full). A slice that fails to decode is left out; when that was the last
/// slice to come in, the finished case goes to `ended`.
pub fn prepare(
    ctx: &StageContext,
    meta: CaseMeta,
    mut send: impl FnMut(Vec<f32>, TileJob),
    mut ended: impl FnMut(Outcome),
) {
    let case = meta.series.clone().expect("prepare is given a series case");
    let series = SeriesWork::new(meta, case.clone());
    // One file open at a time: an enhanced multi-frame object is read once for all its frames.
    let mut open: Option<(usize, DicomFile)> = None;
    for (index, slice) in case.slices.iter().enumerate() {
        let started = Instant::now();
        let cpu = Meter::start();
        let decoded = decode(ctx, &case, slice, &mut open);
        cpu.stop(CpuStage::Decode);
        match decoded {
            Ok((rgb, kind)) => {
                let of = SliceOf { series: series.clone(), index };
                let work = stages::plan_work(ctx, series.meta.clone(), rgb, kind, ms(started.elapsed()), Some(of));
                stages::cut_tiles(ctx, &work, &mut send);
            }
            Err(message) => {
                let timings = Timings { decode_ms: ms(started.elapsed()), ..Default::default() };
                if let Some(done) = series.slice_failed(index, Stage::Decode, message, timings) {
                    ended(finish(ctx, &series, done));
                }
            }
        }
    }
}

/// One slice's pixels, from its file read again (ingest kept only the header).
fn decode(
    ctx: &StageContext,
    case: &SeriesCase,
    slice: &SeriesSlice,
    open: &mut Option<(usize, DicomFile)>,
) -> Result<(RgbImage, String), String> {
    let file = &case.files[slice.file];
    let name = file.original.display();
    if open.as_ref().is_none_or(|(k, _)| *k != slice.file) {
        *open = None;
        let bytes = std::fs::read(&file.current).map_err(|e| format!("{name}: cannot read: {e}"))?;
        *open = Some((slice.file, crate::dicom::open(&bytes).map_err(|e| format!("{name}: {e}"))?));
    }
    let (_, parsed) = open.as_ref().expect("opened above");
    let rgb = parsed.frame_rgb(slice.frame, &ctx.dicom.window).map_err(|e| match parsed.frame_count() {
        1 => format!("{name}: {e}"),
        _ => format!("{name} frame {}: {e}", slice.frame + 1),
    })?;
    Ok((rgb, format!("dicom/{}", file.input.decoder)))
}

/// A slice's mask is whole. Returns the finished case when it was the last slice.
pub fn slice_done(
    ctx: &StageContext,
    work: &crate::case::CaseWork,
    slice: &SliceOf,
    mask: &GrayImage,
    timings: Timings,
) -> Option<Outcome> {
    let done = slice.series.slice_done(slice.index, mask, work.image(), &work.kind, timings)?;
    Some(finish(ctx, &slice.series, done))
}

/// A slice failed after decoding (inference). Returns the finished case when it was the last.
pub fn slice_failed(
    ctx: &StageContext,
    slice: &SliceOf,
    stage: Stage,
    message: String,
    timings: Timings,
) -> Option<Outcome> {
    let done = slice.series.slice_failed(slice.index, stage, message, timings)?;
    Some(finish(ctx, &slice.series, done))
}

/// Every slice is in: evaluate over the volume and write the case's files.
pub fn finish(ctx: &StageContext, series: &SeriesWork, done: Assembled) -> Outcome {
    let (meta, case) = (&series.meta, &*series.case);
    let first = &case.files[0].input.file;
    let size = (first.columns(), first.rows());
    let foreground = done.foreground();
    let voxel_ml = case.voxel_ml();
    let evaluation = done.confusion().map(|counts| Evaluation { counts, scores: counts.scores() });
    let summary = SeriesSummary {
        volume_ml: voxel_ml.map(|v| foreground as f64 * v),
        truth_volume_ml: voxel_ml.zip(evaluation).map(|(v, e)| (e.counts.tp + e.counts.fn_) as f64 * v),
        slices: done.slices.clone(),
    };
    let kind = done.kind.clone().unwrap_or_else(|| "dicom".into());
    let mut timings = done.timings;
    let end = |timings: Timings, result: Result<Succeeded, Failure>| Outcome {
        meta: meta.clone(),
        kind: Some(kind.clone()),
        size: Some(size),
        timings,
        result,
        series: Some(Box::new(summary.clone())),
    };
    let fail = |stage: Stage, message: String| Err(Failure { stage, message });

    let segmented = done.masks.iter().filter(|m| m.is_some()).count();
    if segmented == 0 {
        let (stage, message) =
            done.slices.iter().find_map(|s| s.error.clone()).unwrap_or((Stage::Decode, String::new()));
        return end(timings, fail(stage, format!("no slice of the {} could be segmented; {message}", case_name(case))));
    }
    if let Some((count, message)) = done.failures(Stage::Infer) {
        return end(timings, fail(Stage::Infer, format!("{count} slice(s) failed in inference; {message}")));
    }
    if let Some(message) = &done.truth_error {
        return end(timings, fail(Stage::Evaluate, message.clone()));
    }

    let started = Instant::now();
    let cpu = Meter::start();
    let dir = ctx.out_dir.join(&meta.case_id);
    let written = write_outputs(ctx, case, &done, &dir);
    timings.emit_ms = ms(started.elapsed());
    let (mut outputs, seg, mut emit_times) = match written {
        Ok(written) => written,
        Err(message) => return end(timings, fail(Stage::Emit, message)),
    };
    if let SegOutcome::Written(path) = &seg {
        let sr_started = Instant::now();
        let identity = &case.files[0].input.identity;
        // One slice is a planar region (its area); a stack is a volume.
        let single = case.slices.len() == 1;
        let pixel_area =
            case.slices[0].plane.as_ref().map(|p| p.spacing).or(identity.pixel_spacing).map(|s| s[0] * s[1]);
        let measurements = crate::dicom::Measurements {
            volume_ml: summary.volume_ml,
            area_mm2: pixel_area.filter(|_| single).map(|a| a * foreground as f64),
            agreement: evaluation.map(|e| e.scores),
        };
        let roi = if single { crate::dicom::Roi::Planar } else { crate::dicom::Roi::Volumetric };
        match save_sr(ctx, path, roi, &measurements, identity.modality.as_deref()) {
            Ok(sr) => outputs.sr = sr,
            Err(message) => return end(timings, fail(Stage::Emit, message)),
        }
        emit_times.sr_ms = ms(sr_started.elapsed());
    }
    let foreground_fraction = foreground as f64 / (segmented as f64 * size.0 as f64 * size.1 as f64).max(1.0);
    let source_path = case.source_path();
    let failed_slices = done
        .slices
        .iter()
        .enumerate()
        .filter_map(|(k, s)| {
            let (stage, reason) = s.error.clone()?;
            let slice = &case.slices[k];
            let sop_instance_uid = case.files[slice.file].input.identity.sop_instance_uid.clone();
            Some(output::FailedSlice { slice: k + 1, sop_instance_uid, frame: slice.frame + 1, stage, reason })
        })
        .collect();
    let result = output::CaseResult {
        case_id: &meta.case_id,
        source_path: Path::new(&source_path),
        source_sha256: &meta.sha256,
        size_bytes: meta.size_bytes,
        pipeline: &ctx.pipeline,
        model: output::ModelRef { name: &ctx.card.name, sha256: &ctx.model_sha256 },
        efen_version: env!("CARGO_PKG_VERSION"),
        image: output::ImageInfo { kind: &kind, width: size.0, height: size.1 },
        status: "succeeded",
        threshold: ctx.threshold,
        foreground_fraction,
        ground_truth: meta.ground_truth.as_deref(),
        metrics: evaluation.map(|e| e.scores),
        counts: evaluation.map(|e| e.counts.into()),
        timings_ms: timings,
        outputs: (&outputs).into(),
        frame: None,
        dicom: meta.dicom.as_ref().map(|input| output::DicomResult {
            identity: &input.identity,
            decoder: &input.decoder,
            seg: Some(seg.describe()),
        }),
        series: Some(output::SeriesResult {
            series_instance_uid: &case.series_uid,
            stack: case.stack,
            stacks: case.stacks,
            stack_reason: case.distinct.as_deref(),
            slices: case.slices.len(),
            instances: case.files.len(),
            slice_spacing_mm: case.spacing,
            geometry_warnings: &case.warnings,
            volume_ml: summary.volume_ml,
            truth_volume_ml: summary.truth_volume_ml,
            failed_slices,
            emit_ms: emit_times,
        }),
    };
    match output::retrying(|| output::write_result(&dir, &result)) {
        Ok(path) => outputs.result = Some(path),
        Err(e) => return end(timings, fail(Stage::Emit, e.to_string())),
    }
    timings.emit_ms = ms(started.elapsed());
    cpu.stop(CpuStage::Emit);
    end(timings, Ok(Succeeded { evaluation, outputs, foreground_fraction }))
}

/// `seg.dcm` (the slices that were segmented), `mask.nii.gz` (every slice; one that failed is
/// empty) and the montage as `overlay.png`.
fn write_outputs(
    ctx: &StageContext,
    case: &SeriesCase,
    done: &Assembled,
    dir: &Path,
) -> Result<(OutputPaths, SegOutcome, EmitTimes), String> {
    output::retrying(|| output::create_dir(dir)).map_err(|e| e.to_string())?;
    let mut outputs = OutputPaths::default();
    let seg_slices: Vec<SegSlice> = case
        .slices
        .iter()
        .zip(&done.masks)
        .filter_map(|(slice, mask)| {
            Some(SegSlice { source: &case.files[slice.file].input.file, frame: slice.frame, mask: mask.as_ref()? })
        })
        .collect();
    let mut clock = Instant::now();
    let mut lap = || ms(std::mem::replace(&mut clock, Instant::now()).elapsed());
    let origin = crate::dicom::SegOrigin { instance_number: case.stack, ..ctx.seg_origin() };
    let seg = crate::dicom::write_series_seg(&seg_slices, case.spacing, &ctx.dicom.seg, &origin);
    let seg = save_seg(seg, dir)?;
    if let SegOutcome::Written(path) = &seg {
        outputs.seg = Some(path.clone());
    }
    let mut emit = EmitTimes { seg_ms: lap(), ..Default::default() };
    if ctx.outputs.mask {
        let first = &case.files[0].input.file;
        let empty = PackedMask::empty(first.columns(), first.rows());
        let masks: Vec<&PackedMask> = done.masks.iter().map(|m| m.as_ref().unwrap_or(&empty)).collect();
        let affine = case.planes().and_then(|planes| crate::dicom::nifti_affine(&planes)).unwrap_or(UNIT_AFFINE);
        let path = dir.join("mask.nii.gz");
        output::retrying(|| output::nifti::write_packed_nifti_gz(&path, &masks, affine)).map_err(|e| e.to_string())?;
        outputs.mask = Some(path);
    }
    emit.nifti_ms = lap();
    if ctx.outputs.overlay && !done.montage.is_empty() {
        let path =
            output::retrying(|| output::montage::write_montage(dir, &done.montage)).map_err(|e| e.to_string())?;
        outputs.overlay = Some(path);
    }
    emit.overlay_ms = lap();
    Ok((outputs, seg, emit))
}

/// "series <uid>" or "stack n of series <uid>", for messages.
fn case_name(case: &SeriesCase) -> String {
    match case.stacks {
        1 => format!("series {}", case.series_uid),
        _ => format!("stack {} of series {}", case.stack, case.series_uid),
    }
}
