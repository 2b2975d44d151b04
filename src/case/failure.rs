//! How a case fails: the stage, and that stage's own error ([`CaseError`]), kept typed to the
//! record stage. The record keeps the stage, the error's type (its variant's name) and its whole
//! message; reports group failures by the error's reason, and metrics count them by type.

use std::fmt;
use std::sync::Arc;

use super::Stage;
pub use crate::error::CaseError;
use crate::error::{append_causes, chain};

/// A case (or one slice of a series case) failed in `stage`.
#[derive(Clone)]
pub struct Failure {
    pub stage: Stage,
    pub error: Arc<dyn CaseError>,
}

impl Failure {
    pub fn new(stage: Stage, error: impl CaseError) -> Failure {
        Failure { stage, error: Arc::new(error) }
    }

    /// The error's whole cause chain, outermost first: what the record and the log keep.
    pub fn message(&self) -> String {
        chain(&*self.error)
    }

    pub fn error_type(&self) -> &'static str {
        self.error.error_type()
    }

    /// The grouping reason (no paths of the case), with the causes the error does not spell out.
    pub fn reason(&self) -> String {
        let mut reason = self.error.reason();
        append_causes(&mut reason, &*self.error);
        reason
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("stage", &self.stage)
            .field("error_type", &self.error_type())
            .field("message", &self.message())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read ground truth {path}")]
        ReadTruth { path: String, source: std::io::Error },
        #[error("cannot parse: {source}")]
        Parse { source: std::io::Error },
    }

    impl CaseError for Outer {
        fn error_type(&self) -> &'static str {
            match self {
                Outer::ReadTruth { .. } => "read_ground_truth",
                Outer::Parse { .. } => "parse",
            }
        }

        fn reason(&self) -> String {
            match self {
                Outer::ReadTruth { .. } => "cannot read ground truth".into(),
                other => other.to_string(),
            }
        }
    }

    #[test]
    fn a_failure_keeps_its_type_its_whole_chain_and_a_reason_without_the_path() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let failure = Failure::new(Stage::Evaluate, Outer::ReadTruth { path: "/drop/a_mask.png".into(), source: io });
        assert_eq!(failure.error_type(), "read_ground_truth");
        assert_eq!(failure.message(), "cannot read ground truth /drop/a_mask.png: no such file");
        assert_eq!(failure.reason(), "cannot read ground truth: no such file");
        // A cause the message already spells out is not repeated.
        let io = std::io::Error::other("truncated");
        assert_eq!(Failure::new(Stage::Decode, Outer::Parse { source: io }).message(), "cannot parse: truncated");
    }
}
