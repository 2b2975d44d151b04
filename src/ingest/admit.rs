//! Admission, the last step of ingest: opens a candidate on a blocking thread (read, hash, parse
//! DICOM once, fan a multi-frame file out into frames, pair ground truth), claims each case in the
//! store, and hands it on through its [`Outlet`]: to decode, or, when it ends here (failed at
//! ingest, a duplicate), straight to record. An instance of a DICOM series waits in the gatherer
//! until its series is complete ([`series`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::gather::{Added, Gatherer, Instance};
use super::{Candidate, GroundTruthPattern};
use crate::case::{CaseMeta, Failure, Frame, Message, Outcome, SourceFile, Stage};
use crate::dicom::DicomInput;
use crate::ingest;

mod series;

use crate::store::{Claim, NewCase, Store, StoreError};
pub(crate) use series::gathered;

/// What admission needs to know of the pipeline and the service, fixed for a run.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub pipeline: String,
    pub model_sha256: String,
    pub patterns: Vec<GroundTruthPattern>,
    /// Larger files fail at ingest.
    pub max_bytes: u64,
    pub patient_ids: crate::dicom::PatientIdConfig,
    /// A series per case (instances wait in the gatherer for the rest of their series), or a
    /// frame per case.
    pub unit: crate::dicom::Unit,
}

/// Where admitted cases go: jobs to decode, and cases that end at ingest to record. Dropping every
/// outlet drains the stage graph behind it.
#[derive(Clone)]
pub struct Outlet {
    pub jobs: mpsc::Sender<(CaseMeta, Arc<Vec<u8>>)>,
    pub ended: mpsc::Sender<Message>,
}

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
pub struct Admission {
    config: Arc<AdmissionConfig>,
    store: Store,
    outlet: Outlet,
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
    /// Instances waiting for the rest of their series.
    gatherer: Gatherer,
    /// `efen watch`'s state folder: a series whose instances come after it was segmented is
    /// gathered again whole, with its earlier instances from `<state>/done/series/<uid>/`.
    pub series_done: Option<PathBuf>,
}

impl Admission {
    pub fn new(
        config: Arc<AdmissionConfig>,
        store: Store,
        outlet: Outlet,
        run_id: &str,
        worker: Option<String>,
        give_up: CancellationToken,
    ) -> Self {
        Admission {
            config,
            store,
            outlet,
            run_id: run_id.into(),
            worker,
            give_up,
            seen: HashMap::new(),
            segs: None,
            gatherer: Gatherer::default(),
            series_done: None,
        }
    }

