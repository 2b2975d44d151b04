//! The JSON error every `/v1` route answers with: `{"error": "<code>", "message": "<what to do>"}`.
//! A code that programs can match on, and a sentence for the person reading the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, snake_case: `not_found`, `empty_body`, `too_large`, `bad_name`, `bad_request`,
    /// `not_ready`, `busy`, `unauthorized`, `store_unavailable`, `store_error`, `write_failed`,
    /// `unsupported_media_type`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The engine is not open yet: the model loads before cases can be taken or looked up.
    pub fn not_ready() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the model is still loading; retry shortly")
    }
}

/// A store that is away is the client's cue to retry (503); any other store failure is ours (500).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if e.is_transient() {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
        } else {
            tracing::error!("HTTP request failed in the store: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}
