//! The inbox: `<drop>/http/`, where an uploaded file becomes a dropped file. The watcher then
//! claims it like any other, so an upload goes through the same ledger (claimed exactly once,
//! deduplicated by its bytes, recovered after a crash) without a second way into the engine.
//!
//! The body is streamed to a hidden temporary file (`.upload-<token>.part`: the watcher ignores
//! hidden and partial names), hashed on the way and fsynced; only then is it given its final name
//! by a hard link, which never replaces a file already there, and the directory is fsynced. A 202
//! therefore means the bytes are on disk under a name the watcher will take. Nothing is held in
//! memory but the first bytes, so an upload as large as `engine.max_file_mb` costs no RAM.
//!
//! The inbox is the queue in front of the watcher: when the engine falls behind, the watcher claims
//! slowly and uploads wait here. Past `http.max_queued_uploads` files waiting, [`Inbox::publish`]
//! refuses (the client gets 503 and `Retry-After`), so a flood is held back instead of filling
//! the disk; the count and the naming happen under one lock, so the limit holds under concurrency.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, HttpBody};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The inbox's folder below the drop folder.
pub const FOLDER: &str = crate::ingest::HTTP_INBOX;
/// Bytes kept from the start of an upload, to sniff its format.
const HEAD: usize = 64 * 1024;
/// Longest name kept from `?name=`, in bytes.
const MAX_NAME: usize = 200;
/// A temporary file this old was left by a process that died mid-upload.
const STALE: Duration = Duration::from_secs(3600);

/// `<drop>/http/`, the largest file it takes, and how many may wait in it.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_queued: usize,
    /// Held while a file is counted and named: two uploads never both take the last place.
    publishing: Arc<Mutex<()>>,
}

/// An upload on disk under its temporary name, not yet visible to the watcher. Dropping it
/// removes the file: a request that fails or is cut off leaves nothing behind.
pub struct Received {
    temp: Option<PathBuf>,
    pub sha256: String,
    pub size: u64,
    /// The first bytes, for [`extension`] and the DICOM sniff.
    pub head: Vec<u8>,
}

