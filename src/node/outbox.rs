//! The outbox: the SEG of every succeeded case that came in over DICOM goes to each destination.
//! The `sends` table is the state: a row is `pending` until the peer accepts (`accepted`, with its
//! status code) or the attempts run out (`failed`); failed and pending rows are retried when efen
//! starts again. Every final status also goes to the audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

use super::dimse::status::is_stored;
use super::send::{self, Destination};

/// The node's access to the store (the tables of `migrations/*/0005_dicom_node.sql`).
#[derive(Clone)]
pub struct NodeStore {
    pool: AnyPool,
    actor: String,
}

impl NodeStore {
    /// The node's view of the engine's store (already migrated): the same connection pool.
    pub fn new(store: &crate::store::Store) -> NodeStore {
        NodeStore { pool: store.pool().clone(), actor: format!("{} (dicom node)", store.actor()) }
    }

    pub async fn audit(&self, case_id: Option<&str>, action: &str, detail: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO audit_log (actor, run_id, case_id, action, detail) VALUES ($1, NULL, $2, $3, $4)")
            .bind(&self.actor)
            .bind(case_id)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Queues `object` of the received cases that have no row for it at `destination` yet;
    /// returns how many.
    async fn enqueue(&self, drop_prefix: &str, destination: &str, object: &str) -> Result<u64, sqlx::Error> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT c.case_id, COALESCE(r.mask_path, r.result_path) FROM results r JOIN cases c ON c.case_id = r.case_id
             WHERE r.status = 'succeeded' AND c.source_path LIKE $1
               AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.case_id = r.case_id AND s.destination = $2 AND s.object = $3)",
        )
        .bind(format!("{drop_prefix}%"))
        .bind(destination)
        .bind(object)
        .fetch_all(&self.pool)
        .await?;
        let mut queued = 0;
        for (case_id, output) in rows {
            // An empty mask writes no SEG (dicom.seg.write_empty = false): nothing to send.
            let dir = output.as_deref().map(case_dir);
            let (status, note) = match dir {
                Some(dir) if dir.join("seg.dcm").is_file() => ("pending", None),
                _ => ("skipped", Some("no seg.dcm for this case (empty mask or no DICOM source)")),
            };
            sqlx::query(
                "INSERT INTO sends (case_id, destination, object, status, last_error) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (case_id, destination, object) DO NOTHING",
            )
            .bind(&case_id)
            .bind(destination)
            .bind(object)
            .bind(status)
            .bind(note)
            .execute(&self.pool)
            .await?;
            queued += u64::from(status == "pending");
        }
        Ok(queued)
    }

    /// (case id, object, case folder) of the pending sends to `destination`.
    async fn pending(&self, destination: &str) -> Result<Vec<(String, String, PathBuf)>, sqlx::Error> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT s.case_id, s.object, COALESCE(r.mask_path, r.result_path) FROM sends s
             JOIN results r ON r.case_id = s.case_id
             WHERE s.destination = $1 AND s.status = 'pending' ORDER BY s.id",
        )
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|(case, object, output)| Some((case, object, case_dir(&output?)))).collect())
    }

    /// Failed sends get another round of attempts after a restart.
    async fn requeue_failed(&self) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query("UPDATE sends SET status = 'pending', updated_at = CURRENT_TIMESTAMP WHERE status = 'failed'")
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        case_id: &str,
        destination: &str,
        object: &str,
        status: &str,
        sop_instance_uid: Option<&str>,
        peer_status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sends SET status = $3, sop_instance_uid = COALESCE($4, sop_instance_uid), peer_status = $5,
                 last_error = $6, attempts = attempts + 1, updated_at = CURRENT_TIMESTAMP
             WHERE case_id = $1 AND destination = $2 AND object = $7",
        )
        .bind(case_id)
        .bind(destination)
        .bind(status)
        .bind(sop_instance_uid)
        .bind(peer_status.map(i64::from))
        .bind(error)
        .bind(object)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }
}

