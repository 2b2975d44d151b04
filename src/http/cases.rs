//! Cases over HTTP: `POST /v1/cases` puts a file into the drop folder's inbox ([`super::inbox`]) and
//! answers with the id the case will have; `GET /v1/cases/{id}` and `GET /v1/instances/{sha256}`
//! read where it is from the store.
//!
//! The case id is computed here exactly as admission computes it (bytes, pipeline, model), so the
//! answer can name the case before the watcher has claimed it. A DICOM instance of a series
//! (`[dicom] unit = "series"`) has no case of its own: its series case exists once the series has
//! been quiet, and `/v1/instances/{sha256}` finds it then through `series_slices`.
//!
//! Between the 202 and the watcher's claim the store knows nothing of an upload; the uploads this
//! process accepted are remembered until then, so that they read `queued`, not 404.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Service;
use super::error::ApiError;
use super::inbox::{self, Inbox, PublishError, ReceiveError, Received};
use crate::ingest::AdmissionConfig;
use crate::store::{CaseStatus, Store};
use crate::telemetry::{Upload, UploadAnswered};

/// The files of a case folder that `GET /v1/cases/{id}/{file}` serves, with their media types.
pub const FILES: [(&str, &str); 7] = [
    ("result.json", "application/json"),
    ("mask.png", "image/png"),
    ("overlay.png", "image/png"),
    ("probabilities.png", "image/png"),
    ("seg.dcm", "application/dicom"),
    ("sr.dcm", "application/dicom"),
    ("mask.nii.gz", "application/gzip"),
];

/// An accepted upload not seen in the store after this long is forgotten (its file was taken
/// by another worker, or removed by hand).
const PENDING_FOR: Duration = Duration::from_secs(24 * 3600);

/// What the case routes need: the inbox and output folder from the start, the store and the
/// pipeline's identity once the engine is open.
pub struct Cases {
    pub inbox: Inbox,
    pub out_dir: PathBuf,
    engine: OnceLock<Engaged>,
    /// Accepted uploads the store may not know yet: case ids, and file SHA-256s.
    pending: Mutex<Pending>,
}

struct Engaged {
    store: Store,
    admission: Arc<AdmissionConfig>,
}

#[derive(Default)]
struct Pending {
    cases: HashMap<String, Instant>,
    files: HashMap<String, Instant>,
}

impl Pending {
    fn forget_old(&mut self) {
        self.cases.retain(|_, at| at.elapsed() < PENDING_FOR);
        self.files.retain(|_, at| at.elapsed() < PENDING_FOR);
    }
}

/// What admission will make of an uploaded file.
#[derive(Debug, PartialEq, Eq)]
enum Becomes {
    /// One case: an image, a single frame, or a file that will fail at decode.
    Case(String),
    /// One case per frame (`[dicom] unit = "instance"`, a multi-frame instance).
    Frames(Vec<String>),
    /// A slice of the series case that exists once the series is complete.
    Series(String),
}

impl Cases {
    /// `drop_dir` is the watched folder; uploads go to its `http/` folder, where at most
    /// `max_queued` wait for the watcher.
    pub fn new(drop_dir: &std::path::Path, out_dir: PathBuf, max_file_mb: u64, max_queued: usize) -> Cases {
        let inbox = Inbox::new(drop_dir, max_file_mb.saturating_mul(1 << 20), max_queued);
        if let Err(e) = inbox.sweep() {
            tracing::warn!(dir = %inbox.dir.display(), "cannot clear the HTTP inbox of stale uploads: {e}");
        }
        Cases { inbox, out_dir, engine: OnceLock::new(), pending: Mutex::default() }
    }

    /// The engine is open: uploads can be named and cases looked up from now on.
    pub fn engine_ready(&self, store: Store, admission: Arc<AdmissionConfig>) {
        let _ = self.engine.set(Engaged { store, admission });
    }

    fn engaged(&self) -> Result<&Engaged, ApiError> {
        self.engine.get().ok_or_else(ApiError::not_ready)
    }

    fn remember(&self, becomes: &Becomes, sha256: &str) {
        let mut pending = self.pending.lock().unwrap();
        pending.forget_old();
        let now = Instant::now();
        pending.files.insert(sha256.to_string(), now);
        match becomes {
            Becomes::Case(id) => {
                pending.cases.insert(id.clone(), now);
            }
            Becomes::Frames(ids) => pending.cases.extend(ids.iter().map(|id| (id.clone(), now))),
            Becomes::Series(_) => {}
        }
    }

