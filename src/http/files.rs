//! `GET /v1/cases/{id}/{file}`: a case's output files, from `<out>/<case id>/`. Only the names in
//! [`super::cases::FILES`] are served and the id must be a case id, so no request names a path of
//! its own: `..`, separators and anything else are 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Service;
use super::cases::{FILES, is_case_id};
use super::error::ApiError;

pub(super) async fn serve(
    State(service): State<Arc<Service>>,
    Path((case_id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some((name, media_type)) = FILES.iter().find(|(name, _)| *name == file) else {
        let names: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        return Err(ApiError::not_found(format!("a case folder serves only {}", names.join(", "))));
    };
    if !is_case_id(&case_id) {
        return Err(ApiError::not_found(format!("no case {case_id:?}: a case id is 24 hexadecimal digits")));
    }
    let path = service.cases.out_dir.join(&case_id).join(name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, *media_type)], bytes).into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::not_found(format!("case {case_id} has no {name} (yet)")))
        }
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "read_failed",
            format!("cannot read {name} of case {case_id}: {e}"),
        )),
    }
}
