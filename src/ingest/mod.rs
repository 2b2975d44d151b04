//! Ingest: paths → cases. Finds input files (skipping hidden and partial files and ground-truth
//! masks), refuses symlinks that leave the drop folder, reads and hashes each file, pairs it with
//! its ground truth and derives the case id from (SHA-256 of the bytes, pipeline, model).
//!
//! `efen run` reads inputs where they are and never moves them; `efen watch` first claims each
//! file by renaming it into `<state>/claimed/` (see [`watch`]). [`admit`] then opens each file
//! (hash, DICOM parse, frames, ground truth), claims its cases in the store and hands them on;
//! the instances of a DICOM series wait in [`gather`] until the series is complete, and become
//! one case per stack.

pub mod admit;
pub mod disposition;
pub mod gather;
pub mod ground_truth;
pub mod seg_index;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use crate::case::Origin;

pub use admit::{Admission, AdmissionConfig, Outlet, Policy};
pub use ground_truth::{GroundTruthConfig, GroundTruthPattern};

/// Suffixes of files that are still being written by their producer.
const PARTIAL_SUFFIXES: [&str; 5] = [".part", ".tmp", ".partial", ".filepart", ".crdownload"];

/// The folder below a drop folder that the DICOM node moves complete series into: what is found
/// there came in over DICOM, and its results go back ([`Origin::DicomNode`]).
pub const NODE_INBOX: &str = "dicom-node";

/// The folder below a drop folder where HTTP uploads land (`crate::http::inbox`): each file
/// there got its name only once it was whole and fsynced, so the watcher need not wait for it to
/// settle.
pub const HTTP_INBOX: &str = "http";

/// A file found in a drop, and the folder it was found under (for the symlink rule).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub root: PathBuf,
    pub origin: Origin,
}

impl Candidate {
    /// A file that `efen watch` found in its drop folder `root` (or in the node's inbox below it).
    pub fn dropped(path: PathBuf, root: &Path) -> Candidate {
        let from_node = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.components().next())
            .is_some_and(|c| c.as_os_str() == NODE_INBOX);
        let origin = if from_node { Origin::DicomNode } else { Origin::DropFolder };
        Candidate { path, root: root.to_path_buf(), origin }
    }
}

/// A case ready for decoding.
#[derive(Debug, Clone)]
pub struct Job {
    pub case_id: String,
    /// Where the input was found (what users recognise, and what is recorded).
    pub original: PathBuf,
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    pub ground_truth: Option<PathBuf>,
}

/// Why a candidate never became a job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("symlink to {target} outside the drop folder {root} refused")]
    SymlinkOutside { target: String, root: String },
    #[error("cannot read: {0}")]
    Read(String),
    #[error("file is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
}

impl crate::error::CaseError for IngestError {
    fn error_type(&self) -> &'static str {
        match self {
            IngestError::SymlinkOutside { .. } => "symlink_outside",
            IngestError::Read(_) => "read_input",
            IngestError::TooLarge { .. } => "too_large",
        }
    }

    fn reason(&self) -> String {
        match self {
            // The target is the case's own path; the drop folder is the same for every file.
            IngestError::SymlinkOutside { root, .. } => {
                format!("symlink to a file outside the drop folder {root} refused")
            }
            IngestError::TooLarge { limit, .. } => format!("file over the limit of {limit} bytes"),
            other => other.to_string(),
        }
    }
}

/// Whether a file name says "not ready" or "not for us": hidden, or a partial download.
pub fn is_ignored_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with('.') || PARTIAL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether `path`, relative to its drop root, is some input's ground truth.
pub fn is_ground_truth(path: &Path, root: &Path, patterns: &[GroundTruthPattern]) -> bool {
    let relative = path.strip_prefix(root).unwrap_or(path);
    patterns.iter().any(|p| p.matches(relative))
}

