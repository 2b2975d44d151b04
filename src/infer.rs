//! Infer: runs the network on batches of preprocessed tensors.
//!
//! Each worker thread owns one ONNX Runtime session and serves a shared queue: it takes the first
//! waiting tensor, gathers more (from any case) until the batch is full or `batch_wait` has passed,
//! runs them in one call and hands each output map back with its payload. It never touches disk or
//! the database.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ort::session::Session;
use ort::value::TensorRef;

use crate::model::ModelCard;

#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error("ONNX Runtime failed: {0}")]
    Run(String),
    #[error("model output {name:?} has shape {shape:?}; expected [N, 1, {height}, {width}]")]
    OutputShape { name: String, shape: Vec<i64>, height: u32, width: u32 },
}

crate::error_types!(InferError { Run => "onnx_runtime", OutputShape => "output_shape" });

/// One tensor to run, and whatever the caller needs back with its result.
pub struct InferRequest<P> {
    pub tensor: Vec<f32>,
    pub payload: P,
}

/// One result: the output map (`height × width` values) and the share of batch time it took.
pub struct InferResult<P> {
    pub output: Result<Vec<f32>, InferError>,
    pub elapsed: Duration,
    pub batch_size: usize,
    pub payload: P,
}

/// A session plus what it takes to feed it.
pub struct Inference {
    session: Session,
    input_name: String,
    output_name: String,
    width: u32,
    height: u32,
    buffer: Vec<f32>,
}

impl Inference {
    pub fn new(session: Session, card: &ModelCard) -> Inference {
        Inference {
            session,
            input_name: card.input.name.clone(),
            output_name: card.output.name.clone(),
            width: card.input.width,
            height: card.input.height,
            buffer: Vec::new(),
        }
    }

    /// Runs `tensors` (each `3 × height × width`) as one batch; one output map each.
    pub fn run(&mut self, tensors: &[&[f32]]) -> Result<Vec<Vec<f32>>, InferError> {
        let plane = (self.width * self.height) as usize;
        self.buffer.clear();
        for tensor in tensors {
            debug_assert_eq!(tensor.len(), 3 * plane);
            self.buffer.extend_from_slice(tensor);
        }
        let shape = vec![tensors.len() as i64, 3, self.height as i64, self.width as i64];
        let input =
            TensorRef::from_array_view((shape, &self.buffer[..])).map_err(|e| InferError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| InferError::Run(e.to_string()))?;
        let output = outputs
            .get(self.output_name.as_str())
            .ok_or_else(|| InferError::Run(format!("the model has no output named {:?}", self.output_name)))?;
        let (shape, values) = output.try_extract_tensor::<f32>().map_err(|e| InferError::Run(e.to_string()))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims != [tensors.len() as i64, 1, self.height as i64, self.width as i64] {
            return Err(InferError::OutputShape {
                name: self.output_name.clone(),
                shape: dims,
                height: self.height,
                width: self.width,
            });
        }
        Ok(values.chunks_exact(plane).map(<[f32]>::to_vec).collect())
    }
}

/// Serves `requests` until the queue closes, batching up to `batch_size` with at most `batch_wait`
/// of waiting for a batch to fill.
pub fn serve<P>(
    mut inference: Inference,
    requests: Receiver<InferRequest<P>>,
    batch_size: usize,
    batch_wait: Duration,
    mut deliver: impl FnMut(InferResult<P>),
) {
    while let Ok(first) = requests.recv() {
        crate::telemetry::QueueDepth { queue: "infer", waiting: requests.len() }.emit();
        let mut batch = vec![first];
        let deadline = Instant::now() + batch_wait;
        while batch.len() < batch_size {
            match requests.recv_deadline(deadline) {
                Ok(request) => batch.push(request),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        crate::telemetry::BatchFormed { tiles: batch.len() }.emit();
        let started = Instant::now();
        let tensors: Vec<&[f32]> = batch.iter().map(|r| r.tensor.as_slice()).collect();
        let results = run_or_retry_alone(&mut inference, &tensors);
        let n = batch.len();
        let elapsed = started.elapsed() / n as u32;
        for (request, output) in batch.into_iter().zip(results) {
            deliver(InferResult { output, elapsed, batch_size: n, payload: request.payload });
        }
    }
}

/// Runs a batch; if it fails (out of memory, or one bad tile), retries each tile once on its own,
/// so that one failure costs one case, not the whole batch.
fn run_or_retry_alone(inference: &mut Inference, tensors: &[&[f32]]) -> Vec<Result<Vec<f32>, InferError>> {
    match inference.run(tensors) {
        Ok(outputs) => outputs.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(batch = tensors.len(), "inference failed, retrying tile by tile: {e}");
            tensors.iter().map(|t| inference.run(&[t]).map(|mut out| out.remove(0))).collect()
        }
    }
}
