//! What a run knows of its cases as they end: one [`Row`] per case, gathered in the [`RunReport`],
//! and each handed to a [`CaseObserver`] as it ends ([`Observed`] also counts it in the metrics).
//! Drawing them is the face's business.

use std::sync::Arc;

use crate::case::{CaseMeta, Outcome, SeriesCase, SeriesSummary, Timings};
use crate::metrics::{Confusion, Scores};
use crate::telemetry::{CaseEnded, CaseStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    Duplicate,
}

/// One case as the user sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub case_id: String,
    pub file: String,
    pub status: Status,
    /// The stage a failed case failed in, and the stage error's type.
    pub stage: Option<&'static str>,
    pub error_type: Option<&'static str>,
    pub detail: String,
    pub scores: Option<Scores>,
    pub counts: Option<Confusion>,
    pub latency_ms: f64,
    /// Time spent in each stage (none for a duplicate, which never reached one).
    pub timings: Option<Timings>,
}

impl Row {
    pub fn from_outcome(outcome: &Outcome) -> Row {
        let latency_ms = outcome.meta.started.elapsed().as_secs_f64() * 1e3;
        let (status, detail, evaluation) = match &outcome.result {
            Ok(done) => {
                let mut detail = match &done.evaluation {
                    Some(_) => String::new(),
                    None => format!("no ground truth; foreground {:.1}%", done.foreground_fraction * 100.0),
                };
                if let (Some(case), Some(summary)) = (&outcome.meta.series, &outcome.series) {
                    detail = series_detail(case, summary, detail);
                }
                (Status::Succeeded, detail, done.evaluation)
            }
            Err(f) => (Status::Failed, format!("{}: {}", f.stage.as_str(), f.message()), None),
        };
        Row {
            case_id: outcome.meta.case_id.clone(),
            file: outcome.meta.source_path(),
            status,
            stage: outcome.result.as_ref().err().map(|f| f.stage.as_str()),
            error_type: outcome.result.as_ref().err().map(|f| f.error_type()),
            detail,
            scores: evaluation.map(|e| e.scores),
            counts: evaluation.map(|e| e.counts),
            latency_ms,
            timings: Some(outcome.timings),
        }
    }

    pub fn duplicate(meta: &CaseMeta, of: &str, recorded: bool) -> Row {
        let detail = if recorded {
            format!("duplicate of {of}: recorded as a duplicate, not processed again")
        } else {
            format!("already recorded as {of} for this pipeline and model; nothing new recorded")
        };
        Row {
            case_id: meta.case_id.clone(),
            file: meta.source_path(),
            status: Status::Duplicate,
            stage: None,
            error_type: None,
            detail,
            scores: None,
            counts: None,
            latency_ms: 0.0,
            timings: None,
        }
    }

    /// The store could not take the case's result (`error_type` is the store error's).
    pub fn fail_at_record(&mut self, error_type: &'static str, message: String) {
        self.status = Status::Failed;
        self.stage = Some("record");
        self.error_type = Some(error_type);
        self.detail = format!("record: {message}");
    }

    /// The case as the metrics count it.
    pub fn ended(&self) -> CaseEnded {
        let status = match self.status {
            Status::Succeeded => CaseStatus::Succeeded,
            Status::Duplicate => CaseStatus::Duplicate,
            Status::Failed => CaseStatus::Failed {
                stage: self.stage.unwrap_or("unknown"),
                error_type: self.error_type.unwrap_or("unknown"),
            },
        };
        let stage_ms = self.timings.map_or_else(Vec::new, |t| {
            vec![
                ("decode", t.decode_ms),
                ("preprocess", t.preprocess_ms),
                ("infer", t.infer_ms),
                ("postprocess", t.postprocess_ms),
                ("evaluate", t.evaluate_ms),
                ("emit", t.emit_ms),
            ]
        });
        CaseEnded { status, latency_ms: self.latency_ms, stage_ms }
    }