/// Expands files and folders (recursively, in name order) into candidates. A file named on the
/// command line is always an input; inside folders, ground-truth masks are not.
pub fn discover(paths: &[PathBuf], patterns: &[GroundTruthPattern]) -> Result<Vec<Candidate>, String> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
            files.sort();
            found.extend(
                files
                    .into_iter()
                    .filter(|f| !is_ignored_name(f) && !is_ground_truth(f, path, patterns))
                    .map(|f| Candidate { path: f, root: path.clone(), origin: Origin::Given }),
            );
        } else {
            let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
            found.push(Candidate { path: path.clone(), root, origin: Origin::Given });
        }
    }
    Ok(found)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !is_ignored_name(&path) {
                walk(&path, out)?;
            }
        } else {
            // Files and symlinks: symlinks are judged when read.
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a candidate and makes it a job. `read_from` is where the bytes are now (the claimed copy
/// in watch mode), `candidate.path` where the user put them.
pub fn open(
    candidate: &Candidate,
    read_from: &Path,
    pipeline: &str,
    model_sha256: &str,
    patterns: &[GroundTruthPattern],
    max_bytes: u64,
) -> Result<Job, (String, IngestError)> {
    let fail = |e: IngestError| (path_identity(&candidate.path), e);
    // The claimed copy is a moved symlink when the user dropped one: judge what it points at.
    refuse_escaping_symlink(read_from, &candidate.root).map_err(fail)?;
    let size = std::fs::metadata(read_from).map_err(|e| fail(IngestError::Read(e.to_string())))?.len();
    if size > max_bytes {
        return Err(fail(IngestError::TooLarge { size, limit: max_bytes }));
    }
    let bytes = std::fs::read(read_from).map_err(|e| fail(IngestError::Read(e.to_string())))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let ground_truth = patterns.iter().filter_map(|p| p.candidate(&candidate.path)).find(|gt| gt.is_file());
    Ok(Job {
        case_id: case_id(&sha256, pipeline, model_sha256),
        original: candidate.path.clone(),
        bytes: Arc::new(bytes),
        sha256,
        ground_truth,
    })
}

/// A case is the same case when the bytes, the pipeline and the model are the same.
pub fn case_id(sha256: &str, pipeline: &str, model_sha256: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [sha256, pipeline, model_sha256] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..12])
}

/// The identity of frame `index` of a multi-frame file whose bytes hash to `file_sha256`.
pub fn frame_identity(file_sha256: &str, index: u32) -> String {
    hex::encode(Sha256::digest(format!("{file_sha256}#frame{index}").as_bytes()))
}

/// The identity of a file that could not be read: the hash of its path, so that a refused file is
/// recorded once, not once per run.
pub fn path_identity(path: &Path) -> String {
    hex::encode(Sha256::digest(format!("path:{}", path.display()).as_bytes()))
}

fn refuse_escaping_symlink(path: &Path, root: &Path) -> Result<(), IngestError> {
    let is_link = std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false);
    if !is_link {
        return Ok(());
    }
    let root = std::fs::canonicalize(if root.as_os_str().is_empty() { Path::new(".") } else { root })
        .map_err(|e| IngestError::Read(e.to_string()))?;
    let target = std::fs::canonicalize(path).map_err(|e| IngestError::Read(format!("dangling symlink: {e}")))?;
    if target.starts_with(&root) {
        Ok(())
    } else {
        Err(IngestError::SymlinkOutside { target: target.display().to_string(), root: root.display().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_id_depends_on_bytes_pipeline_and_model() {
        let a = case_id("aa", "default", "m1");
        assert_eq!(a.len(), 24);
        assert_eq!(a, case_id("aa", "default", "m1"));
        assert_ne!(a, case_id("ab", "default", "m1"));
        assert_ne!(a, case_id("aa", "other", "m1"));
        assert_ne!(a, case_id("aa", "default", "m2"));
    }

    #[test]
    fn hidden_and_partial_files_are_ignored() {
        for name in [".x.png", "x.png.part", "x.tmp", "x.partial", "x.filepart"] {
            assert!(is_ignored_name(Path::new(name)), "{name}");
        }
        assert!(!is_ignored_name(Path::new("drop/case 1 – Zürich.png")));
    }

    #[test]
    fn discovery_skips_ground_truth_and_refuses_escaping_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let drop = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        std::fs::write(drop.path().join("a.png"), b"a").unwrap();
        std::fs::write(drop.path().join("a_mask.png"), b"m").unwrap();
        std::fs::create_dir(drop.path().join("masks")).unwrap();
        std::fs::write(drop.path().join("masks").join("a.png"), b"m").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.png"), drop.path().join("link.png")).unwrap();
        let patterns: Vec<_> =
            ["{stem}_mask.png", "masks/{stem}.png"].iter().filter_map(|p| GroundTruthPattern::parse(p)).collect();

        let found = discover(&[drop.path().to_path_buf()], &patterns).unwrap();
        let names: Vec<_> = found.iter().map(|c| c.path.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.png", "link.png"]);

        let job = open(&found[0], &found[0].path, "p", "m", &patterns, 1 << 20).unwrap();
        assert_eq!(job.ground_truth.unwrap(), drop.path().join("a_mask.png"));
        let (_, refused) = open(&found[1], &found[1].path, "p", "m", &patterns, 1 << 20).unwrap_err();
        assert!(matches!(refused, IngestError::SymlinkOutside { .. }), "{refused}");
        let (_, too_large) = open(&found[0], &found[0].path, "p", "m", &patterns, 0).unwrap_err();
        assert!(matches!(too_large, IngestError::TooLarge { size: 1, limit: 0 }));
    }
}
