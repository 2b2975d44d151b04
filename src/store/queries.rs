//! Small read queries for the HTTP face ([`crate::http`]): where one case is, which cases a file
//! became, and the latest runs. Read-only, and each a single statement, so a slow store only slows
//! the request that asked.
//!
//! Every column is cast to what sqlx's Any driver reads on both backends (TEXT, BIGINT), and times
//! are formatted as ISO-8601 UTC text by the database, as `efen report` does.

use sqlx::Row;

use super::{Backend, Store, StoreError, query};

/// One case as the store knows it: its ledger state and, once recorded, its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseStatus {
    pub case_id: String,
    /// `claimed`, `decoded`, `inferred`, `written` or `recorded`.
    pub state: String,
    /// `succeeded` or `failed` once recorded; None before.
    pub status: Option<String>,
    pub error_stage: Option<String>,
    pub error_message: Option<String>,
    /// Slices of a series case; None for images and single frames.
    pub n_frames: Option<i64>,
    pub source_path: String,
    pub file_sha256: Option<String>,
}

/// One run, newest first in [`Store::recent_runs`], with its counts from `run_summary`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub command: String,
    pub pipeline: String,
    pub model_name: String,
    pub model_sha256: String,
    pub efen_version: String,
    pub host: String,
    pub started_at: Option<String>,
    /// None while the run goes on (or when it died without finishing).
    pub ended_at: Option<String>,
    pub cases: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub duplicates: i64,
}