/// The case's output folder: where the mask (or result.json) is, and seg.dcm beside it.
fn case_dir(output: &str) -> PathBuf {
    Path::new(output).parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// How the outbox sends.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub calling_ae: String,
    pub destinations: Vec<Destination>,
    /// `seg`, and `overlay` (a Secondary Capture) when `node.send_overlay` is set.
    pub objects: Vec<&'static str>,
    /// `<drop>/dicom-node/`: cases whose source lies below it came in over DICOM.
    pub drop_prefix: String,
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    pub poll: Duration,
}

/// Retry bookkeeping of this process: attempts made and when the next one is due.
struct Backoff {
    attempts: u32,
    due: Instant,
}

pub async fn run(store: NodeStore, settings: OutboxSettings, shutdown: CancellationToken) {
    match store.requeue_failed().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("retrying {n} sends that had failed before the last stop"),
        Err(e) => tracing::warn!("cannot requeue failed sends: {e}"),
    }
    let mut backoff: HashMap<(String, String, String), Backoff> = HashMap::new();
    loop {
        for destination in &settings.destinations {
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = send_round(&store, &settings, destination, &mut backoff, &shutdown).await {
                tracing::warn!(destination = %destination, "outbox round failed, retrying: {e}");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
}

async fn send_round(
    store: &NodeStore,
    settings: &OutboxSettings,
    destination: &Destination,
    backoff: &mut HashMap<(String, String, String), Backoff>,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let name = destination.to_string();
    for object in &settings.objects {
        store.enqueue(&settings.drop_prefix, &name, object).await?;
    }
    for (case_id, object, dir) in store.pending(&name).await? {
        if shutdown.is_cancelled() {
            break;
        }
        let key = (case_id.clone(), name.clone(), object.clone());
        if backoff.get(&key).is_some_and(|b| b.due > Instant::now()) {
            continue;
        }
        let started = Instant::now();
        let file = if object == "overlay" {
            tokio::task::spawn_blocking(move || super::overlay::overlay_dicom(&dir))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        } else {
            Ok(dir.join("seg.dcm"))
        };
        let outcome = match file {
            Ok(file) => send::store(&file, &settings.calling_ae, destination, settings.timeout).await,
            Err(reason) => Err(send::SendError::File { path: PathBuf::from(&object), reason }),
        };
        let attempts = backoff.get(&key).map_or(0, |b| b.attempts) + 1;
        let (uid, peer, error) = match &outcome {
            Ok(sent) if is_stored(sent.status) => {
                store
                    .update(&case_id, &name, &object, "accepted", Some(&sent.sop_instance_uid), Some(sent.status), None)
                    .await?;
                let detail = format!("{object} {} to {name}: status {:04X}", sent.sop_instance_uid, sent.status);
                store.audit(Some(&case_id), "send_accepted", &detail).await?;
                tracing::info!(case = %case_id, destination = %name, ms = started.elapsed().as_millis() as u64, "{object} sent");
                backoff.remove(&key);
                continue;
            }
            Ok(sent) => (
                Some(sent.sop_instance_uid.clone()),
                Some(sent.status),
                format!(
                    "peer status {:04X}{}",
                    sent.status,
                    sent.error_comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
                ),
            ),
            Err(e) => (None, None, e.to_string()),
        };
        if attempts >= settings.attempts {
            store.update(&case_id, &name, &object, "failed", uid.as_deref(), peer, Some(&error)).await?;
            store
                .audit(Some(&case_id), "send_failed", &format!("{object} to {name} after {attempts} attempts: {error}"))
                .await?;
            tracing::error!(case = %case_id, destination = %name, "send failed for good (retried after a restart): {error}");
            backoff.remove(&key);
        } else {
            store.update(&case_id, &name, &object, "pending", uid.as_deref(), peer, Some(&error)).await?;
            let delay = settings.backoff * 2u32.saturating_pow(attempts - 1).min(64);
            tracing::warn!(case = %case_id, destination = %name, attempt = attempts, "send failed, retrying in {delay:?}: {error}");
            backoff.insert(key, Backoff { attempts, due: Instant::now() + delay });
        }
    }
    Ok(())
}
