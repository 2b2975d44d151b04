//! Gathering: instances wait here, by Series Instance UID, until their series is complete: at the
//! end of `efen run`'s inputs, or in `efen watch` once no instance of the series has arrived for
//! the quiet time (the rule the DICOM node uses for associations). A complete series then splits
//! into its stacks ([`cases_of`]), each one case.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::case::{SeriesCase, SeriesFile, SeriesSlice, SourceFile};
use crate::dicom::{DicomInput, SliceHeader};

/// One parsed DICOM instance (its pixel data dropped) waiting for the rest of its series.
#[derive(Debug)]
pub struct Instance {
    pub series_uid: String,
    pub file: SourceFile,
    pub input: Arc<DicomInput>,
    /// Ground truth found by pattern next to the file.
    pub truth: Option<PathBuf>,
    /// How admission treats the series' case when the store already knows it.
    pub policy: super::Policy,
}

impl Instance {
    /// The instance's SOP Instance UID (None when the file has none).
    pub fn sop_instance_uid(&self) -> Option<&str> {
        self.input.identity.sop_instance_uid.as_deref().filter(|uid| !uid.is_empty())
    }

    /// Whether `other` is a copy of this instance: the same SOP Instance UID, or the same bytes.
    pub fn same_instance(&self, other: &Instance) -> bool {
        match (self.sop_instance_uid(), other.sop_instance_uid()) {
            (Some(a), Some(b)) => a == b,
            _ => self.file.sha256 == other.file.sha256,
        }
    }

    /// The transfer syntax, for what a replaced copy is told.
    pub fn transfer_syntax(&self) -> &str {
        &self.input.identity.transfer_syntax.name
    }
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
    /// What the series' cases are told: instances that came again with other bytes.
    warnings: Vec<String>,
}

/// A complete series: its distinct instances, and what its cases are told of how they came.
#[derive(Debug)]
pub struct Gathered {
    pub instances: Vec<Instance>,
    pub warnings: Vec<String>,
}

/// What adding an instance to its series came to. An instance is its SOP Instance UID: a second
/// copy never adds a slice.
#[derive(Debug)]
pub enum Added {
    /// A new instance of its series.
    New,
    /// The same bytes again: the caller reports this copy as a duplicate.
    Repeat(Box<Instance>),
    /// Another copy of an instance already gathered (same SOP Instance UID, other bytes: another
    /// transfer syntax, or changed pixels): it takes the earlier copy's place, which comes back so
    /// that the caller reports it as replaced.
    Replaced(Box<Instance>),
}

