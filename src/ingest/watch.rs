//! Watching a drop folder: notify events (or polling) plus a periodic rescan say which files to
//! look at; a file is taken only once its size and mtime have held still for `settle_ms`, and is
//! then claimed by an atomic rename into `<state>/claimed/<worker>/<token>/<path in the drop>`
//! (same file system), so two watchers never take the same file and a half-written file is never
//! read. Each worker has its own claim folder, locked while it runs: what is left there after a
//! crash is that worker's to redo on its next start ([`DropFolder::orphans`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::GroundTruthPattern;
use super::{Candidate, is_ground_truth, is_ignored_name};

/// The service's `[watch]` section: how the drop folder is watched, and who this worker is.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Size and mtime must be unchanged this long before a file is taken.
    pub settle_ms: u64,
    /// The same for HTTP uploads in `<drop>/http/`, which efen names only once they are whole:
    /// 0 takes them at once.
    pub upload_settle_ms: u64,
    /// Period of the full rescan that catches missed events.
    pub rescan_ms: u64,
    /// Use the polling watcher instead of OS events.
    pub poll: bool,
    pub poll_interval_ms: u64,
    /// This watcher's name: its claim folder is `<state>/claimed/<worker>`. Empty: the host name.
    pub worker: String,
    /// A series of DICOM files is complete once none of its instances has arrived for this long
    /// (`[dicom] unit = "series"`); the DICOM node's `series_quiet_ms` is the same rule.
    pub series_quiet_ms: u64,
}

impl WatchConfig {
    pub fn problems(&self) -> Vec<String> {
        if self.worker.contains(['/', '\\']) || self.worker.starts_with('.') {
            vec![format!("watch.worker {:?} must be a plain name (no '/', not starting with '.')", self.worker)]
        } else {
            Vec::new()
        }
    }

    /// This watcher's name (`watch.worker`, else the host name).
    pub fn worker(&self) -> String {
        if self.worker.is_empty() {
            gethostname::gethostname().to_string_lossy().into_owned()
        } else {
            self.worker.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Watch { path: PathBuf, source: notify::Error },
    #[error("cannot create {}: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("another efen watch is running as worker {worker:?} (lock {} is held); give each worker its own watch.worker", path.display())]
    Locked { worker: String, path: PathBuf },
}

/// A file that held still and was claimed: where the user put it and where it is now.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub candidate: Candidate,
    pub claimed: PathBuf,
}

/// What the watcher needs to know.
pub struct DropFolder {
    pub dir: PathBuf,
    /// `<state>/claimed/<worker>`: this worker's claims only.
    pub claimed_dir: PathBuf,
    pub worker: String,
    pub patterns: Vec<GroundTruthPattern>,
    pub settings: WatchConfig,
}

/// Size and mtime when first seen unchanged.
struct Pending {
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

impl DropFolder {
    /// Takes this worker's claim folder for the life of the returned lock file.
    pub fn lock(&self) -> Result<std::fs::File, WatchError> {
        let folder = |source| WatchError::Folder { path: self.claimed_dir.clone(), source };
        std::fs::create_dir_all(&self.claimed_dir).map_err(folder)?;
        let path = self.claimed_dir.join(".lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(folder)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(WatchError::Locked { worker: self.worker.clone(), path }),
            Err(std::fs::TryLockError::Error(e)) => Err(folder(e)),
        }
    }

    /// Files this worker claimed but never finished (a crash, a kill -9): each with the path it
    /// had in the drop folder, to be redone.
    pub fn orphans(&self) -> Vec<Claimed> {
        let mut files = Vec::new();
        let _ = super::walk(&self.claimed_dir, &mut files);
        files.sort();
        files
            .into_iter()
            .filter(|f| f.file_name().is_some_and(|n| n != ".lock"))
            .filter_map(|claimed| {
                // claimed/<worker>/<token>/<path in the drop>
                let relative: PathBuf = claimed.strip_prefix(&self.claimed_dir).ok()?.components().skip(1).collect();
                let candidate = Candidate::dropped(self.dir.join(relative), &self.dir);
                Some(Claimed { candidate, claimed })
            })
            .collect()
    }

