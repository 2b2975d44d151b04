//! Ground truth found by name: a pipeline's `[ground_truth] patterns` say where an input's mask
//! lies (`{stem}_mask.png`, `masks/{stem}.png`), and which files in a drop are masks, not inputs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruthConfig {
    /// Paths relative to the input's folder with `{stem}` for the input's name without extension.
    pub patterns: Vec<String>,
}

impl Default for GroundTruthConfig {
    fn default() -> Self {
        GroundTruthConfig { patterns: vec!["{stem}_mask.png".into(), "masks/{stem}.png".into()] }
    }
}

impl GroundTruthConfig {
    /// Each pattern that does not parse, as a problem to report.
    pub fn problems(&self) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| GroundTruthPattern::parse(p).is_none())
            .map(|p| format!("ground_truth.patterns: {p:?} must contain {{stem}} exactly once"))
            .collect()
    }

    pub fn patterns(&self) -> Vec<GroundTruthPattern> {
        self.patterns.iter().filter_map(|p| GroundTruthPattern::parse(p)).collect()
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