impl Received {
    pub fn path(&self) -> &Path {
        self.temp.as_deref().expect("a received file has a path until it is published")
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the body is over engine.max_file_mb ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the body broke off: {0}")]
    Body(String),
    #[error("cannot write the upload into the drop folder: {0}")]
    Write(#[from] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{queued} uploads are waiting for the watcher already (http.max_queued_uploads); retry later")]
    Full { queued: usize },
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

impl Inbox {
    pub fn new(drop_dir: &Path, max_bytes: u64, max_queued: usize) -> Inbox {
        Inbox { dir: drop_dir.join(FOLDER), max_bytes, max_queued, publishing: Arc::default() }
    }

    /// Uploads waiting for the watcher: the visible files in the folder, counted up to `limit`.
    /// Blocking.
    pub fn queued(&self, limit: usize) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let waiting = entries.flatten().filter(|entry| {
            !entry.file_name().to_string_lossy().starts_with('.') && entry.file_type().is_ok_and(|t| t.is_file())
        });
        Ok(waiting.take(limit).count())
    }

    /// Removes temporary files that a crash left behind. The folder itself is made by the first
    /// upload: a drop folder nobody uploads to stays as it was.
    pub fn sweep(&self) -> std::io::Result<()> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old =
                entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
            if name.starts_with(".upload-") && name.ends_with(".part") && old.is_some_and(|age| age > STALE) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Streams `body` into a temporary file, hashing it; refuses it once it passes `max_bytes`.
    pub async fn receive(&self, mut body: Body) -> Result<Received, ReceiveError> {
        if !tokio::fs::try_exists(&self.dir).await? {
            tokio::fs::create_dir_all(&self.dir).await?;
            if let Some(parent) = self.dir.parent() {
                let parent = parent.to_path_buf();
                tokio::task::spawn_blocking(move || sync_dir(&parent)).await.map_err(std::io::Error::other)??;
            }
        }
        let token = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let temp = self.dir.join(format!(".upload-{token}.part"));
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&temp).await?;
        let mut received = Received { temp: Some(temp), sha256: String::new(), size: 0, head: Vec::new() };
        let mut hasher = Sha256::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.map_err(|e| ReceiveError::Body(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            received.size += data.len() as u64;
            if received.size > self.max_bytes {
                return Err(ReceiveError::TooLarge { limit: self.max_bytes });
            }
            hasher.update(&data);
            let room = HEAD.saturating_sub(received.head.len());
            received.head.extend_from_slice(&data[..room.min(data.len())]);
            file.write_all(&data).await?;
        }
        file.sync_all().await?;
        received.sha256 = hex::encode(hasher.finalize());
        Ok(received)
    }

    /// Gives the received file its final name `name` (or, when that is taken, `<stem>-<sha12>.<ext>`,
    /// then `<stem>-<sha12>-2.<ext>`, …) and makes it durable, unless `max_queued` files wait
    /// already. Returns the name used. Blocking.
    pub fn publish(&self, mut received: Received, name: &str) -> Result<String, PublishError> {
        let _publishing = self.publishing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let queued = self.queued(self.max_queued)?;
        if queued >= self.max_queued {
            return Err(PublishError::Full { queued });
        }
        let sha12 = &received.sha256[..12];
        let temp = received.path().to_path_buf();
        for n in 0..1000 {
            let candidate = match n {
                0 => name.to_string(),
                1 => with_suffix(name, &format!("-{sha12}")),
                n => with_suffix(name, &format!("-{sha12}-{n}")),
            };
            let target = self.dir.join(&candidate);
            // A hard link fails on a name that exists, where a rename would silently replace it.
            let linked = match std::fs::hard_link(&temp, &target) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                // A file system without hard links: check, then rename (a small window for a race).
                Err(_) if !target.exists() => {
                    std::fs::rename(&temp, &target)?;
                    received.temp = None;
                    true
                }
                Err(_) => false,
            };
            if linked {
                drop(received);
                sync_dir(&self.dir)?;
                return Ok(candidate);
            }
        }
        let taken =
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("every variant of {name:?} is taken"));
        Err(taken.into())
    }
}

/// `?name=` as a file name the watcher will take: path separators and control characters become
/// `_`, leading dots and spaces go (no hidden files, no `..`), at most 200 bytes, and a partial
/// download's suffix (`.part`, `.tmp`, …) gains a `_`. None when nothing is left.
pub fn sanitise(name: &str) -> Option<String> {
    let replaced: String =
        name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    let trimmed = replaced.trim().trim_start_matches(|c: char| c == '.' || c.is_whitespace());
    let mut end = trimmed.len().min(MAX_NAME);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let mut name = trimmed[..end].trim_end().to_string();
    if name.is_empty() {
        return None;
    }
    if crate::ingest::is_ignored_name(Path::new(&name)) {
        name.push('_');
    }
    Some(name)
}

/// The name of an upload without `?name=`: `upload-<sha12>` and the extension of its format.
pub fn default_name(sha256: &str, head: &[u8]) -> String {
    let stem = format!("upload-{}", &sha256[..12]);
    match extension(head) {
        Some(ext) => format!("{stem}.{ext}"),
        None => stem,
    }
}

/// The extension of what the bytes are: DICOM first, as admission decides, then the images that
/// decode reads. None for anything else (it is still taken, and fails at decode with its reason).
pub fn extension(head: &[u8]) -> Option<&'static str> {
    if crate::dicom::looks_like_dicom(head) {
        return Some("dcm");
    }
    match image::guess_format(head).ok()? {
        image::ImageFormat::Png => Some("png"),
        image::ImageFormat::Jpeg => Some("jpg"),
        image::ImageFormat::Tiff => Some("tif"),
        image::ImageFormat::Bmp => Some("bmp"),
        _ => None,
    }
}

