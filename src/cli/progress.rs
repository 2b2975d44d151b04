//! What a run shows on the terminal: a progress bar (or log lines when stderr is not a terminal)
//! as cases end, then the per-case table and the summary.

use std::io::IsTerminal;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::{Confusion, summarize};
use crate::pipeline::{CaseObserver, Row, RunReport, Status};

/// The per-case table and the summary, for stdout.
pub fn render(report: &RunReport, elapsed_s: f64) -> String {
    let mut rows = report.rows.clone();
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
    let processed = report.count(Status::Succeeded) + report.count(Status::Failed);
    let mut out = format!("{table}\n");
    out += &format!(
        "cases: {} succeeded, {} failed, {} skipped as duplicates or already recorded; {processed} processed in {elapsed_s:.2} s ({:.2} cases/s)\n",
        report.count(Status::Succeeded),
        report.count(Status::Failed),
        report.count(Status::Duplicate),
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
    for notice in &report.model_notices {
        out += &format!("{notice}\n");
    }
    out
}

/// A table of two columns (e.g. measure and value), for stdout.
pub fn two_columns(header: [&str; 2], rows: Vec<(String, String)>) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(header);
    for (k, v) in rows {
        table.add_row([k, v]);
    }
    table.to_string()
}

/// Per-case reporting: a progress bar on a terminal, log lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar that counts to the inputs found (`efen run`), or a spinner (`open_ended`, watch).
    pub fn new(open_ended: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if open_ended { ProgressBar::new_spinner() } else { ProgressBar::new(0) };
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cases {per_sec}")
                    .expect("valid template"),
            );
            bar
        });
        Progress { bar }
    }
}

impl CaseObserver for Progress {
    fn inputs_found(&self, n: u64) {
        if let Some(bar) = self.bar.as_ref().filter(|b| b.length().is_some()) {
            bar.inc_length(n);
        }
    }

    fn case_ended(&self, row: &Row) {
        match &self.bar {
            Some(bar) => {
                bar.println(row.line());
                bar.inc(1);
            }
            // The case's fields ride along for log shippers (EFEN_LOG_FORMAT=json).
            None if row.status == Status::Failed => {
                tracing::warn!(
                    case_id = %row.case_id,
                    file = %row.file,
                    stage = row.stage.unwrap_or(""),
                    error_type = row.error_type.unwrap_or(""),
                    "{}",
                    row.line()
                )
            }
            None => tracing::info!(case_id = %row.case_id, file = %row.file, "{}", row.line()),
        }
    }

    fn finished(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
