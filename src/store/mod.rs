//! Store: the SQL audit trail and reporting database, PostgreSQL or SQLite through sqlx's Any
//! driver with one set of `$n` statements. Only ingest (claims, dedupe) and record use it.
//!
//! Timestamps are filled in by the database (`DEFAULT now()`), never bound, so the same SQL works
//! on both backends.

mod records;

use std::path::PathBuf;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use records::{CaseRecord, NewCase, NewRun};

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store {url}: {source} (check database.url / DATABASE_URL; `efen doctor` tests it)"
    )]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create the folder {} for the SQLite store: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot migrate the store {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("store query failed while {action}: {source}")]
    Query {
        action: &'static str,
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Connection-level failures that are worth retrying (the server is away, not the query wrong).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Query {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
                ..
            } | StoreError::Connect { .. }
        )
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
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            create_sqlite_parent(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        let migrator = match backend {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: redact_url(url),
                source,
            })?;
        let actor = format!(
            "efen {} on {}, pid {}",
            env!("CARGO_PKG_VERSION"),
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        );
        Ok(Store {
            pool,
            backend,
            actor,
        })
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
        self.audit(
            &mut tx,
            Some(&run.run_id),
            None,
            "run_started",
            &run.command,
        )
        .await?;
        tx.commit().await.map_err(query("starting a run"))
    }

    pub async fn finish_run(&self, run_id: &str, summary: &str) -> Result<(), StoreError> {
        let mut tx = self.begin("finishing a run").await?;
        sqlx::query("UPDATE runs SET ended_at = CURRENT_TIMESTAMP WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query("finishing a run"))?;
        self.audit(&mut tx, Some(run_id), None, "run_finished", summary)
            .await?;
        tx.commit().await.map_err(query("finishing a run"))
    }

    /// The earlier outcome for these bytes under this pipeline and model, if there is one.
    pub async fn find_recorded(&self, case_id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_as::<_, (String,)>("SELECT status FROM results WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(|(status,)| status))
            .map_err(query("looking up an earlier result"))
    }

    /// Registers a case as taken by `run_id` (again, if an earlier run died before recording it).
    pub async fn claim_case(&self, case: &NewCase) -> Result<(), StoreError> {
        let mut tx = self.begin("claiming a case").await?;
        sqlx::query(
            "INSERT INTO cases (case_id, run_id, pipeline, model_sha256, source_path, source_sha256, size_bytes, ground_truth_path)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (case_id) DO UPDATE SET run_id = excluded.run_id, source_path = excluded.source_path,
                 ground_truth_path = excluded.ground_truth_path",
        )
        .bind(&case.case_id)
        .bind(&case.run_id)
        .bind(&case.pipeline)
        .bind(&case.model_sha256)
        .bind(&case.source_path)
        .bind(&case.source_sha256)
        .bind(case.size_bytes)
        .bind(&case.ground_truth_path)
        .execute(&mut *tx)
        .await
        .map_err(query("claiming a case"))?;
        self.audit(
            &mut tx,
            Some(&case.run_id),
            Some(&case.case_id),
            "case_claimed",
            &case.source_path,
        )
        .await?;
        tx.commit().await.map_err(query("claiming a case"))
    }

    /// Records a case's outcome once; returns false if it was already recorded.
    pub async fn record(&self, record: &CaseRecord) -> Result<bool, StoreError> {
        const ACTION: &str = "recording a result";
        let mut tx = self.begin(ACTION).await?;
        sqlx::query("UPDATE cases SET kind = $2, width = $3, height = $4 WHERE case_id = $1")
            .bind(&record.case_id)
            .bind(&record.kind)
            .bind(record.width)
            .bind(record.height)
            .execute(&mut *tx)
            .await
            .map_err(query(ACTION))?;
        let inserted = records::insert_result(record)
            .execute(&mut *tx)
            .await
            .map_err(query(ACTION))?
            .rows_affected()
            == 1;
        if inserted {
            let action = if record.status == "succeeded" {
                "case_succeeded"
            } else {
                "case_failed"
            };
            let detail = match (&record.error_stage, &record.error_message) {
                (Some(stage), Some(message)) => format!("{stage}: {message}"),
                _ => record.status.clone(),
            };
            self.audit(
                &mut tx,
                Some(&record.run_id),
                Some(&record.case_id),
                action,
                &detail,
            )
            .await?;
        }
        tx.commit().await.map_err(query(ACTION))?;
        Ok(inserted)
    }

    async fn begin(
        &self,
        action: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
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
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(query("checking the connection"))
    }
}

fn query(action: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { action, source }
}

/// SQLite creates the file (`mode=rwc`) but not its folder.
fn create_sqlite_parent(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match PathBuf::from(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.into(),
            source,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_the_store_module() {
        assert_eq!(
            redact_url("postgres://efen:s3cret@db:5432/efen"),
            "postgres://efen:***@db:5432/efen"
        );
        assert_eq!(
            redact_url("postgres://efen@db/efen"),
            "postgres://efen@db/efen"
        );
        assert_eq!(
            redact_url("sqlite://state/efen.db"),
            "sqlite://state/efen.db"
        );
    }
}
