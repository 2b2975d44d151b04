//! Pipeline files (`pipelines/*.toml`): which model, how to fit images to it, the threshold, where
//! ground truth lives and which outputs to write.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::preprocess::{Fit, Tiling};

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
    pub preprocess: PreprocessSettings,
    #[serde(default)]
    pub postprocess: PostprocessSettings,
    #[serde(default)]
    pub ground_truth: GroundTruthSettings,
    #[serde(default)]
    pub outputs: OutputSettings,
    #[serde(default)]
    pub dicom: DicomSettings,
    /// Which series received over DICOM this pipeline takes (efen as a DICOM node).
    #[serde(default)]
    pub select: crate::node::SelectRules,
}

/// How DICOM inputs are windowed and how their SEG is labelled.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomSettings {
    /// VOI window: `"fromfile"` (the file's window or VOI LUT), `{ fixed = { center, width } }`
    /// or `{ percentile = { low, high } }`.
    #[serde(default)]
    pub window: crate::dicom::WindowSetting,
    /// The Segmentation's segment label, codes, algorithm and what to do with an empty mask.
    #[serde(default)]
    pub seg: crate::dicom::SegSettings,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSettings {
    /// `resize` (stretch) or `letterbox` (keep aspect ratio, pad): for every image, or with tiling
    /// for those that fit inside one tile.
    #[serde(default)]
    pub fit: Fit,
    /// Tiling of images larger than the model input, blended with importance weights.
    #[serde(default)]
    pub tiling: Tiling,
    /// Model input (and tile) size `[height, width]` instead of the card's, for models with
    /// dynamic height and width.
    pub input_size: Option<[u32; 2]>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessSettings {
    /// Probability threshold; the model card's when absent.
    pub threshold: Option<f32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruthSettings {
    /// Paths relative to the input's folder with `{stem}` for the input's name without extension.
    pub patterns: Vec<String>,
}

impl Default for GroundTruthSettings {
    fn default() -> Self {
        GroundTruthSettings { patterns: vec!["{stem}_mask.png".into(), "masks/{stem}.png".into()] }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    pub mask: bool,
    pub overlay: bool,
    /// `probabilities.png`: the blended probability map as 16-bit gray (0..65535 = 0..1).
    #[serde(default)]
    pub probabilities: bool,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings { mask: true, overlay: true, probabilities: false }
    }
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
        let overlap = self.preprocess.tiling.overlap;
        if !(0.0..=0.9).contains(&overlap) {
            problems.push(format!("preprocess.tiling.overlap must be within 0..0.9 (got {overlap})"));
        }
        if self.preprocess.input_size.is_some_and(|[h, w]| h == 0 || w == 0) {
            problems.push("preprocess.input_size must be positive".to_string());
        }
        if self.preprocess.tiling.sigma_scale <= 0.0 {
            problems.push("preprocess.tiling.sigma_scale must be positive".to_string());
        }
        if let Some(t) = self.postprocess.threshold
            && !(0.0..=1.0).contains(&t)
        {
            problems.push(format!("postprocess.threshold must be within 0..1 (got {t})"));
        }
        for pattern in &self.ground_truth.patterns {
            if GroundTruthPattern::parse(pattern).is_none() {
                problems.push(format!("ground_truth.patterns: {pattern:?} must contain {{stem}} exactly once"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DefinitionError::Invalid { path: path.into(), reason: problems.join("; ") })
        }
    }

    pub fn ground_truth_patterns(&self) -> Vec<GroundTruthPattern> {
        self.ground_truth.patterns.iter().filter_map(|p| GroundTruthPattern::parse(p)).collect()
    }
}

/// `prefix{stem}suffix`, relative to an input's folder, with `/` separating folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruthPattern {
    prefix: String,
    suffix: String,
}

impl GroundTruthPattern {
    pub fn parse(pattern: &str) -> Option<GroundTruthPattern> {
        let (prefix, suffix) = pattern.split_once("{stem}")?;
        if suffix.contains("{stem}") || suffix.is_empty() {
            return None;
        }
        Some(GroundTruthPattern { prefix: prefix.into(), suffix: suffix.into() })
    }

    /// Where this pattern puts the ground truth of `input`.
    pub fn candidate(&self, input: &Path) -> Option<PathBuf> {
        let stem = input.file_stem()?.to_str()?;
        let dir = input.parent().unwrap_or(Path::new(""));
        Some(dir.join(format!("{}{stem}{}", self.prefix, self.suffix)))
    }

    /// Whether `path` (any prefix of folders allowed) is a file this pattern names.
    pub fn matches(&self, path: &Path) -> bool {
        let Some(text) = path.to_str() else {
            return false;
        };
        let text = text.replace('\\', "/");
        let Some(head) = text.strip_suffix(&self.suffix) else {
            return false;
        };
        // head = <folders>/<prefix><stem>, where <stem> is one non-empty path component.
        let (before_stem, stem) = match head.rsplit_once('/') {
            Some((dirs, last)) => (format!("{dirs}/"), last.to_string()),
            None => (String::new(), head.to_string()),
        };
        let (prefix_dirs, prefix_name) = match self.prefix.rsplit_once('/') {
            Some((dirs, name)) => (format!("{dirs}/"), name),
            None => (String::new(), self.prefix.as_str()),
        };
        let Some(stem) = stem.strip_prefix(prefix_name) else {
            return false;
        };
        !stem.is_empty()
            && (before_stem.ends_with(&prefix_dirs) && {
                let rest = &before_stem[..before_stem.len() - prefix_dirs.len()];
                rest.is_empty() || rest.ends_with('/')
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_follows_the_pattern() {
        let suffix = GroundTruthPattern::parse("{stem}_mask.png").unwrap();
        assert_eq!(suffix.candidate(Path::new("drop/a b.jpg")).unwrap(), Path::new("drop/a b_mask.png"));
        let folder = GroundTruthPattern::parse("masks/{stem}.png").unwrap();
        assert_eq!(folder.candidate(Path::new("drop/x.tif")).unwrap(), Path::new("drop/masks/x.png"));
    }

    #[test]
    fn matches_recognises_ground_truth_files_only() {
        let suffix = GroundTruthPattern::parse("{stem}_mask.png").unwrap();
        assert!(suffix.matches(Path::new("drop/case1_mask.png")));
        assert!(suffix.matches(Path::new("case1_mask.png")));
        assert!(!suffix.matches(Path::new("drop/_mask.png")));
        assert!(!suffix.matches(Path::new("drop/case1.png")));
        assert!(!suffix.matches(Path::new("drop/case1_mask.jpg")));

        let folder = GroundTruthPattern::parse("masks/{stem}.png").unwrap();
        assert!(folder.matches(Path::new("drop/masks/case1.png")));
        assert!(folder.matches(Path::new("masks/case1.png")));
        assert!(!folder.matches(Path::new("drop/case1.png")));
        assert!(!folder.matches(Path::new("drop/oldmasks/case1.png")));
    }

    #[test]
    fn patterns_without_one_stem_are_rejected() {
        assert!(GroundTruthPattern::parse("mask.png").is_none());
        assert!(GroundTruthPattern::parse("{stem}/{stem}.png").is_none());
    }
}
