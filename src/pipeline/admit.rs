//! Admission: the async half of ingest. Opens a candidate (on a blocking thread), asks the store
//! for the claim, and hands the case to the graph, or reports it as failed or as a duplicate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::case::{CaseMeta, DicomInput, Failure, Frame, Outcome, Stage};
use super::record::{Message, new_case};
use super::{Engine, Inlet};
use crate::ingest::{self, Candidate};
use crate::store::{Claim, StoreError};

/// How admission treats a case that the store already knows.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Take over a case that was claimed but never recorded (`efen run`, and a watcher's own
    /// crash recovery). Otherwise such a case is someone else's work in flight.
    pub takeover: bool,
    /// Record a repeat of the same bytes at the same path as a duplicate (`efen watch`: every
    /// drop is an event). `efen run` records nothing for a plain re-run.
    pub record_same_path: bool,
}

/// Admission state for one run.
pub struct Admission<'a> {
    pub engine: &'a Engine,
    pub inlet: &'a Inlet,
    pub run_id: String,
    /// `watch.worker` for watchers, None for `efen run`.
    pub worker: Option<String>,
    /// Cancelled when waiting for the database should stop (shutdown deadline).
    pub give_up: CancellationToken,
    /// Case ids admitted by this run, with their source: the same bytes twice in one run are one
    /// case.
    seen: HashMap<String, String>,
    /// DICOM SEGs among the run's inputs, by the instances they reference (`efen run`).
    pub segs: Option<crate::ingest::seg_index::SegIndex>,
}

impl<'a> Admission<'a> {
    pub fn new(
        engine: &'a Engine,
        inlet: &'a Inlet,
        run_id: &str,
        worker: Option<String>,
        give_up: CancellationToken,
    ) -> Self {
        Admission { engine, inlet, run_id: run_id.into(), worker, give_up, seen: HashMap::new(), segs: None }
    }

    /// Puts one candidate through ingest. `read_from` is where its bytes are now.
    pub async fn admit(&mut self, candidate: Candidate, read_from: PathBuf, policy: Policy) -> Result<(), StoreError> {
        let engine = self.engine;
        let (pipeline, model_sha) = (engine.definition.name.clone(), engine.model.sha256.clone());
        let patterns = engine.patterns.clone();
        let max_bytes = engine.config.engine.max_file_mb.saturating_mul(1 << 20);
        let dicom_config = engine.config.dicom.clone();
        let started = Instant::now();
        let (opened, dicom, candidate, read_from) = tokio::task::spawn_blocking(move || {
            let opened = ingest::open(&candidate, &read_from, &pipeline, &model_sha, &patterns, max_bytes);
            // DICOM is parsed once, here, and shared by its frames (each frame is a case). A file
            // that does not parse stays one case, which fails at decode with the parser's reason.
            let dicom = match opened.as_ref() {
                Ok(job) if crate::dicom::looks_like_dicom(&job.bytes) => match crate::dicom::open(&job.bytes) {
                    Ok(file) => {
                        let identity = dicom_config.identity(&file);
                        Ok(Some(Arc::new(DicomInput { decoder: file.decoder_name(), identity, file })))
                    }
                    Err(e) => Err(e.to_string()),
                },
                _ => Ok(None),
            };
            (opened, dicom, candidate, read_from)
        })
        .await
        .expect("ingest does not panic");

        let (dicom, unreadable) = match dicom {
            Ok(dicom) => (dicom, None),
            Err(reason) => (None, Some(reason)),
        };
        let frames = dicom.as_ref().map_or(1, |input| input.file.frame_count());
        let mut ground_truth_by_reference = None;
        let (meta, job) = match opened {
            Ok(job) => {
                if job.ground_truth.is_none() {
                    ground_truth_by_reference = dicom.as_ref().and_then(|d| d.identity.sop_instance_uid.clone());
                }
                let meta = CaseMeta {
                    case_id: job.case_id.clone(),
                    original: job.original.clone(),
                    current: read_from,
                    sha256: job.sha256.clone(),
                    file_sha256: job.sha256.clone(),
                    size_bytes: job.bytes.len() as u64,
                    ground_truth: job.ground_truth.clone(),
                    frame: None,
                    dicom,
                    started,
                };
                let job = match unreadable {
                    Some(message) => Err(Failure { stage: Stage::Decode, message }),
                    None => Ok(job.bytes),
                };
                (meta, job)
            }
            Err((identity, error)) => {
                let meta = CaseMeta {
                    case_id: ingest::case_id(&identity, &engine.definition.name, &engine.model.sha256),
                    original: candidate.path.clone(),
                    current: read_from,
                    sha256: identity.clone(),
                    file_sha256: identity,
                    size_bytes: 0,
                    ground_truth: None,
                    frame: None,
                    dicom: None,
                    started,
                };
                (meta, Err(Failure { stage: Stage::Ingest, message: error.to_string() }))
            }
        };
        // A DICOM SEG elsewhere in the run that references this instance is its ground truth.
        let mut truth_of = |frame: u32| self.segs.as_mut()?.find(ground_truth_by_reference.as_deref()?, frame + 1);
        let truths: Vec<Option<PathBuf>> = (0..frames).map(&mut truth_of).collect();
        if frames <= 1 {
            let mut meta = meta;
            if meta.ground_truth.is_none() {
                meta.ground_truth = truths.first().cloned().flatten();
            }
            return self.admit_case(meta, job, policy).await;
        }
        for index in 0..frames {
            // Each frame's identity is the hash of the file's hash and the frame number, so the
            // store's unique key (bytes, pipeline, model) holds per frame.
            let mut frame_meta = meta.clone();
            frame_meta.sha256 = ingest::frame_identity(&meta.sha256, index);
            frame_meta.case_id = ingest::case_id(&frame_meta.sha256, &engine.definition.name, &engine.model.sha256);
            frame_meta.frame = Some(Frame { index, count: frames });
            if frame_meta.ground_truth.is_none() {
                frame_meta.ground_truth = truths[index as usize].clone();
            }
            self.admit_case(frame_meta, job.clone(), policy).await?;
        }
        Ok(())
    }

