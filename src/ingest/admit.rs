//! Admission, the last step of ingest: opens a candidate on a blocking thread (read, hash, parse
//! DICOM once, fan a multi-frame file out into frames, pair ground truth), claims each case in the
//! store, and hands it on through its [`Outlet`]: to decode, or, when it ends here (failed at
//! ingest, a duplicate), straight to record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::{Candidate, GroundTruthPattern};
use crate::case::{CaseMeta, DicomInput, Failure, Frame, Message, Outcome, Stage};
use crate::ingest;
use crate::series::{Gatherer, Instance, SeriesCase};
use crate::store::{Claim, NewCase, Store, StoreError};

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
                    origin: candidate.origin,
                    sha256: job.sha256.clone(),
                    file_sha256: job.sha256.clone(),
                    size_bytes: job.bytes.len() as u64,
                    ground_truth: job.ground_truth.clone(),
                    frame: None,
                    dicom,
                    series: None,
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
                    case_id: ingest::case_id(&identity, &self.config.pipeline, &self.config.model_sha256),
                    original: candidate.path.clone(),
                    current: read_from,
                    origin: candidate.origin,
                    sha256: identity.clone(),
                    file_sha256: identity,
                    size_bytes: 0,
                    ground_truth: None,
                    frame: None,
                    dicom: None,
                    series: None,
                    started,
                };
                (meta, Err(Failure { stage: Stage::Ingest, message: error.to_string() }))
            }
        };
        // An instance of a series waits for the rest of it (see flush_series).
        if let (Some(input), Ok(_)) = (meta.dicom.as_ref().filter(|d| gathered(&self.config, &d.identity)), &job) {
            let instance = Instance {
                series_uid: input.identity.series_instance_uid.clone().unwrap_or_default(),
                original: meta.original.clone(),
                current: meta.current.clone(),
                origin: meta.origin,
                sha256: meta.sha256.clone(),
                size_bytes: meta.size_bytes,
                input: input.clone(),
                truth: meta.ground_truth.clone(),
                policy,
            };
            if let Err(repeat) = self.gatherer.add(instance) {
                let of = format!("an instance of series {} with the same bytes, earlier", repeat.series_uid);
                return self.duplicate(meta, of, false).await;
            }
            return Ok(());
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

    /// Admits the gathered series that are complete (quiet for `quiet`; all with None), each
    /// stack as one case.
    pub async fn flush_series(&mut self, quiet: Option<Duration>) -> Result<(), StoreError> {
        for mut instances in self.gatherer.take(quiet) {
            let Some(first) = instances.first() else { continue };
            // A series with an instance recovered after a crash takes over its earlier claim.
            let policy = Policy {
                takeover: instances.iter().any(|i| i.policy.takeover),
                record_same_path: first.policy.record_same_path,
            };
            let (origin, uid, arrived) = (first.origin, first.series_uid.clone(), instances.len());
            // Instances that come after their series was segmented: the case is the whole series
            // again, with the earlier instances from done/ (watch), or only them (run).
            let earlier_files = match &self.series_done {
                Some(state) => self.earlier_instances(state, &instances).await,
                None => Vec::new(),
            };
            let regathered = earlier_files.len();
            instances.extend(earlier_files);
            let started = Instant::now();
            let segs = &mut self.segs;
            let cases = crate::series::cases_of(instances, |uid, frame| segs.as_mut()?.find(uid, frame));
            let slices: usize = cases.iter().map(|c| c.slices.len()).sum();
            let grouping_ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!(series = %uid, instances = arrived + regathered, regathered, slices, stacks = cases.len(), grouping_ms, "series complete");
            let config = self.config.clone();
            let (pipeline, model) = (&config.pipeline, &config.model_sha256);
            let earlier = match self.store.series_cases(&uid, pipeline, model).await {
                Ok(earlier) => earlier,
                Err(e) => {
                    tracing::debug!("cannot look up earlier cases of series {uid}: {e}");
                    Vec::new()
                }
            };
            for mut case in cases {
                // A stack made only of earlier instances is a case already recorded.
                if regathered > 0 && case.files.iter().all(|f| self.is_earlier(&uid, &f.current)) {
                    continue;
                }
                let id = ingest::case_id(&case.sha256(), pipeline, model);
                let before: Vec<String> = earlier
                    .iter()
                    .filter(|(other, _)| *other != id)
                    .map(|(other, slices)| format!("case {other}, {slices} slices"))
                    .collect();
                if !before.is_empty() {
                    let now = match regathered {
                        0 => format!("this case has the {} slice(s) that came now", case.slices.len()),
                        _ => format!("this case is the whole series again, {} slices", case.slices.len()),
                    };
                    case.warnings.push(format!("series {uid} was segmented before ({}); {now}", before.join("; ")));
                }
                let meta = self.series_meta(case, origin);
                self.admit_case(meta, Ok(Arc::new(Vec::new())), policy).await?;
            }
        }
        Ok(())
    }

    /// The instances of a series already segmented by this watcher (in `<state>/done/series/<uid>/`)
    /// that are not among `arrived`, read again (headers only).
    async fn earlier_instances(&self, state: &std::path::Path, arrived: &[Instance]) -> Vec<Instance> {
        let Some(first) = arrived.first() else { return Vec::new() };
        let dir = crate::ingest::disposition::series_done_dir(state, &first.series_uid);
        let known: std::collections::HashSet<String> = arrived.iter().map(|i| i.sha256.clone()).collect();
        let (origin, policy, config) = (first.origin, first.policy, self.config.clone());
        tokio::task::spawn_blocking(move || {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| !super::is_ignored_name(p))
                .collect();
            paths.sort();
            let mut found = Vec::new();
            for path in paths {
                let Ok(bytes) = std::fs::read(&path) else { continue };
                let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                if known.contains(&sha256) {
                    continue;
                }
                let Ok(mut file) = crate::dicom::open(&bytes) else { continue };
                let identity = config.patient_ids.identity(&file);
                if !gathered(&config, &identity) {
                    continue;
                }
                file.drop_pixel_data();
                let input = Arc::new(DicomInput { decoder: file.decoder_name(), identity, file });
                found.push(Instance {
                    series_uid: input.identity.series_instance_uid.clone().unwrap_or_default(),
                    original: path.clone(),
                    current: path,
                    origin,
                    sha256,
                    size_bytes: bytes.len() as u64,
                    input,
                    truth: None,
                    policy,
                });
            }
            found
        })
        .await
        .unwrap_or_default()
    }

    /// Whether `path` is an earlier instance of series `uid` (in its folder under done/).
    fn is_earlier(&self, uid: &str, path: &std::path::Path) -> bool {
        self.series_done.as_ref().is_some_and(|state| {
            path.parent() == Some(crate::ingest::disposition::series_done_dir(state, uid).as_path())
        })
    }

    /// When the next gathered series will have been quiet for `quiet`.
    pub fn next_series_due(&self, quiet: Duration) -> Option<Instant> {
        self.gatherer.next_complete(quiet)
    }

    fn series_meta(&self, case: SeriesCase, origin: crate::case::Origin) -> CaseMeta {
        let sha256 = case.sha256();
        let ground_truth = case.slices.iter().find_map(|s| s.truth.clone());
        CaseMeta {
            case_id: ingest::case_id(&sha256, &self.config.pipeline, &self.config.model_sha256),
            original: case.folder.clone(),
            current: case.folder.clone(),
            origin,
            file_sha256: sha256.clone(),
            sha256,
            size_bytes: case.size_bytes(),
            ground_truth,
            frame: None,
            dicom: case.files.first().map(|f| f.input.clone()),
            series: Some(Arc::new(case)),
            started: Instant::now(),
        }
    }

    /// Claims one case and hands it to the graph (or reports it as a duplicate or a failure).
    async fn admit_case(
        &mut self,
        meta: CaseMeta,
        job: Result<Arc<Vec<u8>>, Failure>,
        policy: Policy,
    ) -> Result<(), StoreError> {
        let source = meta.original.display().to_string();
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
                let outcome = Outcome::failed(meta, failure.stage, failure.message);
                let _ = self.outlet.ended.send(Message::Outcome(Box::new(outcome))).await;
            }
        }
        Ok(())
    }

    /// Reports (and, if `record`, stores) an input whose bytes are already another case's.
    async fn duplicate(&self, meta: CaseMeta, of: String, record: bool) -> Result<(), StoreError> {
        if record {
            let store = &self.store;
            let source = meta.original.display().to_string();
            store
                .retrying("recording a duplicate", &self.give_up, || {
                    store.record_duplicate(&meta.case_id, &self.run_id, &source)
                })
                .await?;
        }
        let _ = self.outlet.ended.send(Message::Duplicate { meta, of, recorded: record }).await;
        Ok(())
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
            file_sha256: meta.file_sha256.clone(),
            size_bytes: meta.size_bytes as i64,
            ground_truth_path: meta.ground_truth.as_ref().map(|p| p.display().to_string()),
            worker: self.worker.clone(),
        }
    }
}

/// Whether an instance waits for its series: `[dicom] unit = "series"`, an image (a SEG is ground
/// truth or a result, never a slice) with a Series Instance UID. `POST /v1/cases` asks the same
/// question to name what an upload will become.
pub(crate) fn gathered(config: &AdmissionConfig, identity: &crate::dicom::Identity) -> bool {
    config.unit == crate::dicom::Unit::Series
        && identity.series_instance_uid.is_some()
        && identity.sop_class_uid.as_deref() != Some(crate::dicom::SEGMENTATION_STORAGE)
}
