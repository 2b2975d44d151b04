//! Service configuration: `config/default.toml` (compiled in as the base layer), the project's copy
//! of it when there is one, then `EFEN_<SECTION>__<KEY>` environment variables, then `DATABASE_URL`.
//!
//! Relative paths resolve against the project root: the folder holding the `config/` folder that
//! the file was found in (searched from the current folder upwards), else the current folder.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The compiled-in defaults: the same file users edit, so the two cannot drift apart.
const DEFAULTS: &str = include_str!("../config/default.toml");
const SECTIONS: [&str; 7] = ["paths", "database", "runtime", "engine", "watch", "dicom", "node"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Read { path: PathBuf, source: Box<figment::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub paths: PathsConfig,
    pub database: DatabaseConfig,
    pub runtime: RuntimeConfig,
    pub engine: EngineConfig,
    pub watch: WatchConfig,
    pub dicom: DicomConfig,
    pub node: NodeConfig,
    /// The project root every relative path is resolved against (not a file key).
    #[serde(skip)]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// claimed/, done/, failed/ and the embedded store.
    pub state_dir: PathBuf,
    /// `<out_dir>/<case id>/` receives each case's outputs.
    pub out_dir: PathBuf,
    /// Pipeline used when `--pipeline` is not given.
    pub default_pipeline: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`; empty means `DATABASE_URL`, else SQLite under `state_dir`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so*`; empty means `ORT_DYLIB_PATH`, else the project-local copy.
    pub onnxruntime_lib: String,
    /// Execution providers in order of preference: tensorrt, cuda, cpu.
    pub providers: Vec<String>,
    /// Threads inside one operator; 0 lets ONNX Runtime pick one per core.
    pub intra_threads: usize,
    /// Threads across independent operators.
    pub inter_threads: usize,
    /// ONNX Runtime sessions, each on its own inference thread serving the shared tile queue.
    pub sessions: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most tiles in one inference call.
    pub batch_size: usize,
    /// Longest wait for a partial batch to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// Blocking workers for the CPU stages; 0 means one per core.
    pub workers: usize,
    /// Capacity of each channel between stages.
    pub queue: usize,
    /// Larger inputs are refused (failed at ingest), in MiB.
    pub max_file_mb: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Size and mtime must be unchanged this long before a file is taken.
    pub settle_ms: u64,
    /// Period of the full rescan that catches missed events.
    pub rescan_ms: u64,
    /// Use the polling watcher instead of OS events.
    pub poll: bool,
    pub poll_interval_ms: u64,
    /// This watcher's name: its claim folder is `<state>/claimed/<worker>`. Empty: the host name.
    pub worker: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Key of the keyed hash (HMAC-SHA256) that pseudonymises DICOM Patient IDs in the record.
    /// Empty: the Patient ID is withheld. Set it through EFEN_DICOM__PSEUDONYM_KEY, not the file.
    pub pseudonym_key: String,
    /// Record the Patient ID as in the file instead of its keyed hash. Off by default; only for
    /// sites whose store may hold identifiers.
    pub raw_patient_id: bool,
}

impl DicomConfig {
    /// The identity of a DICOM input as the record keeps it: the patient ID raw, keyed-hashed
    /// or withheld, as configured.
    pub fn identity(&self, file: &crate::dicom::DicomFile) -> crate::dicom::Identity {
        if self.raw_patient_id {
            file.identity_with_raw_patient_id()
        } else {
            file.identity((!self.pseudonym_key.is_empty()).then_some(self.pseudonym_key.as_bytes()))
        }
    }
}

/// efen as a DICOM node (`efen watch` with `listen` set): Storage SCP, series, outbox.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `host:port` of the Storage SCP; empty: no DICOM node.
    pub listen: String,
    /// This node's AE title; associations called for another title are rejected.
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: anyone.
    pub allowed_callers: Vec<String>,
    /// Compressed transfer syntaxes accepted besides Explicit and Implicit VR Little Endian.
    pub accept_compressed: Vec<String>,
    /// Largest P-DATA PDU this node receives.
    pub max_pdu_length: u32,
    /// A series is complete once no instance has arrived for this long.
    pub series_quiet_ms: u64,
    /// Where SEGs are sent: `AE@host:port`.
    pub destinations: Vec<String>,
    /// Also send the overlay as a Secondary Capture image, for viewers that do not show SEG.
    pub send_overlay: bool,
    /// Attempts per send before it is recorded as failed (retried again after a restart).
    pub send_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub send_backoff_ms: u64,
    /// Limit for one whole send (association, C-STORE, release).
    pub send_timeout_ms: u64,
}