    /// The one line printed when the case ends.
    pub fn line(&self) -> String {
        match self.status {
            Status::Failed => match self.error_type {
                Some(error_type) => format!("FAILED {}: {} [{error_type}]", self.file, self.detail),
                None => format!("FAILED {}: {}", self.file, self.detail),
            },
            Status::Duplicate => format!("skipped {}: {}", self.file, self.detail),
            Status::Succeeded => match self.scores {
                Some(s) => format!(
                    "ok {}  DSC {:.4}  IoU {:.4}  precision {:.4}  recall {:.4}  ({:.0} ms)",
                    self.file, s.dsc, s.iou, s.precision, s.recall, self.latency_ms
                ),
                None => format!("ok {}  {}  ({:.0} ms)", self.file, self.detail, self.latency_ms),
            },
        }
    }
}

/// All rows of a run, in the order cases ended.
#[derive(Debug, Default)]
pub struct RunReport {
    pub rows: Vec<Row>,
    /// What the model's card says it is for, and whether it runs at a size the card validated:
    /// repeated under the run's tables.
    pub model_notices: Vec<String>,
}

impl RunReport {
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// `N succeeded, N failed, N skipped`, for the log and the audit trail.
    pub fn counts(&self) -> String {
        format!(
            "{} succeeded, {} failed, {} skipped",
            self.count(Status::Succeeded),
            self.count(Status::Failed),
            self.count(Status::Duplicate)
        )
    }
}

/// Told of each case as it ends: the face (a progress bar, log lines) or nothing (benchmarks).
pub trait CaseObserver: Send + Sync {
    /// `n` more inputs were found (a run's inputs up front, and the SEGs that no image used).
    fn inputs_found(&self, _n: u64) {}
    fn case_ended(&self, row: &Row);
    /// Every case has ended.
    fn finished(&self) {}
}

/// A [`CaseObserver`] that counts each case in the metrics and passes it on to the face's
/// observer, so the record stage reports to both through the one observer it knows.
pub struct Observed(pub Arc<dyn CaseObserver>);

impl CaseObserver for Observed {
    fn inputs_found(&self, n: u64) {
        self.0.inputs_found(n);
    }

    fn case_ended(&self, row: &Row) {
        row.ended().emit();
        self.0.case_ended(row);
    }

    fn finished(&self) {
        self.0.finished();
    }
}

/// Tells nobody.
pub struct Quiet;

impl CaseObserver for Quiet {
    fn case_ended(&self, _row: &Row) {}
}

/// "24 slices, 14.09 mL", with the slices left out and the geometry warnings, before `rest`.
fn series_detail(case: &SeriesCase, summary: &SeriesSummary, rest: String) -> String {
    let mut parts = vec![format!("{} slices", case.slices.len())];
    if let Some(ml) = summary.volume_ml {
        parts.push(format!("{ml:.2} mL"));
    }
    let failed = summary.slices.iter().filter(|s| s.error.is_some()).count();
    if failed > 0 {
        parts.push(format!("{failed} slice(s) left out"));
    }
    parts.extend(case.warnings.iter().cloned());
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Seen(Mutex<Vec<String>>);

    impl CaseObserver for Seen {
        fn case_ended(&self, row: &Row) {
            self.0.lock().unwrap().push(row.file.clone());
        }
    }

    #[test]
    fn an_observed_case_is_counted_by_status_stage_and_error_type_and_passed_on() {
        let handle = crate::telemetry::install().unwrap();
        let seen = Arc::new(Seen(Mutex::new(Vec::new())));
        let observed = Observed(seen.clone());
        let row = Row {
            case_id: "c1".into(),
            file: "bad.png".into(),
            status: Status::Failed,
            stage: Some("infer"),
            error_type: Some("output_shape"),
            detail: "infer: model output has shape [1]".into(),
            scores: None,
            counts: None,
            // Other tests of this process count into the same recorder: no stage time, and a latency
            // in another bucket than theirs.
            latency_ms: 200.0,
            timings: None,
        };
        observed.case_ended(&row);
        assert_eq!(*seen.0.lock().unwrap(), ["bad.png"]);
        let text = handle.render();
        let failed = "efen_cases_total{status=\"failed\",stage=\"infer\",error_type=\"output_shape\"} 1";
        assert!(text.contains(failed), "{text}");
    }
}