    /// The status body of case `case_id`, or None when neither the store nor this process knows it.
    async fn case_body(&self, engaged: &Engaged, case_id: &str) -> Result<Option<Value>, ApiError> {
        let Some(status) = engaged.store.case_status(case_id).await? else {
            let pending = self.pending.lock().unwrap().cases.contains_key(case_id);
            return Ok(pending.then(|| json!({ "case_id": case_id, "status": "queued", "state": null })));
        };
        let (phase, done) = phase(&status);
        if done {
            self.pending.lock().unwrap().cases.remove(case_id);
        }
        let dir = self.out_dir.join(case_id);
        let mut body = json!({
            "case_id": case_id,
            "status": phase,
            "state": status.state,
            "source_path": status.source_path,
            "file_sha256": status.file_sha256,
            "n_frames": status.n_frames,
        });
        if phase == "failed" {
            body["error_stage"] = json!(status.error_stage);
            body["error_message"] = json!(status.error_message);
        }
        if done {
            if let Ok(bytes) = tokio::fs::read(dir.join("result.json")).await {
                body["result"] = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            }
            let mut files = serde_json::Map::new();
            for (name, _) in FILES {
                if tokio::fs::try_exists(dir.join(name)).await.unwrap_or(false) {
                    files.insert(name.into(), json!(format!("/v1/cases/{case_id}/{name}")));
                }
            }
            body["files"] = Value::Object(files);
        }
        Ok(Some(body))
    }
}

