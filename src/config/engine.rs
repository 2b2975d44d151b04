//! The `[engine]` section: batches, workers and queues of the stage graph that
//! [`crate::pipeline`] builds. Here rather than in the wiring, so the configuration composes it
//! without importing what it configures.

/// The service's `[engine]` section: batches, workers and queues of the stage graph.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
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

impl EngineConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.batch_size == 0 {
            problems.push("engine.batch_size must be at least 1".to_string());
        }
        if self.queue == 0 {
            problems.push("engine.queue must be at least 1".to_string());
        }
        problems
    }

    /// Blocking workers per CPU stage.
    pub fn workers(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) }
    }
}
