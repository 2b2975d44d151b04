//! `efen report`: reads the store into polars DataFrames and shows them as a terminal table, or
//! writes CSV, Parquet, JSON or one self-contained HTML file.
//!
//! - [`load`]: store → DataFrames (the reporting views and the per-case rows), with the filters.
//! - [`summary`]: what is computed in polars: the paper table, the failures, percentiles.
//! - [`export`]: CSV, Parquet, JSON and the terminal table.
//! - [`html`], [`charts`], [`outline`]: the HTML report, its SVG charts and its case images.

pub mod charts;
pub mod export;
pub mod html;
pub mod load;
pub mod outline;
pub mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::store::Store;

pub use load::Filters;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables on the terminal.
    Table,
    Csv,
    Parquet,
    Json,
    /// One self-contained HTML file: tables, charts and the worst and best cases.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Table {
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

/// Runs `efen report`: exit 0, or an error (exit 2) naming what could not be read or written.
pub async fn run(config: Config, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let url = config.database_url();
    let store = Store::open(&url, 2).await?;
    let filters = Filters {
        run: args.run.clone(),
        pipeline: args.pipeline.clone(),
        model: args.model.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
    };
    let result = report(&store, &filters, &args, &config).await;
    store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn report(store: &Store, filters: &Filters, args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    match args.format {
        Format::Html => {
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("report.html"));
            let data = html::Data::load(store, filters, args.examples).await?;
            let page = html::render(&data, filters, &crate::store::redact_url(&config.database_url()))?;
            export::write_file(&out, page.as_bytes())?;
            eprintln!("wrote {} ({} cases)", out.display(), data.cases.height());
            Ok(())
        }
        Format::Table if args.table.is_none() => {
            let mut text = String::new();
            for table in [Table::Runs, Table::Paper, Table::Failures] {
                let frame = table_frame(store, filters, table).await?;
                text += &format!("{}\n{}\n\n", export::title(table), export::terminal(&frame, table));
            }
            export::write_text(args.out.as_deref(), &text)
        }
        format => {
            let table = args.table.unwrap_or(Table::Runs);
            let mut frame = table_frame(store, filters, table).await?;
            export::write(&mut frame, table, format, args.out.as_deref())
        }
    }
}

/// One table as a DataFrame, with the filters applied.
pub async fn table_frame(store: &Store, filters: &Filters, table: Table) -> anyhow::Result<polars::prelude::DataFrame> {
    Ok(match table {
        Table::Runs => load::frame(store, &load::RUNS, filters).await?,
        Table::Cases => load::frame(store, &load::CASES, filters).await?,
        Table::Daily => load::frame(store, &load::DAILY, filters).await?,
        Table::Models => load::frame(store, &load::MODELS, filters).await?,
        Table::Failures => summary::failures(&load::frame(store, &load::CASES, filters).await?)?,
        Table::Paper => summary::paper(&load::frame(store, &load::CASES, filters).await?)?,
    })
}
