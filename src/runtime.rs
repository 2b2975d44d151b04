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
    /// Threads inside one operator, per session; 0 derives them from the cores and the CPU workers
    /// ([`intra_threads`]).
    pub intra_threads: usize,
    /// Threads across independent operators.
    pub inter_threads: usize,
    /// Let ONNX Runtime's idle threads spin-wait for the next work item instead of sleeping. Off:
    /// on a CPU the spinning threads take the cores that decode and emit need between batches.
    pub spinning: bool,
    /// ONNX Runtime sessions, each on its own inference thread serving the shared tile queue.
    pub sessions: usize,
    /// Options of the CUDA execution provider (`[runtime.cuda]`).
    pub cuda: CudaOptions,
    /// Options of the TensorRT execution provider (`[runtime.tensorrt]`).
    pub tensorrt: TensorRtOptions,
}

/// `[runtime.cuda]`: how the CUDA execution provider runs the model.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CudaOptions {
    /// The GPU, by CUDA index.
    pub device_id: i32,
    /// cuDNN convolution algorithm search: `exhaustive` (benchmarks every algorithm on the first
    /// batch of each shape: slow first batch, fastest after), `heuristic` or `default`.
    pub conv_algo_search: String,
    /// Let cuDNN use as much workspace as the fastest algorithm wants.
    pub conv_max_workspace: bool,
    /// Run convolutions in NHWC, the layout tensor cores prefer (fp16 especially); ONNX Runtime
    /// inserts the transposes.
    pub prefer_nhwc: bool,
    /// Allow TF32 tensor-core math for fp32 models (about fp16's range, 10 bits of mantissa).
    pub tf32: bool,
    /// Capture the graph once and replay it: only for fixed shapes (one batch size, no tiling
    /// with a partial last batch), which efen does not guarantee; off unless the site knows.
    pub cuda_graph: bool,
    /// Most GPU memory ONNX Runtime's arena may take, in MiB (0: no limit).
    pub memory_limit_mb: usize,
}

/// `[runtime.tensorrt]`: how the TensorRT execution provider builds and keeps its engines.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorRtOptions {
    pub device_id: i32,
    /// Build fp16 engines (TensorRT picks fp16 or fp32 per layer).
    pub fp16: bool,
    /// Folder for built engines and the timing cache, relative to the project root; empty: engines
    /// are rebuilt at every start (minutes for a large model).
    pub engine_cache_dir: String,
    /// Largest workspace a layer may use while the engine is built, in MiB (0: TensorRT's default).
    pub max_workspace_mb: usize,
}

impl CudaOptions {
    fn conv_search(&self) -> Option<ep::cuda::ConvAlgorithmSearch> {
        use ep::cuda::ConvAlgorithmSearch as Search;
        match self.conv_algo_search.as_str() {
            "exhaustive" => Some(Search::Exhaustive),
            "heuristic" => Some(Search::Heuristic),
            "default" => Some(Search::Default),
            _ => None,
        }
    }
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
        if self.cuda.conv_search().is_none() {
            problems.push(format!(
                "runtime.cuda.conv_algo_search {:?} must be exhaustive, heuristic or default",
                self.cuda.conv_algo_search
            ));
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

/// The `[runtime]` section with what it needs of the rest of the configuration: the project root
/// its paths resolve against, and the CPU workers whose cores the intra-op threads leave free.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSettings<'a> {
    pub runtime: &'a RuntimeConfig,
    pub root: &'a Path,
    /// Blocking workers per CPU stage (`engine.workers`, resolved).
    pub cpu_workers: usize,
}

impl RuntimeSettings<'_> {
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.root.join(path) }
    }
}

/// The library file and which rule found it.
#[derive(Debug, Clone)]
pub struct Library {
    pub path: PathBuf,
    pub found_by: &'static str,
}

