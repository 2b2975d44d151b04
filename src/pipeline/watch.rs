//! `efen watch`: watches a drop folder (and, with `node.listen`, is a DICOM node feeding it; with
//! `http.listen`, serves health, metrics, cases and STOW-RS, whose uploads feed it too) until SIGINT
//! or SIGTERM, then finishes the cases in flight.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CaseObserver, Engine, RunReport, SpawnOptions};
use crate::config::Config;
use crate::ingest::Policy;
use crate::ingest::disposition::Transfer;
use crate::ingest::watch::DropFolder;

/// How long after SIGTERM the drain keeps waiting for an unavailable database. What is not
/// recorded by then stays claimed and is redone on the next start.
const STORE_GRACE: Duration = Duration::from_secs(30);
/// Attempts at admitting one claimed file when the store fails for other reasons than an outage.
const ADMIT_ATTEMPTS: u32 = 5;

/// Watches `dir` until a signal, and returns the report of what this session processed.
pub async fn watch(
    config: Config,
    pipeline: Option<&Path>,
    dir: PathBuf,
    observer: Arc<dyn CaseObserver>,
) -> anyhow::Result<RunReport> {
    if !dir.is_dir() {
        anyhow::bail!("drop folder {} does not exist or is not a folder", dir.display());
    }
    let dir = std::fs::canonicalize(&dir)?;
    // Signals first: a SIGTERM while the model loads still ends in an orderly exit 0.
    let shutdown = crate::shutdown::on_signal();
    // The HTTP server before the model: /healthz answers (and /readyz says why not ready) while a
    // large model loads.
    let readiness = Arc::new(crate::http::Readiness::new(vec![
        ("drop folder", dir.clone()),
        ("state folder", config.state_dir()),
        ("output folder", config.out_dir()),
    ]));
    // Uploads land in <drop>/http/, where the watcher below takes them like any dropped file.
    let (max_file_mb, max_queued) = (config.engine.max_file_mb, config.http.max_queued_uploads);
    let cases = Arc::new(crate::http::Cases::new(&dir, config.out_dir(), max_file_mb, max_queued));
    // The receive spool, opened once: the Storage SCP and STOW-RS both write into it.
    let spool = if config.node.enabled() || config.http.enabled() {
        Some(crate::node::spool::Spool::open(&config.state_dir())?)
    } else {
        None
    };
    let http = match &spool {
        Some(spool) if config.http.enabled() => {
            let stow =
                Arc::new(crate::http::dicomweb::Stow::new(spool.clone(), &config.node, config.engine.max_file_mb));
            Some(crate::http::start(&config.http, readiness.clone(), cases.clone(), stow, shutdown.clone()).await?)
        }
        _ => None,
    };
    let observer: Arc<dyn CaseObserver> = Arc::new(super::run_report::Observed(observer));
    let mut engine = Engine::open(config, pipeline).await?;
    // Cases first: once /readyz says ready, uploads are taken.
    cases.engine_ready(engine.store.clone(), engine.admission_config.clone());
    readiness.engine_ready(engine.store.clone());
    crate::telemetry::ServiceStarted { pipeline: &engine.definition.name, model_sha256: &engine.model.sha256 }.emit();
    let worker = engine.config.watch.worker();
    let claimed_root = engine.config.state_dir().join("claimed");
    let folder = DropFolder {
        dir: dir.clone(),
        claimed_dir: claimed_root.join(&worker),
        worker: worker.clone(),
        patterns: engine.admission_config.patterns.clone(),
        settings: engine.config.watch.clone(),
    };
    let _lock = folder.lock()?;
    let run_id = engine.start_run("watch").await?;
    let give_up = CancellationToken::new();
    tokio::spawn({
        let (shutdown, give_up) = (shutdown.clone(), give_up.clone());
        async move {
            shutdown.cancelled().await;
            crate::systemd::stopping();
            tokio::time::sleep(STORE_GRACE).await;
            give_up.cancel();
        }
    });
    observer.inputs_found(0);
    let sends_queued = Arc::new(tokio::sync::Notify::new());
    let options = SpawnOptions {
        transfer: Transfer::Move,
        observer,
        give_up: give_up.clone(),
        claimed_root: Some(folder.claimed_dir.clone()),
        sends_queued: sends_queued.clone(),
    };
    let (outlet, report) = engine.spawn(&run_id, options);
    let mut admission = engine.admission(outlet, &run_id, Some(worker.clone()), give_up);
    admission.series_done = Some(engine.config.state_dir());

    // First what an earlier stop of this worker left half done.
    let orphans = folder.orphans();
    if !orphans.is_empty() {
        tracing::info!(worker = %worker, "redoing {} files claimed before the last stop", orphans.len());
    }
    let recovery = Policy { takeover: true, record_same_path: false };
    for orphan in orphans {
        if let Err(e) = admission.admit(orphan.candidate, orphan.claimed, recovery).await {
            tracing::error!("cannot admit a claimed file; it stays claimed for the next start: {e}");
        }
    }

    // The DICOM node (and STOW-RS) feeds the same drop folder, so everything below applies to what
    // it receives.
    // Complete series the node received, claimed for this worker: admitted as they come.
    let (received_tx, mut received_rx) = tokio::sync::mpsc::channel::<crate::node::ReceivedSeries>(4);
    let node = if spool.is_some() || !engine.config.node.destinations.is_empty() {
        let rules = engine.definition.select.clone();
        let links = crate::node::NodeLinks {
            claimed_dir: folder.claimed_dir.clone(),
            series_tx: received_tx,
            sends_queued: sends_queued.clone(),
        };
        Some(
            crate::node::start(
                &engine.config.node,
                &engine.config.state_dir(),
                &engine.store,
                &dir,
                links,
                rules,
                spool,
                shutdown.clone(),
            )
            .await?,
        )
    } else {
        None
    };

    let (claimed_tx, mut claimed_rx) = tokio::sync::mpsc::channel(1);
    let watcher = tokio::spawn(folder.run(claimed_tx, shutdown.clone()));
    tracing::info!(dir = %dir.display(), worker = %worker, "watching; SIGINT or SIGTERM to stop");
    crate::systemd::ready();
    let policy = Policy { takeover: false, record_same_path: true };
    let quiet = Duration::from_millis(engine.config.watch.series_quiet_ms);
    loop {
        // A claimed file, or the moment the next gathered series has been quiet long enough.
        let due = admission.next_series_due(quiet);
        let claimed = tokio::select! {
            claimed = claimed_rx.recv() => match claimed {
                Some(claimed) => claimed,
                None => break,
            },
            // The node judged the series complete: no settle, no second quiet time.
            Some(series) = received_rx.recv() => {
                admit_received(&mut admission, series, policy).await;
                continue;
            }
            _ = sleep_until(due) => {
                if let Err(e) = admission.flush_series(Some(quiet)).await {
                    tracing::error!("cannot admit a series; its files stay claimed for the next start: {e}");
                }
                continue;
            }
        };
        // A store error that is not a connection problem is retried a few times, then the file
        // stays claimed and is redone on the next start.
        for attempt in 1..=ADMIT_ATTEMPTS {
            match admission.admit(claimed.candidate.clone(), claimed.claimed.clone(), policy).await {
                Ok(()) => break,
                Err(e) if attempt < ADMIT_ATTEMPTS && !shutdown.is_cancelled() => {
                    tracing::warn!(file = %claimed.candidate.path.display(), attempt, "cannot admit, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(file = %claimed.candidate.path.display(), "cannot admit; it stays claimed for the next start: {e}");
                    break;
                }
            }
        }
    }
    drop(received_rx);
    watcher.await??;
    if let Some(node) = node {
        node.join_all().await;
    }
    if let Some(http) = http {
        http.join().await;
    }
    tracing::info!("stopping: finishing the cases in flight");
    drop(admission);
    let report = report.await?;
    if let Err(e) = engine.finish_run(&run_id, &report.counts()).await {
        tracing::warn!("cannot record the end of the run: {e}");
    }
    engine.close().await;
    Ok(report)
}

/// Sleeps until `due`, or forever when nothing is due.
async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Admits the instances of a complete series from the DICOM node, then the series at once. What
/// cannot be admitted stays claimed and is redone on the next start.
async fn admit_received(admission: &mut crate::ingest::Admission, series: crate::node::ReceivedSeries, policy: Policy) {
    for file in series.files {
        if let Err(e) = admission.admit(file.candidate, file.claimed, policy).await {
            tracing::error!(series = %series.series_uid, "cannot admit a received instance; it stays claimed for the next start: {e}");
        }
    }
    if let Err(e) = admission.flush_series_of(&series.series_uid).await {
        tracing::error!(series = %series.series_uid, "cannot admit a series; its files stay claimed for the next start: {e}");
    }
}
