//! The flags of `efen report`, turned into a [`report::Request`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::report::{self, Filters, Format, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Tables on the terminal.
    Table,
    Csv,
    Parquet,
    Json,
    /// One self-contained HTML file: tables, charts and the worst and best cases.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableArg {
    /// One row per run (the run_summary view).
    Runs,
    /// One row per case: status, metrics, latency, checksums, output paths.
    Cases,
    /// Per UTC day, pipeline and model (the daily_summary view).
    Daily,
    /// Per model SHA-256 (the model_versions view).
    Models,
    /// Per failing stage and reason, with the latest example.
    Failures,
    /// The paper's table (DSC, mIoU, recall, precision) per run with ground truth.
    Paper,
}

/// Reports from the store: summaries, the paper table, exports and an HTML report.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Which table (csv, parquet, json; default runs). The terminal shows runs, the paper table and
    /// the failures when no table is given; html always shows them all.
    #[arg(long, value_enum)]
    pub table: Option<TableArg>,
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
        let format = match self.format {
            FormatArg::Table => Format::Table,
            FormatArg::Csv => Format::Csv,
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Json => Format::Json,
            FormatArg::Html => Format::Html,
        };
        let table = self.table.map(|t| match t {
            TableArg::Runs => Table::Runs,
            TableArg::Cases => Table::Cases,
            TableArg::Daily => Table::Daily,
            TableArg::Models => Table::Models,
            TableArg::Failures => Table::Failures,
            TableArg::Paper => Table::Paper,
        });
        let filters =
            Filters { run: self.run, pipeline: self.pipeline, model: self.model, since: self.since, until: self.until };
        report::Request { format, table, out: self.out, filters, examples: self.examples }
    }
}
