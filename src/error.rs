//! What the errors a case can end with have in common: [`CaseError`], which each stage's error
//! enum implements (its variant's name as the `error_type`, a grouping reason without the case's
//! paths), and [`chain`], an error with its causes on one line. A leaf: it imports nothing.

/// An error a stage ends a case with. Each stage's error enum implements it; the variant's name
/// is the `error_type`, so grouping and metrics never parse the message.
pub trait CaseError: std::error::Error + Send + Sync + 'static {
    /// The variant's name in snake_case (`unsupported_transfer_syntax`, `read_ground_truth`):
    /// `results.error_type` and the `error_type` label of `efen_cases_total`.
    fn error_type(&self) -> &'static str;

    /// The message as it groups with the same failure of other files: without the case's own
    /// paths. Variants that name a path of the case override it; the default is the message.
    fn reason(&self) -> String {
        self.to_string()
    }
}

/// Implements [`CaseError::error_type`] from a list of variants and their names:
/// `error_types!(DecodeError { Empty => "empty", Corrupt => "corrupt" });`. A variant left out
/// does not compile, so a new variant gets its name when it is written.
#[macro_export]
macro_rules! error_types {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $crate::error::CaseError for $ty {
            fn error_type(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)+
                }
            }
        }
    };
}

/// An error and its sources on one line, `outer: inner: innermost`; a cause the message already
/// spells out (thiserror's `{source}`, snafu's habit) is not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    append_causes(&mut text, error);
    text
}

/// Appends the causes of `error` that `text` does not already hold.
pub fn append_causes(text: &mut String, error: &dyn std::error::Error) {
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}
