//! Telemetry: the typed events the stages report as they happen (a case ended, a batch was formed,
//! the store went away, an instance arrived, a send was recorded), kept as Prometheus metrics by
//! the `metrics` facade and `metrics-exporter-prometheus`'s recorder. [`crate::http`] serves them
//! at `/metrics`; nothing parses logs.
//!
//! Only `efen watch` with `[http] listen` installs the recorder ([`install`]). Without one every
//! event below is a no-op, so `efen run` and `efen bench` pay nothing for them.
//!
//! Every metric name is here, once; docs/service.md lists them with their types and labels.
//! (The dependency is spelled `::metrics` because `crate::metrics` is the segmentation scores.)

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::pipeline::{CaseObserver, Row, Status};

pub const CASES: &str = "efen_cases_total";
pub const CASE_LATENCY: &str = "efen_case_latency_seconds";
pub const STAGE_DURATION: &str = "efen_stage_duration_seconds";
pub const BATCH_SIZE: &str = "efen_inference_batch_size";
pub const STORE_UP: &str = "efen_store_up";
pub const STORE_RETRIES: &str = "efen_store_retries_total";
pub const ASSOCIATIONS: &str = "efen_dicom_associations_total";
pub const INSTANCES: &str = "efen_dicom_instances_received_total";
pub const SENDS: &str = "efen_sends_total";
pub const START_TIME: &str = "efen_process_start_time_seconds";
pub const BUILD_INFO: &str = "efen_build_info";
pub const UPLOADS: &str = "efen_http_uploads_total";
pub const UNAUTHORIZED: &str = "efen_http_unauthorized_total";
pub const INBOX_QUEUED: &str = "efen_http_inbox_queued";
pub const QUEUE_DEPTH: &str = "efen_queue_depth";

/// Seconds, from a sub-millisecond stage of a small image to a case that waited minutes for the store.
const SECONDS_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Tiles per inference call: powers of two up to the largest sensible `engine.batch_size`.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and describes
/// every metric. The caller renders `/metrics` from the handle and runs its upkeep.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_BUCKETS)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    describe();
    // Series that exist from the start, so that rate() and absent() work before the first case.
    for status in ["succeeded", "failed", "duplicate"] {
        ::metrics::counter!(CASES, "status" => status).increment(0);
    }
    ::metrics::counter!(STORE_RETRIES).increment(0);
    ::metrics::counter!(UPLOADS, "result" => Upload::Accepted.as_str()).increment(0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CASES, "Cases ended, by status (succeeded, failed, duplicate) and, for failed ones, the stage");
    describe_histogram!(CASE_LATENCY, Unit::Seconds, "From admission to the end of the case, by status");
    describe_histogram!(STAGE_DURATION, Unit::Seconds, "Time a case spent in each stage");
    describe_histogram!(BATCH_SIZE, "Tiles per inference call");
    describe_gauge!(STORE_UP, "1 when the store answered its last query, 0 when it did not");
    describe_counter!(STORE_RETRIES, "Store operations retried because the database was unavailable");
    describe_counter!(ASSOCIATIONS, "DICOM associations established with the Storage SCP");
    describe_counter!(INSTANCES, "DICOM instances received by C-STORE or STOW-RS, by result (stored, refused)");
    describe_counter!(SENDS, "Send attempts recorded, by the state they left the send in (accepted, pending, failed)");
    describe_gauge!(START_TIME, Unit::Seconds, "When this process started, in seconds since the Unix epoch");
    describe_counter!(
        UPLOADS,
        "Files posted to /v1/cases, by result (accepted, empty, too_large, bad_name, busy, unavailable, error)"
    );
    describe_counter!(
        UNAUTHORIZED,
        "HTTP requests refused with 401 for want of the bearer token, by reason (missing, wrong)"
    );
    describe_gauge!(INBOX_QUEUED, "Uploads in the drop folder's http/ inbox waiting for the watcher to claim them");
    describe_gauge!(
        QUEUE_DEPTH,
        "Items waiting between stages, as last taken (queue: prepare = cases, infer = tiles, postprocess = tile outputs, record = ended cases); each holds at most engine.queue"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels name efen's version, the pipeline and the model's SHA-256");
}

/// The process started serving: its start time and what it runs.
pub fn started(pipeline: &str, model_sha256: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    ::metrics::gauge!(START_TIME).set(now.as_secs_f64());
    ::metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "pipeline" => pipeline.to_string(),
        "model_sha256" => model_sha256.to_string()
    )
    .set(1.0);
}

