//! Record: the last stage. Writes each outcome to the store (retrying while the database is
//! away), then moves or copies the input to `done/` or `failed/`, and reports the case.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::case::{CaseMeta, Outcome};
use super::summary::{Progress, Row, RunReport};
use crate::ingest::disposition::{self, Transfer};
use crate::store::{CaseRecord, NewCase, Store, StoreError};

/// What reaches the record stage.
pub enum Message {
    Outcome(Box<Outcome>),
    /// The same bytes were already recorded for this pipeline and model.
    Duplicate {
        meta: CaseMeta,
        status: String,
    },
}

pub struct Recorder {
    pub store: Store,
    pub run_id: String,
    pub state_dir: PathBuf,
    pub transfer: Transfer,
    pub progress: Progress,
}

/// Attempts at writing one result before giving up on the database.
const STORE_ATTEMPTS: u32 = 5;

impl Recorder {
    pub async fn run(self, mut messages: mpsc::Receiver<Message>) -> RunReport {
        let mut report = RunReport::default();
        while let Some(message) = messages.recv().await {
            let row = match message {
                Message::Duplicate { meta, status } => Row::duplicate(&meta, &status),
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
        if let Err(e) = self.write_with_retry(&record).await {
            // Not recorded: the input stays where it is so a later run can do it again.
            row.fail_at_record(e.to_string());
            return row;
        }
        let meta = &outcome.meta;
        let moved = match &outcome.result {
            Err(failure) => disposition::fail(
                &self.state_dir,
                &meta.current,
                &meta.original,
                &meta.case_id,
                failure.stage.as_str(),
                &failure.message,
                self.transfer,
            )
            .map(Some),
            Ok(_) if self.transfer == Transfer::Move => disposition::done(
                &self.state_dir,
                &meta.current,
                &meta.original,
                &meta.case_id,
            )
            .map(Some),
            Ok(_) => Ok(None),
        };
        if let Err(e) = moved {
            tracing::error!(case = %meta.case_id, file = %meta.original.display(), "cannot move the input aside: {e}");
        }
        row
    }

    async fn write_with_retry(&self, record: &CaseRecord) -> Result<bool, StoreError> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            match self.store.record(record).await {
                Err(e) if e.is_transient() && attempt < STORE_ATTEMPTS => {
                    tracing::warn!(case = %record.case_id, attempt, "store unavailable, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on the last attempt")
    }
}

pub fn new_case(meta: &CaseMeta, run_id: &str, pipeline: &str, model_sha256: &str) -> NewCase {
    NewCase {
        case_id: meta.case_id.clone(),
        run_id: run_id.into(),
        pipeline: pipeline.into(),
        model_sha256: model_sha256.into(),
        source_path: meta.original.display().to_string(),
        source_sha256: meta.sha256.clone(),
        size_bytes: meta.size_bytes as i64,
        ground_truth_path: meta.ground_truth.as_ref().map(|p| p.display().to_string()),
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
