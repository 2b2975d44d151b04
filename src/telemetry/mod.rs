//! Telemetry: the typed events the stages report as they happen ([`events`]: a case ended, a
//! batch was formed, the store went away, an instance arrived, a send was recorded). Each event is
//! a struct whose `emit()` writes its log line (where it has one) and bumps its metric together,
//! so the two never drift. The metrics are kept by the `metrics` facade and
//! `metrics-exporter-prometheus`'s recorder; [`crate::http`] serves them at `/metrics`; nothing
//! parses logs. A ground-floor room: it imports nothing of the crate.
//!
//! Only `efen watch` with `[http] listen` installs the recorder ([`install`]). Without one every
//! metric is a no-op, so `efen run` and `efen bench` pay nothing for them.
//!
//! Every metric name is here, once; docs/service.md lists them with their types and labels.
//! (The dependency is spelled `::metrics` because `crate::metrics` is the segmentation scores.)

pub mod events;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use events::*;

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
    // A failed case is always counted with its stage and error type, so "failed" has no series
    // without them.
    for status in ["succeeded", "duplicate"] {
        ::metrics::counter!(CASES, "status" => status).increment(0);
    }
    ::metrics::counter!(STORE_RETRIES).increment(0);
    ::metrics::counter!(UPLOADS, "result" => Upload::Accepted.as_str()).increment(0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CASES,
        "Cases ended, by status (succeeded, failed, duplicate) and, for failed ones, the stage and the error type"
    );
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