    /// Claims settled files and hands them to `claimed_tx` until `shutdown` is cancelled. Stops
    /// claiming at once on shutdown; what is already claimed is the caller's to finish.
    pub async fn run(self, claimed_tx: mpsc::Sender<Claimed>, shutdown: CancellationToken) -> Result<(), WatchError> {
        std::fs::create_dir_all(&self.claimed_dir)
            .map_err(|source| WatchError::Folder { path: self.claimed_dir.clone(), source })?;
        let (hint_tx, mut hints) = mpsc::unbounded_channel::<PathBuf>();
        // Keep the watcher alive for the whole loop; events are only hints.
        let _watcher = self.start_watcher(hint_tx)?;
        let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
        let settle = Duration::from_millis(self.settings.settle_ms);
        let mut tick = tokio::time::interval(Duration::from_millis((self.settings.settle_ms / 4).clamp(20, 500)));
        let mut rescan = tokio::time::interval(Duration::from_millis(self.settings.rescan_ms.max(100)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(path) = hints.recv() => self.consider(&mut pending, path),
                _ = rescan.tick() => {
                    let mut files = Vec::new();
                    let _ = super::walk(&self.dir, &mut files);
                    for path in files {
                        self.consider(&mut pending, path);
                    }
                }
                _ = tick.tick() => {
                    for path in self.settled(&mut pending, settle) {
                        if shutdown.is_cancelled() {
                            return Ok(());
                        }
                        if let Some(claimed) = self.claim(&path) && claimed_tx.send(claimed).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    fn start_watcher(&self, hint_tx: mpsc::UnboundedSender<PathBuf>) -> Result<Box<dyn Watcher + Send>, WatchError> {
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                for path in event.paths {
                    let _ = hint_tx.send(path);
                }
            }
        };
        let error = |source| WatchError::Watch { path: self.dir.clone(), source };
        let mut watcher: Box<dyn Watcher + Send> = if self.settings.poll {
            let config =
                notify::Config::default().with_poll_interval(Duration::from_millis(self.settings.poll_interval_ms));
            Box::new(notify::PollWatcher::new(handler, config).map_err(error)?)
        } else {
            Box::new(notify::recommended_watcher(handler).map_err(error)?)
        };
        watcher.watch(&self.dir, RecursiveMode::Recursive).map_err(error)?;
        Ok(watcher)
    }

    fn consider(&self, pending: &mut HashMap<PathBuf, Pending>, path: PathBuf) {
        if pending.contains_key(&path) || is_ignored_name(&path) || is_ground_truth(&path, &self.dir, &self.patterns) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            return;
        }
        pending.insert(path, Pending { size: meta.len(), modified: meta.modified().ok(), since: Instant::now() });
    }

    /// Files whose size and mtime have not changed for `settle` (`upload_settle_ms` for an HTTP
    /// upload); the clock restarts on any change.
    fn settled(&self, pending: &mut HashMap<PathBuf, Pending>, settle: Duration) -> Vec<PathBuf> {
        let upload_settle = Duration::from_millis(self.settings.upload_settle_ms);
        let mut ready = Vec::new();
        pending.retain(|path, seen| {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return false;
            };
            let (size, modified) = (meta.len(), meta.modified().ok());
            if size != seen.size || modified != seen.modified {
                *seen = Pending { size, modified, since: Instant::now() };
                return true;
            }
            let wait = if self.is_published(path) { upload_settle } else { settle };
            if seen.since.elapsed() >= wait {
                ready.push(path.clone());
                return false;
            }
            true
        });
        ready.sort();
        ready
    }

    /// Whether `path` is an HTTP upload, which efen itself named only once it was whole.
    fn is_published(&self, path: &Path) -> bool {
        path.strip_prefix(&self.dir)
            .is_ok_and(|p| p.components().next().is_some_and(|c| c.as_os_str() == super::HTTP_INBOX))
    }

    /// Renames the file into this worker's claim folder, keeping its path below the drop folder.
    /// Losing the race to another watcher is not an error.
    fn claim(&self, path: &Path) -> Option<Claimed> {
        let relative = path.strip_prefix(&self.dir).ok()?;
        let token = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let claimed = self.claimed_dir.join(token).join(relative);
        if let Err(e) = std::fs::create_dir_all(claimed.parent()?) {
            tracing::error!(file = %path.display(), "cannot create the claim folder: {e}");
            return None;
        }
        // Ground truth is read from the drop folder, where it stays.
        match std::fs::rename(path, &claimed) {
            Ok(()) => Some(Claimed { candidate: Candidate::dropped(path.to_path_buf(), &self.dir), claimed }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.claimed_dir.join(token));
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::error!(file = %path.display(), "cannot claim: {e}");
                }
                None
            }
        }
    }
}
