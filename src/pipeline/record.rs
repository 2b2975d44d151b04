//! Record: the last stage. Writes each outcome to the store (retrying while the database is
//! away), then moves or copies the input to `done/` or `failed/`, and reports the case.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::case::{CaseMeta, Outcome};
use super::summary::{Progress, Row, RunReport};
use crate::ingest::disposition::{self, Transfer};
use crate::store::{CaseRecord, NewCase, Store};

/// What reaches the record stage.
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

pub struct Recorder {
    pub store: Store,
    pub run_id: String,
    pub state_dir: PathBuf,
    pub transfer: Transfer,
    pub progress: Progress,
    /// Cancelled when waiting for the database should stop: results not yet written stay
    /// claimed and are redone on the next start.
    pub give_up: CancellationToken,
    /// The watcher's claim folder, whose emptied subfolders are removed.
    pub claimed_root: Option<PathBuf>,
}

impl Recorder {
    pub async fn run(self, mut messages: mpsc::Receiver<Message>) -> RunReport {
        let mut report = RunReport::default();
        while let Some(message) = messages.recv().await {
            let row = match message {
                Message::Duplicate { meta, of, recorded } => {
                    if self.transfer == Transfer::Move {
                        self.dispose(
                            disposition::done(&self.state_dir, &meta.current, &meta.original, &meta.case_id),
                            &meta,
                        );
                    }
                    Row::duplicate(&meta, &of, recorded)
                }
                Message::Outcome(outcome) => self.record(*outcome).await,
            };
            self.progress.case(&row);
            report.push(row);
        }
        self.progress.finish();
        report
    }

    async fn record(&self, outcome: Outcome) -> Row {
        let record = to_record(&outcome, &self.run_id);
        let mut row = Row::from_outcome(&outcome);
        let written = self.store.retrying("recording a result", &self.give_up, || self.store.record(&record)).await;
        if let Err(e) = written {
            // Not recorded: the input stays where it is, to be redone on the next start.
            row.fail_at_record(e.to_string());
            return row;
        }
        let meta = &outcome.meta;
        match &outcome.result {
            Err(failure) => {
                let (stage, message) = (failure.stage.as_str(), failure.message.as_str());
                let moved = disposition::fail(
                    &self.state_dir,
                    &meta.current,
                    &meta.original,
                    &meta.case_id,
                    stage,
                    message,
                    self.transfer,
                );
                self.dispose(moved, meta);
            }
            Ok(_) if self.transfer == Transfer::Move => {
                self.dispose(disposition::done(&self.state_dir, &meta.current, &meta.original, &meta.case_id), meta);
            }
            Ok(_) => {}
        }
        row
    }

    /// Logs a failed move, and tidies the claim folder the file came from.
    fn dispose(&self, moved: std::io::Result<PathBuf>, meta: &CaseMeta) {
        if let Err(e) = moved {
            tracing::error!(case = %meta.case_id, file = %meta.original.display(), "cannot move the input aside: {e}");
            return;
        }
        if let Some(root) = &self.claimed_root {
            let mut dir = meta.current.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root.as_path()) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
}

pub fn new_case(meta: &CaseMeta, run_id: &str, pipeline: &str, model_sha256: &str, worker: Option<String>) -> NewCase {
    NewCase {
        case_id: meta.case_id.clone(),
        run_id: run_id.into(),
        pipeline: pipeline.into(),
        model_sha256: model_sha256.into(),
        source_path: meta.original.display().to_string(),
        source_sha256: meta.sha256.clone(),
        size_bytes: meta.size_bytes as i64,
        ground_truth_path: meta.ground_truth.as_ref().map(|p| p.display().to_string()),
        worker,
    }
}

fn to_record(outcome: &Outcome, run_id: &str) -> CaseRecord {
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
        ..Default::default()
    };
    match &outcome.result {
        Ok(done) => {
            record.status = "succeeded".into();
            let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            record.mask_path = path(&done.outputs.mask);
            record.overlay_path = path(&done.outputs.overlay);
            record.result_path = path(&done.outputs.result);
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
        }
        Err(failure) => {
            record.status = "failed".into();
            record.error_stage = Some(failure.stage.as_str().into());
            record.error_message = Some(failure.message.clone());
        }
    }
    record
}
