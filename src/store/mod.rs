//! Store: the SQL audit trail and reporting database, PostgreSQL or SQLite through sqlx's Any
//! driver with one set of `$n` statements. Ingest (claims, dedupe) and record write to it; the DICOM
//! node's outbox works the send queue through [`sends`]' API; reports read it, and so does the HTTP
//! face through [`queries`]. Nobody else runs SQL.
//!
//! Timestamps are filled in by the database (`DEFAULT now()`), never bound, so the same SQL works
//! on both backends.

mod queries;
mod records;
mod sends;

use std::path::PathBuf;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use queries::{CaseStatus, RunSummary};
pub use records::{CaseRecord, Claim, DicomRecord, LedgerState, NewCase, NewRun, SeriesRecord, SliceRecord};
pub use sends::{NewSend, PendingSend, SendAttempt, SendStatus};

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {url}: {source} (check database.url / DATABASE_URL; `efen doctor` tests it)")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create the folder {} for the SQLite store: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot migrate the store {url}: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
    #[error("store query failed while {action}: {source}")]
    Query { action: &'static str, source: sqlx::Error },
}

impl StoreError {
    /// Failures of the connection or the server rather than of the query: worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Query { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE 08 connection exception, 53 insufficient resources, 57P operator
                // intervention (shutdown, restart), 40001 serialization failure; SQLite's BUSY and
                // LOCKED (5, 6 and their extended codes).
                sqlx::Error::Database(e) => e.code().is_some_and(|c| {
                    c.starts_with("08")
                        || c.starts_with("53")
                        || c.starts_with("57P")
                        || c == "40001"
                        || ["5", "6", "261", "517", "262"].contains(&c.as_ref())
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

impl crate::error::CaseError for StoreError {
    /// A store that is away counts as `store_unavailable`, whatever the query was.
    fn error_type(&self) -> &'static str {
        match self {
            e if e.is_transient() => "store_unavailable",
            StoreError::Connect { .. } => "store_connect",
            StoreError::CreateDir { .. } => "store_create_dir",
            StoreError::Migrate { .. } => "store_migrate",
            StoreError::Query { .. } => "store_query",
        }
    }
}

/// The service's `[database]` section.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`; empty means `DATABASE_URL`, else SQLite under `state_dir`.
    pub url: String,
    pub max_connections: u32,
}

impl DatabaseConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".to_string());
        }
        let url = &self.url;
        if !url.is_empty()
            && !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
            && !url.starts_with("sqlite:")
        {
            problems.push(format!("database.url must start with postgres:// or sqlite:// (got {})", redact_url(url)));
        }
        problems
    }

    /// The configured URL, else the embedded SQLite file `efen.db` under `state_dir`.
    pub fn url_or_embedded(&self, state_dir: &std::path::Path) -> String {
        if self.url.is_empty() { format!("sqlite://{}", state_dir.join("efen.db").display()) } else { self.url.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
    /// Who appears in the audit log: efen version, host and process.
    actor: String,
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Store {
    /// Opens the store and brings its schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let url = if backend == Backend::Sqlite {
            create_sqlite_parent(url)?;
            creating_sqlite_file(url)
        } else {
            url.to_string()
        };
        let url = url.as_str();
        let mut options =
            AnyPoolOptions::new().max_connections(max_connections).acquire_timeout(std::time::Duration::from_secs(10));
        if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=ro") {
            options = options.after_connect(|conn, _| Box::pin(sqlite_wal(conn)));
        }
        let pool = options.connect(url).await.map_err(|source| StoreError::Connect { url: redact_url(url), source })?;
        let migrator = match backend {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        };
        migrator.run(&pool).await.map_err(|source| StoreError::Migrate { url: redact_url(url), source })?;
        let actor = format!(
            "efen {} on {}, pid {}",
            env!("CARGO_PKG_VERSION"),
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        );
        Ok(Store { pool, backend, actor })
    }

    /// The connection pool, for the read-only queries of `efen report`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Who this process is in the audit log: efen's version, the host and the pid.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let mut tx = self.begin("starting a run").await?;
        sqlx::query(
            "INSERT INTO runs (run_id, command, pipeline, pipeline_settings, model_name, model_sha256, efen_version, host)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&run.run_id)
        .bind(&run.command)
        .bind(&run.pipeline)
        .bind(&run.pipeline_settings)
        .bind(&run.model_name)
        .bind(&run.model_sha256)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(gethostname::gethostname().to_string_lossy().into_owned())
        .execute(&mut *tx)
        .await
        .map_err(query("starting a run"))?;
        self.audit(&mut tx, Some(&run.run_id), None, "run_started", &run.command).await?;
        tx.commit().await.map_err(query("starting a run"))
    }

    pub async fn finish_run(&self, run_id: &str, summary: &str) -> Result<(), StoreError> {
        let mut tx = self.begin("finishing a run").await?;
        sqlx::query("UPDATE runs SET ended_at = CURRENT_TIMESTAMP WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query("finishing a run"))?;
        self.audit(&mut tx, Some(run_id), None, "run_finished", summary).await?;
        tx.commit().await.map_err(query("finishing a run"))
    }

    /// Takes a case for `case.run_id`, with the database as arbiter between workers.
    ///
    /// A case with a result is [`Claim::Recorded`]. A case without one is either new (inserted
    /// here), or held by another claim: an earlier run that died, or another worker right now.
    /// `takeover` decides which: `efen run` and crash recovery take it over, a second watcher
    /// treats it as a duplicate.
    pub async fn claim_case(&self, case: &NewCase, takeover: bool) -> Result<Claim, StoreError> {
        const ACTION: &str = "claiming a case";
        // Write first: SQLite then takes its write lock at once instead of failing to upgrade
        // a read lock when two claims race.
        let mut tx = self.begin(ACTION).await?;
        let inserted = sqlx::query(
            "INSERT INTO cases (case_id, run_id, pipeline, model_sha256, source_path, source_sha256, size_bytes,
                                ground_truth_path, worker, file_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (case_id) DO NOTHING",
        )
        .bind(&case.case_id)
        .bind(&case.run_id)
        .bind(&case.pipeline)
        .bind(&case.model_sha256)
        .bind(&case.source_path)
        .bind(&case.source_sha256)
        .bind(case.size_bytes)
        .bind(&case.ground_truth_path)
        .bind(&case.worker)
        .bind(&case.file_sha256)
        .execute(&mut *tx)
        .await
        .map_err(query(ACTION))?
        .rows_affected()
            == 1;
        let earlier: Option<(String, String)> = if inserted {
            None
        } else {
            sqlx::query_as(
                "SELECT r.status, c.source_path FROM results r JOIN cases c ON c.case_id = r.case_id WHERE r.case_id = $1",
            )
            .bind(&case.case_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(ACTION))?
        };
        if let Some((status, source_path)) = earlier {
            return Ok(Claim::Recorded { status, source_path });
        }
        let claim = if inserted {
            Claim::New
        } else if takeover {
            sqlx::query(
                "UPDATE cases SET run_id = $2, source_path = $3, ground_truth_path = $4, worker = $5,
                     state = 'claimed', state_rank = 1
                 WHERE case_id = $1",
            )
            .bind(&case.case_id)
            .bind(&case.run_id)
            .bind(&case.source_path)
            .bind(&case.ground_truth_path)
            .bind(&case.worker)
            .execute(&mut *tx)
            .await
            .map_err(query(ACTION))?;
            Claim::TakenOver
        } else {
            let (source_path,): (String,) = sqlx::query_as("SELECT source_path FROM cases WHERE case_id = $1")
                .bind(&case.case_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(query(ACTION))?;
            return Ok(Claim::Held { source_path });
        };
        let action = if claim == Claim::New { "case_claimed" } else { "case_reclaimed" };
        self.audit(&mut tx, Some(&case.run_id), Some(&case.case_id), action, &case.source_path).await?;
        tx.commit().await.map_err(query(ACTION))?;
        Ok(claim)
    }

    /// Records an input that repeated the bytes of case `case_id` under `source_path`.
    pub async fn record_duplicate(&self, case_id: &str, run_id: &str, source_path: &str) -> Result<(), StoreError> {
        const ACTION: &str = "recording a duplicate";
        let mut tx = self.begin(ACTION).await?;
        sqlx::query("INSERT INTO duplicates (case_id, run_id, source_path) VALUES ($1, $2, $3)")
            .bind(case_id)
            .bind(run_id)
            .bind(source_path)
            .execute(&mut *tx)
            .await
            .map_err(query(ACTION))?;
        self.audit(&mut tx, Some(run_id), Some(case_id), "case_duplicate", source_path).await?;
        tx.commit().await.map_err(query(ACTION))
    }

    /// Moves cases forward in the ledger, in one transaction (never backwards: a late update is
    /// ignored).
    pub async fn mark_all(&self, updates: &[(String, LedgerState)]) -> Result<(), StoreError> {
        const ACTION: &str = "updating the ledger";
        let mut tx = self.begin(ACTION).await?;
        for (case_id, state) in updates {
            sqlx::query("UPDATE cases SET state = $2, state_rank = $3 WHERE case_id = $1 AND state_rank < $3")
                .bind(case_id)
                .bind(state.as_str())
                .bind(state.rank())
                .execute(&mut *tx)
                .await
                .map_err(query(ACTION))?;
        }
        tx.commit().await.map_err(query(ACTION))
    }

    /// Runs `attempt` until it succeeds, fails for a non-transient reason, or `give_up` is
    /// cancelled; waits with exponential backoff (capped at 5 s) while the database is away.
    pub async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        give_up: &tokio_util::sync::CancellationToken,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = std::time::Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let result = attempt().await;
            crate::telemetry::StoreAnswered { up: !result.as_ref().is_err_and(StoreError::is_transient) }.emit();
            match result {
                Err(e) if e.is_transient() && !give_up.is_cancelled() => {
                    failures += 1;
                    crate::telemetry::StoreRetried { what, attempt: failures, error: &e }.emit();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = give_up.cancelled() => {}
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// Records a case's outcome once; returns false if it was already recorded.
    pub async fn record(&self, record: &CaseRecord) -> Result<bool, StoreError> {
        const ACTION: &str = "recording a result";
        let mut tx = self.begin(ACTION).await?;
        sqlx::query(
            "UPDATE cases SET kind = $2, width = $3, height = $4, state = $5, state_rank = $6 WHERE case_id = $1",
        )
        .bind(&record.case_id)
        .bind(&record.kind)
        .bind(record.width)
        .bind(record.height)
        .bind(LedgerState::Recorded.as_str())
        .bind(LedgerState::Recorded.rank())
        .execute(&mut *tx)
        .await
        .map_err(query(ACTION))?;
        // Not a cached prepared statement: sqlx 0.9.0's Any driver binds a NULL f64 as float4, so a
        // statement first prepared for a failed case (no metrics) refuses the f64 of a later success
        // on PostgreSQL ("incorrect binary data format in bind parameter 17").
        let inserted = records::insert_result(record)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(query(ACTION))?
            .rows_affected()
            == 1;
        if inserted && let Some(dicom) = &record.dicom {
            // Same reason: the pixel spacing is an optional f64.
            let insert = records::insert_dicom(&record.case_id, dicom).persistent(false);
            insert.execute(&mut *tx).await.map_err(query(ACTION))?;
        }
        if inserted && let Some(series) = &record.series {
            insert_series(&mut tx, &record.case_id, series).await?;
        }
        if inserted {
            sends::enqueue(&mut tx, &record.case_id, &record.sends).await?;
        }
        if inserted {
            let action = if record.status == "succeeded" { "case_succeeded" } else { "case_failed" };
            let detail = match (&record.error_stage, &record.error_message) {
                (Some(stage), Some(message)) => format!("{stage}: {message}"),
                _ => record.status.clone(),
            };
            self.audit(&mut tx, Some(&record.run_id), Some(&record.case_id), action, &detail).await?;
        }
        tx.commit().await.map_err(query(ACTION))?;
        Ok(inserted)
    }

    async fn begin(&self, action: &'static str) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.pool.begin().await.map_err(query(action))
    }

    async fn audit(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        run_id: Option<&str>,
        case_id: Option<&str>,
        action: &'static str,
        detail: &str,
    ) -> Result<(), StoreError> {
        tx.execute(
            sqlx::query("INSERT INTO audit_log (actor, run_id, case_id, action, detail) VALUES ($1, $2, $3, $4, $5)")
                .bind(&self.actor)
                .bind(run_id)
                .bind(case_id)
                .bind(action)
                .bind(detail),
        )
        .await
        .map_err(query("writing the audit log"))?;
        Ok(())
    }

    /// Runs a health query (for `efen doctor`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(query("checking the connection"))
    }

    /// The cases already recorded for a series by a pipeline and model: (case id, slices).
    pub async fn series_cases(
        &self,
        series_instance_uid: &str,
        pipeline: &str,
        model_sha256: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT d.case_id, CAST(d.frames AS BIGINT) FROM dicom_series d JOIN cases c ON c.case_id = d.case_id
             WHERE d.series_instance_uid = $1 AND c.pipeline = $2 AND c.model_sha256 = $3",
        )
        .bind(series_instance_uid)
        .bind(pipeline)
        .bind(model_sha256)
        .fetch_all(&self.pool)
        .await
        .map_err(query("looking up a series"))
    }
}

/// A series case's `dicom_series` row, then its `series_slices` rows in chunks of
/// [`records::SLICES_PER_INSERT`], in the result's transaction: a series is recorded whole or not
/// at all. Each INSERT skips rows already there (ON CONFLICT DO NOTHING, as for `dicom_cases`), so a
/// case recorded again writes nothing and needs no DELETE, which the service role does not have.
async fn insert_series(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    case_id: &str,
    series: &SeriesRecord,
) -> Result<(), StoreError> {
    const ACTION: &str = "recording a series";
    // Not cached either: the spacings, positions and pixel counts are optional numbers (see record).
    records::insert_series(case_id, series).persistent(false).execute(&mut **tx).await.map_err(query(ACTION))?;
    for chunk in series.slices.chunks(records::SLICES_PER_INSERT) {
        records::insert_slices(case_id, chunk).persistent(false).execute(&mut **tx).await.map_err(query(ACTION))?;
    }
    Ok(())
}

/// SQLite in write-ahead-log mode with `synchronous = NORMAL`: a commit appends to `efen.db-wal`
/// and is fsynced only at checkpoints, where the default rollback journal creates, fsyncs (4
/// times) and deletes `efen.db-journal` on every commit, a new inode each time. A commit still
/// survives a crash of efen (kill -9); a power loss can roll back the last commits but never
/// corrupts the file. Sites that need every commit on disk before the next case use PostgreSQL.
async fn sqlite_wal(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
    Ok(())
}

fn query(action: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { action, source }
}

/// `sqlite://path` creates the file as users expect: sqlx opens an existing file only unless the
/// URL says `mode=rwc`, so that is added when the URL names no mode of its own.
fn creating_sqlite_file(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// SQLite creates the file (`mode=rwc`) but not its folder.
fn create_sqlite_parent(url: &str) -> Result<(), StoreError> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match PathBuf::from(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.into(), source }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_the_store_module() {
        assert_eq!(redact_url("postgres://efen:s3cret@db:5432/efen"), "postgres://efen:***@db:5432/efen");
        assert_eq!(redact_url("postgres://efen@db/efen"), "postgres://efen@db/efen");
        assert_eq!(redact_url("sqlite://state/efen.db"), "sqlite://state/efen.db");
    }

    #[tokio::test]
    async fn a_plain_sqlite_url_creates_the_file_and_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/efen.db");
        let store = Store::open(&format!("sqlite://{}", path.display()), 1).await.unwrap();
        store.ping().await.unwrap();
        store.close().await;
        assert!(path.is_file());
        assert_eq!(creating_sqlite_file("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
        assert_eq!(creating_sqlite_file("sqlite://a.db?cache=shared"), "sqlite://a.db?cache=shared&mode=rwc");
    }

    #[tokio::test]
    async fn sqlite_commits_go_to_a_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("efen.db").display()), 2).await.unwrap();
        // both connections of the pool, held at once so they are two
        let mut first = store.pool().acquire().await.unwrap();
        let mut second = store.pool().acquire().await.unwrap();
        for conn in [&mut first, &mut second] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **conn).await.unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 1), "journal mode and synchronous (1 = NORMAL)");
        }
        assert!(dir.path().join("efen.db-wal").exists());
        drop((first, second));
        store.close().await;
    }
}
