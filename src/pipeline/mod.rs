//! The wiring: the only module that knows every stage, and the drivers of the commands that run
//! them ([`run`] for `efen run`, [`watch`] for `efen watch`).
//!
//! ```text
//! ingest ─jobs→ prepare (blocking: decode, preprocess) ─tensors→ infer threads (batches)
//!        ─maps→ finish (blocking: postprocess, evaluate, emit) ─outcomes→ record (store, files)
//! ```
//! Every channel is bounded. The graph is built back to front and drains front to back: when
//! ingest drops its senders, each stage finishes what it holds and closes its own output.
//!
//! The work in flight is the wiring's: [`work`] (a case's canvas and accumulator, its tiles),
//! [`assembly`] (a series' slices coming back into one volume); `errors` holds the failures the
//! wiring itself ends a case with.

pub mod assembly;
pub mod definition;
mod errors;
mod record;
pub mod run;
pub mod run_report;
mod series;
pub mod stage_cpu;
pub mod stages;
pub mod watch;
pub mod work;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use tokio_util::sync::CancellationToken;

use crate::case::{CaseMeta, Message};
use crate::config::Config;
pub use crate::config::EngineConfig;
use crate::infer::{self, InferRequest, Inference};
use crate::ingest::disposition::Transfer;
use crate::ingest::{Admission, AdmissionConfig, Outlet};
use crate::model::Model;
use crate::store::{LedgerState, NewRun, Store};
use definition::PipelineDefinition;
pub use run::{run, run_once};
pub use run_report::{CaseObserver, Row, RunReport, Status};
use stages::StageContext;
pub use watch::watch;
use work::TileJob;

/// Why a command could not start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Definition(#[from] definition::DefinitionError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot create {}: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
}

/// A loaded pipeline: definition, checked model, open store and ready sessions.
pub struct Engine {
    config: Config,
    definition: PipelineDefinition,
    model: Model,
    store: Store,
    admission_config: Arc<AdmissionConfig>,
    provider: String,
    context: Arc<StageContext>,
    sessions: Vec<Inference>,
}

impl Engine {
    pub async fn open(config: Config, pipeline: Option<&Path>) -> Result<Engine, SetupError> {
        let pipeline_path = match pipeline {
            Some(path) => path.to_path_buf(),
            None => config.resolve(&config.paths.default_pipeline),
        };
        let definition = PipelineDefinition::load(&pipeline_path)?;
        let model = Model::load(&definition.model)?;
        for dir in [config.state_dir(), config.out_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| SetupError::Folder { path: dir.clone(), source })?;
        }
        let store = Store::open(&config.database_url(), config.database.max_connections).await?;

        let mut sessions = Vec::new();
        let mut provider = String::new();
        for _ in 0..config.runtime.sessions {
            let (session_config, session_model) = (config.clone(), model.clone());
            let (session, used, skipped) = tokio::task::spawn_blocking(move || {
                crate::runtime::session(&session_config.runtime_settings(), &session_model)
            })
            .await
            .expect("session construction does not panic")?;
            if sessions.is_empty() {
                for failure in &skipped {
                    tracing::warn!("execution provider unavailable, trying the next: {failure}");
                }
            }
            sessions.push(session);
            provider = used;
        }
        tracing::info!(model = %model.path.display(), provider = %provider, sessions = config.runtime.sessions, "model loaded");
        let threshold = definition.postprocess.threshold.unwrap_or(model.card.threshold);
        let card = model.card.at_size(definition.preprocess.input_size);
        for notice in card.notices() {
            tracing::warn!("{notice}");
        }
        let context = Arc::new(StageContext {
            card: card.clone(),
            model_sha256: model.sha256.clone(),
            pipeline: definition.name.clone(),
            fit: definition.preprocess.fit,
            tiling: definition.preprocess.tiling,
            passes: crate::preprocess::Flip::passes(&definition.preprocess.mirror),
            threshold,
            cleanup: definition.postprocess.cleanup(),
            outputs: definition.outputs.clone(),
            out_dir: config.out_dir(),
            dicom: definition.dicom.clone(),
            sr: config.dicom.sr.clone(),
            workers: config.engine.workers(),
        });
        let sessions = sessions.into_iter().map(|session| Inference::new(session, &card)).collect();
        let admission_config = Arc::new(AdmissionConfig {
            pipeline: definition.name.clone(),
            model_sha256: model.sha256.clone(),
            patterns: definition.ground_truth.patterns(),
            max_bytes: config.engine.max_file_mb.saturating_mul(1 << 20),
            patient_ids: config.dicom.clone(),
            unit: definition.dicom.unit,
        });
        Ok(Engine { config, definition, model, store, admission_config, provider, context, sessions })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Where the pipeline finds ground truth (and which files of a folder are masks, not inputs).
    pub fn ground_truth_patterns(&self) -> &[crate::ingest::GroundTruthPattern] {
        &self.admission_config.patterns
    }

