//! The events, one struct each, in the order a case meets them. `emit()` bumps the event's metric
//! and writes its log line where it has one: the two are one call, so they never drift.

use std::fmt::Display;

use super::{
    ASSOCIATIONS, BATCH_SIZE, BUILD_INFO, CASE_LATENCY, CASES, INBOX_QUEUED, INSTANCES, QUEUE_DEPTH, SENDS,
    STAGE_DURATION, START_TIME, STORE_RETRIES, STORE_UP, UNAUTHORIZED, UPLOADS,
};

/// The process started serving: its start time and what it runs.
pub struct ServiceStarted<'a> {
    pub pipeline: &'a str,
    pub model_sha256: &'a str,
}

impl ServiceStarted<'_> {
    pub fn emit(self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        ::metrics::gauge!(START_TIME).set(now.as_secs_f64());
        ::metrics::gauge!(
            BUILD_INFO,
            "version" => env!("CARGO_PKG_VERSION"),
            "pipeline" => self.pipeline.to_string(),
            "model_sha256" => self.model_sha256.to_string()
        )
        .set(1.0);
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    Succeeded,
    /// In `stage` (`decode`, `infer`, `record`, …), with the stage error's type.
    Failed {
        stage: &'static str,
        error_type: &'static str,
    },
    Duplicate,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Succeeded => "succeeded",
            CaseStatus::Failed { .. } => "failed",
            CaseStatus::Duplicate => "duplicate",
        }
    }
}

/// A case ended: its status (with the failing stage and error type), latency and stage times.
/// Its log line is the face's (one per case, drawn by the command that runs it).
pub struct CaseEnded {
    pub status: CaseStatus,
    pub latency_ms: f64,
    /// Milliseconds per stage (`decode`, `preprocess`, …); a stage the case never reached is 0.
    pub stage_ms: Vec<(&'static str, f64)>,
}

impl CaseEnded {
    pub fn emit(self) {
        let status = self.status.as_str();
        match self.status {
            CaseStatus::Failed { stage, error_type } => {
                ::metrics::counter!(CASES, "status" => status, "stage" => stage, "error_type" => error_type)
                    .increment(1)
            }
            _ => ::metrics::counter!(CASES, "status" => status).increment(1),
        }
        if self.status == CaseStatus::Duplicate {
            return;
        }
        ::metrics::histogram!(CASE_LATENCY, "status" => status).record(self.latency_ms / 1e3);
        // A stage the case never reached (it failed earlier) took no time and is not a sample.
        for (stage, ms) in self.stage_ms.into_iter().filter(|(_, ms)| *ms > 0.0) {
            ::metrics::histogram!(STAGE_DURATION, "stage" => stage).record(ms / 1e3);
        }
    }
}

/// Items left waiting in a queue between stages when its stage took one (`prepare`, `infer`,
/// `postprocess`, `record`): a queue that stays full names the stage that holds the pipeline back.
pub struct QueueDepth {
    pub queue: &'static str,
    pub waiting: usize,
}

impl QueueDepth {
    pub fn emit(self) {
        ::metrics::gauge!(QUEUE_DEPTH, "queue" => self.queue).set(self.waiting as f64);
    }
}

/// An inference call was formed with `tiles` tiles.
pub struct BatchFormed {
    pub tiles: usize,
}

impl BatchFormed {
    pub fn emit(self) {
        ::metrics::histogram!(BATCH_SIZE).record(self.tiles as f64);
    }
}

/// The store answered (`up`), or failed for want of a connection.
pub struct StoreAnswered {
    pub up: bool,
}

impl StoreAnswered {
    pub fn emit(self) {
        ::metrics::gauge!(STORE_UP).set(if self.up { 1.0 } else { 0.0 });
    }
}

/// A store operation is retried because the database is unavailable. Logged at the first attempt
/// and at every power of two, so an outage of hours writes a few dozen lines, not thousands.
pub struct StoreRetried<'a> {
    /// What was being done ("recording a result").
    pub what: &'a str,
    /// 1 for the first retry of this operation.
    pub attempt: u32,
    pub error: &'a dyn Display,
}

impl StoreRetried<'_> {
    pub fn emit(self) {
        ::metrics::counter!(STORE_RETRIES).increment(1);
        if self.attempt == 1 || self.attempt.is_power_of_two() {
            tracing::warn!(
                "store unavailable while {} (attempt {}), retrying: {}",
                self.what,
                self.attempt,
                self.error
            );
        }
    }
}

