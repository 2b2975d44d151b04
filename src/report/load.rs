//! Store → frames. Each table is a list of columns with their SQL expression and kind; every
//! column is cast in SQL to a plain scalar (the Any driver knows no timestamps), so both backends
//! give the same frame: times as ISO-8601 UTC text, days as YYYY-MM-DD.

use sqlx::Row;

pub use super::frame::Kind;
use super::frame::{Frame, Value};
use crate::store::{Backend, Store};

/// What to keep: each filter applies to the tables that have the column, and is refused by the
/// others (rather than silently ignored).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub run: Option<String>,
    pub pipeline: Option<String>,
    /// A model SHA-256 or a prefix of it.
    pub model: Option<String>,
    /// UTC days, YYYY-MM-DD, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
}

pub struct Col {
    pub name: &'static str,
    pub expr: &'static str,
    pub kind: Kind,
}

const fn col(name: &'static str, expr: &'static str, kind: Kind) -> Col {
    Col { name, expr, kind }
}

/// A table: its FROM clause, its columns, and the columns the filters apply to.
pub struct Spec {
    pub name: &'static str,
    pub from: &'static str,
    pub columns: &'static [Col],
    pub run: Option<&'static str>,
    pub pipeline: Option<&'static str>,
    pub model: Option<&'static str>,
    /// The timestamp the date range applies to (its UTC day).
    pub time: Option<&'static str>,
    /// Or a column that already is a day (YYYY-MM-DD).
    pub day: Option<&'static str>,
    pub order: &'static str,
}

use Kind::{Bool, Float, Int, Text, Time};

pub const RUNS: Spec = Spec {
    name: "runs",
    from: "run_summary v",
    columns: &[
        col("run_id", "v.run_id", Text),
        col("command", "v.command", Text),
        col("pipeline", "v.pipeline", Text),
        col("model_name", "v.model_name", Text),
        col("model_sha256", "v.model_sha256", Text),
        col("efen_version", "v.efen_version", Text),
        col("started_at", "v.started_at", Time),
        col("ended_at", "v.ended_at", Time),
        col("cases", "v.cases", Int),
        col("succeeded", "v.succeeded", Int),
        col("failed", "v.failed", Int),
        col("duplicates", "v.duplicates", Int),
        col("with_ground_truth", "v.with_ground_truth", Int),
        col("mean_dsc", "v.mean_dsc", Float),
        col("median_dsc", "v.median_dsc", Float),
        col("min_dsc", "v.min_dsc", Float),
        col("mean_iou", "v.mean_iou", Float),
        col("median_iou", "v.median_iou", Float),
        col("min_iou", "v.min_iou", Float),
        col("mean_precision", "v.mean_precision", Float),
        col("mean_recall", "v.mean_recall", Float),
        col("p50_latency_ms", "v.p50_latency_ms", Float),
        col("p95_latency_ms", "v.p95_latency_ms", Float),
        col("first_result_at", "v.first_result_at", Time),
        col("last_result_at", "v.last_result_at", Time),
        col("elapsed_s", "v.elapsed_s", Float),
        col("throughput_per_s", "v.throughput_per_s", Float),
    ],
    run: Some("v.run_id"),
    pipeline: Some("v.pipeline"),
    model: Some("v.model_sha256"),
    time: Some("v.started_at"),
    day: None,
    order: "v.started_at, v.run_id",
};

