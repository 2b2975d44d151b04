//! What a run knows of its cases as they end: one [`Row`] per case, gathered in the [`RunReport`],
//! and each handed to a [`CaseObserver`] as it ends. Drawing them is the face's business.

use crate::case::{CaseMeta, Outcome, Timings};
use crate::metrics::{Confusion, Scores};

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
    /// The stage a failed case failed in.
    pub stage: Option<&'static str>,
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
            Err(f) => (Status::Failed, format!("{}: {}", f.stage.as_str(), f.message), None),
        };
        Row {
            case_id: outcome.meta.case_id.clone(),
            file: outcome.meta.source_path(),
            status,
            stage: outcome.result.as_ref().err().map(|f| f.stage.as_str()),
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
            detail,
            scores: None,
            counts: None,
            latency_ms: 0.0,
            timings: None,
        }
    }

    pub fn fail_at_record(&mut self, message: String) {
        self.status = Status::Failed;
        self.stage = Some("record");
        self.detail = format!("record: {message}");
    }

    /// The one line printed when the case ends.
    pub fn line(&self) -> String {
        match self.status {
            Status::Failed => format!("FAILED {}: {}", self.file, self.detail),
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

/// Tells nobody.
pub struct Quiet;

impl CaseObserver for Quiet {
    fn case_ended(&self, _row: &Row) {}
}

/// "24 slices, 14.09 mL", with the slices left out and the geometry warnings, before `rest`.
fn series_detail(case: &crate::series::SeriesCase, summary: &crate::case::SeriesSummary, rest: String) -> String {
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
