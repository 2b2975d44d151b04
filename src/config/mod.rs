//! Service configuration: composes each stage's own section (`XConfig`, defined beside the stage;
//! the stage graph's `[engine]` in [`engine`]) and checks them all at once. Only the faces and the
//! wiring (`cli`, `doctor`, `bench`, `pipeline`) read the composed [`Config`]; every other room
//! is handed its own section. Sources: `config/default.toml` (compiled in as the base layer), the project's copy
//! of it when there is one, then `EFEN_<SECTION>__<KEY>` environment variables, then `DATABASE_URL`.
//!
//! Relative paths resolve against the project root: the folder holding the `config/` folder that
//! the file was found in (searched from the current folder upwards), else the current folder.

mod engine;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The compiled-in defaults: the same file users edit, so the two cannot drift apart.
const DEFAULTS: &str = include_str!("../../config/default.toml");
/// The bearer token's variable, read verbatim rather than parsed like the other keys.
const BEARER_TOKEN_VAR: &str = "EFEN_HTTP__BEARER_TOKEN";
const BEARER_TOKEN_KEY: &str = "http__bearer_token";
pub use engine::EngineConfig;

const SECTIONS: [&str; 8] = ["paths", "database", "runtime", "engine", "watch", "dicom", "node", "http"];

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
    pub database: crate::store::DatabaseConfig,
    pub runtime: crate::runtime::RuntimeConfig,
    pub engine: EngineConfig,
    pub watch: crate::ingest::watch::WatchConfig,
    pub dicom: crate::dicom::PatientIdConfig,
    pub node: crate::node::NodeConfig,
    pub http: crate::http::HttpConfig,
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
                    key != BEARER_TOKEN_KEY && SECTIONS.iter().any(|s| key.starts_with(&format!("{s}__")))
                })
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Read {
            path: file.clone().unwrap_or_else(|| PathBuf::from("<defaults>")),
            source: Box::new(e),
        })?;
        // The token as it is: figment would read `12345` as a number and `[x]` as a list, and
        // print the value in its error.
        if let Ok(token) = std::env::var(BEARER_TOKEN_VAR) {
            config.http.bearer_token = crate::http::auth::Secret::new(token);
        }
        if config.database.url.is_empty() {
            config.database.url = std::env::var("DATABASE_URL").unwrap_or_default();
        }
        config.root = file
            .as_deref()
            .and_then(project_root_of)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        // The TLS files are opened by the HTTP server, which knows no project root.
        let root = config.root.clone();
        for path in [&mut config.http.tls_cert, &mut config.http.tls_key] {
            if !path.as_os_str().is_empty() {
                *path = root.join(&*path);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Reports every problem at once, before anything starts.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        problems.extend(self.database.problems());
        problems.extend(self.runtime.problems());
        problems.extend(self.engine.problems());
        problems.extend(self.watch.problems());
        problems.extend(self.node.problems());
        problems.extend(self.http.problems());
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

    /// The `[runtime]` section with the project root and the CPU workers it needs.
    pub fn runtime_settings(&self) -> crate::runtime::RuntimeSettings<'_> {
        crate::runtime::RuntimeSettings { runtime: &self.runtime, root: &self.root, cpu_workers: self.engine.workers() }
    }

    /// The store URL: the configured one, else the embedded SQLite file under the state folder.
    pub fn database_url(&self) -> String {
        self.database.url_or_embedded(&self.state_dir())
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