    /// Closes the store's connections (at the end of a command).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Records the end of a run.
    pub async fn finish_run(&self, run_id: &str, summary: &str) -> Result<(), crate::store::StoreError> {
        self.store.finish_run(run_id, summary).await
    }

    /// Admission for one run, handing its cases to `outlet` (from [`Engine::spawn`]).
    fn admission(&self, outlet: Outlet, run_id: &str, worker: Option<String>, give_up: CancellationToken) -> Admission {
        Admission::new(self.admission_config.clone(), self.store.clone(), outlet, run_id, worker, give_up)
    }

    /// The model card as the pipeline uses it (with `preprocess.input_size` applied).
    pub fn card(&self) -> &crate::model::ModelCard {
        &self.context.card
    }

    /// The settings every CPU stage works with.
    pub fn context(&self) -> Arc<StageContext> {
        self.context.clone()
    }

    /// Records the start of a run and returns its id.
    pub async fn start_run(&self, command: &str) -> Result<String, SetupError> {
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut settings = serde_json::to_value(&self.definition).expect("definition serializes");
        settings["threshold_used"] = serde_json::json!(self.context.threshold);
        settings["provider"] = serde_json::json!(self.provider);
        settings["model_intended_use"] = serde_json::json!(self.model.card.intended_use());
        settings["model_size_warning"] = serde_json::json!(self.context.card.size_warning());
        self.store
            .start_run(&NewRun {
                run_id: run_id.clone(),
                command: command.into(),
                pipeline: self.definition.name.clone(),
                pipeline_settings: settings.to_string(),
                model_name: self.model.card.name.clone(),
                model_sha256: self.model.sha256.clone(),
            })
            .await?;
        Ok(run_id)
    }

    /// Builds the stage graph. Ingest sends into the returned [`Outlet`]; dropping it (and every
    /// clone) drains the graph, and the join handle yields the run's report.
    fn spawn(&mut self, run_id: &str, options: SpawnOptions) -> (Outlet, tokio::task::JoinHandle<RunReport>) {
        let queue = self.config.engine.queue;
        let workers = self.config.engine.workers();
        let (job_tx, job_rx) = mpsc::channel::<(CaseMeta, Arc<Vec<u8>>)>(queue);
        let (tensor_tx, tensor_rx) = crossbeam_channel::bounded::<InferRequest<TileJob>>(queue);
        let (map_tx, map_rx) = mpsc::channel::<infer::InferResult<TileJob>>(queue);
        let (outcome_tx, outcome_rx) = mpsc::channel::<Message>(queue);
        let ledger = Ledger::spawn(self.store.clone());

        // Back to front: record, finish, infer, prepare.
        let recorder = record::Recorder {
            store: self.store.clone(),
            run_id: run_id.to_string(),
            state_dir: self.config.state_dir(),
            transfer: options.transfer,
            observer: options.observer,
            give_up: options.give_up,
            claimed_root: options.claimed_root,
            sends_queued: options.sends_queued,
            sends: self.config.node.sends_for_received_cases(self.config.dicom.sr.enabled),
        };
        // Every case's lines carry the run's id (a field of this span in JSON logs).
        let span = tracing::info_span!("run", run_id = %run_id);
        let record = tokio::spawn(tracing::Instrument::instrument(recorder.run(outcome_rx), span));
        tokio::spawn(finish_stage(self.context.clone(), map_rx, outcome_tx.clone(), workers, ledger.clone()));
        let batch_size = self.config.engine.batch_size;
        let batch_wait = Duration::from_millis(self.config.engine.batch_wait_ms);
        for inference in self.sessions.drain(..) {
            let (requests, maps, ledger) = (tensor_rx.clone(), map_tx.clone(), ledger.clone());
            std::thread::Builder::new()
                .name("efen-infer".into())
                .spawn(move || {
                    infer::serve(inference, requests, batch_size, batch_wait, |result| {
                        ledger.mark(&result.payload.work.meta.case_id, LedgerState::Inferred);
                        // The receiver only goes away if the runtime is shutting down.
                        let _ = maps.blocking_send(result);
                    })
                })
                .expect("spawning an inference thread");
        }
        drop((tensor_rx, map_tx));
        tokio::spawn(prepare_stage(self.context.clone(), job_rx, tensor_tx, outcome_tx.clone(), workers, ledger));
        (Outlet { jobs: job_tx, ended: outcome_tx }, record)
    }
}