/// Finds the library without loading it.
pub fn locate(config: &RuntimeSettings<'_>) -> Result<Library, RuntimeError> {
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
pub fn environment(config: &RuntimeSettings<'_>) -> Result<&'static (Environment, Library), RuntimeError> {
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
pub fn session(
    config: &RuntimeSettings<'_>,
    model: &crate::model::Model,
) -> Result<(Session, String, Vec<String>), RuntimeError> {
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

/// The intra-op threads each session gets: `runtime.intra_threads` when set, else the cores left
/// once the CPU stages have theirs, shared between the sessions. The CPU stages (decode, pre- and
/// postprocessing, emit) are given one core per `engine.workers`, at most a quarter of the cores:
/// that is about their share of a case's CPU with the bundled model (3-5 ms of 12-14 ms at
/// 512×512). With spinning off, ONNX Runtime's idle threads sleep, so a pool as large as the
/// cores costs little while decode and emit run: on 2 cores, 2 intra-op threads ran `efen run`
/// at 118-122 cases/s against 96-106 with 1 (200 gray 512×512 PNGs).
pub fn intra_threads(config: &RuntimeSettings<'_>) -> usize {
    if config.runtime.intra_threads > 0 {
        return config.runtime.intra_threads;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    derived_intra_threads(cores, config.cpu_workers, config.runtime.sessions)
}

fn derived_intra_threads(cores: usize, workers: usize, sessions: usize) -> usize {
    let for_workers = workers.min(cores / 4);
    ((cores - for_workers) / sessions.max(1)).max(1)
}

/// The thread settings in words, for `efen bench` and `efen doctor`.
pub fn thread_settings(config: &RuntimeSettings<'_>) -> String {
    let runtime = &config.runtime;
    let intra = intra_threads(config);
    let how = if runtime.intra_threads > 0 { "set" } else { "derived" };
    format!(
        "intra-op {intra} ({how}), inter-op {}, spinning {}, {} session(s), {} CPU worker(s) per stage, {} core(s)",
        runtime.inter_threads.max(1),
        if runtime.spinning { "on" } else { "off" },
        runtime.sessions,
        config.cpu_workers,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    )
}

/// `ort`'s builder errors are not `Send`, so the whole build stays in one `ort::Result` function.
fn build_session(
    environment: &Environment,
    config: &RuntimeSettings<'_>,
    provider: &str,
    bytes: &[u8],
) -> ort::Result<Session> {
    let dispatch = match provider {
        "tensorrt" => tensorrt(config).build().error_on_failure(),
        "cuda" => cuda(&config.runtime.cuda).build().error_on_failure(),
        _ => ep::CPU::default().build().error_on_failure(),
    };
    // Spinning off (the default) for both pools: idle ONNX Runtime threads sleep instead of taking
    // the cores that decode and emit need between batches.
    Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(intra_threads(config))?
        .with_inter_threads(config.runtime.inter_threads.max(1))?
        .with_intra_op_spinning(config.runtime.spinning)?
        .with_inter_op_spinning(config.runtime.spinning)?
        .with_execution_providers([dispatch])?
        .commit_from_memory(bytes)
}

fn cuda(options: &CudaOptions) -> ep::CUDA {
    let mut cuda = ep::CUDA::default()
        .with_device_id(options.device_id)
        .with_conv_algorithm_search(options.conv_search().unwrap_or_default())
        .with_conv_max_workspace(options.conv_max_workspace)
        .with_prefer_nhwc(options.prefer_nhwc)
        .with_tf32(options.tf32)
        .with_cuda_graph(options.cuda_graph);
    if options.memory_limit_mb > 0 {
        cuda = cuda.with_memory_limit(options.memory_limit_mb << 20);
    }
    cuda
}

fn tensorrt(config: &RuntimeSettings<'_>) -> ep::TensorRT {
    let options = &config.runtime.tensorrt;
    let mut tensorrt = ep::TensorRT::default().with_device_id(options.device_id).with_fp16(options.fp16);
    if !options.engine_cache_dir.is_empty() {
        let dir = config.resolve(Path::new(&options.engine_cache_dir)).display().to_string();
        tensorrt = tensorrt
            .with_engine_cache(true)
            .with_engine_cache_path(&dir)
            .with_timing_cache(true)
            .with_timing_cache_path(&dir);
    }
    if options.max_workspace_mb > 0 {
        tensorrt = tensorrt.with_max_workspace_size(options.max_workspace_mb << 20);
    }
    tensorrt
}

/// Which providers load for `model`, in config order, with the reason for each that does not.
pub fn probe_providers(
    config: &RuntimeSettings<'_>,
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

#[cfg(test)]
mod tests {
    use super::derived_intra_threads;

    #[test]
    fn derived_intra_threads_leave_the_workers_their_cores() {
        assert_eq!(derived_intra_threads(2, 2, 1), 2, "2 cores: both for ONNX Runtime (measured best)");
        assert_eq!(derived_intra_threads(1, 1, 1), 1);
        assert_eq!(derived_intra_threads(4, 4, 1), 3);
        assert_eq!(derived_intra_threads(16, 16, 1), 12, "the workers take at most a quarter");
        assert_eq!(derived_intra_threads(16, 2, 1), 14);
        assert_eq!(derived_intra_threads(16, 16, 2), 6, "shared between the sessions");
        assert_eq!(derived_intra_threads(2, 2, 4), 1, "never 0 (0 would let ONNX Runtime take every core)");
    }
}
