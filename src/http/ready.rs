//! Readiness: whether this process can take a case right now. The store must answer a cheap query,
//! the model must be loaded (the server starts before the model, so `/healthz` answers while a
//! large model loads) and every folder a case is written to must take a new file.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::store::Store;

/// How long the store has to answer before readiness reports it unavailable.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness checks; shared between `efen watch` (which fills in the store once the engine
/// is open) and the `/readyz` handler.
pub struct Readiness {
    /// The engine's store; unset until the model is loaded and the store opened.
    store: OnceLock<Store>,
    /// The folders a case is written to, each with what it is for.
    folders: Vec<(&'static str, PathBuf)>,
}

/// The `/readyz` body: `{"ready": false, "problems": [{"check": "store", "problem": "…"}]}`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ready: bool,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    /// What failed: `store`, `model`, or the folder's role (`drop folder`, `state folder`, `output folder`).
    pub check: &'static str,
    pub problem: String,
}

impl Readiness {
    /// `folders`: each folder a case is written to, with what it is for (`"drop folder"`, …).
    pub fn new(folders: Vec<(&'static str, PathBuf)>) -> Readiness {
        Readiness { store: OnceLock::new(), folders }
    }

    /// The model is loaded and the store open: from now on readiness depends on them answering.
    pub fn engine_ready(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// The store, once the engine is open.
    pub fn store(&self) -> Option<&Store> {
        self.store.get()
    }

    /// Runs every check and names each problem.
    pub async fn check(&self) -> Report {
        let mut problems = Vec::new();
        match self.store.get() {
            None => problems.push(Problem { check: "model", problem: "the model is still loading".into() }),
            Some(store) => {
                let answer = tokio::time::timeout(STORE_TIMEOUT, store.ping()).await;
                crate::telemetry::StoreAnswered { up: matches!(answer, Ok(Ok(()))) }.emit();
                match answer {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => problems.push(Problem { check: "store", problem: e.to_string() }),
                    Err(_) => problems.push(Problem {
                        check: "store",
                        problem: format!("no answer within {} s", STORE_TIMEOUT.as_secs()),
                    }),
                }
            }
        }
        for (role, dir) in &self.folders {
            let dir = dir.clone();
            let writable = tokio::task::spawn_blocking(move || probe(&dir)).await;
            match writable {
                Ok(Ok(())) => {}
                Ok(Err(problem)) => problems.push(Problem { check: *role, problem }),
                Err(e) => problems.push(Problem { check: *role, problem: format!("check failed: {e}") }),
            }
        }
        Report { ready: problems.is_empty(), problems }
    }
}

/// Creates and removes a hidden file in `dir` (hidden: the drop watcher ignores it). Permission
/// bits alone would not do: root may write anywhere on a read-only or full file system.
fn probe(dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(format!(".efen-ready-{}", std::process::id()));
    let written = std::fs::write(&path, b"");
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| format!("{} is not writable: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_with_the_engine_open_and_every_folder_writable() {
        let dir = tempfile::tempdir().unwrap();
        let (drop, out) = (dir.path().join("drop"), dir.path().join("out"));
        std::fs::create_dir(&drop).unwrap();
        // Not a folder: nothing can be created in it, even by root.
        std::fs::write(&out, b"").unwrap();
        let readiness = Readiness::new(vec![("drop folder", drop.clone()), ("output folder", out.clone())]);

        let report = readiness.check().await;
        assert!(!report.ready);
        let checks: Vec<&str> = report.problems.iter().map(|p| p.check).collect();
        assert_eq!(checks, ["model", "output folder"]);
        assert!(report.problems[1].problem.contains(&out.display().to_string()), "{:?}", report.problems);

        let store = Store::open(&format!("sqlite://{}", dir.path().join("efen.db").display()), 1).await.unwrap();
        readiness.engine_ready(store.clone());
        std::fs::remove_file(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        let report = readiness.check().await;
        assert!(report.ready, "{:?}", report.problems);
        assert!(std::fs::read_dir(&drop).unwrap().next().is_none(), "the probe file is gone");

        store.close().await;
        let report = readiness.check().await;
        assert_eq!(report.problems.iter().map(|p| p.check).collect::<Vec<_>>(), ["store"]);
    }

    #[tokio::test]
    async fn an_unready_service_answers_503_naming_each_problem() {
        use axum::response::IntoResponse;
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder");
        let readiness = Readiness::new(vec![("state folder", missing.clone())]);
        let response = readiness.check().await.into_response();
        assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["ready"], false);
        assert_eq!(body["problems"][0]["check"], "model");
        assert_eq!(body["problems"][1]["check"], "state folder");
        assert!(body["problems"][1]["problem"].as_str().unwrap().contains("no-such-folder"), "{body}");
    }
}