/// A case ended (the record stage's row): its status, failing stage, latency and stage times.
pub fn case_ended(row: &Row) {
    let status = match row.status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Duplicate => "duplicate",
    };
    match row.stage {
        Some(stage) if row.status == Status::Failed => {
            ::metrics::counter!(CASES, "status" => status, "stage" => stage).increment(1)
        }
        _ => ::metrics::counter!(CASES, "status" => status).increment(1),
    }
    if row.status == Status::Duplicate {
        return;
    }
    ::metrics::histogram!(CASE_LATENCY, "status" => status).record(row.latency_ms / 1e3);
    if let Some(t) = &row.timings {
        let stages = [
            ("decode", t.decode_ms),
            ("preprocess", t.preprocess_ms),
            ("infer", t.infer_ms),
            ("postprocess", t.postprocess_ms),
            ("evaluate", t.evaluate_ms),
            ("emit", t.emit_ms),
        ];
        // A stage the case never reached (it failed earlier) took no time and is not a sample.
        for (stage, ms) in stages.into_iter().filter(|(_, ms)| *ms > 0.0) {
            ::metrics::histogram!(STAGE_DURATION, "stage" => stage).record(ms / 1e3);
        }
    }
}

/// An inference call was formed with `tiles` tiles.
pub fn batch_formed(tiles: usize) {
    ::metrics::histogram!(BATCH_SIZE).record(tiles as f64);
}

/// The store answered (`true`) or failed for want of a connection (`false`).
pub fn store_up(up: bool) {
    ::metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// A store operation is retried because the database is unavailable.
pub fn store_retry() {
    ::metrics::counter!(STORE_RETRIES).increment(1);
}

/// The Storage SCP established an association.
pub fn association_accepted() {
    ::metrics::counter!(ASSOCIATIONS).increment(1);
}

/// The Storage SCP answered a C-STORE: stored durably, or refused.
pub fn instance_received(stored: bool) {
    ::metrics::counter!(INSTANCES, "result" => if stored { "stored" } else { "refused" }).increment(1);
}

/// The outbox recorded a send attempt, leaving the send `state` (accepted, pending, failed).
pub fn send_recorded(state: &'static str) {
    ::metrics::counter!(SENDS, "state" => state).increment(1);
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
pub fn upload(result: Upload) {
    ::metrics::counter!(UPLOADS, "result" => result.as_str()).increment(1);
}

/// A request was refused for want of the bearer token (`missing`, `wrong`).
pub fn unauthorized(reason: &'static str) {
    ::metrics::counter!(UNAUTHORIZED, "reason" => reason).increment(1);
}

/// Items left waiting in a queue between stages when its stage took one (`prepare`, `infer`,
/// `postprocess`, `record`): a queue that stays full names the stage that holds the pipeline back.
pub fn queue_depth(queue: &'static str, waiting: usize) {
    ::metrics::gauge!(QUEUE_DEPTH, "queue" => queue).set(waiting as f64);
}

/// Uploads waiting in the HTTP inbox, counted at a scrape.
pub fn inbox_queued(files: usize) {
    ::metrics::gauge!(INBOX_QUEUED).set(files as f64);
}

/// A [`CaseObserver`] that counts each case and passes it on to the face's observer, so the
/// record stage reports to both through the one observer it knows.
pub struct Observed(pub Arc<dyn CaseObserver>);

impl CaseObserver for Observed {
    fn inputs_found(&self, n: u64) {
        self.0.inputs_found(n);
    }

    fn case_ended(&self, row: &Row) {
        case_ended(row);
        self.0.case_ended(row);
    }

    fn finished(&self) {
        self.0.finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Seen(Mutex<Vec<String>>);

    impl CaseObserver for Seen {
        fn case_ended(&self, row: &Row) {
            self.0.lock().unwrap().push(row.file.clone());
        }
    }

    #[test]
    fn an_observed_case_is_counted_by_status_and_stage_and_passed_on() {
        let handle = install().unwrap();
        let seen = Arc::new(Seen(Mutex::new(Vec::new())));
        let observed = Observed(seen.clone());
        let row = Row {
            case_id: "c1".into(),
            file: "bad.png".into(),
            status: Status::Failed,
            stage: Some("decode"),
            detail: "decode: not an image".into(),
            scores: None,
            counts: None,
            latency_ms: 12.0,
            timings: Some(crate::case::Timings { decode_ms: 3.0, ..Default::default() }),
        };
        observed.case_ended(&row);
        assert_eq!(*seen.0.lock().unwrap(), ["bad.png"]);
        let text = handle.render();
        assert!(text.contains("efen_cases_total{status=\"failed\",stage=\"decode\"} 1"), "{text}");
        assert!(text.contains("efen_cases_total{status=\"succeeded\"} 0"), "{text}");
        assert!(text.contains("efen_stage_duration_seconds_count{stage=\"decode\"} 1"), "{text}");
        assert!(!text.contains("stage=\"infer\""), "a stage the case never reached is no sample: {text}");
        assert!(text.contains("efen_case_latency_seconds_bucket{status=\"failed\",le=\"0.025\"} 1"), "{text}");
    }
}
