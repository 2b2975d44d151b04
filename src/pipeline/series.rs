//! The blocking work of a series case: decode its slices one at a time into the tile queue
//! ([`prepare`]: only the slices in flight are in memory); each slice's mask goes into the volume
//! as its last tile comes back ([`super::assembly`]), and once the last slice is in, [`finish`]
//! evaluates in 3D and writes one multi-frame SEG, one `mask.nii.gz`, the montage and
//! `result.json`.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use super::assembly::{Assembled, SeriesWork};
use super::errors::{SeriesError, SliceError};
use super::stage_cpu::{CpuStage, Meter};
use super::stages::{self, SegOutcome, StageContext, ms, save_seg, save_sr};
use super::work::{SliceOf, TileJob};
use crate::case::{
    CaseMeta, Evaluation, Failure, Outcome, OutputPaths, SeriesCase, SeriesSlice, SeriesSummary, Stage, Succeeded,
    Timings,
};
use crate::dicom::{DicomFile, SegSlice};
use crate::error::CaseError;
use crate::output::{self, EmitError, EmitTimes};
use crate::postprocess::PackedMask;

/// Voxel indices as millimetres when a series has no usable geometry.
const UNIT_AFFINE: [[f64; 4]; 3] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];

/// Decodes the case's slices on `ctx.workers` threads, each taking the next slice in order, and
/// cuts each into tiles for `send` (which blocks while the inference queue is full): a slice goes
/// to inference as soon as it is decoded, and only the slices in flight are in memory. A slice
/// that fails to decode is left out; when that was the last slice to come in, the finished case
/// goes to `ended`.
pub fn prepare(
    ctx: &StageContext,
    meta: CaseMeta,
    send: impl Fn(Vec<f32>, TileJob) + Sync,
    ended: impl Fn(Outcome) + Sync,
) {
    let case = meta.series.clone().expect("prepare is given a series case");
    let series = SeriesWork::new(meta, case.clone());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let decoder = || {
        // One file open at a time per thread: an enhanced multi-frame object is read once for
        // the run of its frames a thread takes.
        let mut open: Option<(usize, DicomFile)> = None;
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(slice) = case.slices.get(index) else { return };
            let started = Instant::now();
            let cpu = Meter::start();
            let decoded = decode(ctx, &case, slice, &mut open);
            cpu.stop(CpuStage::Decode);
            match decoded {
                Ok((rgb, kind)) => {
                    let of = SliceOf { series: series.clone(), index };
                    let work = stages::plan_work(ctx, series.meta.clone(), rgb, kind, ms(started.elapsed()), Some(of));
                    stages::cut_tiles(ctx, &work, |tensor, job| send(tensor, job));
                }
                Err(e) => {
                    let timings = Timings { decode_ms: ms(started.elapsed()), ..Default::default() };
                    if let Some(done) = series.slice_failed(index, Failure::new(Stage::Decode, e), timings) {
                        ended(finish(ctx, &series, done));
                    }
                }
            }
        }
    };
    let threads = ctx.workers.clamp(1, case.slices.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(&decoder);
        }
        decoder();
    });
}

