//! Writing a table: CSV, Parquet or JSON (numbers at full precision, for other tools), or a
//! terminal table (rounded, for people).

use std::path::Path;

use comfy_table::{CellAlignment, Table as TextTable, presets::UTF8_FULL_CONDENSED};

use super::frame::{Column, Frame, Value};
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
const TERMINAL_CASES: &[&str] = &[
    "case_id",
    "source_path",
    "status",
    "n_frames",
    "volume_ml",
    "truth_volume_ml",
    "dsc",
    "iou",
    "precision",
    "recall",
    "latency_ms",
    "error_message",
];
/// Shown only when some case has a value: a report of images alone keeps its columns.
const SERIES_ONLY: &[&str] = &["n_frames", "volume_ml", "truth_volume_ml"];

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

/// Writes `frame` as CSV, JSON or Parquet to `out` (stdout for the text formats when None).
pub fn write(frame: &Frame, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let bytes = match format {
        Format::Csv => csv(frame).into_bytes(),
        Format::Json => json(frame),
        Format::Parquet => {
            let Some(out) = out else {
                anyhow::bail!("--format parquet needs --out FILE (Parquet is binary)");
            };
            return write_file(out, &super::parquet::write(frame)?);
        }
        // Terminal tables (with the model notices under them) and HTML are written by report::report.
        Format::Table | Format::Html => unreachable!("{format:?} is not an export format"),
    };
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

/// CSV (RFC 4180): a header row, numbers at full precision, nulls empty, text quoted when needed.
pub fn csv(frame: &Frame) -> String {
    let line = |fields: Vec<String>| fields.join(",") + "\n";
    let mut out = line(frame.columns.iter().map(|c| csv_field(&c.name)).collect());
    for row in &frame.rows {
        out += &line(
            row.iter()
                .map(|v| match v {
                    Value::Null => String::new(),
                    Value::Text(s) => csv_field(s),
                    Value::Int(n) => n.to_string(),
                    Value::Float(x) if x.is_finite() => x.to_string(),
                    Value::Float(x) => x.to_string().to_lowercase(),
                    Value::Bool(b) => b.to_string(),
                })
                .collect(),
        );
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// JSON: an array with one object per row (a number that is not finite becomes null).
pub fn json(frame: &Frame) -> Vec<u8> {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = frame
        .rows
        .iter()
        .map(|row| {
            frame
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| {
                    let value = match v {
                        Value::Null => serde_json::Value::Null,
                        Value::Text(s) => serde_json::Value::from(s.as_str()),
                        Value::Int(n) => serde_json::Value::from(*n),
                        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into),
                        Value::Bool(b) => serde_json::Value::from(*b),
                    };
                    (c.name.clone(), value)
                })
                .collect()
        })
        .collect();
    serde_json::to_vec(&rows).expect("JSON values serialize")
}

/// The columns people read first (all of them for the narrow tables), by index; a series column
/// only when some row has a value.
pub fn shown(frame: &Frame, table: Table) -> Vec<usize> {
    let wanted: &[&str] = match table {
        Table::Runs => TERMINAL_RUNS,
        Table::Cases => TERMINAL_CASES,
        _ => &[],
    };
    let name = |c: usize| frame.columns[c].name.as_str();
    let empty = |c: usize| frame.rows.iter().all(|row| row[c] == Value::Null);
    (0..frame.columns.len())
        .filter(|&c| wanted.is_empty() || wanted.contains(&name(c)))
        .filter(|&c| wanted.is_empty() || !(SERIES_ONLY.contains(&name(c)) && empty(c)))
        .collect()
}

/// A terminal table of `frame`: the main columns, numbers rounded.
pub fn terminal(frame: &Frame, table: Table) -> String {
    let columns = shown(frame, table);
    let percent = table == Table::Paper;
    let mut text = TextTable::new();
    text.load_preset(UTF8_FULL_CONDENSED);
    text.set_header(columns.iter().map(|&c| frame.columns[c].name.clone()));
    for row in &frame.rows {
        text.add_row(columns.iter().map(|&c| cell(&frame.columns[c], &row[c], percent)));
    }
    for (i, &c) in columns.iter().enumerate() {
        if let Some(column) = text.column_mut(i).filter(|_| frame.columns[c].kind.is_numeric()) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    if frame.height() == 0 {
        return format!("{text}\n(no rows)");
    }
    text.to_string()
}

/// One value as text: floats to 4 decimals (or as a percentage with 2), ids shortened.
pub fn cell(column: &Column, value: &Value, percent: bool) -> String {
    match value {
        Value::Null => String::new(),
        Value::Float(v) if percent && column.name != "cases" => format!("{:.2}", v * 100.0),
        Value::Float(v) => format!("{v:.4}"),
        Value::Text(s) if column.name.ends_with("_id") || column.name.ends_with("sha256") => {
            s.chars().take(12).collect()
        }
        other => full(other),
    }
}

/// The untruncated value (for a tooltip).
pub fn full(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Text(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::frame::Kind;

    fn sample() -> Frame {
        let mut frame = Frame::new(&[("name", Kind::Text), ("n", Kind::Int), ("x", Kind::Float), ("ok", Kind::Bool)]);
        frame.push(vec![Value::Text("a, \"b\"".into()), Value::Int(3), Value::Float(0.1), Value::Bool(true)]);
        frame.push(vec![Value::Null, Value::Null, Value::Float(f64::NAN), Value::Null]);
        frame
    }

    #[test]
    fn csv_quotes_text_and_leaves_nulls_empty() {
        assert_eq!(csv(&sample()), "name,n,x,ok\n\"a, \"\"b\"\"\",3,0.1,true\n,,nan,\n");
    }

    #[test]
    fn series_columns_show_only_when_a_case_has_them() {
        let mut cases = Frame::new(&[("case_id", Kind::Text), ("n_frames", Kind::Int), ("volume_ml", Kind::Float)]);
        cases.push(vec![Value::Text("image".into()), Value::Null, Value::Null]);
        assert_eq!(shown(&cases, Table::Cases), [0]);
        cases.push(vec![Value::Text("series".into()), Value::Int(3), Value::Float(1.25)]);
        assert_eq!(shown(&cases, Table::Cases), [0, 1, 2]);
    }

    #[test]
    fn json_has_one_object_per_row() {
        let value: serde_json::Value = serde_json::from_slice(&json(&sample())).unwrap();
        assert_eq!(value[0]["name"], "a, \"b\"");
        assert_eq!(value[0]["n"], 3);
        assert!(value[1]["x"].is_null() && value[1]["name"].is_null());
    }
}
