//! The outbox: the SEG (and its measurement report, `sr.dcm`) of every succeeded case that came in
//! over DICOM (C-STORE or STOW-RS) goes to each destination, by C-STORE or by STOW-RS.
//! The record stage queued those sends with the case's result; the store's send queue is the
//! state: a send is `pending` until the peer accepts (`accepted`, with its status code) or the
//! attempts run out (`failed`); failed and pending sends are retried when efen starts again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::dimse::status::is_stored;
use super::send::{self, Destination};
use crate::store::{PendingSend, SendAttempt, SendStatus, Store, StoreError};

/// How the outbox sends.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub calling_ae: String,
    pub destinations: Vec<Destination>,
    /// The HTTP client of STOW-RS destinations (one connection pool for all).
    pub http: reqwest::Client,
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    /// The fallback: how often the outbox looks for pending sends when nobody said there are.
    pub poll: Duration,
    /// Notified by the record stage when it has queued sends.
    pub queued: std::sync::Arc<tokio::sync::Notify>,
}

/// Retry bookkeeping of this process: attempts made and when the next one is due.
struct Backoff {
    attempts: u32,
    due: Instant,
}

pub async fn run(store: Store, settings: OutboxSettings, shutdown: CancellationToken) {
    match store.requeue_failed_sends().await {
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
            _ = settings.queued.notified() => {}
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
}

async fn send_round(
    store: &Store,
    settings: &OutboxSettings,
    destination: &Destination,
    backoff: &mut HashMap<(String, String, String), Backoff>,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let name = destination.to_string();
    for pending in store.pending_sends(&name).await? {
        if shutdown.is_cancelled() {
            break;
        }
        let PendingSend { case_id, object, seg_path, overlay_path } = pending;
        let key = (case_id.clone(), name.clone(), object.clone());
        if backoff.get(&key).is_some_and(|b| b.due > Instant::now()) {
            continue;
        }
        let started = Instant::now();
        let file = match (object.as_str(), seg_path) {
            ("overlay", Some(seg)) => {
                let overlay = overlay_path.unwrap_or_else(|| seg.with_file_name("overlay.png"));
                tokio::task::spawn_blocking(move || super::overlay::overlay_dicom(&seg, &overlay))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
            // The measurement report lies beside its SEG (the store keeps the SEG's path).
            ("sr", Some(seg)) => Ok(seg.with_file_name("sr.dcm")),
            (_, Some(seg)) => Ok(seg),
            (_, None) => Err("the case has no seg.dcm".to_string()),
        };
        let outcome = match file {
            Ok(file) => send::send(&file, &settings.calling_ae, destination, &settings.http, settings.timeout).await,
            Err(reason) => Err(send::SendError::File { path: PathBuf::from(&object), reason }),
        };
        let attempts = backoff.get(&key).map_or(0, |b| b.attempts) + 1;
        let mut attempt = SendAttempt {
            case_id: &case_id,
            destination: &name,
            object: &object,
            status: SendStatus::Pending,
            sop_instance_uid: None,
            peer_status: None,
            error: None,
            detail: String::new(),
        };
        let error = match &outcome {
            Ok(sent) if is_stored(sent.status) => {
                attempt.status = SendStatus::Accepted;
                attempt.sop_instance_uid = Some(&sent.sop_instance_uid);
                attempt.peer_status = Some(sent.status);
                attempt.detail = format!("{object} {} to {name}: status {:04X}", sent.sop_instance_uid, sent.status);
                store.record_send(&attempt).await?;
                tracing::info!(case = %case_id, destination = %name, ms = started.elapsed().as_millis() as u64, "{object} sent");
                backoff.remove(&key);
                continue;
            }
            Ok(sent) => {
                attempt.sop_instance_uid = Some(&sent.sop_instance_uid);
                attempt.peer_status = Some(sent.status);
                format!(
                    "peer status {:04X}{}",
                    sent.status,
                    sent.error_comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
                )
            }
            Err(e) => e.to_string(),
        };
        attempt.error = Some(&error);
        if attempts >= settings.attempts {
            attempt.status = SendStatus::Failed;
            attempt.detail = format!("{object} to {name} after {attempts} attempts: {error}");
            store.record_send(&attempt).await?;
            tracing::error!(case = %case_id, destination = %name, "send failed for good (retried after a restart): {error}");
            backoff.remove(&key);
        } else {
            store.record_send(&attempt).await?;
            let delay = settings.backoff * 2u32.saturating_pow(attempts - 1).min(64);
            tracing::warn!(case = %case_id, destination = %name, attempt = attempts, "send failed, retrying in {delay:?}: {error}");
            backoff.insert(key, Backoff { attempts, due: Instant::now() + delay });
        }
    }
    Ok(())
}
