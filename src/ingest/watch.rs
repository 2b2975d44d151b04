//! Watching a drop folder: notify events (or polling) plus a periodic rescan say which files to
//! look at; a file is taken only once its size and mtime have held still for `settle_ms`, and is
//! then claimed by an atomic rename into `<state>/claimed/` (same file system), so two watchers
//! never take the same file and a half-written file is never read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Candidate, is_ground_truth, is_ignored_name};
use crate::config::WatchConfig;
use crate::pipeline::definition::GroundTruthPattern;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot create {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file that held still and was claimed: where the user put it and where it is now.
pub struct Claimed {
    pub candidate: Candidate,
    pub claimed: PathBuf,
}

/// What the watcher needs to know.
pub struct DropFolder {
    pub dir: PathBuf,
    pub claimed_dir: PathBuf,
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
    /// Claims settled files and hands them to `claimed_tx` until `shutdown` is cancelled. Stops
    /// claiming at once on shutdown; what is already claimed is the caller's to finish.
    pub async fn run(
        self,
        claimed_tx: mpsc::Sender<Claimed>,
        shutdown: CancellationToken,
    ) -> Result<(), WatchError> {
        std::fs::create_dir_all(&self.claimed_dir).map_err(|source| WatchError::Folder {
            path: self.claimed_dir.clone(),
            source,
        })?;
        let (hint_tx, mut hints) = mpsc::unbounded_channel::<PathBuf>();
        // Keep the watcher alive for the whole loop; events are only hints.
        let _watcher = self.start_watcher(hint_tx)?;
        let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
        let settle = Duration::from_millis(self.settings.settle_ms);
        let mut tick = tokio::time::interval(Duration::from_millis(
            (self.settings.settle_ms / 4).clamp(20, 500),
        ));
        let mut rescan =
            tokio::time::interval(Duration::from_millis(self.settings.rescan_ms.max(100)));
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

    fn start_watcher(
        &self,
        hint_tx: mpsc::UnboundedSender<PathBuf>,
    ) -> Result<Box<dyn Watcher + Send>, WatchError> {
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                for path in event.paths {
                    let _ = hint_tx.send(path);
                }
            }
        };
        let error = |source| WatchError::Watch {
            path: self.dir.clone(),
            source,
        };
        let mut watcher: Box<dyn Watcher + Send> = if self.settings.poll {
            let config = notify::Config::default()
                .with_poll_interval(Duration::from_millis(self.settings.poll_interval_ms));
            Box::new(notify::PollWatcher::new(handler, config).map_err(error)?)
        } else {
            Box::new(notify::recommended_watcher(handler).map_err(error)?)
        };
        watcher
            .watch(&self.dir, RecursiveMode::Recursive)
            .map_err(error)?;
        Ok(watcher)
    }

    fn consider(&self, pending: &mut HashMap<PathBuf, Pending>, path: PathBuf) {
        if pending.contains_key(&path)
            || is_ignored_name(&path)
            || is_ground_truth(&path, &self.dir, &self.patterns)
        {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            return;
        }
        pending.insert(
            path,
            Pending {
                size: meta.len(),
                modified: meta.modified().ok(),
                since: Instant::now(),
            },
        );
    }

    /// Files whose size and mtime have not changed for `settle`; the clock restarts on any change.
    fn settled(&self, pending: &mut HashMap<PathBuf, Pending>, settle: Duration) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        pending.retain(|path, seen| {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return false;
            };
            let (size, modified) = (meta.len(), meta.modified().ok());
            if size != seen.size || modified != seen.modified {
                *seen = Pending {
                    size,
                    modified,
                    since: Instant::now(),
                };
                return true;
            }
            if seen.since.elapsed() >= settle {
                ready.push(path.clone());
                return false;
            }
            true
        });
        ready.sort();
        ready
    }

    /// Renames the file into `claimed/`. Losing the race to another watcher is not an error.
    fn claim(&self, path: &Path) -> Option<Claimed> {
        let name = path.file_name()?.to_string_lossy().into_owned();
        let token = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let claimed = self.claimed_dir.join(format!("{token}-{name}"));
        // Ground truth is read from the drop folder, so it is paired before the input moves.
        match std::fs::rename(path, &claimed) {
            Ok(()) => Some(Claimed {
                candidate: Candidate {
                    path: path.to_path_buf(),
                    root: self.dir.clone(),
                },
                claimed,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot claim: {e}");
                None
            }
        }
    }
}
