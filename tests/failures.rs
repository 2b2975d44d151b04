//! Issue 24: a failed case keeps its stage error's type to the record. The real binary against a
//! real PostgreSQL: a decode failure, an inference failure and a store failure are each recorded
//! with their stage and error type (the store one in the log, since the store is what failed),
//! counted under `efen_cases_total{status="failed",stage,error_type}`, and the failures view
//! groups by the typed reason, which names no path of the case.

mod common;

use std::time::Duration;

use common::http::{free_port, get, sample, stop, wait_ready};
use common::{Backend, World, unique_png};

async fn wait_failed(world: &World, port: u16, stage: &str, error_type: &str) {
    let labels = [("status", "failed"), ("stage", stage), ("error_type", error_type)];
    world
        .wait_for(&format!("a {stage} failure ({error_type}) counted"), Duration::from_secs(90), async || {
            sample(&get(port, "/metrics", &[]).text(), "efen_cases_total", &labels) == Some(1.0)
        })
        .await;
}

#[tokio::test]
async fn decode_inference_and_store_failures_are_recorded_and_counted_by_type() {
    let world = World::new(Backend::Postgres).await;
    // The bundled model's skip connections need sides divisible by 32: at 100×100 ONNX Runtime
    // cannot broadcast 24 against 25 in the decoder, so every image that decodes fails at inference.
    let pipeline = world.pipeline("odd-size", "[preprocess]\nfit = \"resize\"\ninput_size = [100, 100]");
    let port = free_port();
    let pipeline_env = pipeline.display().to_string();
    let mut child =
        common::http::start_watch(&world, port, &[("EFEN_PATHS__DEFAULT_PIPELINE", pipeline_env.as_str())], "efen");
    wait_ready(&world, &mut child, port).await;

    std::fs::write(world.drop_dir().join("not-an-image.png"), b"these bytes are no image").unwrap();
    wait_failed(&world, port, "decode", "unknown_format").await;
    std::fs::write(world.drop_dir().join("odd.png"), unique_png(24)).unwrap();
    wait_failed(&world, port, "infer", "onnx_runtime").await;

    let pool = world.pool().await;
    let rows: Vec<(String, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT c.source_path, r.error_stage, r.error_type, r.error_message, r.error_reason
         FROM results r JOIN cases c ON c.case_id = r.case_id ORDER BY r.error_stage",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (source, stage, error_type, message, reason) = &rows[0];
    assert_eq!((stage.as_str(), error_type.as_deref()), ("decode", Some("unknown_format")), "{rows:?}");
    assert!(message.contains("not a supported image"), "{message}");
    assert!(!reason.contains(source.as_str()) && !reason.contains("not-an-image"), "no path in the reason: {reason}");
    let (_, stage, error_type, message, _) = &rows[1];
    assert_eq!((stage.as_str(), error_type.as_deref()), ("infer", Some("onnx_runtime")), "{rows:?}");
    assert!(message.starts_with("ONNX Runtime failed"), "{message}");
    let grouped: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT stage, error_type, cases FROM failures ORDER BY stage").fetch_all(&pool).await.unwrap();
    assert_eq!(
        grouped,
        [("decode".into(), Some("unknown_format".into()), 1), ("infer".into(), Some("onnx_runtime".into()), 1)]
    );

    // The store fails under the record stage: its table is gone (a query error, not an outage, so
    // it is not retried). The case is counted as failed at record, and its file stays claimed.
    sqlx::query("ALTER TABLE results RENAME TO results_away").execute(&pool).await.unwrap();
    std::fs::write(world.drop_dir().join("unrecorded.png"), b"no image either").unwrap();
    wait_failed(&world, port, "record", "store_query").await;
    sqlx::query("ALTER TABLE results_away RENAME TO results").execute(&pool).await.unwrap();
    let logs = world.logs();
    let line =
        logs.lines().find(|l| l.contains("FAILED") && l.contains("unrecorded.png")).unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("record:") && line.contains("[store_query]"), "{line}");
    assert_eq!(common::claimed_files(&world.state()).len(), 1, "redone on the next start");

    stop(&world, child).await;
    pool.close().await;
    world.close().await;
}