/// How a run's graph treats inputs and the database.
struct SpawnOptions {
    /// Watch moves claimed inputs to done/ and failed/; run copies failed inputs only.
    transfer: Transfer,
    /// Told of every case as it ends.
    observer: Arc<dyn CaseObserver>,
    /// Cancelled when the record stage should stop waiting for an unavailable database.
    give_up: CancellationToken,
    /// The watcher's claim folder, tidied as cases end.
    claimed_root: Option<PathBuf>,
    /// Notified when a recorded case queued sends, for the outbox.
    sends_queued: Arc<tokio::sync::Notify>,
}

/// Ledger updates from the compute stages: sent without waiting, written by one task, so no
/// stage ever waits on the database. A lost update only leaves the ledger one state behind.
#[derive(Clone)]
struct Ledger(mpsc::UnboundedSender<(String, LedgerState)>);

impl Ledger {
    fn spawn(store: Store) -> Ledger {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, LedgerState)>();
        tokio::spawn(async move {
            // Whatever queued up while the last write ran goes in one transaction, each case at
            // its latest state: one commit (one fsync) for many updates.
            let mut pending = Vec::new();
            while rx.recv_many(&mut pending, 256).await > 0 {
                let mut latest: std::collections::HashMap<String, LedgerState> = std::collections::HashMap::new();
                for (case_id, state) in pending.drain(..) {
                    let entry = latest.entry(case_id).or_insert(state);
                    if state.rank() > entry.rank() {
                        *entry = state;
                    }
                }
                let updates: Vec<(String, LedgerState)> = latest.into_iter().collect();
                if let Err(e) = store.mark_all(&updates).await {
                    tracing::debug!("ledger update skipped: {e}");
                }
            }
        });
        Ledger(tx)
    }

    fn mark(&self, case_id: &str, state: LedgerState) {
        let _ = self.0.send((case_id.to_string(), state));
    }
}

async fn prepare_stage(
    context: Arc<StageContext>,
    mut jobs: mpsc::Receiver<(CaseMeta, Arc<Vec<u8>>)>,
    tensors: crossbeam_channel::Sender<InferRequest<TileJob>>,
    outcomes: mpsc::Sender<Message>,
    workers: usize,
    ledger: Ledger,
) {
    let slots = Arc::new(Semaphore::new(workers));
    let mut running = JoinSet::new();
    while let Some((meta, bytes)) = jobs.recv().await {
        crate::telemetry::QueueDepth { queue: "prepare", waiting: jobs.len() }.emit();
        let slot = slots.clone().acquire_owned().await.expect("semaphore is never closed");
        let (context, tensors, outcomes, ledger) = (context.clone(), tensors.clone(), outcomes.clone(), ledger.clone());
        running.spawn_blocking(move || {
            // Blocks while the inference queue is full: backpressure up to ingest.
            let send = |tensor, job| {
                let _ = tensors.send(InferRequest { tensor, payload: job });
            };
            let end = |outcome| {
                let _ = outcomes.blocking_send(Message::Outcome(outcome));
            };
            if meta.series.is_some() {
                ledger.mark(&meta.case_id, LedgerState::Decoded);
                // Slice by slice, on every CPU worker: only the slices in flight are in memory.
                series::prepare(&context, meta, send, |outcome| end(Box::new(outcome)));
            } else {
                match stages::prepare(&context, meta, &bytes) {
                    Ok(work) => {
                        ledger.mark(&work.meta.case_id, LedgerState::Decoded);
                        stages::cut_tiles(&context, &work, send);
                    }
                    Err(outcome) => end(outcome),
                }
            }
            drop(slot);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn finish_stage(
    context: Arc<StageContext>,
    mut maps: mpsc::Receiver<infer::InferResult<TileJob>>,
    outcomes: mpsc::Sender<Message>,
    workers: usize,
    ledger: Ledger,
) {
    let slots = Arc::new(Semaphore::new(workers));
    let mut running = JoinSet::new();
    while let Some(result) = maps.recv().await {
        crate::telemetry::QueueDepth { queue: "postprocess", waiting: maps.len() }.emit();
        let slot = slots.clone().acquire_owned().await.expect("semaphore is never closed");
        let (context, outcomes, ledger) = (context.clone(), outcomes.clone(), ledger.clone());
        running.spawn_blocking(move || {
            let outcome = match stages::add_tile(&context, result.payload, result.output, result.elapsed) {
                None => None,
                Some(stages::Ended::Case(outcome)) => Some(*outcome),
                Some(stages::Ended::Series { series, done }) => Some(series::finish(&context, &series, done)),
            };
            if let Some(outcome) = outcome {
                if outcome.result.is_ok() {
                    ledger.mark(&outcome.meta.case_id, LedgerState::Written);
                }
                let _ = outcomes.blocking_send(Message::Outcome(Box::new(outcome)));
            }
            drop(slot);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
