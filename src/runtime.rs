//! The ONNX Runtime library: where it is, loading it once per process, and making sessions on the
//! first execution provider that works.
//!
//! The library is found, in order, at `runtime.onnxruntime_lib`, at `ORT_DYLIB_PATH`, then in the
//! project-local copy that `scripts/setup.sh` installs from the `onnxruntime` wheel.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::config::Config;

/// Where `scripts/setup.sh` puts the wheel's contents, relative to the project root.
pub const PROJECT_LOCAL_DIR: &str = ".efen/onnxruntime";
const SETUP_HINT: &str = "run scripts/setup.sh (installs the onnxruntime wheel's library into .efen/onnxruntime), \
or set runtime.onnxruntime_lib / ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31 or newer";

/// The service's `[runtime]` section: the library, the execution providers and the threads.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
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
    /// Let ONNX Runtime's idle threads spin-wait for the next work item instead of sleeping. Off:
    /// on a CPU the spinning threads take the cores that decode and emit need between batches.
    pub spinning: bool,
    /// ONNX Runtime sessions, each on its own inference thread serving the shared tile queue.
    pub sessions: usize,
}

impl RuntimeConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sessions == 0 {
            problems.push("runtime.sessions must be at least 1".to_string());
        }
        for provider in &self.providers {
            if !["tensorrt", "cuda", "cpu"].contains(&provider.as_str()) {
                problems.push(format!(
                    "runtime.providers: unknown execution provider {provider:?} (use tensorrt, cuda or cpu)"
                ));
            }
        }
        problems
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked at {looked}): {SETUP_HINT}")]
    NotFound { looked: String },
    #[error("cannot load ONNX Runtime from {}: {reason}: {SETUP_HINT}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("cannot create an ONNX Runtime session for {}: {reason}", model.display())]
    Session { model: PathBuf, reason: String },
    #[error("no execution provider could run {}: {tried}", model.display())]
    NoProvider { model: PathBuf, tried: String },
}

/// The library file and which rule found it.
#[derive(Debug, Clone)]
pub struct Library {
    pub path: PathBuf,
    pub found_by: &'static str,
}

/// Finds the library without loading it.
pub fn locate(config: &Config) -> Result<Library, RuntimeError> {
    let mut looked = Vec::new();
    if !config.runtime.onnxruntime_lib.is_empty() {
        let path = config.resolve(Path::new(&config.runtime.onnxruntime_lib));
        return existing(path, "runtime.onnxruntime_lib");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(PathBuf::from(path), "ORT_DYLIB_PATH");
    }
    let capi = config.root.join(PROJECT_LOCAL_DIR).join("onnxruntime").join("capi");
    looked.push(capi.display().to_string());
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&capi)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    // The wheel ships only the versioned name; prefer the longest (most specific) one.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    match candidates.into_iter().next() {
        Some(path) => Ok(Library { path, found_by: "project-local .efen/onnxruntime" }),
        None => Err(RuntimeError::NotFound { looked: looked.join(", ") }),
    }
}

fn existing(path: PathBuf, found_by: &'static str) -> Result<Library, RuntimeError> {
    if path.is_file() {
        Ok(Library { path, found_by })
    } else {
        Err(RuntimeError::NotFound { looked: format!("{} ({found_by})", path.display()) })
    }
}

static ENVIRONMENT: OnceLock<(Environment, Library)> = OnceLock::new();

/// Loads the library and creates the process's one environment (idempotent).
pub fn environment(config: &Config) -> Result<&'static (Environment, Library), RuntimeError> {
    if let Some(loaded) = ENVIRONMENT.get() {
        return Ok(loaded);
    }
    let library = locate(config)?;
    let load_error = |reason: String| RuntimeError::Load { path: library.path.clone(), reason };
    let environment = ort::init_from(&library.path)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("efen")
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| (environment, library)))
}

/// The library's version: from its file name (`libonnxruntime.so.1.32.0`), else its build string.
pub fn version(library: &Library) -> String {
    let name = library.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.split_once(".so.") {
        Some((_, version)) if !version.is_empty() => version.to_string(),
        _ => ort::info().to_string(),
    }
}

/// Builds one session on the first provider in `config.runtime.providers` that loads. Returns the
/// session, the provider's name and the failures of the ones before it.
pub fn session(config: &Config, model: &crate::model::Model) -> Result<(Session, String, Vec<String>), RuntimeError> {
    let (environment, _) = environment(config)?;
    let mut failures = Vec::new();
    for provider in &config.runtime.providers {
        match build_session(environment, config, provider, &model.bytes) {
            Ok(session) => return Ok((session, provider.clone(), failures)),
            Err(e) => failures.push(format!("{provider}: {e}")),
        }
    }
    Err(RuntimeError::NoProvider { model: model.path.clone(), tried: failures.join("; ") })
}

/// `ort`'s builder errors are not `Send`, so the whole build stays in one `ort::Result` function.
fn build_session(environment: &Environment, config: &Config, provider: &str, bytes: &[u8]) -> ort::Result<Session> {
    let dispatch = match provider {
        "tensorrt" => ep::TensorRT::default().build().error_on_failure(),
        "cuda" => ep::CUDA::default().build().error_on_failure(),
        _ => ep::CPU::default().build().error_on_failure(),
    };
    let mut builder = Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_inter_threads(config.runtime.inter_threads.max(1))?
        .with_intra_op_spinning(config.runtime.spinning)?
        .with_inter_op_spinning(config.runtime.spinning)?
        .with_execution_providers([dispatch])?;
    if config.runtime.intra_threads > 0 {
        builder = builder.with_intra_threads(config.runtime.intra_threads)?;
    }
    builder.commit_from_memory(bytes)
}

/// Which providers load for `model`, in config order, with the reason for each that does not.
pub fn probe_providers(
    config: &Config,
    model: &crate::model::Model,
) -> Result<Vec<(String, Result<(), String>)>, RuntimeError> {
    let (environment, _) = environment(config)?;
    let mut names: Vec<&str> = vec!["tensorrt", "cuda", "cpu"];
    names.sort_by_key(|n| config.runtime.providers.iter().position(|p| p == n).unwrap_or(usize::MAX));
    Ok(names
        .into_iter()
        .map(|name| {
            (
                name.to_string(),
                build_session(environment, config, name, &model.bytes).map(|_| ()).map_err(|e| e.to_string()),
            )
        })
        .collect())
}