/// `a.png` + `-x` → `a-x.png`; `archive.tar.gz` + `-x` → `archive.tar-x.gz`; `a` + `-x` → `a-x`.
fn with_suffix(name: &str, suffix: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}{suffix}.{ext}"),
        _ => format!("{name}{suffix}"),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_visible_and_taken_by_the_watcher() {
        assert_eq!(sanitise("case 1 – Zürich.png").as_deref(), Some("case 1 – Zürich.png"));
        assert_eq!(sanitise("../../etc/passwd").as_deref(), Some("_.._etc_passwd"));
        assert_eq!(sanitise("a/b\\c.png").as_deref(), Some("a_b_c.png"));
        assert_eq!(sanitise(".hidden.png").as_deref(), Some("hidden.png"));
        assert_eq!(sanitise("  ..  .x").as_deref(), Some("x"));
        assert_eq!(sanitise("nul\0byte\n.png").as_deref(), Some("nul_byte_.png"));
        assert_eq!(sanitise("scan.part").as_deref(), Some("scan.part_"));
        assert_eq!(sanitise("scan.tmp").as_deref(), Some("scan.tmp_"));
        for nothing in ["", ".", "..", "...", "   ", " . "] {
            assert_eq!(sanitise(nothing), None, "{nothing:?}");
        }
        let long = sanitise(&"é".repeat(150)).unwrap();
        assert!(long.len() <= MAX_NAME && long.chars().all(|c| c == 'é'), "{long}");
        for name in ["../../etc/passwd", ".x", "a/.b", "x.part", "\\\\server\\share"] {
            let clean = sanitise(name).unwrap();
            assert!(!clean.contains(['/', '\\']) && !clean.starts_with('.'), "{name} → {clean}");
            assert!(!crate::ingest::is_ignored_name(Path::new(&clean)), "{name} → {clean}");
        }
    }

    #[test]
    fn a_default_name_carries_the_sniffed_extension() {
        let sha = "0123456789abcdef".repeat(4);
        let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synthetic/case01.png")).unwrap();
        assert_eq!(default_name(&sha, &png), "upload-0123456789ab.png");
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM");
        assert_eq!(default_name(&sha, &dicom), "upload-0123456789ab.dcm");
        assert_eq!(default_name(&sha, b"plain text"), "upload-0123456789ab");
        assert_eq!(with_suffix("a.png", "-x"), "a-x.png");
        assert_eq!(with_suffix("a", "-x"), "a-x");
        assert_eq!(with_suffix("x_", "-x"), "x_-x");
    }

    #[tokio::test]
    async fn an_upload_is_written_whole_under_a_free_name_or_not_at_all() {
        let folder = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(folder.path(), 10, 3);
        inbox.sweep().unwrap();
        assert!(!inbox.dir.exists(), "made by the first upload only");
        let first = inbox.receive(Body::from("hello")).await.unwrap();
        assert_eq!(first.sha256, hex::encode(Sha256::digest(b"hello")));
        assert_eq!((first.size, first.head.as_slice()), (5, b"hello".as_slice()));
        assert_eq!(inbox.publish(first, "a.txt").unwrap(), "a.txt");
        let second = inbox.receive(Body::from("hello")).await.unwrap();
        let sha12 = second.sha256[..12].to_string();
        assert_eq!(inbox.publish(second, "a.txt").unwrap(), format!("a-{sha12}.txt"));
        let third = inbox.receive(Body::from("hello")).await.unwrap();
        assert_eq!(inbox.publish(third, "a.txt").unwrap(), format!("a-{sha12}-2.txt"));

        assert_eq!(inbox.queued(100).unwrap(), 3);
        let fourth = inbox.receive(Body::from("world")).await.unwrap();
        assert!(matches!(inbox.publish(fourth, "b.txt"), Err(PublishError::Full { queued: 3 })));
        assert!(!inbox.dir.join("b.txt").exists(), "a refused upload leaves nothing");

        let refused = inbox.receive(Body::from("more than ten bytes")).await;
        assert!(matches!(refused, Err(ReceiveError::TooLarge { limit: 10 })));
        let dropped = inbox.receive(Body::from("x")).await.unwrap();
        drop(dropped);
        let mut names: Vec<String> =
            std::fs::read_dir(&inbox.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["a-".to_string() + &sha12 + "-2.txt", format!("a-{sha12}.txt"), "a.txt".into()]);
        assert_eq!(std::fs::read(inbox.dir.join("a.txt")).unwrap(), b"hello");
    }
}
