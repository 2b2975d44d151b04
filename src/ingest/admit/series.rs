//! Admission of whole series: the gathered instances of a complete series (with, in `efen watch`,
//! the instances of it already segmented) become one case per stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Admission, AdmissionConfig, Policy};
use crate::case::{CaseMeta, SeriesCase, SourceFile};
use crate::dicom::DicomInput;
use crate::ingest;
use crate::ingest::gather::{Gathered, Instance, cases_of};
use crate::store::StoreError;

impl Admission {
    /// Admits the gathered series that are complete (quiet for `quiet`; all with None), each
    /// stack as one case.
    pub async fn flush_series(&mut self, quiet: Option<Duration>) -> Result<(), StoreError> {
        let complete = self.gatherer.take(quiet);
        self.admit_series(complete).await
    }

    /// Admits the series `series_uid` now, complete as it is (the DICOM node judged it so).
    pub async fn flush_series_of(&mut self, series_uid: &str) -> Result<(), StoreError> {
        let complete = self.gatherer.take_series(series_uid).into_iter().collect();
        self.admit_series(complete).await
    }

    async fn admit_series(&mut self, complete: Vec<Gathered>) -> Result<(), StoreError> {
        for gathered in complete {
            let mut instances = gathered.instances;
            let Some(first) = instances.first() else { continue };
            // A series with an instance recovered after a crash takes over its earlier claim.
            let policy = Policy {
                takeover: instances.iter().any(|i| i.policy.takeover),
                record_same_path: first.policy.record_same_path,
            };
            let (origin, uid, arrived) = (first.file.origin, first.series_uid.clone(), instances.len());
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
            let cases = cases_of(instances, |uid, frame| segs.as_mut()?.find(uid, frame));
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
            let ids: Vec<String> = cases.iter().map(|c| ingest::case_id(&c.sha256(), pipeline, model)).collect();
            // The SEGs of this series' earlier cases came first in its SEG series; these follow.
            let earlier_segs = earlier.iter().filter(|(other, _)| !ids.contains(other)).count() as u32;
            for mut case in cases {
                case.seg_instance_number = earlier_segs + case.stack;
                // A stack made only of earlier instances is a case already recorded.
                if regathered > 0 && case.files.iter().all(|f| self.is_earlier(&uid, &f.file.current)) {
                    continue;
                }
                case.warnings.extend(gathered.warnings.iter().cloned());
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
    /// that are not among `arrived`, read again (headers only). An instance is its SOP Instance
    /// UID: one that came again is taken as it came now, and of the copies kept from earlier
    /// sends only the latest counts, so a re-sent series never grows.
    async fn earlier_instances(&self, state: &Path, arrived: &[Instance]) -> Vec<Instance> {
        let Some(first) = arrived.first() else { return Vec::new() };
        let dir = crate::ingest::disposition::series_done_dir(state, &first.series_uid);
        let known: std::collections::HashSet<String> = arrived.iter().map(|i| i.file.sha256.clone()).collect();
        let arrived_uids: std::collections::HashSet<String> =
            arrived.iter().filter_map(|i| i.sop_instance_uid().map(String::from)).collect();
        let (origin, policy, config) = (first.file.origin, first.policy, self.config.clone());
        tokio::task::spawn_blocking(move || {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| !crate::ingest::is_ignored_name(p))
                .collect();
            // Newest first, so the latest kept copy of an instance is the one taken.
            let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            paths.sort_by(|a, b| modified(b).cmp(&modified(a)).then(a.cmp(b)));
            let mut found: Vec<Instance> = Vec::new();
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
                let instance = Instance {
                    series_uid: input.identity.series_instance_uid.clone().unwrap_or_default(),
                    file: SourceFile {
                        original: path.clone(),
                        current: path,
                        sha256,
                        size_bytes: bytes.len() as u64,
                        origin,
                    },
                    input,
                    truth: None,
                    policy,
                };
                let again = instance.sop_instance_uid().is_some_and(|uid| arrived_uids.contains(uid));
                if !again && !found.iter().any(|f| f.same_instance(&instance)) {
                    found.push(instance);
                }
            }
            found
        })
        .await
        .unwrap_or_default()
    }

    /// Whether `path` is an earlier instance of series `uid` (in its folder under done/).
    fn is_earlier(&self, uid: &str, path: &Path) -> bool {
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
            file: SourceFile {
                original: case.folder.clone(),
                current: case.folder.clone(),
                sha256: sha256.clone(),
                size_bytes: case.size_bytes(),
                origin,
            },
            sha256,
            ground_truth,
            frame: None,
            dicom: case.files.first().map(|f| f.input.clone()),
            series: Some(Arc::new(case)),
            started: Instant::now(),
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
