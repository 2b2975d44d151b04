//! `efen run`: processes the given files and folders once. Inputs are read where they are; a
//! copy of each failed input goes to `failed/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{CaseObserver, Engine, RunReport, SpawnOptions};
use crate::config::Config;
use crate::ingest::Policy;
use crate::ingest::disposition::Transfer;
use crate::ingest::seg_index::SegIndex;

/// Opens the pipeline, processes `paths` once, and returns the report and the wall time in
/// seconds.
pub async fn run(
    config: Config,
    pipeline: Option<&Path>,
    paths: &[PathBuf],
    observer: Arc<dyn CaseObserver>,
) -> anyhow::Result<(RunReport, f64)> {
    let mut engine = Engine::open(config, pipeline).await?;
    let result = run_once(&mut engine, paths, observer).await;
    engine.close().await;
    result
}

/// Processes `paths` once with an open engine (which `efen bench` also measures).
pub async fn run_once(
    engine: &mut Engine,
    paths: &[PathBuf],
    observer: Arc<dyn CaseObserver>,
) -> anyhow::Result<(RunReport, f64)> {
    let candidates = crate::ingest::discover(paths, &engine.admission_config.patterns)
        .map_err(|e| anyhow::anyhow!("cannot read input {e}"))?;
    // DICOM SEGs are ground truth for the images they reference; they are admitted last, and only
    // those no image used become (failed) cases: the count grows by those.
    let (candidates, segs) = SegIndex::split(candidates);
    observer.inputs_found(candidates.len() as u64);
    let run_id = engine.start_run("run").await?;
    let started = Instant::now();
    // A run waits for an unavailable database rather than lose a result (Ctrl-C stops it).
    let never = CancellationToken::new();
    let options = SpawnOptions {
        transfer: Transfer::Copy,
        observer: observer.clone(),
        give_up: never.clone(),
        claimed_root: None,
        sends_queued: Arc::default(),
    };
    let (outlet, report) = engine.spawn(&run_id, options);
    let mut admission = engine.admission(outlet, &run_id, None, never);
    admission.segs = (!segs.is_empty()).then_some(segs);
    let policy = Policy { takeover: true, record_same_path: false };
    for candidate in candidates {
        let read_from = candidate.path.clone();
        admission.admit(candidate, read_from, policy).await?;
    }
    // Every instance is in: each gathered series is complete.
    admission.flush_series(None).await?;
    let unused_segs = admission.segs.take().map(|segs| segs.unused()).unwrap_or_default();
    observer.inputs_found(unused_segs.len() as u64);
    for candidate in unused_segs {
        let read_from = candidate.path.clone();
        admission.admit(candidate, read_from, policy).await?;
    }
    drop(admission);
    let mut report = report.await?;
    report.model_notices = engine.card().notices();
    let elapsed = started.elapsed().as_secs_f64();
    engine.finish_run(&run_id, &report.counts()).await?;
    Ok((report, elapsed))
}
