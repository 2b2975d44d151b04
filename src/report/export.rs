//! Writing a table: CSV, Parquet or JSON (numbers at full precision, for other tools), or a
//! terminal table (rounded, for people).

use std::path::Path;

use comfy_table::{CellAlignment, Table as TextTable, presets::UTF8_FULL_CONDENSED};
use polars::prelude::*;

use super::{Format, Table};

/// Columns the terminal shows for the wide tables; files always get every column.
const TERMINAL_RUNS: &[&str] = &[
    "run_id",
    "pipeline",
    "model_name",
    "cases",
    "succeeded",
    "failed",
    "duplicates",
    "mean_dsc",
    "median_dsc",
    "min_dsc",
    "mean_iou",
    "mean_precision",
    "mean_recall",
    "p50_latency_ms",
    "p95_latency_ms",
    "throughput_per_s",
];
const TERMINAL_CASES: &[&str] =
    &["case_id", "source_path", "status", "dsc", "iou", "precision", "recall", "latency_ms", "error_message"];

pub fn title(table: Table) -> &'static str {
    match table {
        Table::Runs => "Runs (metrics: mean/median/min over succeeded cases with ground truth; latency: nearest-rank)",
        Table::Cases => "Cases",
        Table::Daily => "Per day (UTC), pipeline and model",
        Table::Models => "Model versions",
        Table::Failures => "Failures by stage and reason",
        Table::Paper => "Paper table (%): DSC, mIoU, Recall, Precision",
    }
}

/// Writes `frame` as `format` to `out` (stdout for text formats when None).
pub fn write(frame: &mut DataFrame, table: Table, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    match format {
        Format::Table => return write_text(out, &format!("{}\n{}\n", title(table), terminal(frame, table))),
        Format::Csv => CsvWriter::new(&mut bytes).include_header(true).finish(frame)?,
        Format::Json => JsonWriter::new(&mut bytes).with_json_format(JsonFormat::Json).finish(frame)?,
        Format::Parquet => {
            let Some(out) = out else {
                anyhow::bail!("--format parquet needs --out FILE (Parquet is binary)");
            };
            ParquetWriter::new(&mut bytes).finish(frame)?;
            return write_file(out, &bytes);
        }
        Format::Html => unreachable!("html is written by report::html"),
    }
    match out {
        Some(path) => write_file(path, &bytes),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
    }
}

pub fn write_text(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => write_file(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Writes to a temporary name and renames, so a reader never sees half a report.
pub fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create the folder {}: {e}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The columns people read first (all of them for the narrow tables).
pub fn shown(frame: &DataFrame, table: Table) -> Vec<&Column> {
    let wanted: &[&str] = match table {
        Table::Runs => TERMINAL_RUNS,
        Table::Cases => TERMINAL_CASES,
        _ => &[],
    };
    frame.columns().iter().filter(|c| wanted.is_empty() || wanted.contains(&c.name().as_str())).collect()
}

/// A terminal table of `frame`: the main columns, numbers rounded.
pub fn terminal(frame: &DataFrame, table: Table) -> String {
    let columns = shown(frame, table);
    let percent = table == Table::Paper;
    let mut text = TextTable::new();
    text.load_preset(UTF8_FULL_CONDENSED);
    text.set_header(columns.iter().map(|c| c.name().to_string()));
    for i in 0..frame.height() {
        text.add_row(columns.iter().map(|c| cell(c, i, percent)));
    }
    for (i, c) in columns.iter().enumerate() {
        if let Some(column) = text.column_mut(i).filter(|_| c.dtype().is_primitive_numeric()) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    if frame.height() == 0 {
        return format!("{text}\n(no rows)");
    }
    text.to_string()
}

/// One value as text: floats to 4 decimals (or as a percentage with 2), ids shortened.
pub fn cell(column: &Column, i: usize, percent: bool) -> String {
    match column.get(i) {
        Ok(AnyValue::Null) | Err(_) => String::new(),
        Ok(AnyValue::Float64(v)) if percent && column.name().as_str() != "cases" => format!("{:.2}", v * 100.0),
        Ok(AnyValue::Float64(v)) => format!("{v:.4}"),
        // Borrowed or owned (group-by results are owned).
        Ok(v) if v.get_str().is_some() => {
            let s = v.get_str().unwrap_or_default();
            let id = column.name().ends_with("_id") || column.name().ends_with("sha256");
            if id { s.chars().take(12).collect() } else { s.to_string() }
        }
        Ok(other) => other.to_string(),
    }
}
