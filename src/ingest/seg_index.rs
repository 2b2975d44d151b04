//! DICOM SEGs among the inputs of `efen run`, found by the instances they reference, so that a
//! DICOM image finds its ground truth whatever the SEG's file is called.
//!
//! A SEG that no input of the run references is handed back at the end and becomes a failed case
//! like any other file that holds no image to segment.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::Candidate;

/// How much of a file is read to tell whether it may be a SEG (the class UID is in the meta group).
const HEAD_BYTES: u64 = 4096;

#[derive(Debug, Default)]
pub struct SegIndex {
    /// Per referenced SOP Instance UID: (frame number or None for all, SEG index).
    by_instance: HashMap<String, Vec<(Option<u32>, usize)>>,
    segs: Vec<(Candidate, bool)>,
}

impl SegIndex {
    /// Takes the SEGs out of `candidates`; returns the others and the index.
    pub fn split(candidates: Vec<Candidate>) -> (Vec<Candidate>, SegIndex) {
        let mut index = SegIndex::default();
        let mut images = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            match read_references(&candidate.path) {
                Some(frames) => {
                    let seg = index.segs.len();
                    for reference in frames.into_iter().flatten() {
                        let entry = index.by_instance.entry(reference.sop_instance_uid).or_default();
                        if !entry.contains(&(reference.frame_number, seg)) {
                            entry.push((reference.frame_number, seg));
                        }
                    }
                    index.segs.push((candidate, false));
                }
                None => images.push(candidate),
            }
        }
        (images, index)
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The SEG with a frame derived from frame `frame_number` (1-based) of `sop_instance_uid`.
    pub fn find(&mut self, sop_instance_uid: &str, frame_number: u32) -> Option<PathBuf> {
        let &(_, seg) =
            self.by_instance.get(sop_instance_uid)?.iter().find(|(n, _)| n.is_none_or(|n| n == frame_number))?;
        self.segs[seg].1 = true;
        Some(self.segs[seg].0.path.clone())
    }

    /// The SEGs no input referenced.
    pub fn unused(self) -> Vec<Candidate> {
        self.segs.into_iter().filter(|(_, used)| !used).map(|(candidate, _)| candidate).collect()
    }
}

/// The references of a SEG file, or None for anything else (including files that cannot be read:
/// ingest reports those).
fn read_references(path: &Path) -> Option<Vec<Vec<crate::dicom::SegReference>>> {
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    if !crate::dicom::looks_like_dicom(&head) || !crate::dicom::may_be_seg(&head) {
        return None;
    }
    crate::dicom::seg_references(&std::fs::read(path).ok()?)
}