impl Store {
    /// The case `case_id`, or None when the store has no row for it.
    pub async fn case_status(&self, case_id: &str) -> Result<Option<CaseStatus>, StoreError> {
        const ACTION: &str = "reading a case's status";
        let row = sqlx::query(
            "SELECT c.case_id, c.state, r.status, r.error_stage, r.error_message, CAST(r.n_frames AS BIGINT),
                    c.source_path, c.file_sha256
             FROM cases c LEFT JOIN results r ON r.case_id = c.case_id
             WHERE c.case_id = $1",
        )
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query(ACTION))?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| StoreError::Query { action: ACTION, source: e };
        Ok(Some(CaseStatus {
            case_id: row.try_get(0).map_err(read)?,
            state: row.try_get(1).map_err(read)?,
            status: row.try_get(2).map_err(read)?,
            error_stage: row.try_get(3).map_err(read)?,
            error_message: row.try_get(4).map_err(read)?,
            n_frames: row.try_get(5).map_err(read)?,
            source_path: row.try_get(6).map_err(read)?,
            file_sha256: row.try_get(7).map_err(read)?,
        }))
    }

    /// The cases of `pipeline` and `model_sha256` that the file with SHA-256 `file_sha256` became:
    /// the series case it is a slice of (through `series_slices`, once that case is recorded), else
    /// the cases claimed from the file itself (an image, a DICOM frame, each frame of a
    /// multi-frame instance, in frame order). Empty while none exists.
    pub async fn cases_of_file(
        &self,
        file_sha256: &str,
        pipeline: &str,
        model_sha256: &str,
    ) -> Result<Vec<String>, StoreError> {
        let series = self
            .case_ids_of_file(
                "SELECT DISTINCT s.case_id FROM series_slices s JOIN cases c ON c.case_id = s.case_id
                 WHERE s.file_sha256 = $1 AND c.pipeline = $2 AND c.model_sha256 = $3
                 ORDER BY s.case_id",
                file_sha256,
                pipeline,
                model_sha256,
            )
            .await?;
        if !series.is_empty() {
            return Ok(series);
        }
        self.case_ids_of_file(
            "SELECT c.case_id FROM cases c LEFT JOIN dicom_cases d ON d.case_id = c.case_id
             WHERE c.file_sha256 = $1 AND c.pipeline = $2 AND c.model_sha256 = $3
             ORDER BY COALESCE(d.frame_number, 0), c.case_id",
            file_sha256,
            pipeline,
            model_sha256,
        )
        .await
    }

    /// The case ids `sql` selects for ($1 file SHA-256, $2 pipeline, $3 model SHA-256).
    async fn case_ids_of_file(
        &self,
        sql: &'static str,
        file_sha256: &str,
        pipeline: &str,
        model_sha256: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(sql)
            .bind(file_sha256)
            .bind(pipeline)
            .bind(model_sha256)
            .fetch_all(&self.pool)
            .await
            .map_err(query("finding the cases of a file"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The `limit` latest runs, newest first, with their counts.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunSummary>, StoreError> {
        const ACTION: &str = "listing runs";
        let time = |column: &str| match self.backend {
            Backend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', {column})"),
        };
        let sql = format!(
            "SELECT run_id, command, pipeline, model_name, model_sha256, efen_version, host, {started}, {ended},
                    CAST(cases AS BIGINT), CAST(succeeded AS BIGINT), CAST(failed AS BIGINT),
                    CAST(duplicates AS BIGINT)
             FROM run_summary
             ORDER BY started_at DESC, run_id DESC
             LIMIT $1",
            started = time("started_at"),
            ended = time("ended_at"),
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await.map_err(query(ACTION))?;
        let read = |e| StoreError::Query { action: ACTION, source: e };
        rows.iter()
            .map(|row| {
                Ok(RunSummary {
                    run_id: row.try_get(0).map_err(read)?,
                    command: row.try_get(1).map_err(read)?,
                    pipeline: row.try_get(2).map_err(read)?,
                    model_name: row.try_get(3).map_err(read)?,
                    model_sha256: row.try_get(4).map_err(read)?,
                    efen_version: row.try_get(5).map_err(read)?,
                    host: row.try_get(6).map_err(read)?,
                    started_at: row.try_get(7).map_err(read)?,
                    ended_at: row.try_get(8).map_err(read)?,
                    cases: row.try_get(9).map_err(read)?,
                    succeeded: row.try_get(10).map_err(read)?,
                    failed: row.try_get(11).map_err(read)?,
                    duplicates: row.try_get(12).map_err(read)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CaseRecord, NewCase, NewRun};

    #[tokio::test]
    async fn a_case_is_found_by_id_and_by_its_file_and_runs_come_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("efen.db").display()), 1).await.unwrap();
        for run_id in ["r1", "r2"] {
            let run = NewRun {
                run_id: run_id.into(),
                command: "watch".into(),
                pipeline: "p".into(),
                pipeline_settings: "{}".into(),
                model_name: "m".into(),
                model_sha256: "ms".into(),
            };
            store.start_run(&run).await.unwrap();
        }
        let case = NewCase {
            case_id: "c1".into(),
            run_id: "r2".into(),
            pipeline: "p".into(),
            model_sha256: "ms".into(),
            source_path: "drop/http/a.png".into(),
            source_sha256: "f1".into(),
            file_sha256: "f1".into(),
            size_bytes: 3,
            ground_truth_path: None,
            worker: Some("w1".into()),
        };
        assert_eq!(store.case_status("c1").await.unwrap(), None);
        store.claim_case(&case, false).await.unwrap();
        let claimed = store.case_status("c1").await.unwrap().unwrap();
        assert_eq!((claimed.state.as_str(), claimed.status), ("claimed", None));
        assert_eq!(store.cases_of_file("f1", "p", "ms").await.unwrap(), ["c1"]);
        assert!(store.cases_of_file("f1", "p", "other model").await.unwrap().is_empty());

        let record = CaseRecord {
            case_id: "c1".into(),
            run_id: "r2".into(),
            status: "failed".into(),
            error_stage: Some("decode".into()),
            error_message: Some("not an image".into()),
            ..Default::default()
        };
        store.record(&record).await.unwrap();
        let failed = store.case_status("c1").await.unwrap().unwrap();
        assert_eq!(failed.state, "recorded");
        assert_eq!(failed.status.as_deref(), Some("failed"));
        assert_eq!(failed.error_stage.as_deref(), Some("decode"));

        let runs = store.recent_runs(50).await.unwrap();
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        // Started in this order (or in the same millisecond, then by id): r2 is the newest.
        assert_eq!(ids, ["r2", "r1"]);
        assert_eq!((runs[0].cases, runs[0].failed, runs[1].cases), (1, 1, 0));
        assert_eq!(runs[0].ended_at, None);
        assert!(runs[0].started_at.as_deref().is_some_and(|t| t.ends_with('Z')), "{runs:?}");
        assert_eq!(store.recent_runs(1).await.unwrap().len(), 1);
        store.close().await;
    }
}
