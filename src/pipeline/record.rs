//! Record: the last stage. Writes each outcome to the store (retrying while the database is
//! away), then moves or copies the input to `done/` or `failed/`, and reports the case.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::run_report::{CaseObserver, Row, RunReport};
use crate::case::{CaseMeta, Message, Origin, Outcome, SeriesCase, SeriesSummary, Succeeded};
use crate::dicom::DicomInput;
use crate::error::CaseError;
use crate::ingest::disposition::{self, Transfer};
use crate::store::{CaseRecord, DicomRecord, NewSend, SeriesRecord, SliceRecord, Store, StoreError};

pub struct Recorder {
    pub store: Store,
    pub run_id: String,
    pub state_dir: PathBuf,
    pub transfer: Transfer,
    pub observer: std::sync::Arc<dyn CaseObserver>,
    /// Cancelled when waiting for the database should stop: results not yet written stay
    /// claimed and are redone on the next start.
    pub give_up: CancellationToken,
    /// The watcher's claim folder, whose emptied subfolders are removed.
    pub claimed_root: Option<PathBuf>,
    /// (destination, object) queued with each succeeded case that came in over DICOM.
    pub sends: Vec<(String, &'static str)>,
    /// Told when a recorded case queued sends, so the outbox need not wait for its next poll.
    pub sends_queued: std::sync::Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub async fn run(self, mut messages: mpsc::Receiver<Message>) -> RunReport {
        let mut report = RunReport::default();
        // Cases still to be recorded, and the first failure, per input file held by several cases
        // (the frames of a multi-frame file, the stacks of a series): the file is moved once, when
        // the last of them is recorded.
        let mut held: HashMap<PathBuf, (u32, Option<(String, String)>)> = HashMap::new();
        while let Some(message) = messages.recv().await {
            crate::telemetry::QueueDepth { queue: "record", waiting: messages.len() }.emit();
            let (row, meta, failure) = match message {
                Message::Duplicate { meta, of, recorded } => (Row::duplicate(&meta, &of, recorded), meta, None),
                Message::Outcome(outcome) => match self.record(&outcome).await {
                    Ok(row) => {
                        let failure =
                            outcome.result.as_ref().err().map(|f| (f.stage.as_str().to_string(), f.message()));
                        (row, outcome.meta, failure)
                    }
                    // Not recorded (the store gave up): the input stays claimed for the next start.
                    Err(e) => {
                        let mut row = Row::from_outcome(&outcome);
                        let message = format!("{}; the case will be redone", crate::error::chain(&e));
                        row.fail_at_record(e.error_type(), message);
                        self.observer.case_ended(&row);
                        report.push(row);
                        continue;
                    }
                },
            };
            self.observer.case_ended(&row);
            report.push(row);
            for file in held_files(&meta) {
                let failure = failure.clone();
                let failure = if file.holders <= 1 {
                    failure
                } else {
                    let entry = held.entry(file.current.clone()).or_insert((file.holders, None));
                    entry.0 -= 1;
                    if let Some((stage, message)) = failure {
                        entry.1.get_or_insert((stage, format!("{}: {message}", file.part)));
                    }
                    if entry.0 > 0 {
                        continue;
                    }
                    held.remove(&file.current).and_then(|(_, failure)| failure)
                };
                let series = meta.series.as_ref().map(|s| s.series_uid.as_str());
                self.settle(&file.current, &file.original, &meta.case_id, series, failure);
            }
        }
        self.observer.finished();
        report
    }

    /// Writes the outcome to the store, retrying while it is away; the store's error if it gave up.
    async fn record(&self, outcome: &Outcome) -> Result<Row, StoreError> {
        let record = to_record(outcome, &self.run_id, &self.sends);
        let written = self.store.retrying("recording a result", &self.give_up, || self.store.record(&record)).await;
        match written {
            Ok(_) => {
                if !record.sends.is_empty() {
                    self.sends_queued.notify_one();
                }
                Ok(Row::from_outcome(outcome))
            }
            Err(e) => {
                tracing::error!(case = %outcome.meta.case_id, "cannot record the result: {e}");
                Err(e)
            }
        }
    }

    /// Puts an input file where it belongs once its case (or the last case holding it) is recorded.
    /// An instance of a series (`series`) goes to its series' folder under done/.
    fn settle(
        &self,
        current: &Path,
        original: &Path,
        case_id: &str,
        series: Option<&str>,
        failure: Option<(String, String)>,
    ) {
        let state = &self.state_dir;
        let moved = match (failure, series) {
            (Some((stage, message)), _) => {
                disposition::fail(state, current, original, case_id, &stage, &message, self.transfer)
            }
            (None, _) if self.transfer != Transfer::Move => return,
            (None, Some(uid)) => disposition::series_done(state, uid, current, original, case_id),
            (None, None) => disposition::done(state, current, original, case_id),
        };
        if let Err(e) = moved {
            tracing::error!(case = %case_id, file = %original.display(), "cannot move the input aside: {e}");
            return;
        }
        // Tidy the claim folder the file came from.
        if let Some(root) = &self.claimed_root {
            let mut dir = current.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root.as_path()) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
}

/// An input file a case holds.
struct HeldFile {
    current: PathBuf,
    original: PathBuf,
    /// How many cases hold it.
    holders: u32,
    /// Which part of the file this case is, for a failure message ("frame 3", "stack 2").
    part: String,
}

/// The input files of a case: its file, or every instance file of a series case.
fn held_files(meta: &CaseMeta) -> Vec<HeldFile> {
    if let Some(series) = &meta.series {
        let part = format!("stack {} of series {}", series.stack, series.series_uid);
        return series
            .files
            .iter()
            .chain(&series.left_out)
            .map(|f| HeldFile {
                current: f.file.current.clone(),
                original: f.file.original.clone(),
                holders: f.cases,
                part: part.clone(),
            })
            .collect();
    }
    let (holders, part) = match meta.frame {
        Some(frame) => (frame.count, format!("frame {}", frame.index + 1)),
        None => (1, String::new()),
    };
    vec![HeldFile { current: meta.file.current.clone(), original: meta.file.original.clone(), holders, part }]
}

fn to_record(outcome: &Outcome, run_id: &str, sends: &[(String, &'static str)]) -> CaseRecord {
    let t = &outcome.timings;
    let mut record = CaseRecord {
        case_id: outcome.meta.case_id.clone(),
        run_id: run_id.into(),
        kind: outcome.kind.clone(),
        width: outcome.size.map(|s| s.0 as i64),
        height: outcome.size.map(|s| s.1 as i64),
        decode_ms: Some(t.decode_ms),
        preprocess_ms: Some(t.preprocess_ms),
        infer_ms: Some(t.infer_ms),
        postprocess_ms: Some(t.postprocess_ms),
        evaluate_ms: Some(t.evaluate_ms),
        emit_ms: Some(t.emit_ms),
        latency_ms: Some(outcome.meta.started.elapsed().as_secs_f64() * 1e3),
        dicom: outcome.meta.dicom.as_ref().map(|input| dicom_record(input, &outcome.meta)),
        ..Default::default()
    };
    if let (Some(case), Some(summary)) = (&outcome.meta.series, &outcome.series) {
        record.n_frames = Some(case.slices.len() as i64);
        record.volume_ml = summary.volume_ml;
        record.truth_volume_ml = summary.truth_volume_ml;
        record.series = Some(series_record(case, summary));
    }
    match &outcome.result {
        Ok(done) => {
            record.status = "succeeded".into();
            let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            record.mask_path = path(&done.outputs.mask);
            record.overlay_path = path(&done.outputs.overlay);
            record.result_path = path(&done.outputs.result);
            record.seg_path = path(&done.outputs.seg);
            if let Some(e) = &done.evaluation {
                record.has_ground_truth = true;
                record.dsc = Some(e.scores.dsc);
                record.iou = Some(e.scores.iou);
                record.miou = Some(e.scores.miou);
                record.precision = Some(e.scores.precision);
                record.recall = Some(e.scores.recall);
                record.tp = Some(e.counts.tp as i64);
                record.fp = Some(e.counts.fp as i64);
                record.fn_ = Some(e.counts.fn_ as i64);
                record.tn = Some(e.counts.tn as i64);
            }
            if outcome.meta.file.origin == Origin::DicomNode {
                record.sends = sends.iter().map(|(destination, object)| new_send(destination, object, done)).collect();
            }
        }
        Err(failure) => {
            record.status = "failed".into();
            record.error_stage = Some(failure.stage.as_str().into());
            record.error_type = Some(failure.error_type().into());
            record.error_message = Some(failure.message());
            record.error_reason = Some(failure.reason());
        }
    }
    record
}

/// A send of `object` to `destination`, or a skipped one when its file was not written.
fn new_send(destination: &str, object: &str, done: &Succeeded) -> NewSend {
    let missing = match (&done.outputs.seg, &done.outputs.overlay) {
        (None, _) => Some("no seg.dcm for this case (empty mask or no DICOM source)"),
        (Some(_), None) if object == "overlay" => Some("no overlay.png for this case (outputs.overlay is off)"),
        _ if object == "sr" && done.outputs.sr.is_none() => Some("no sr.dcm for this case"),
        _ => None,
    };
    NewSend {
        destination: destination.into(),
        object: object.into(),
        status: if missing.is_some() { "skipped" } else { "pending" },
        note: missing.map(String::from),
    }
}

fn dicom_record(input: &DicomInput, meta: &CaseMeta) -> DicomRecord {
    let id = &input.identity;
    DicomRecord {
        sop_instance_uid: id.sop_instance_uid.clone(),
        frame_number: meta.frame.map_or(1, |f| f.index as i64 + 1),
        number_of_frames: id.number_of_frames as i64,
        sop_class_uid: id.sop_class_uid.clone(),
        study_instance_uid: id.study_instance_uid.clone(),
        series_instance_uid: id.series_instance_uid.clone(),
        modality: id.modality.clone(),
        accession_number: id.accession_number.clone(),
        patient_id: id.patient_id.clone(),
        patient_id_form: id.patient_id_form.as_str().into(),
        transfer_syntax_uid: id.transfer_syntax.uid.clone(),
        transfer_syntax: id.transfer_syntax.name.clone(),
        rows: id.rows as i64,
        columns: id.columns as i64,
        photometric_interpretation: id.photometric_interpretation.clone(),
        pixel_spacing: id.pixel_spacing,
        decoder: input.decoder.clone(),
    }
}

/// The `dicom_series` row and `series_slices` rows of a series case.
fn series_record(case: &SeriesCase, summary: &SeriesSummary) -> SeriesRecord {
    let first = case.files.first().map(|f| &f.input.identity);
    let plane = case.slices.first().and_then(|s| s.plane.as_ref());
    let normal = plane.map(|p| p.normal());
    let slices = case
        .slices
        .iter()
        .zip(&summary.slices)
        .enumerate()
        .map(|(k, (slice, outcome))| {
            let position = slice.plane.as_ref().zip(normal).map(|(p, n)| (0..3).map(|a| p.position[a] * n[a]).sum());
            SliceRecord {
                index: k as i64,
                sop_instance_uid: case.files[slice.file].input.identity.sop_instance_uid.clone(),
                file_sha256: case.files[slice.file].file.sha256.clone(),
                frame_number: slice.frame as i64 + 1,
                position_mm: position,
                foreground_px: outcome.foreground.map(|n| n as i64),
                tp: outcome.confusion.map(|c| c.tp as i64),
                fp: outcome.confusion.map(|c| c.fp as i64),
                fn_: outcome.confusion.map(|c| c.fn_ as i64),
                tn: outcome.confusion.map(|c| c.tn as i64),
                error: outcome.error.as_ref().map(|f| format!("{}: {}", f.stage.as_str(), f.message())),
            }
        })
        .collect();
    SeriesRecord {
        study_instance_uid: first.and_then(|id| id.study_instance_uid.clone()),
        series_instance_uid: case.series_uid.clone(),
        stack: case.stack as i64,
        stack_reason: case.distinct.clone(),
        modality: first.and_then(|id| id.modality.clone()),
        instances: case.files.len() as i64,
        frames: case.slices.len() as i64,
        slice_spacing_mm: case.spacing,
        pixel_spacing: plane.map(|p| p.spacing),
        orientation: plane.map(|p| p.orientation),
        warnings: case.warnings.clone(),
        slices,
    }
}