/// One slice's pixels, from its file read again (ingest kept only the header).
fn decode(
    ctx: &StageContext,
    case: &SeriesCase,
    slice: &SeriesSlice,
    open: &mut Option<(usize, DicomFile)>,
) -> Result<(RgbImage, String), SliceError> {
    let file = &case.files[slice.file];
    let path = || file.file.original.clone();
    if open.as_ref().is_none_or(|(k, _)| *k != slice.file) {
        *open = None;
        let bytes =
            std::fs::read(&file.file.current).map_err(|source| SliceError::ReadInstance { path: path(), source })?;
        let parsed = crate::dicom::open(&bytes).map_err(|source| SliceError::OpenInstance { path: path(), source })?;
        *open = Some((slice.file, parsed));
    }
    let (_, parsed) = open.as_ref().expect("opened above");
    let frame = (parsed.frame_count() > 1).then_some(slice.frame + 1);
    let rgb = parsed.frame_rgb(slice.frame, &ctx.dicom.window).map_err(|source| SliceError::DecodeSlice {
        path: path(),
        frame,
        source,
    })?;
    Ok((rgb, format!("dicom/{}", file.input.decoder)))
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
    fn fail<T>(stage: Stage, error: impl CaseError) -> Result<T, Failure> {
        Err(Failure::new(stage, error))
    }

    let segmented = done.masks.iter().filter(|m| m.is_some()).count();
    if segmented == 0 {
        // A series has at least one slice, and a slice with no mask has its failure.
        let first = done.slices.iter().find_map(|s| s.error.clone()).expect("an unsegmented slice has failed");
        let stage = first.stage;
        return end(timings, fail(stage, SeriesError::NoSliceSegmented { case: case_name(case), first }));
    }
    if let Some((count, first)) = done.failures(Stage::Infer) {
        return end(timings, fail(Stage::Infer, SeriesError::SlicesFailed { count, first }));
    }
    if let Some(failure) = &done.truth_error {
        return end(timings, Err(failure.clone()));
    }

    let started = Instant::now();
    let cpu = Meter::start();
    let dir = ctx.out_dir.join(&meta.case_id);
    let written = write_outputs(ctx, case, &done, &dir);
    timings.emit_ms = ms(started.elapsed());
    let (mut outputs, seg, mut emit_times, notes) = match written {
        Ok(written) => written,
        Err(e) => return end(timings, fail(Stage::Emit, e)),
    };
    if let SegOutcome::Written { path, bytes } = &seg {
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
        match save_sr(ctx, path, bytes, roi, &measurements, identity.modality.as_deref()) {
            Ok(sr) => outputs.sr = sr,
            Err(e) => return end(timings, fail(Stage::Emit, e)),
        }
        emit_times.sr_ms = ms(sr_started.elapsed());
    }
    let foreground_fraction = foreground as f64 / (segmented as f64 * size.0 as f64 * size.1 as f64).max(1.0);
    let source_path = case.source_path();
    let warnings: Vec<String> = case.warnings.iter().chain(&notes).cloned().collect();
    let failed_slices = done
        .slices
        .iter()
        .enumerate()
        .filter_map(|(k, s)| {
            let failure = s.error.as_ref()?;
            let slice = &case.slices[k];
            let sop_instance_uid = case.files[slice.file].input.identity.sop_instance_uid.clone();
            Some(output::FailedSlice {
                slice: k + 1,
                sop_instance_uid,
                frame: slice.frame + 1,
                stage: failure.stage,
                error_type: failure.error_type(),
                reason: failure.message(),
            })
        })
        .collect();
    let result = output::CaseResult {
        case_id: &meta.case_id,
        source_path: Path::new(&source_path),
        source_sha256: &meta.sha256,
        size_bytes: meta.file.size_bytes,
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
            geometry_warnings: &warnings,
            volume_ml: summary.volume_ml,
            truth_volume_ml: summary.truth_volume_ml,
            failed_slices,
            emit_ms: emit_times,
        }),
    };
    match output::retrying(|| output::write_result(&dir, &result)) {
        Ok(path) => outputs.result = Some(path),
        Err(e) => return end(timings, fail(Stage::Emit, e)),
    }
    timings.emit_ms = ms(started.elapsed());
    cpu.stop(CpuStage::Emit);
    end(timings, Ok(Succeeded { evaluation, outputs, foreground_fraction }))
}

/// `seg.dcm` (the slices that were segmented), `mask.nii.gz` (every slice on the stack's grid; one
/// that failed, or a missing one, is empty) and the montage as `overlay.png`; with what the
/// result is told of them (a volume not written, and why).
fn write_outputs(
    ctx: &StageContext,
    case: &SeriesCase,
    done: &Assembled,
    dir: &Path,
) -> Result<(OutputPaths, SegOutcome, EmitTimes, Vec<String>), EmitError> {
    output::retrying(|| output::create_dir(dir))?;
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
    let origin = crate::dicom::SegOrigin { instance_number: case.seg_instance_number, ..ctx.seg_origin() };
    let seg = crate::dicom::write_series_seg(&seg_slices, case.spacing, &ctx.dicom.seg, &origin);
    let seg = save_seg(seg, dir)?;
    if let SegOutcome::Written { path, .. } = &seg {
        outputs.seg = Some(path.clone());
    }
    let mut emit = EmitTimes { seg_ms: lap(), ..Default::default() };
    let mut notes = Vec::new();
    if ctx.outputs.mask {
        let first = &case.files[0].input.file;
        let empty = PackedMask::empty(first.columns(), first.rows());
        // The slices on their grid: a missing slice is an empty plane, so every voxel lies where the
        // SEG's frame does. Slices that lie on no grid get no volume (the SEG holds them all).
        let grid = match case.planes() {
            Some(planes) => crate::dicom::slice_grid(&planes, case.spacing).map(Some),
            None => Ok(None),
        };
        match grid {
            Ok(grid) => {
                let (planes, affine) = grid.as_ref().map_or((done.masks.len(), UNIT_AFFINE), |g| (g.planes, g.affine));
                let mut masks: Vec<&PackedMask> = vec![&empty; planes];
                for (k, mask) in done.masks.iter().enumerate() {
                    let plane = grid.as_ref().map_or(k, |g| g.index[k]);
                    masks[plane] = mask.as_ref().unwrap_or(&empty);
                }
                let path = dir.join("mask.nii.gz");
                output::retrying(|| output::nifti::write_packed_nifti_gz(&path, &masks, affine))?;
                outputs.mask = Some(path);
            }
            Err(why) => notes.push(format!("no mask.nii.gz: {why}")),
        }
    }
    emit.nifti_ms = lap();
    if ctx.outputs.overlay && !done.montage.is_empty() {
        let path = output::retrying(|| output::montage::write_montage(dir, &done.montage))?;
        outputs.overlay = Some(path);
    }
    emit.overlay_ms = lap();
    Ok((outputs, seg, emit, notes))
}

/// "series <uid>" or "stack n of series <uid>", for messages.
fn case_name(case: &SeriesCase) -> String {
    match case.stacks {
        1 => format!("series {}", case.series_uid),
        _ => format!("stack {} of series {}", case.stack, case.series_uid),
    }
}
