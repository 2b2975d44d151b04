//! `efen report`: reads the store into frames and shows them as a terminal table, or writes CSV,
//! Parquet, JSON or one self-contained HTML file.
//!
//! - [`load`]: store → [`frame::Frame`]s (the reporting views and the per-case rows), with the filters.
//! - [`summary`]: what is computed from the cases: the paper table, the failures, percentiles.
//! - [`export`]: CSV, JSON and the terminal table; [`parquet`]: Parquet.
//! - [`html`], [`charts`], [`outline`]: the HTML report, its SVG charts and its case images.

pub mod charts;
pub mod export;
pub mod frame;
pub mod html;
pub mod load;
pub mod outline;
pub mod parquet;
pub mod summary;

use std::path::PathBuf;

use crate::store::Store;

pub use load::Filters;

/// How a report is shown. Its doc comments are `efen report --format`'s help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables on the terminal.
    Table,
    Csv,
    Parquet,
    Json,
    /// One self-contained HTML file: tables, charts and the worst and best cases.
    Html,
}

/// Which table. Its doc comments are `efen report --table`'s help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// What to report, and where to.
#[derive(Debug, Clone)]
pub struct Request {
    pub format: Format,
    /// None: the terminal shows runs, the paper table and the failures; exports show runs.
    pub table: Option<Table>,
    /// None: stdout for table, csv and json; report.html for html (parquet needs a file).
    pub out: Option<PathBuf>,
    pub filters: Filters,
    /// Worst and best cases shown with their outlines in the HTML report (each).
    pub examples: usize,
}

/// Runs `efen report`, or says what could not be read or written.
/// `database_url` is the store's URL (its password is never shown).
pub async fn run(database_url: &str, request: &Request) -> anyhow::Result<()> {
    let store = Store::open(database_url, 2).await?;
    let result = report(&store, &request.filters, request, database_url).await;
    store.close().await;
    result
}

async fn report(store: &Store, filters: &Filters, args: &Request, database_url: &str) -> anyhow::Result<()> {
    match args.format {
        Format::Html => {
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("report.html"));
            let data = html::Data::load(store, filters, args.examples).await?;
            let page = html::render(&data, filters, &crate::store::redact_url(database_url))?;
            export::write_file(&out, page.as_bytes())?;
            eprintln!("wrote {} ({} cases)", out.display(), data.cases.height());
            Ok(())
        }
        Format::Table => {
            let tables = match args.table {
                Some(table) => vec![table],
                None => vec![Table::Runs, Table::Paper, Table::Failures],
            };
            let mut text = String::new();
            for table in tables {
                let frame = table_frame(store, filters, table).await?;
                text += &format!("{}\n{}\n\n", export::title(table), export::terminal(&frame, table));
            }
            // Numbers laid out like the paper's invite comparison with it: say what the model is.
            let runs = load::frame(store, &load::RUNS, filters).await?;
            for notice in load::model_notices(store, &runs).await? {
                text += &format!("note: {notice}\n");
            }
            export::write_text(args.out.as_deref(), &text)
        }
        format => {
            let table = args.table.unwrap_or(Table::Runs);
            let frame = table_frame(store, filters, table).await?;
            export::write(&frame, format, args.out.as_deref())
        }
    }
}

/// One table as a frame, with the filters applied.
pub async fn table_frame(store: &Store, filters: &Filters, table: Table) -> anyhow::Result<frame::Frame> {
    Ok(match table {
        Table::Runs => load::frame(store, &load::RUNS, filters).await?,
        Table::Cases => load::frame(store, &load::CASES, filters).await?,
        Table::Daily => load::frame(store, &load::DAILY, filters).await?,
        Table::Models => load::frame(store, &load::MODELS, filters).await?,
        Table::Failures => summary::failures(&load::frame(store, &load::CASES, filters).await?),
        Table::Paper => summary::paper(&load::frame(store, &load::CASES, filters).await?),
    })
}
