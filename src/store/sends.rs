//! The send queue (`sends`): one row per result object (`seg`, `overlay`) per destination, from
//! `pending` to `accepted` or `failed`. The record stage enqueues a case's sends in the same
//! transaction as its result; the DICOM node's outbox takes the pending ones from here and reports
//! each attempt back. Every final status also goes to the audit log, in the same transaction.

use std::path::PathBuf;

use super::{Store, StoreError, query};

/// A send to queue with a case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSend {
    pub destination: String,
    pub object: String,
    /// `pending`, or `skipped` when there is nothing to send (no SEG for an empty mask).
    pub status: &'static str,
    pub note: Option<String>,
}

/// A send waiting for its next attempt, with the case's files.
#[derive(Debug, Clone)]
pub struct PendingSend {
    pub case_id: String,
    pub object: String,
    pub seg_path: Option<PathBuf>,
    pub overlay_path: Option<PathBuf>,
}

/// The end of one attempt.
#[derive(Debug, Clone)]
pub struct SendAttempt<'a> {
    pub case_id: &'a str,
    pub destination: &'a str,
    pub object: &'a str,
    pub status: SendStatus,
    pub sop_instance_uid: Option<&'a str>,
    /// The peer's status code, when it answered.
    pub peer_status: Option<u16>,
    pub error: Option<&'a str>,
    /// What the audit log says of a final status.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Not yet: another attempt follows.
    Pending,
    Accepted,
    /// Out of attempts (retried after a restart).
    Failed,
}

impl SendStatus {
    fn as_str(self) -> &'static str {
        match self {
            SendStatus::Pending => "pending",
            SendStatus::Accepted => "accepted",
            SendStatus::Failed => "failed",
        }
    }
}

impl Store {
    /// The pending sends to `destination`, oldest first.
    pub async fn pending_sends(&self, destination: &str) -> Result<Vec<PendingSend>, StoreError> {
        let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.case_id, s.object, r.seg_path, r.overlay_path FROM sends s
             JOIN results r ON r.case_id = s.case_id
             WHERE s.destination = $1 AND s.status = 'pending' ORDER BY s.id",
        )
        .bind(destination)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading the send queue"))?;
        Ok(rows
            .into_iter()
            .map(|(case_id, object, seg, overlay)| PendingSend {
                case_id,
                object,
                seg_path: seg.map(PathBuf::from),
                overlay_path: overlay.map(PathBuf::from),
            })
            .collect())
    }

    /// Failed sends get another round of attempts (after a restart); returns how many.
    pub async fn requeue_failed_sends(&self) -> Result<u64, StoreError> {
        let done =
            sqlx::query("UPDATE sends SET status = 'pending', updated_at = CURRENT_TIMESTAMP WHERE status = 'failed'")
                .execute(&self.pool)
                .await
                .map_err(query("requeueing failed sends"))?;
        Ok(done.rows_affected())
    }

    /// Records one attempt; a final status (accepted, failed) goes to the audit log with it.
    pub async fn record_send(&self, attempt: &SendAttempt<'_>) -> Result<(), StoreError> {
        const ACTION: &str = "recording a send";
        let mut tx = self.begin(ACTION).await?;
        sqlx::query(
            "UPDATE sends SET status = $3, sop_instance_uid = COALESCE($4, sop_instance_uid), peer_status = $5,
                 last_error = $6, attempts = attempts + 1, updated_at = CURRENT_TIMESTAMP
             WHERE case_id = $1 AND destination = $2 AND object = $7",
        )
        .bind(attempt.case_id)
        .bind(attempt.destination)
        .bind(attempt.status.as_str())
        .bind(attempt.sop_instance_uid)
        .bind(attempt.peer_status.map(i64::from))
        .bind(attempt.error)
        .bind(attempt.object)
        .execute(&mut *tx)
        .await
        .map_err(query(ACTION))?;
        let action = match attempt.status {
            SendStatus::Pending => None,
            SendStatus::Accepted => Some("send_accepted"),
            SendStatus::Failed => Some("send_failed"),
        };
        if let Some(action) = action {
            self.audit(&mut tx, None, Some(attempt.case_id), action, &attempt.detail).await?;
        }
        tx.commit().await.map_err(query(ACTION))?;
        crate::telemetry::SendRecorded { state: attempt.status.as_str() }.emit();
        Ok(())
    }

    /// An event with no run behind it (the DICOM node's series), for the audit log.
    pub async fn audit_event(
        &self,
        case_id: Option<&str>,
        action: &'static str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin("writing the audit log").await?;
        self.audit(&mut tx, None, case_id, action, detail).await?;
        tx.commit().await.map_err(query("writing the audit log"))
    }
}

/// Inserts a case's sends inside the transaction that records its result.
pub(super) async fn enqueue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    case_id: &str,
    sends: &[NewSend],
) -> Result<(), StoreError> {
    for send in sends {
        sqlx::query(
            "INSERT INTO sends (case_id, destination, object, status, last_error) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (case_id, destination, object) DO NOTHING",
        )
        .bind(case_id)
        .bind(&send.destination)
        .bind(&send.object)
        .bind(send.status)
        .bind(&send.note)
        .execute(&mut **tx)
        .await
        .map_err(query("queueing a send"))?;
    }
    Ok(())
}