    /// Puts one candidate through ingest. `read_from` is where its bytes are now.
    pub async fn admit(&mut self, candidate: Candidate, read_from: PathBuf, policy: Policy) -> Result<(), StoreError> {
        let config = self.config.clone();
        let started = Instant::now();
        let (opened, dicom, candidate, read_from) = tokio::task::spawn_blocking(move || {
            let c = &config;
            let opened = ingest::open(&candidate, &read_from, &c.pipeline, &c.model_sha256, &c.patterns, c.max_bytes);
            // DICOM is parsed once, here, and shared by its frames (each frame is a case). A file
            // that does not parse stays one case, which fails at decode with the parser's reason.
            let dicom = match opened.as_ref() {
                Ok(job) if crate::dicom::looks_like_dicom(&job.bytes) => match crate::dicom::open(&job.bytes) {
                    Ok(mut file) => {
                        let identity = config.patient_ids.identity(&file);
                        if gathered(&config, &identity) {
                            // Its slices are decoded from the file when the series is complete.
                            file.drop_pixel_data();
                        }
                        Ok(Some(Arc::new(DicomInput { decoder: file.decoder_name(), identity, file })))
                    }
                    Err(e) => Err(e),
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
                    file: SourceFile {
                        original: job.original.clone(),
                        current: read_from,
                        sha256: job.sha256.clone(),
                        size_bytes: job.bytes.len() as u64,
                        origin: candidate.origin,
                    },
                    sha256: job.sha256.clone(),
                    ground_truth: job.ground_truth.clone(),
                    frame: None,
                    dicom,
                    series: None,
                    started,
                };
                let job = match unreadable {
                    Some(error) => Err(Failure::new(Stage::Decode, error)),
                    None => Ok(job.bytes),
                };
                (meta, job)
            }
            Err((identity, error)) => {
                let meta = CaseMeta {
                    case_id: ingest::case_id(&identity, &self.config.pipeline, &self.config.model_sha256),
                    file: SourceFile {
                        original: candidate.path.clone(),
                        current: read_from,
                        sha256: identity.clone(),
                        size_bytes: 0,
                        origin: candidate.origin,
                    },
                    sha256: identity,
                    ground_truth: None,
                    frame: None,
                    dicom: None,
                    series: None,
                    started,
                };
                (meta, Err(Failure::new(Stage::Ingest, error)))
            }
        };
        // An instance of a series waits for the rest of it (see flush_series).
        if let (Some(input), Ok(_)) = (meta.dicom.as_ref().filter(|d| gathered(&self.config, &d.identity)), &job) {
            let instance = Instance {
                series_uid: input.identity.series_instance_uid.clone().unwrap_or_default(),
                file: meta.file.clone(),
                input: input.clone(),
                truth: meta.ground_truth.clone(),
                policy,
            };
            return match self.gatherer.add(instance) {
                Added::New => Ok(()),
                Added::Repeat(repeat) => {
                    let of = format!("an instance of series {} with the same bytes, earlier", repeat.series_uid);
                    self.duplicate(meta, of, false).await
                }
                // The earlier copy of the instance leaves the series: it is settled as a repeat.
                Added::Replaced(earlier) => {
                    let uid = earlier.sop_instance_uid().unwrap_or_default().to_string();
                    tracing::warn!(series = %earlier.series_uid, instance = %uid, "an instance came again with other bytes; the later copy is used");
                    let of = format!("instance {uid} of series {}, replaced by a later copy", earlier.series_uid);
                    let meta = self.instance_meta(&earlier);
                    self.duplicate(meta, of, false).await
                }
            };
        }
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
            frame_meta.case_id = ingest::case_id(&frame_meta.sha256, &self.config.pipeline, &self.config.model_sha256);
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
        let source = meta.file.original.display().to_string();
        if let Some(first) = self.seen.get(&meta.case_id) {
            let record = policy.record_same_path || *first != source;
            return self.duplicate(meta, format!("{first}, earlier in this run"), record).await;
        }
        self.seen.insert(meta.case_id.clone(), source.clone());
        let case = self.new_case(&meta);
        let store = &self.store;
        let claim =
            store.retrying("claiming a case", &self.give_up, || store.claim_case(&case, policy.takeover)).await?;
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
                let _ = self.outlet.jobs.send((meta, bytes)).await;
            }
            Err(failure) => {
                let outcome = Outcome::failed(meta, failure);
                let _ = self.outlet.ended.send(Message::Outcome(Box::new(outcome))).await;
            }
        }
        Ok(())
    }

    /// Reports (and, if `record`, stores) an input whose bytes are already another case's.
    async fn duplicate(&self, meta: CaseMeta, of: String, record: bool) -> Result<(), StoreError> {
        if record {
            let store = &self.store;
            let source = meta.file.original.display().to_string();
            store
                .retrying("recording a duplicate", &self.give_up, || {
                    store.record_duplicate(&meta.case_id, &self.run_id, &source)
                })
                .await?;
        }
        let _ = self.outlet.ended.send(Message::Duplicate { meta, of, recorded: record }).await;
        Ok(())
    }

    /// An instance as a case of its own would be: what its repeat is reported as.
    fn instance_meta(&self, instance: &Instance) -> CaseMeta {
        CaseMeta {
            case_id: ingest::case_id(&instance.file.sha256, &self.config.pipeline, &self.config.model_sha256),
            file: instance.file.clone(),
            sha256: instance.file.sha256.clone(),
            ground_truth: instance.truth.clone(),
            frame: None,
            dicom: Some(instance.input.clone()),
            series: None,
            started: Instant::now(),
        }
    }

    /// The case as the store first sees it, at its claim.
    fn new_case(&self, meta: &CaseMeta) -> NewCase {
        NewCase {
            case_id: meta.case_id.clone(),
            run_id: self.run_id.clone(),
            pipeline: self.config.pipeline.clone(),
            model_sha256: self.config.model_sha256.clone(),
            source_path: meta.source_path(),
            source_sha256: meta.sha256.clone(),
            file_sha256: meta.file.sha256.clone(),
            size_bytes: meta.file.size_bytes as i64,
            ground_truth_path: meta.ground_truth.as_ref().map(|p| p.display().to_string()),
            worker: self.worker.clone(),
        }
    }
}
