//! What a run tells its user: one line per case as it ends (a progress bar on a terminal, plain
//! log lines otherwise) and, at the end, the per-case table and the summary.

use std::io::IsTerminal;
use std::time::Instant;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};

use super::case::{CaseMeta, Outcome};
use crate::metrics::{Confusion, Scores, summarize};

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
    pub detail: String,
    pub scores: Option<Scores>,
    pub counts: Option<Confusion>,
    pub latency_ms: f64,
}

impl Row {
    pub fn from_outcome(outcome: &Outcome) -> Row {
        let latency_ms = outcome.meta.started.elapsed().as_secs_f64() * 1e3;
        let (status, detail, evaluation) = match &outcome.result {
            Ok(done) => {
                let detail = match &done.evaluation {
                    Some(_) => String::new(),
                    None => format!("no ground truth; foreground {:.1}%", done.foreground_fraction * 100.0),
                };
                (Status::Succeeded, detail, done.evaluation)
            }
            Err(f) => (Status::Failed, format!("{}: {}", f.stage.as_str(), f.message), None),
        };
        Row {
            case_id: outcome.meta.case_id.clone(),
            file: super::record::source_path(&outcome.meta),
            status,
            detail,
            scores: evaluation.map(|e| e.scores),
            counts: evaluation.map(|e| e.counts),
            latency_ms,
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
            file: super::record::source_path(meta),
            status: Status::Duplicate,
            detail,
            scores: None,
            counts: None,
            latency_ms: 0.0,
        }
    }

    pub fn fail_at_record(&mut self, message: String) {
        self.status = Status::Failed;
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

    /// The per-case table and the summary, for stdout.
    pub fn render(&self, elapsed_s: f64) -> String {
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| a.file.cmp(&b.file));
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["file", "status", "DSC", "IoU", "mIoU", "precision", "recall", "ms", "detail"]);
        let num = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        for r in &rows {
            let s = r.scores;
            table.add_row([
                r.file.clone(),
                format!("{:?}", r.status).to_lowercase(),
                num(s.map(|s| s.dsc)),
                num(s.map(|s| s.iou)),
                num(s.map(|s| s.miou)),
                num(s.map(|s| s.precision)),
                num(s.map(|s| s.recall)),
                if r.status == Status::Duplicate { "-".into() } else { format!("{:.0}", r.latency_ms) },
                r.detail.clone(),
            ]);
        }
        let processed = self.count(Status::Succeeded) + self.count(Status::Failed);
        let mut out = format!("{table}\n");
        out += &format!(
            "cases: {} succeeded, {} failed, {} skipped as duplicates or already recorded; {processed} processed in {elapsed_s:.2} s ({:.2} cases/s)\n",
            self.count(Status::Succeeded),
            self.count(Status::Failed),
            self.count(Status::Duplicate),
            if elapsed_s > 0.0 { processed as f64 / elapsed_s } else { 0.0 },
        );
        let counts: Vec<Confusion> = rows.iter().filter_map(|r| r.counts).collect();
        if let Some(summary) = summarize(&counts) {
            let mut metrics = Table::new();
            metrics.load_preset(UTF8_FULL_CONDENSED);
            metrics.set_header([
                format!("over {} cases with ground truth", summary.cases),
                "DSC".into(),
                "IoU".into(),
                "mIoU".into(),
                "precision".into(),
                "recall".into(),
            ]);
            for (label, s) in
                [("mean of per-case values", summary.mean_per_case), ("pooled over all pixels", summary.pooled)]
            {
                metrics.add_row([
                    label.to_string(),
                    format!("{:.4}", s.dsc),
                    format!("{:.4}", s.iou),
                    format!("{:.4}", s.miou),
                    format!("{:.4}", s.precision),
                    format!("{:.4}", s.recall),
                ]);
            }
            out += &format!("{metrics}\n");
        }
        out
    }
}

/// Per-case reporting: a progress bar on a terminal, log lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    pub started: Instant,
}

impl Progress {
    /// `total` is the number of cases when known (run), `None` when open-ended (watch).
    pub fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            };
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cases {per_sec}")
                    .expect("valid template"),
            );
            bar
        });
        Progress { bar, started: Instant::now() }
    }

    /// No bar and no per-case lines (benchmarks).
    pub fn hidden() -> Progress {
        Progress { bar: Some(ProgressBar::hidden()), started: Instant::now() }
    }

    pub fn case(&self, row: &Row) {
        match &self.bar {
            Some(bar) => {
                bar.println(row.line());
                bar.inc(1);
            }
            None if row.status == Status::Failed => tracing::warn!("{}", row.line()),
            None => tracing::info!("{}", row.line()),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
