//! Pipeline files (`pipelines/*.toml`): which model, and one section per stage, each the stage's
//! own `XConfig` (preprocess, postprocess, ground truth, outputs, DICOM, the node's selection).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("cannot read pipeline {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid pipeline {}: {source}", path.display())]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid pipeline {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDefinition {
    /// Recorded with every case; part of a case's identity.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// ONNX model, relative to the pipeline file.
    pub model: PathBuf,
    #[serde(default)]
    pub preprocess: crate::preprocess::PreprocessConfig,
    #[serde(default)]
    pub postprocess: crate::postprocess::PostprocessConfig,
    #[serde(default)]
    pub ground_truth: crate::ingest::GroundTruthConfig,
    #[serde(default)]
    pub outputs: crate::output::OutputConfig,
    #[serde(default)]
    pub dicom: crate::dicom::DicomConfig,
    /// Which series received over DICOM this pipeline takes (efen as a DICOM node).
    #[serde(default)]
    pub select: crate::node::SelectConfig,
}

impl PipelineDefinition {
    pub fn load(path: &Path) -> Result<PipelineDefinition, DefinitionError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| DefinitionError::Read { path: path.into(), source })?;
        let mut definition: PipelineDefinition = toml::from_str(&text)
            .map_err(|source| DefinitionError::Parse { path: path.into(), source: Box::new(source) })?;
        if definition.model.is_relative() {
            let dir = path.parent().unwrap_or(Path::new("."));
            let model = dir.join(&definition.model);
            // Canonical when it exists, so messages and the store show a clean path.
            definition.model = std::fs::canonicalize(&model).unwrap_or(model);
        }
        definition.validate(path)?;
        Ok(definition)
    }

    fn validate(&self, path: &Path) -> Result<(), DefinitionError> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push("name must not be empty".to_string());
        }
        problems.extend(self.preprocess.problems());
        problems.extend(self.postprocess.problems());
        problems.extend(self.ground_truth.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DefinitionError::Invalid { path: path.into(), reason: problems.join("; ") })
        }
    }
}