pub const CASES: Spec = Spec {
    name: "cases",
    from: "results r JOIN cases c ON c.case_id = r.case_id JOIN runs ru ON ru.run_id = r.run_id",
    columns: &[
        col("case_id", "r.case_id", Text),
        col("run_id", "r.run_id", Text),
        col("pipeline", "c.pipeline", Text),
        col("model_name", "ru.model_name", Text),
        col("model_sha256", "c.model_sha256", Text),
        col("efen_version", "ru.efen_version", Text),
        col("source_path", "c.source_path", Text),
        col("source_sha256", "c.source_sha256", Text),
        col("file_sha256", "c.file_sha256", Text),
        col("ground_truth_path", "c.ground_truth_path", Text),
        col("kind", "c.kind", Text),
        col("width", "c.width", Int),
        col("height", "c.height", Int),
        col("status", "r.status", Text),
        col("error_stage", "r.error_stage", Text),
        col("error_message", "r.error_message", Text),
        col("error_reason", "COALESCE(r.error_reason, r.error_message)", Text),
        col("has_ground_truth", "r.has_ground_truth", Bool),
        col("dsc", "r.dsc", Float),
        col("iou", "r.iou", Float),
        col("miou", "r.miou", Float),
        col("precision", "r.\"precision\"", Float),
        col("recall", "r.recall", Float),
        col("tp", "r.tp", Int),
        col("fp", "r.fp", Int),
        col("fn", "r.fn", Int),
        col("tn", "r.tn", Int),
        // A series case's slices and volumes; NULL for images and single DICOM frames.
        col("n_frames", "r.n_frames", Int),
        col("volume_ml", "r.volume_ml", Float),
        col("truth_volume_ml", "r.truth_volume_ml", Float),
        col("latency_ms", "r.latency_ms", Float),
        col("mask_path", "r.mask_path", Text),
        col("overlay_path", "r.overlay_path", Text),
        col("seg_path", "r.seg_path", Text),
        col("recorded_at", "r.created_at", Time),
    ],
    run: Some("r.run_id"),
    pipeline: Some("c.pipeline"),
    model: Some("c.model_sha256"),
    time: Some("r.created_at"),
    day: None,
    order: "r.created_at, r.case_id",
};

pub const DAILY: Spec = Spec {
    name: "daily",
    from: "daily_summary v",
    columns: &[
        col("day", "v.day", Text),
        col("pipeline", "v.pipeline", Text),
        col("model_sha256", "v.model_sha256", Text),
        col("model_name", "v.model_name", Text),
        col("cases", "v.cases", Int),
        col("succeeded", "v.succeeded", Int),
        col("failed", "v.failed", Int),
        col("mean_dsc", "v.mean_dsc", Float),
        col("min_dsc", "v.min_dsc", Float),
        col("mean_iou", "v.mean_iou", Float),
        col("mean_precision", "v.mean_precision", Float),
        col("mean_recall", "v.mean_recall", Float),
        col("mean_latency_ms", "v.mean_latency_ms", Float),
    ],
    run: None,
    pipeline: Some("v.pipeline"),
    model: Some("v.model_sha256"),
    time: None,
    day: Some("v.day"),
    order: "v.day, v.pipeline, v.model_sha256",
};

pub const MODELS: Spec = Spec {
    name: "models",
    from: "model_versions v",
    columns: &[
        col("model_sha256", "v.model_sha256", Text),
        col("model_name", "v.model_name", Text),
        col("first_used", "v.first_used", Time),
        col("last_used", "v.last_used", Time),
        col("cases", "v.cases", Int),
        col("runs", "v.runs", Int),
        col("succeeded", "v.succeeded", Int),
        col("mean_dsc", "v.mean_dsc", Float),
    ],
    run: None,
    pipeline: None,
    model: Some("v.model_sha256"),
    time: Some("v.last_used"),
    day: None,
    order: "v.first_used, v.model_sha256",
};

/// The SELECT for `spec` on `backend`, and the values bound to its `$n`.
pub fn select(spec: &Spec, backend: Backend, filters: &Filters) -> anyhow::Result<(String, Vec<String>)> {
    let columns: Vec<String> =
        spec.columns.iter().map(|c| format!("{} AS {}", cast(c.expr, c.kind, backend), quote(c.name))).collect();
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut condition = |column: Option<&str>, value: &Option<String>, flag: &str, template: &str| {
        let Some(value) = value else { return Ok(()) };
        let Some(column) = column else {
            anyhow::bail!("{flag} does not apply to the {} table (it has no such column)", spec.name);
        };
        binds.push(value.clone());
        conditions.push(template.replace("{col}", column).replace("{n}", &format!("${}", binds.len())));
        Ok(())
    };
    condition(spec.run, &filters.run, "--run", "{col} = {n}")?;
    condition(spec.pipeline, &filters.pipeline, "--pipeline", "{col} = {n}")?;
    condition(spec.model, &filters.model, "--model", "{col} LIKE CAST({n} AS TEXT) || '%'")?;
    let day = spec.day.map(str::to_string).or_else(|| spec.time.map(|t| day_of(t, backend)));
    condition(day.as_deref(), &filters.since, "--since", "{col} >= {n}")?;
    condition(day.as_deref(), &filters.until, "--until", "{col} <= {n}")?;
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), spec.from);
    if !conditions.is_empty() {
        sql += &format!(" WHERE {}", conditions.join(" AND "));
    }
    sql += &format!(" ORDER BY {}", spec.order);
    Ok((sql, binds))
}