impl Config {
    /// Loads the configuration: `explicit` if given, else `config/default.toml` found from the
    /// current folder upwards, layered over the compiled-in defaults and the environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => find_project_config(),
        };
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!("configuration file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("EFEN_")
                .filter(|key| {
                    // Only section keys: other EFEN_ variables (EFEN_CONFIG, EFEN_LOG) are not config.
                    let key = key.as_str().to_ascii_lowercase();
                    SECTIONS.iter().any(|s| key.starts_with(&format!("{s}__")))
                })
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Read {
            path: file.clone().unwrap_or_else(|| PathBuf::from("<defaults>")),
            source: Box::new(e),
        })?;
        if config.database.url.is_empty() {
            config.database.url = std::env::var("DATABASE_URL").unwrap_or_default();
        }
        config.root = file
            .as_deref()
            .and_then(project_root_of)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        config.validate()?;
        Ok(config)
    }

    /// Reports every problem at once, before anything starts.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.engine.batch_size == 0 {
            problems.push("engine.batch_size must be at least 1".to_string());
        }
        if self.runtime.sessions == 0 {
            problems.push("runtime.sessions must be at least 1".to_string());
        }
        if self.engine.queue == 0 {
            problems.push("engine.queue must be at least 1".to_string());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".to_string());
        }
        for provider in &self.runtime.providers {
            if !["tensorrt", "cuda", "cpu"].contains(&provider.as_str()) {
                problems.push(format!(
                    "runtime.providers: unknown execution provider {provider:?} (use tensorrt, cuda or cpu)"
                ));
            }
        }
        if self.watch.worker.contains(['/', '\\']) || self.watch.worker.starts_with('.') {
            problems.push(format!(
                "watch.worker {:?} must be a plain name (no '/', not starting with '.')",
                self.watch.worker
            ));
        }
        if self.node.enabled() {
            let ae = &self.node.ae_title;
            if ae.trim().is_empty() || ae.len() > 16 || ae.contains('\\') || !ae.is_ascii() {
                problems.push(format!("node.ae_title {ae:?} must be 1 to 16 ASCII characters without '\\'"));
            }
            if let Err(e) = self.node.destinations() {
                problems.push(e.to_string());
            }
            if self.node.max_pdu_length < 4096 {
                problems.push("node.max_pdu_length must be at least 4096".to_string());
            }
        }
        let url = &self.database.url;
        if !url.is_empty()
            && !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
            && !url.starts_with("sqlite:")
        {
            problems.push(format!(
                "database.url must start with postgres:// or sqlite:// (got {})",
                crate::store::redact_url(url)
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems.join("; "))) }
    }

    /// `path` made absolute against the project root.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.root.join(path) }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.paths.state_dir)
    }

    pub fn out_dir(&self) -> PathBuf {
        self.resolve(&self.paths.out_dir)
    }

    /// The store URL: the configured one, else the embedded SQLite file under the state folder.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.state_dir().join("efen.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// This watcher's name (`watch.worker`, else the host name).
    pub fn worker(&self) -> String {
        if self.watch.worker.is_empty() {
            gethostname::gethostname().to_string_lossy().into_owned()
        } else {
            self.watch.worker.clone()
        }
    }

    /// Blocking workers per CPU stage.
    pub fn workers(&self) -> usize {
        if self.engine.workers > 0 {
            self.engine.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        }
    }
}

fn find_project_config() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|dir| dir.join("config").join("default.toml")).find(|p| p.is_file())
}

/// `<root>/config/<file>.toml` → `<root>`; a file elsewhere → its own folder.
fn project_root_of(file: &Path) -> Option<PathBuf> {
    let file = std::fs::canonicalize(file).ok()?;
    let dir = file.parent()?;
    if dir.file_name().is_some_and(|n| n == "config") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_defaults_parse_and_validate() {
        let config: Config = Figment::from(Toml::string(DEFAULTS)).extract().unwrap();
        config.validate().unwrap();
        assert_eq!(config.runtime.providers, vec!["cpu"]);
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut config: Config = Figment::from(Toml::string(DEFAULTS)).extract().unwrap();
        config.engine.batch_size = 0;
        config.runtime.providers = vec!["gpu".into()];
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("batch_size"), "{message}");
        assert!(message.contains("\"gpu\""), "{message}");
    }
}
