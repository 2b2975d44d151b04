//! `GET /v1/runs[?limit=]`: the latest runs from the store's `run_summary`, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::Service;
use super::error::ApiError;

/// Runs listed without `?limit=`.
const DEFAULT_LIMIT: i64 = 50;
/// The most one request lists.
const MAX_LIMIT: i64 = 1000;

#[derive(serde::Deserialize)]
pub(super) struct RunsQuery {
    limit: Option<i64>,
}

pub(super) async fn list(
    State(service): State<Arc<Service>>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {limit}")));
    }
    let store = service.readiness.store().ok_or_else(ApiError::not_ready)?;
    let runs = store.recent_runs(limit).await?;
    Ok(Json(json!({ "runs": runs })))
}
