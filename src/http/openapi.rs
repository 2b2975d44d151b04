//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of every route, written by hand beside the
//! routes (a test checks that each route of the router is in it, and no other).

use axum::Json;
use serde_json::{Value, json};

use super::cases::FILES;

/// The routes, as the router has them (method, path): what the document must describe.
pub const ROUTES: [(&str, &str); 11] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/v1/cases"),
    ("get", "/v1/cases/{id}"),
    ("get", "/v1/cases/{id}/{file}"),
    ("get", "/v1/instances/{sha256}"),
    ("get", "/v1/runs"),
    ("get", "/v1/openapi.json"),
    ("post", "/dicomweb/studies"),
    ("post", "/dicomweb/studies/{study}"),
];

pub async fn serve() -> Json<Value> {
    Json(document())
}

pub fn document() -> Value {
    let mut document = v1_document();
    let paths = document["paths"].as_object_mut().expect("paths is an object");
    for (path, item) in dicomweb_paths() {
        paths.insert(path.into(), item);
    }
    document
}

/// STOW-RS (PS3.18 §10.5), described as the standard has it.
fn dicomweb_paths() -> [(&'static str, Value); 2] {
    let store = |in_study: bool| {
        let mut parameters = Vec::new();
        if in_study {
            parameters.push(json!({ "name": "study", "in": "path", "required": true,
                "description": "Study Instance UID: an instance of another study is refused with Failure Reason C409",
                "schema": { "type": "string" } }));
        }
        let dicom_json = json!({ "application/dicom+json": { "schema": { "$ref": "#/components/schemas/StoreInstancesResponse" } } });
        let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
        json!({ "post": {
            "summary": "STOW-RS: store DICOM instances (one per part) into the DICOM node's receive spool",
            "description": "Each part is a PS3.10 instance. The whole body is read before any part is committed; then each instance is checked as a C-STORE would be (image storage SOP class, node transfer syntaxes) and made durable in <state>/incoming/<series>/. Series become cases like those received by the DICOM node, and their SEGs go to node.destinations. A refused part is named in a Warning header (299).",
            "parameters": parameters,
            "requestBody": { "required": true, "content": { "multipart/related; type=\"application/dicom\"": { "schema": { "type": "string", "contentEncoding": "binary" } } } },
            "responses": {
                "200": { "description": "Every instance stored", "content": dicom_json.clone() },
                "202": { "description": "Some instances stored, others refused (Failed SOP Sequence)", "content": dicom_json.clone() },
                "409": { "description": "No instance stored; each refusal in the Failed SOP Sequence", "content": dicom_json },
                "400": error("bad_request: a body that is cut or malformed, or has no parts (nothing stored)"),
                "413": error("too_large: over engine.max_file_mb"),
                "415": error("unsupported_media_type: not multipart/related with application/dicom parts")
            }
        } })
    };
    [("/dicomweb/studies", store(false)), ("/dicomweb/studies/{study}", store(true))]
}

fn v1_document() -> Value {
    let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let case_id = json!({ "name": "id", "in": "path", "required": true,
        "description": "The case id: 24 hexadecimal digits, from the SHA-256 of the input, the pipeline and the model",
        "schema": { "type": "string", "pattern": "^[0-9a-f]{24}$" } });
    let file_names: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
    let mut file_content = serde_json::Map::new();
    for (_, media_type) in FILES {
        file_content.insert(media_type.into(), json!({ "schema": { "type": "string", "contentEncoding": "binary" } }));
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "efen",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "efen watch's HTTP face: health, metrics, and cases submitted over HTTP. An uploaded file is written into the drop folder's http/ folder and admitted by the watcher like any dropped file (once, deduplicated by its bytes)."
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness: 200 while the process serves",
                "responses": { "200": { "description": "ok", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            } },
            "/readyz": { "get": {
                "summary": "Readiness: the store answers, the model is loaded, the folders are writable",
                "responses": {
                    "200": { "description": "Ready", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Readiness" } } } },
                    "503": { "description": "Not ready; each problem named", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Readiness" } } } }
                }
            } },
            "/metrics": { "get": {
                "summary": "Prometheus metrics (text format 0.0.4)",
                "responses": { "200": { "description": "The exposition", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            } },
            "/v1/cases": { "post": {
                "summary": "Submit an image or a DICOM instance as a case",
                "description": "The body is the file. It is written durably into <drop>/http/ and taken by the watcher like a dropped file. An image (or a single-frame DICOM instance under [dicom] unit = \"instance\") is one case, named at once. A DICOM instance of a series (unit = \"series\") becomes part of its series case once the series has been quiet for watch.series_quiet_ms: case_id is null and status_url is /v1/instances/{sha256}. Bytes that are neither an image nor DICOM are accepted (202) and the case fails at decode with the reason (status failed, error_stage decode, error_message).",
                "parameters": [ { "name": "name", "in": "query", "required": false,
                    "description": "File name in the drop folder (path separators and control characters become _, leading dots go). Default: upload-<first 12 hex of the SHA-256> with the extension of the sniffed format. A taken name gains -<sha12>.",
                    "schema": { "type": "string" } } ],
                "requestBody": { "required": true, "content": { "*/*": { "schema": { "type": "string", "contentEncoding": "binary" } } } },
                "responses": {
                    "202": { "description": "Accepted: on disk and waiting for the watcher", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } },
                    "400": error("empty_body, bad_name (a name the watcher takes as ground truth) or a body that broke off"),
                    "413": error("too_large: over engine.max_file_mb"),
                    "500": error("write_failed: the drop folder did not take the file"),
                    "503": error("not_ready: the model is still loading; busy: http.max_queued_uploads uploads wait for the watcher already. Retry-After says when to try again")
                }
            } },
            "/v1/cases/{id}": { "get": {
                "summary": "A case's status, and when done its result.json",
                "parameters": [ case_id.clone() ],
                "responses": {
                    "200": { "description": "The case", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Case" } } } },
                    "404": error("not_found: no such case"),
                    "503": error("not_ready or store_unavailable")
                }
            } },
            "/v1/cases/{id}/{file}": { "get": {
                "summary": "One of a case's output files",
                "parameters": [ case_id, { "name": "file", "in": "path", "required": true, "schema": { "type": "string", "enum": file_names } } ],
                "responses": {
                    "200": { "description": "The file, with its media type", "content": Value::Object(file_content) },
                    "404": error("not_found: not a case, not a served file, or not written")
                }
            } },
            "/v1/instances/{sha256}": { "get": {
                "summary": "The case an uploaded file became (the series case of a DICOM instance)",
                "parameters": [ { "name": "sha256", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$" } } ],
                "responses": {
                    "200": { "description": "The case (as GET /v1/cases/{id}) with sha256 and every case_ids; status queued and case_id null while it has none yet", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Case" } } } },
                    "404": error("not_found: no case has this file, and this process accepted no upload of it"),
                    "503": error("not_ready or store_unavailable")
                }
            } },
            "/v1/runs": { "get": {
                "summary": "The latest runs, newest first",
                "parameters": [ { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 50 } } ],
                "responses": {
                    "200": { "description": "The runs", "content": { "application/json": { "schema": { "type": "object", "properties": { "runs": { "type": "array", "items": { "$ref": "#/components/schemas/Run" } } } } } } },
                    "400": error("bad_request: limit out of range"),
                    "503": error("not_ready or store_unavailable")
                }
            } },
            "/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } }
            } }
        },
        "components": { "schemas": {
            "StoreInstancesResponse": { "type": "object", "description": "PS3.18 Annex I in DICOM JSON: 00081199 Referenced SOP Sequence (stored), 00081198 Failed SOP Sequence with 00081197 Failure Reason (0110, 0122, A700, C000, C122, C409), 00081190 Retrieve URL (empty)" },
            "Error": { "type": "object", "required": ["error", "message"], "properties": {
                "error": { "type": "string", "description": "not_found, empty_body, too_large, bad_name, bad_request, busy, not_ready, unauthorized, store_unavailable, store_error, write_failed, read_failed, unsupported_media_type" },
                "message": { "type": "string" } } },
            "Readiness": { "type": "object", "properties": {
                "ready": { "type": "boolean" },
                "problems": { "type": "array", "items": { "type": "object", "properties": { "check": { "type": "string" }, "problem": { "type": "string" } } } } } },
            "Accepted": { "type": "object", "required": ["case_id", "status_url", "sha256", "name"], "properties": {
                "case_id": { "type": ["string", "null"], "description": "null for an instance of a series, and for a multi-frame instance (see case_ids)" },
                "case_ids": { "type": "array", "items": { "type": "string" }, "description": "A multi-frame instance under unit = \"instance\": one case per frame" },
                "series_instance_uid": { "type": "string", "description": "An instance of a series: the series it waits for" },
                "status_url": { "type": "string" },
                "sha256": { "type": "string" },
                "name": { "type": "string", "description": "The file's name in <drop>/http/" } } },
            "Case": { "type": "object", "required": ["case_id", "status"], "properties": {
                "case_id": { "type": ["string", "null"] },
                "status": { "type": "string", "enum": ["queued", "processing", "succeeded", "failed"] },
                "state": { "type": ["string", "null"], "description": "The ledger state: claimed, decoded, inferred, written, recorded; null before the claim" },
                "source_path": { "type": "string" },
                "file_sha256": { "type": ["string", "null"] },
                "n_frames": { "type": ["integer", "null"], "description": "Slices of a series case" },
                "error_stage": { "type": ["string", "null"] },
                "error_message": { "type": ["string", "null"] },
                "result": { "type": "object", "description": "The case's result.json, once done" },
                "files": { "type": "object", "additionalProperties": { "type": "string" }, "description": "File name → URL, for the files written" },
                "sha256": { "type": "string", "description": "/v1/instances only" },
                "case_ids": { "type": "array", "items": { "type": "string" }, "description": "/v1/instances only" } } },
            "Run": { "type": "object", "properties": {
                "run_id": { "type": "string" }, "command": { "type": "string" }, "pipeline": { "type": "string" },
                "model_name": { "type": "string" }, "model_sha256": { "type": "string" }, "efen_version": { "type": "string" },
                "host": { "type": "string" }, "started_at": { "type": ["string", "null"] }, "ended_at": { "type": ["string", "null"] },
                "cases": { "type": "integer" }, "succeeded": { "type": "integer" }, "failed": { "type": "integer" },
                "duplicates": { "type": "integer" } } }
        } }
    });
    guarded(&mut doc);
    doc
}

/// The bearer token (`http.bearer_token`, see [`super::auth`]): every operation but the health
/// checks and the metrics is guarded, and may answer 401. Added to every path here, so that a
/// route described later is covered as the router covers it.
fn guarded(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({ "bearer": { "type": "http", "scheme": "bearer",
        "description": "Required when http.bearer_token is set (for /metrics too with http.protect_metrics); otherwise no credentials" } });
    let unauthorized = json!({ "description": "unauthorized: no bearer token, or not the one configured (http.bearer_token); WWW-Authenticate: Bearer",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let open = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
        for operation in item.as_object_mut().into_iter().flat_map(|item| item.values_mut()) {
            if open {
                operation["security"] = json!([]);
            } else {
                operation["security"] = json!([{ "bearer": [] }]);
                operation["responses"]["401"] = unauthorized.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_and_no_other() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut described: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
            .collect();
        let mut routes: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        described.sort();
        routes.sort();
        assert_eq!(described, routes);
        // Every reference resolves.
        let text = doc.to_string();
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(text.contains(&format!("#/components/schemas/{name}")), "{name} is never used");
        }
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name} is not defined");
        }
        // The token guards what the router guards.
        assert_eq!(doc["paths"]["/v1/cases"]["post"]["security"], json!([{ "bearer": [] }]));
        assert!(doc["paths"]["/v1/runs"]["get"]["responses"]["401"].is_object());
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/metrics"]["get"]["responses"].get("401").is_none());
    }
}
