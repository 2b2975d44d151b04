//! The flags of `efen report`, turned into a [`report::Request`].

use std::path::PathBuf;

use clap::Args;

use crate::report::{self, Filters, Format, Table};

/// Reports from the store: summaries, the paper table, exports and an HTML report.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Which table (csv, parquet, json; default runs). The terminal shows runs, the paper table and
    /// the failures when no table is given; html always shows them all.
    #[arg(long, value_enum)]
    pub table: Option<Table>,
    /// Output file (default: stdout for table, csv and json; report.html for html; required for parquet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this model: its SHA-256 or a prefix of it.
    #[arg(long)]
    pub model: Option<String>,
    /// From this UTC day on (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_day)]
    pub since: Option<String>,
    /// Up to this UTC day (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_day)]
    pub until: Option<String>,
    /// Worst and best cases shown with their outlines in the HTML report (each).
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
}

fn parse_day(text: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|e| format!("{text:?} is not a day YYYY-MM-DD: {e}"))
}

impl ReportArgs {
    pub fn request(self) -> report::Request {
        let filters =
            Filters { run: self.run, pipeline: self.pipeline, model: self.model, since: self.since, until: self.until };
        report::Request { format: self.format, table: self.table, out: self.out, filters, examples: self.examples }
    }
}
