//! Gathering: instances wait here, by Series Instance UID, until their series is complete: at the
//! end of `efen run`'s inputs, or in `efen watch` once no instance of the series has arrived for
//! the quiet time (the rule the DICOM node uses for associations).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::case::{DicomInput, Origin};

/// One parsed DICOM instance (its pixel data dropped) waiting for the rest of its series.
#[derive(Debug)]
pub struct Instance {
    pub series_uid: String,
    pub original: PathBuf,
    pub current: PathBuf,
    pub origin: Origin,
    pub sha256: String,
    pub size_bytes: u64,
    pub input: Arc<DicomInput>,
    /// Ground truth found by pattern next to the file.
    pub truth: Option<PathBuf>,
    /// How admission treats the series' case when the store already knows it.
    pub policy: crate::ingest::Policy,
}

/// Series still gathering, in the order their first instance came.
#[derive(Debug, Default)]
pub struct Gatherer {
    series: Vec<Pending>,
}

#[derive(Debug)]
struct Pending {
    uid: String,
    last: Instant,
    instances: Vec<Instance>,
}

impl Gatherer {
    /// Adds an instance to its series. The same bytes twice in one series come back as `Err`: the
    /// caller reports the repeat as a duplicate.
    pub fn add(&mut self, instance: Instance) -> Result<(), Box<Instance>> {
        let now = Instant::now();
        match self.series.iter_mut().find(|p| p.uid == instance.series_uid) {
            Some(pending) if pending.instances.iter().any(|i| i.sha256 == instance.sha256) => {
                return Err(Box::new(instance));
            }
            Some(pending) => {
                pending.last = now;
                pending.instances.push(instance);
            }
            None => {
                self.series.push(Pending { uid: instance.series_uid.clone(), last: now, instances: vec![instance] })
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes the series that are complete: quiet for `quiet`, or all of them with None.
    pub fn take(&mut self, quiet: Option<Duration>) -> Vec<Vec<Instance>> {
        let now = Instant::now();
        let complete = |p: &Pending| quiet.is_none_or(|q| now.duration_since(p.last) >= q);
        let (done, waiting): (Vec<Pending>, Vec<Pending>) = self.series.drain(..).partition(complete);
        self.series = waiting;
        done.into_iter().map(|p| p.instances).collect()
    }

    /// When the next series becomes quiet.
    pub fn next_complete(&self, quiet: Duration) -> Option<Instant> {
        self.series.iter().map(|p| p.last + quiet).min()
    }
}