    /// Claims one case and hands it to the graph (or reports it as a duplicate or a failure).
    async fn admit_case(
        &mut self,
        meta: CaseMeta,
        job: Result<Arc<Vec<u8>>, Failure>,
        policy: Policy,
    ) -> Result<(), StoreError> {
        let engine = self.engine;
        let source = meta.original.display().to_string();
        if let Some(first) = self.seen.get(&meta.case_id) {
            let record = policy.record_same_path || *first != source;
            return self.duplicate(meta, format!("{first}, earlier in this run"), record).await;
        }
        self.seen.insert(meta.case_id.clone(), source.clone());
        let case = new_case(&meta, &self.run_id, &engine.definition.name, &engine.model.sha256, self.worker.clone());
        let claim = engine
            .store
            .retrying("claiming a case", &self.give_up, || engine.store.claim_case(&case, policy.takeover))
            .await?;
        match claim {
            Claim::New | Claim::TakenOver => {}
            Claim::Recorded { status, source_path } => {
                let record = policy.record_same_path || source_path != case.source_path;
                return self.duplicate(meta, format!("case {} ({status}, {source_path})", case.case_id), record).await;
            }
            Claim::Held { source_path } => {
                return self.duplicate(meta, format!("case {} (in flight, {source_path})", case.case_id), true).await;
            }
        }
        match job {
            Ok(bytes) => {
                let _ = self.inlet.jobs.send((meta, bytes)).await;
            }
            Err(failure) => {
                let outcome = Outcome::failed(meta, failure.stage, failure.message);
                let _ = self.inlet.outcomes.send(Message::Outcome(Box::new(outcome))).await;
            }
        }
        Ok(())
    }

    /// Reports (and, if `record`, stores) an input whose bytes are already another case's.
    async fn duplicate(&self, meta: CaseMeta, of: String, record: bool) -> Result<(), StoreError> {
        if record {
            let store = &self.engine.store;
            let source = meta.original.display().to_string();
            store
                .retrying("recording a duplicate", &self.give_up, || {
                    store.record_duplicate(&meta.case_id, &self.run_id, &source)
                })
                .await?;
        }
        let _ = self.inlet.outcomes.send(Message::Duplicate { meta, of, recorded: record }).await;
        Ok(())
    }
}