impl Gatherer {
    /// Adds an instance to its series, by SOP Instance UID (by its bytes when it has none).
    pub fn add(&mut self, instance: Instance) -> Added {
        let now = Instant::now();
        let Some(pending) = self.series.iter_mut().find(|p| p.uid == instance.series_uid) else {
            let uid = instance.series_uid.clone();
            self.series.push(Pending { uid, last: now, instances: vec![instance], warnings: Vec::new() });
            return Added::New;
        };
        pending.last = now;
        match pending.instances.iter().position(|i| i.same_instance(&instance)) {
            Some(k) if pending.instances[k].file.sha256 == instance.file.sha256 => Added::Repeat(Box::new(instance)),
            Some(k) => {
                pending.warnings.push(replaced_warning(&pending.instances[k], &instance));
                Added::Replaced(Box::new(std::mem::replace(&mut pending.instances[k], instance)))
            }
            None => {
                pending.instances.push(instance);
                Added::New
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes the series that are complete: quiet for `quiet`, or all of them with None.
    pub fn take(&mut self, quiet: Option<Duration>) -> Vec<Gathered> {
        let now = Instant::now();
        let complete = |p: &Pending| quiet.is_none_or(|q| now.duration_since(p.last) >= q);
        let (done, waiting): (Vec<Pending>, Vec<Pending>) = self.series.drain(..).partition(complete);
        self.series = waiting;
        done.into_iter().map(|p| Gathered { instances: p.instances, warnings: p.warnings }).collect()
    }

    /// Takes series `uid` whether quiet or not (its sender says it is complete).
    pub fn take_series(&mut self, uid: &str) -> Option<Gathered> {
        let at = self.series.iter().position(|p| p.uid == uid)?;
        let p = self.series.remove(at);
        Some(Gathered { instances: p.instances, warnings: p.warnings })
    }

    /// When the next series becomes quiet.
    pub fn next_complete(&self, quiet: Duration) -> Option<Instant> {
        self.series.iter().map(|p| p.last + quiet).min()
    }
}

/// What a series case says of an instance that came again with other bytes.
pub fn replaced_warning(earlier: &Instance, later: &Instance) -> String {
    let uid = later.sop_instance_uid().unwrap_or("(no SOP Instance UID)");
    match earlier.transfer_syntax() == later.transfer_syntax() {
        true => format!("instance {uid} came again with other bytes; the later copy is used"),
        false => format!(
            "instance {uid} came again in {} (was {}); the later copy is used",
            later.transfer_syntax(),
            earlier.transfer_syntax()
        ),
    }
}

/// Splits a complete series into its stacks, one case each. `truth_of` finds a SEG that
/// references a slice (instance UID, 1-based frame number).
pub fn cases_of(instances: Vec<Instance>, mut truth_of: impl FnMut(&str, u32) -> Option<PathBuf>) -> Vec<SeriesCase> {
    let Some(series_uid) = instances.first().map(|i| i.series_uid.clone()) else {
        return Vec::new();
    };
    // Every frame of every instance is a slice.
    let mut slices: Vec<(usize, u32)> = Vec::new();
    let mut headers: Vec<SliceHeader> = Vec::new();
    for (file, instance) in instances.iter().enumerate() {
        for frame in 0..instance.input.file.frame_count() {
            slices.push((file, frame));
            headers.push(SliceHeader::of(&instance.input.file, frame));
        }
    }
    let stacks = crate::dicom::stacks(&headers);
    // A file is held by every stack with a slice of it, kept or left out: it is settled once all
    // of them are recorded.
    let holds = |s: &crate::dicom::Stack, file: usize| s.slices.iter().chain(&s.left_out).any(|&i| slices[i].0 == file);
    let holders: Vec<u32> =
        (0..instances.len()).map(|file| stacks.iter().filter(|s| holds(s, file)).count() as u32).collect();
    // Where the series is: its one file (an enhanced multi-frame object), or the folder its files
    // have in common.
    let folder = match instances.as_slice() {
        [one] => one.file.original.clone(),
        _ => common_folder(instances.iter().map(|i| i.file.original.as_path())),
    };
    // A SEG that references any slice is the truth of the whole stack (it has no frame where the
    // truth is empty).
    let count = stacks.len() as u32;
    let mut cases = Vec::with_capacity(stacks.len());
    for (n, stack) in stacks.into_iter().enumerate() {
        let mut files: Vec<SeriesFile> = Vec::new();
        let mut file_index = std::collections::HashMap::new();
        let mut members = Vec::with_capacity(stack.slices.len());
        for &i in &stack.slices {
            let (file, frame) = slices[i];
            let instance = &instances[file];
            let local = *file_index.entry(file).or_insert_with(|| {
                files.push(SeriesFile {
                    file: instance.file.clone(),
                    input: instance.input.clone(),
                    cases: holders[file],
                });
                files.len() - 1
            });
            let by_pattern = instance.truth.clone().filter(|_| instance.input.file.frame_count() == 1);
            members.push(SeriesSlice { file: local, frame, plane: headers[i].plane.clone(), truth: by_pattern });
        }
        // Files whose slices in this stack were all left out (at another slice's position).
        let mut left_out: Vec<SeriesFile> = Vec::new();
        for &i in &stack.left_out {
            let file = slices[i].0;
            if !file_index.contains_key(&file) {
                file_index.insert(file, usize::MAX);
                let instance = &instances[file];
                left_out.push(SeriesFile {
                    file: instance.file.clone(),
                    input: instance.input.clone(),
                    cases: holders[file],
                });
            }
        }
        let seg = members.iter().find_map(|slice| {
            let uid = files[slice.file].input.identity.sop_instance_uid.as_deref()?;
            truth_of(uid, slice.frame + 1)
        });
        if let Some(seg) = seg {
            for slice in &mut members {
                slice.truth = Some(seg.clone());
            }
        }
        cases.push(SeriesCase {
            series_uid: series_uid.clone(),
            stack: n as u32 + 1,
            stacks: count,
            seg_instance_number: n as u32 + 1,
            distinct: stack.distinct,
            spacing: stack.spacing,
            warnings: stack.warnings,
            folder: folder.clone(),
            files,
            slices: members,
            left_out,
        });
    }
    cases
}

/// The deepest folder that holds every path.
fn common_folder<'a>(paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for path in paths {
        let parent = path.parent().unwrap_or(Path::new(""));
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_folder_of_a_series() {
        let paths = [Path::new("drop/ct/a/1.dcm"), Path::new("drop/ct/b/2.dcm"), Path::new("drop/ct/3.dcm")];
        assert_eq!(common_folder(paths.into_iter()), PathBuf::from("drop/ct"));
        assert_eq!(common_folder([Path::new("1.dcm")].into_iter()), PathBuf::from(""));
    }
}