/// `queued` (claimed), `processing` (decoded, inferred, written) or the recorded outcome; and
/// whether the case is done.
fn phase(status: &CaseStatus) -> (&str, bool) {
    match (status.state.as_str(), status.status.as_deref()) {
        (_, Some(outcome)) => (outcome, true),
        ("claimed", None) => ("queued", false),
        _ => ("processing", false),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct UploadQuery {
    name: Option<String>,
}

/// `POST /v1/cases[?name=]`: the body is the file.
pub(super) async fn submit(
    State(service): State<Arc<Service>>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = accept(&service.cases, query, &headers, body).await;
    let result = match &answer {
        Ok(_) => Upload::Accepted,
        Err((result, _)) => *result,
    };
    UploadAnswered { result }.emit();
    match answer {
        Ok(body) => (StatusCode::ACCEPTED, Json(body)).into_response(),
        Err((_, error)) => error.into_response(),
    }
}

async fn accept(
    cases: &Cases,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, (Upload, ApiError)> {
    let engaged = cases.engaged().map_err(|e| (Upload::Unavailable, e))?;
    let Query(query) = query.map_err(|e| (Upload::BadName, ApiError::bad_request(e.body_text())))?;
    let limit = cases.inbox.max_bytes;
    let too_large = || {
        let message = format!("the body is over engine.max_file_mb ({} MiB)", limit >> 20);
        (Upload::TooLarge, ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message))
    };
    // Refused before a byte is read when the client says how long it is.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // A full inbox refuses before a byte is written; publish checks again, under its lock.
    let inbox = cases.inbox.clone();
    let queued = tokio::task::spawn_blocking(move || inbox.queued(inbox.max_queued)).await.ok().and_then(Result::ok);
    if let Some(queued) = queued.filter(|&n| n >= cases.inbox.max_queued) {
        let full = PublishError::Full { queued };
        return Err((Upload::Busy, ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", full.to_string())));
    }
    let received = match cases.inbox.receive(body).await {
        Ok(received) => received,
        Err(ReceiveError::TooLarge { .. }) => return Err(too_large()),
        Err(e @ ReceiveError::Body(_)) => return Err((Upload::Error, ApiError::bad_request(e.to_string()))),
        Err(e @ ReceiveError::Write(_)) => {
            tracing::error!("{e}");
            let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", e.to_string());
            return Err((Upload::Error, error));
        }
    };
    if received.size == 0 {
        let message = "the body is empty: send the file's bytes as the request body";
        return Err((Upload::Empty, ApiError::new(StatusCode::BAD_REQUEST, "empty_body", message)));
    }
    let name = match query.name.as_deref().and_then(inbox::sanitise) {
        Some(name) => name,
        None => inbox::default_name(&received.sha256, &received.head),
    };
    let path = cases.inbox.dir.join(&name);
    let root = cases.inbox.dir.parent().unwrap_or(&cases.inbox.dir);
    if crate::ingest::is_ground_truth(&path, root, &engaged.admission.patterns) {
        let message = format!("{name:?} is named like a ground-truth mask, which the watcher never takes as an input");
        return Err((Upload::BadName, ApiError::new(StatusCode::BAD_REQUEST, "bad_name", message)));
    }
    let sha256 = received.sha256.clone();
    let admission = engaged.admission.clone();
    let published = tokio::task::spawn_blocking({
        let inbox = cases.inbox.clone();
        move || {
            let becomes = becomes(&received, &admission);
            inbox.publish(received, &name).map(|name| (name, becomes))
        }
    })
    .await
    .expect("publishing does not panic");
    let (name, becomes) = published.map_err(|e| match e {
        // The watcher is behind: the client retries after Retry-After, nothing was kept.
        PublishError::Full { .. } => {
            tracing::warn!("upload refused: {e}");
            (Upload::Busy, ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))
        }
        PublishError::Write(e) => {
            tracing::error!("cannot write an upload into the drop folder: {e}");
            let message = format!("cannot write the upload into the drop folder: {e}");
            (Upload::Error, ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", message))
        }
    })?;
    cases.remember(&becomes, &sha256);
    tracing::info!(file = %format!("{}/{name}", inbox::FOLDER), sha256 = %sha256, "upload accepted");
    let instance_url = format!("/v1/instances/{sha256}");
    Ok(match becomes {
        Becomes::Case(id) => {
            json!({ "case_id": id, "status_url": format!("/v1/cases/{id}"), "sha256": sha256, "name": name })
        }
        Becomes::Frames(ids) => {
            json!({ "case_id": null, "case_ids": ids, "status_url": instance_url, "sha256": sha256, "name": name })
        }
        Becomes::Series(uid) => json!({
            "case_id": null, "series_instance_uid": uid, "status_url": instance_url, "sha256": sha256, "name": name,
        }),
    })
}

/// What admission will make of the file: the same decisions on the same bytes (see
/// [`crate::ingest::admit`]). Blocking: a DICOM file is read back and parsed.
fn becomes(received: &Received, config: &AdmissionConfig) -> Becomes {
    let single = || Becomes::Case(crate::ingest::case_id(&received.sha256, &config.pipeline, &config.model_sha256));
    if !crate::dicom::looks_like_dicom(&received.head) {
        return single();
    }
    let Ok(bytes) = std::fs::read(received.path()) else { return single() };
    // A file that does not parse is one case, which fails at decode with the parser's reason.
    let Ok(file) = crate::dicom::open(&bytes) else { return single() };
    let identity = config.patient_ids.identity(&file);
    if crate::ingest::admit::gathered(config, &identity) {
        return Becomes::Series(identity.series_instance_uid.unwrap_or_default());
    }
    let frames = file.frame_count();
    if frames <= 1 {
        return single();
    }
    let frame_case = |index| {
        let identity = crate::ingest::frame_identity(&received.sha256, index);
        crate::ingest::case_id(&identity, &config.pipeline, &config.model_sha256)
    };
    Becomes::Frames((0..frames).map(frame_case).collect())
}

/// `GET /v1/cases/{id}`.
pub(super) async fn status(
    State(service): State<Arc<Service>>,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_case_id(&case_id) {
        return Err(ApiError::not_found(format!("no case {case_id:?}: a case id is 24 hexadecimal digits")));
    }
    let engaged = service.cases.engaged()?;
    match service.cases.case_body(engaged, &case_id).await? {
        Some(body) => Ok(Json(body).into_response()),
        None => Err(ApiError::not_found(format!("no case {case_id}"))),
    }
}

/// `GET /v1/instances/{sha256}`: the case (a series case, or the file's own) an uploaded file
/// became, with `sha256` and every `case_ids`; `queued` while it has none yet.
pub(super) async fn instance(
    State(service): State<Arc<Service>>,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(format!("no file {sha256:?}: a SHA-256 is 64 hexadecimal digits")));
    }
    let cases = &service.cases;
    let engaged = cases.engaged()?;
    let (pipeline, model) = (&engaged.admission.pipeline, &engaged.admission.model_sha256);
    let ids = engaged.store.cases_of_file(&sha256, pipeline, model).await?;
    let Some(first) = ids.first() else {
        if cases.pending.lock().unwrap().files.contains_key(&sha256) {
            return Ok(
                Json(json!({ "sha256": sha256, "case_id": null, "case_ids": [], "status": "queued" })).into_response()
            );
        }
        return Err(ApiError::not_found(format!("no case has the file {sha256} (yet)")));
    };
    let Some(mut body) = cases.case_body(engaged, first).await? else {
        return Err(ApiError::not_found(format!("no case {first}")));
    };
    if body.get("result").is_some() || body["status"] == "failed" || body["status"] == "succeeded" {
        cases.pending.lock().unwrap().files.remove(&sha256);
    }
    body["sha256"] = json!(sha256);
    body["case_ids"] = json!(ids);
    Ok(Json(body).into_response())
}

/// 24 lowercase hexadecimal digits, as [`crate::ingest::case_id`] makes them: anything else is
/// no case (and never reaches a path).
pub fn is_case_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_follows_the_ledger() {
        let status = |state: &str, outcome: Option<&str>| CaseStatus {
            case_id: "c".into(),
            state: state.into(),
            status: outcome.map(Into::into),
            error_stage: None,
            error_message: None,
            n_frames: None,
            source_path: String::new(),
            file_sha256: None,
        };
        assert_eq!(phase(&status("claimed", None)), ("queued", false));
        for state in ["decoded", "inferred", "written"] {
            assert_eq!(phase(&status(state, None)), ("processing", false));
        }
        assert_eq!(phase(&status("recorded", Some("succeeded"))), ("succeeded", true));
        assert_eq!(phase(&status("recorded", Some("failed"))), ("failed", true));
        assert!(is_case_id(&crate::ingest::case_id("a", "b", "c")));
        for bad in ["", "..", "../../etc/passwd", "0123456789ABCDEF01234567", "0123456789abcdef0123456"] {
            assert!(!is_case_id(bad), "{bad}");
        }
    }
}
