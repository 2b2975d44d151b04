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

    /// What efen repeats wherever the model's results are shown (doctor, the log at start, the
    /// run's summary): the intended-use notice and the warning about an unvalidated input size.
    pub fn notices(&self) -> Vec<String> {
        self.notice().into_iter().chain(self.size_warning()).collect()
    }

    /// The card as a pipeline uses it: with `preprocess.input_size` as the model's input size.
    pub fn at_size(&self, input_size: Option<[u32; 2]>) -> ModelCard {
        let mut card = self.clone();
        if let Some([height, width]) = input_size {
            (card.input.height, card.input.width) = (height, width);
        }
        card
    }

    /// The input sizes (`[height, width]`) at which the card's held-out metrics were measured and
    /// met its goal (`validated_input_sizes`); `None` when the card does not say.
    pub fn validated_input_sizes(&self) -> Option<Vec<[u32; 2]>> {
        serde_json::from_value(self.extra.get("validated_input_sizes")?.clone()).ok()
    }

    /// A warning when the model runs at an input size its card did not validate: a convolutional
    /// network accepts any size, but its accuracy away from the sizes it was checked at is unknown
    /// (or, where the card measured it there, below its goal).
    pub fn size_warning(&self) -> Option<String> {
        let validated = self.validated_input_sizes()?;
        let size = [self.input.height, self.input.width];
        if validated.contains(&size) {
            return None;
        }
        let name = |[h, w]: [u32; 2]| format!("{h}x{w}");
        let list: Vec<String> = validated.iter().copied().map(name).collect();
        let measured = self
            .extra
            .get("test_metrics_by_size")
            .and_then(|m| m.get(name(size)))
            .and_then(|m| m.get("dsc"))
            .and_then(|d| d.as_f64())
            .map(|dsc| format!("its held-out DSC there is {dsc:.3}"))
            .unwrap_or_else(|| "its accuracy there was never measured".to_string());
        Some(format!(
            "model {} runs at {} (height x width) but its card validated it only at {}: {measured}",
            self.name,
            name(size),
            if list.is_empty() { "no size".to_string() } else { list.join(", ") },
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn card(extra: serde_json::Value) -> ModelCard {
        let mut card = serde_json::json!({
            "name": "m", "sha256": "00",
            "input": {"name": "image", "channels": 3, "height": 128, "width": 128, "scale": 255.0},
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
            "output": {"name": "mask", "activation": "sigmoid"}, "threshold": 0.5
        });
        card.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(card).unwrap()
    }

    #[test]
    fn a_size_outside_the_validated_ones_is_warned_about() {
        let card = card(serde_json::json!({
            "validated_input_sizes": [[128, 128], [192, 192]],
            "test_metrics_by_size": {"128x128": {"dsc": 0.91}, "320x320": {"dsc": 0.02}}
        }));
        assert_eq!(card.size_warning(), None, "its own size");
        assert_eq!(card.at_size(Some([192, 192])).size_warning(), None);
        let measured = card.at_size(Some([320, 320])).size_warning().unwrap();
        assert!(measured.contains("320x320") && measured.contains("128x128, 192x192"), "{measured}");
        assert!(measured.contains("held-out DSC there is 0.020"), "{measured}");
        let unmeasured = card.at_size(Some([256, 192])).size_warning().unwrap();
        assert!(unmeasured.contains("256x192") && unmeasured.contains("never measured"), "{unmeasured}");
    }

    #[test]
    fn a_card_without_validated_sizes_warns_about_none() {
        assert_eq!(card(serde_json::json!({})).at_size(Some([512, 512])).size_warning(), None);
    }
}