/// The Storage SCP established an association.
pub struct AssociationAccepted<'a> {
    pub calling_ae: &'a str,
    pub contexts: usize,
}

impl AssociationAccepted<'_> {
    pub fn emit(self) {
        ::metrics::counter!(ASSOCIATIONS).increment(1);
        tracing::debug!(calling_ae = %self.calling_ae, contexts = self.contexts, "association accepted");
    }
}

/// An instance arrived by C-STORE or STOW-RS and was stored durably, or refused with `status`.
pub struct InstanceReceived<'a> {
    /// The calling AE title (C-STORE) or the client (STOW-RS).
    pub from: &'a str,
    /// None when stored; the DICOM status and why when refused.
    pub refused: Option<(u16, &'a dyn Display)>,
}

impl InstanceReceived<'_> {
    pub fn emit(self) {
        let result = if self.refused.is_some() { "refused" } else { "stored" };
        ::metrics::counter!(INSTANCES, "result" => result).increment(1);
        if let Some((status, why)) = self.refused {
            tracing::warn!(from = %self.from, status = %format!("{status:04X}"), "instance refused: {why}");
        }
    }
}

/// The outbox recorded a send attempt, leaving the send `state` (accepted, pending, failed).
pub struct SendRecorded {
    pub state: &'static str,
}

impl SendRecorded {
    pub fn emit(self) {
        ::metrics::counter!(SENDS, "state" => self.state).increment(1);
    }
}

/// How `POST /v1/cases` answered an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Written into the drop folder (202).
    Accepted,
    /// No bytes (400).
    Empty,
    /// Over `engine.max_file_mb` (413).
    TooLarge,
    /// A `?name=` the watcher would never take as an input (400).
    BadName,
    /// `http.max_queued_uploads` uploads wait for the watcher already (503).
    Busy,
    /// The model is still loading (503).
    Unavailable,
    /// The body broke off, or the file could not be written (400, 500).
    Error,
}

impl Upload {
    pub fn as_str(self) -> &'static str {
        match self {
            Upload::Accepted => "accepted",
            Upload::Empty => "empty",
            Upload::TooLarge => "too_large",
            Upload::BadName => "bad_name",
            Upload::Busy => "busy",
            Upload::Unavailable => "unavailable",
            Upload::Error => "error",
        }
    }
}

/// `POST /v1/cases` answered an upload.
pub struct UploadAnswered {
    pub result: Upload,
}

impl UploadAnswered {
    pub fn emit(self) {
        ::metrics::counter!(UPLOADS, "result" => self.result.as_str()).increment(1);
    }
}

/// A request was refused for want of the bearer token (`reason`: `missing`, `wrong`).
pub struct RequestUnauthorized<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub reason: &'static str,
}

impl RequestUnauthorized<'_> {
    pub fn emit(self) {
        ::metrics::counter!(UNAUTHORIZED, "reason" => self.reason).increment(1);
        tracing::warn!(
            client = %self.client,
            method = %self.method,
            path = %self.path,
            reason = self.reason,
            "HTTP request refused: no valid bearer token"
        );
    }
}

/// Uploads waiting in the HTTP inbox, counted at a scrape.
pub struct InboxQueued {
    pub files: usize,
}

impl InboxQueued {
    pub fn emit(self) {
        ::metrics::gauge!(INBOX_QUEUED).set(self.files as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_case_is_counted_by_stage_and_error_type_and_its_stage_times() {
        let handle = super::super::install().unwrap();
        CaseEnded {
            status: CaseStatus::Failed { stage: "decode", error_type: "unsupported_transfer_syntax" },
            latency_ms: 12.0,
            stage_ms: vec![("decode", 3.0), ("infer", 0.0)],
        }
        .emit();
        let text = handle.render();
        let failed =
            "efen_cases_total{status=\"failed\",stage=\"decode\",error_type=\"unsupported_transfer_syntax\"} 1";
        assert!(text.contains(failed), "{text}");
        assert!(!text.contains("efen_cases_total{status=\"failed\"}"), "no stage-less failed series: {text}");
        assert!(text.contains("efen_cases_total{status=\"succeeded\"} 0"), "{text}");
        assert!(text.contains("efen_stage_duration_seconds_count{stage=\"decode\"} 1"), "{text}");
        let infer = "efen_stage_duration_seconds_count{stage=\"infer\"}";
        assert!(!text.contains(infer), "a stage the case never reached is no sample: {text}");
        assert!(text.contains("efen_case_latency_seconds_bucket{status=\"failed\",le=\"0.025\"} 1"), "{text}");
    }
}
