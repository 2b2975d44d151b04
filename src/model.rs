//! Models and their cards. A model is an ONNX file with a JSON card beside it
//! (`<name>.onnx` + `<name>.card.json`) that says how to feed it (input size, mean/std) and how to
//! read it (output activation, threshold). The card's SHA-256 must match the file's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {}: {source}", path.display())]
    ReadModel { path: PathBuf, source: std::io::Error },
    #[error("cannot read model card {}: {source} (every model needs a <name>.card.json beside it)", path.display())]
    ReadCard { path: PathBuf, source: std::io::Error },
    #[error("invalid model card {}: {source}", path.display())]
    ParseCard { path: PathBuf, source: serde_json::Error },
    #[error("model {} has SHA-256 {actual} but its card says {expected}: the card belongs to another export", path.display())]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },
    #[error("model card {}: {reason}", path.display())]
    InvalidCard { path: PathBuf, reason: String },
}

/// What the pipeline needs to know about a model, from its card.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelCard {
    pub name: String,
    pub sha256: String,
    pub input: InputSpec,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub output: OutputSpec,
    pub threshold: f32,
    /// Everything else on the card (training data, metrics, parameters…), kept for `model inspect`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ModelCard {
    /// What the card says the model is for, when it says so (e.g. "a demonstration model, not for
    /// clinical or research conclusions" for one trained only on synthetic data): efen repeats it
    /// wherever the model's results are shown.
    pub fn intended_use(&self) -> Option<&str> {
        self.extra.get("intended_use").and_then(|v| v.as_str()).filter(|s| !s.is_empty())
    }

    /// "model <name>: <intended use>", for the places that repeat it.
    pub fn notice(&self) -> Option<String> {
        self.intended_use().map(|text| format!("model {}: {text}", self.name))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InputSpec {
    pub name: String,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    /// Pixel values are divided by this before mean/std normalization (255 for 8-bit RGB).
    pub scale: f32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutputSpec {
    pub name: String,
    /// `sigmoid`: the graph already outputs probabilities; `logits`: efen applies the sigmoid.
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Sigmoid,
    Logits,
}

/// A model file whose bytes were checked against its card.
#[derive(Debug, Clone)]
pub struct Model {
    pub path: PathBuf,
    pub card: ModelCard,
    pub sha256: String,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

impl Model {
    /// Reads `path` and the card beside it, and checks the checksum.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::ReadModel { path: path.into(), source })?;
        let card_path = card_path(path);
        let text = std::fs::read_to_string(&card_path)
            .map_err(|source| ModelError::ReadCard { path: card_path.clone(), source })?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|source| ModelError::ParseCard { path: card_path.clone(), source })?;
        let sha256 = sha256_hex(&bytes);
        if !card.sha256.eq_ignore_ascii_case(&sha256) {
            return Err(ModelError::ChecksumMismatch { path: path.into(), expected: card.sha256, actual: sha256 });
        }
        let invalid = |reason: &str| ModelError::InvalidCard { path: card_path.clone(), reason: reason.into() };
        if card.input.channels != 3 {
            return Err(invalid("input.channels must be 3 (RGB)"));
        }
        if card.input.height == 0 || card.input.width == 0 || card.input.scale <= 0.0 {
            return Err(invalid("input.height, input.width and input.scale must be positive"));
        }
        if card.std.iter().any(|s| *s <= 0.0) {
            return Err(invalid("std must be positive"));
        }
        if !(0.0..=1.0).contains(&card.threshold) {
            return Err(invalid("threshold must be within 0..1"));
        }
        Ok(Model { path: path.into(), card, sha256, bytes: std::sync::Arc::new(bytes) })
    }
}

/// `models/x.onnx` → `models/x.card.json`.
pub fn card_path(model: &Path) -> PathBuf {
    model.with_extension("card.json")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