/// Reads a table into a frame.
pub async fn frame(store: &Store, spec: &Spec, filters: &Filters) -> anyhow::Result<Frame> {
    let (sql, binds) = select(spec, store.backend, filters)?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
    for value in binds {
        query = query.bind(value);
    }
    let rows = query
        .fetch_all(store.pool())
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the {} table from the store: {e}", spec.name))?;
    let columns: Vec<(&str, Kind)> = spec.columns.iter().map(|c| (c.name, c.kind)).collect();
    let mut frame = Frame::new(&columns);
    for row in &rows {
        let mut values = Vec::with_capacity(spec.columns.len());
        for (i, c) in spec.columns.iter().enumerate() {
            let read =
                |e: sqlx::Error| anyhow::anyhow!("cannot read column {} of the {} table: {e}", c.name, spec.name);
            values.push(match c.kind {
                Text | Time => Value::from(row.try_get::<Option<String>, _>(i).map_err(read)?),
                Int => Value::from(row.try_get::<Option<i64>, _>(i).map_err(read)?),
                Float => Value::from(row.try_get::<Option<f64>, _>(i).map_err(read)?),
                Bool => row.try_get::<Option<i64>, _>(i).map_err(read)?.map_or(Value::Null, |v| Value::Bool(v != 0)),
            });
        }
        frame.push(values);
    }
    Ok(frame)
}

/// The expression cast to what the Any driver reads on `backend`.
fn cast(expr: &str, kind: Kind, backend: Backend) -> String {
    match (kind, backend) {
        (Text, _) => format!("CAST({expr} AS TEXT)"),
        (Int, _) => format!("CAST({expr} AS BIGINT)"),
        (Float, Backend::Postgres) => format!("CAST({expr} AS DOUBLE PRECISION)"),
        (Float, Backend::Sqlite) => format!("CAST({expr} AS REAL)"),
        (Bool, _) => format!("CAST(CASE WHEN {expr} THEN 1 ELSE 0 END AS BIGINT)"),
        (Time, Backend::Postgres) => format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
        (Time, Backend::Sqlite) => format!("strftime('%Y-%m-%dT%H:%M:%fZ', {expr})"),
    }
}

/// The UTC day (YYYY-MM-DD) of a timestamp column.
fn day_of(expr: &str, backend: Backend) -> String {
    match backend {
        Backend::Postgres => format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        Backend::Sqlite => format!("substr(strftime('%Y-%m-%dT%H:%M:%fZ', {expr}), 1, 10)"),
    }
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_bound_conditions() {
        let filters = Filters { run: Some("r1".into()), model: Some("ab12".into()), ..Filters::default() };
        let (sql, binds) = select(&RUNS, Backend::Sqlite, &filters).unwrap();
        assert!(sql.contains("WHERE v.run_id = $1 AND v.model_sha256 LIKE CAST($2 AS TEXT) || '%'"), "{sql}");
        assert_eq!(binds, ["r1", "ab12"]);
    }

    #[test]
    fn a_filter_on_a_missing_column_is_refused() {
        let filters = Filters { run: Some("r1".into()), ..Filters::default() };
        let error = select(&DAILY, Backend::Postgres, &filters).unwrap_err().to_string();
        assert!(error.contains("--run does not apply to the daily table"), "{error}");
    }
}

/// What the cards of the runs' models say they are for (recorded with each run's settings), one
/// line per model: "model efen-small: trained only on synthetic data: …", and any run's warning
/// that its model ran at a size the card did not validate.
pub async fn model_notices(store: &Store, runs: &Frame) -> anyhow::Result<Vec<String>> {
    let wanted: std::collections::BTreeSet<&str> = (0..runs.height()).filter_map(|i| runs.text(i, "run_id")).collect();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT run_id, model_name, pipeline_settings FROM runs").fetch_all(store.pool()).await?;
    let mut notices = std::collections::BTreeSet::new();
    for (_, model, settings) in rows.into_iter().filter(|(id, _, _)| wanted.contains(id.as_str())) {
        let settings: serde_json::Value = serde_json::from_str(&settings).unwrap_or_default();
        if let Some(text) = settings["model_intended_use"].as_str().filter(|t| !t.is_empty()) {
            notices.insert(format!("model {model}: {text}"));
        }
        if let Some(warning) = settings["model_size_warning"].as_str().filter(|t| !t.is_empty()) {
            notices.insert(warning.to_string());
        }
    }
    Ok(notices.into_iter().collect())
}
