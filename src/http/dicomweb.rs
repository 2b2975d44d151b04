//! DICOMweb STOW-RS (PS3.18 §10.5): `POST /dicomweb/studies` and `/dicomweb/studies/{study}` take
//! a `multipart/related; type="application/dicom"` body, each part one PS3.10 instance, into the
//! DICOM node's receive spool ([`crate::node::spool`]), exactly as a C-STORE would arrive: the same
//! SOP classes and transfer syntaxes, then series by quiet time, the pipeline's `[select]` rules,
//! `<drop>/dicom-node/<series>/`, and the SEG back to the node's destinations.
//!
//! The body is parsed by `multer` while each part streams into a partial file of the spool. Only
//! when the whole body has been read are the parts checked and committed (fsynced and renamed into
//! their series folder), so a body that is cut or malformed stores nothing (400), and an answer
//! that lists an instance as stored means it is durable. The answer is the Store Instances
//! Response in `application/dicom+json`: 200 when all were stored, 202 when some, 409 when none,
//! with a `Warning` header per refused part saying why.

pub mod response;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_dictionary_std::tags;

use super::Service;
use super::error::ApiError;
use crate::node::NodeConfig;
use crate::node::scp::{IMAGE_STORAGE, refusal_status};
use crate::node::spool::{PartFile, Spool, is_plain_uid};
use crate::telemetry::InstanceReceived;
use response::{Reference, reason};

/// At most this many `Warning` headers in one answer (the body lists every refused part).
const MAX_WARNINGS: usize = 20;

/// What STOW-RS needs: the node's spool and transfer syntaxes, and the largest body it takes.
pub struct Stow {
    spool: Spool,
    transfer_syntaxes: Vec<String>,
    max_bytes: u64,
}

impl Stow {
    pub fn new(spool: Spool, node: &NodeConfig, max_file_mb: u64) -> Stow {
        Stow { spool, transfer_syntaxes: node.transfer_syntaxes(), max_bytes: max_file_mb.saturating_mul(1 << 20) }
    }
}

/// A part as it was read: written into the spool, or refused while reading.
enum Part {
    Written(PartFile),
    Refused { code: u16, why: String },
}

/// What became of a part.
struct Settled {
    reference: Reference,
    outcome: Result<(), (u16, String)>,
}

/// `POST /dicomweb/studies`.
pub(super) async fn store(State(service): State<Arc<Service>>, headers: HeaderMap, body: Body) -> Response {
    answer(receive(&service.stow, None, &headers, body).await)
}

/// `POST /dicomweb/studies/{study}`: every instance must belong to `study`.
pub(super) async fn store_in_study(
    State(service): State<Arc<Service>>,
    UrlPath(study): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(receive(&service.stow, Some(study), &headers, body).await)
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn receive(stow: &Stow, study: Option<String>, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let boundary = boundary(headers)?;
    let limit = stow.max_bytes;
    let too_large = || {
        let message =
            format!("the body is over engine.max_file_mb ({} MiB): send the series in several requests", limit >> 20);
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let malformed = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } => too_large(),
        e => ApiError::bad_request(format!("the multipart body is cut or malformed, nothing was stored: {e}")),
    };
    // Parts stay partial files until the whole body is in: an error here drops (removes) them all.
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let media = field.content_type().map(|m| m.essence_str().to_ascii_lowercase());
        let mut part = match media.as_deref() {
            None | Some("application/dicom") => match stow.spool.begin_file() {
                Ok(file) => Part::Written(file),
                Err(e) => Part::Refused { code: refusal_status(&e), why: e.to_string() },
            },
            Some(other) => Part::Refused {
                code: reason::CANNOT_UNDERSTAND,
                why: format!("the part is {other}, not application/dicom (efen takes PS3.10 instances only)"),
            },
        };
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if let Part::Written(file) = &mut part
                && let Err(e) = file.write(&chunk)
            {
                part = Part::Refused { code: refusal_status(&e), why: e.to_string() };
            }
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "the multipart body has no parts: send one application/dicom part per instance",
        ));
    }

    let spool = stow.spool.clone();
    let syntaxes = stow.transfer_syntaxes.clone();
    let settled = tokio::task::spawn_blocking(move || {
        parts.into_iter().map(|part| settle(part, &spool, &syntaxes, study.as_deref())).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", e.to_string()))?;

    let (mut stored, mut failed, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    for (index, Settled { reference, outcome }) in settled.into_iter().enumerate() {
        match outcome {
            Ok(()) => {
                InstanceReceived { from: "STOW-RS", refused: None }.emit();
                stored.push(reference)
            }
            Err((code, why)) => {
                let instance = if reference.sop_instance.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reference.sop_instance)
                };
                let text = format!("part {}{instance} refused with {code:04X}: {why}", index + 1);
                InstanceReceived { from: "STOW-RS", refused: Some((code, &text)) }.emit();
                warnings.push(response::warning(&text));
                failed.push((reference, code));
            }
        }
    }
    tracing::info!(stored = stored.len(), refused = failed.len(), "STOW-RS request stored");
    let status = response::status(stored.len(), failed.len());
    let mut answer = (status, axum::Json(response::body(&stored, &failed))).into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"));
    for warning in warnings.into_iter().take(MAX_WARNINGS) {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            headers.append(header::WARNING, value);
        }
    }
    Ok(answer)
}

/// The boundary of a `multipart/related` body whose parts are `application/dicom`: 415 for any
/// other media type (including `type="application/dicom+json"`, metadata with bulk data), 400
/// without a boundary.
fn boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let unsupported = |what: String| {
        let message = format!("{what}: STOW-RS takes multipart/related; type=\"application/dicom\"");
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    };
    let text = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime: mime::Mime = text.parse().map_err(|_| unsupported(format!("Content-Type {text:?}")))?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != "related" {
        return Err(unsupported(format!("Content-Type {}", mime.essence_str())));
    }
    if let Some(parts) = mime.get_param("type")
        && !parts.as_str().eq_ignore_ascii_case("application/dicom")
    {
        return Err(unsupported(format!("parts of type {parts}")));
    }
    match mime.get_param(mime::BOUNDARY) {
        Some(boundary) if !boundary.as_str().is_empty() => Ok(boundary.as_str().to_string()),
        _ => Err(ApiError::bad_request("Content-Type multipart/related has no boundary")),
    }
}

/// Checks a part's header against the node's rules and commits it to the spool. Blocking.
fn settle(part: Part, spool: &Spool, syntaxes: &[String], study: Option<&str>) -> Settled {
    let unknown = Reference { sop_class: String::new(), sop_instance: String::new() };
    let file = match part {
        Part::Written(file) => file,
        Part::Refused { code, why } => return Settled { reference: unknown, outcome: Err((code, why)) },
    };
    let header = match Header::read(file.path()) {
        Ok(header) => header,
        Err(why) => return Settled { reference: unknown, outcome: Err((reason::CANNOT_UNDERSTAND, why)) },
    };
    let reference = Reference { sop_class: header.sop_class.clone(), sop_instance: header.sop_instance.clone() };
    if let Some(refusal) = header.refusal(syntaxes, study) {
        return Settled { reference, outcome: Err(refusal) };
    }
    let outcome = file.commit(spool).map(|_| ()).map_err(|e| (refusal_status(&e), e.to_string()));
    Settled { reference, outcome }
}

/// What the rules look at, from a part's meta group and data set.
#[derive(Debug, Clone, Default, PartialEq)]
struct Header {
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
    study: String,
    series: String,
}

impl Header {
    fn read(path: &Path) -> Result<Header, String> {
        let object = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| format!("not readable PS3.10 DICOM: {e}"))?;
        let text = |tag| {
            object.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        };
        let meta = object.meta();
        Ok(Header {
            sop_class: text(tags::SOP_CLASS_UID).unwrap_or_else(|| meta.media_storage_sop_class_uid().to_string()),
            sop_instance: text(tags::SOP_INSTANCE_UID)
                .unwrap_or_else(|| meta.media_storage_sop_instance_uid().to_string()),
            transfer_syntax: meta.transfer_syntax().to_string(),
            study: text(tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            series: text(tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        })
    }

    /// Why the node would not take this instance, with the Failure Reason; None when it would.
    fn refusal(&self, syntaxes: &[String], study: Option<&str>) -> Option<(u16, String)> {
        if !IMAGE_STORAGE.contains(&self.sop_class.as_str()) {
            let why = format!("SOP class {:?} is not an image storage class efen decodes", self.sop_class);
            return Some((reason::SOP_CLASS_NOT_SUPPORTED, why));
        }
        if !syntaxes.contains(&self.transfer_syntax) {
            let why = format!("transfer syntax {} is not accepted (node.accept_compressed)", self.transfer_syntax);
            return Some((reason::TRANSFER_SYNTAX_NOT_SUPPORTED, why));
        }
        if !is_plain_uid(&self.sop_instance) || !is_plain_uid(&self.series) {
            let why = format!(
                "SOP Instance UID {:?} or Series Instance UID {:?} is missing or not a plain UID",
                self.sop_instance, self.series
            );
            return Some((reason::CANNOT_UNDERSTAND, why));
        }
        match study {
            Some(study) if study != self.study => {
                let why = format!("Study Instance UID {:?} is not the study of the request, {study}", self.study);
                Some((reason::STUDY_MISMATCH, why))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn only_multipart_related_dicom_is_taken() {
        assert_eq!(boundary(&headers("multipart/related; type=\"application/dicom\"; boundary=xyz")).unwrap(), "xyz");
        assert_eq!(boundary(&headers("Multipart/Related; boundary=\"a b\"")).unwrap(), "a b");
        for refused in [
            "application/dicom",
            "multipart/form-data; boundary=x",
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            "",
        ] {
            assert_eq!(
                boundary(&headers(refused)).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused}"
            );
        }
        assert_eq!(
            boundary(&headers("multipart/related; type=\"application/dicom\"")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_node_rules_decide_with_the_matching_failure_reason() {
        let syntaxes: Vec<String> = crate::node::scp::UNCOMPRESSED.iter().map(|s| s.to_string()).collect();
        let ct = Header {
            sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance: "1.2.3.1".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            study: "1.2".into(),
            series: "1.2.3".into(),
        };
        assert_eq!(ct.refusal(&syntaxes, None), None);
        assert_eq!(ct.refusal(&syntaxes, Some("1.2")), None);
        let code = |header: &Header, study| header.refusal(&syntaxes, study).unwrap().0;
        assert_eq!(code(&ct, Some("1.9")), reason::STUDY_MISMATCH);
        let seg = Header { sop_class: "1.2.840.10008.5.1.4.1.1.66.4".into(), ..ct.clone() };
        assert_eq!(code(&seg, None), reason::SOP_CLASS_NOT_SUPPORTED);
        let jpeg2000 = Header { transfer_syntax: "1.2.840.10008.1.2.4.90".into(), ..ct.clone() };
        assert_eq!(code(&jpeg2000, None), reason::TRANSFER_SYNTAX_NOT_SUPPORTED);
        let no_series = Header { series: String::new(), ..ct.clone() };
        assert_eq!(code(&no_series, None), reason::CANNOT_UNDERSTAND);
    }
}
