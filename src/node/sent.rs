//! What a send came to, by C-STORE ([`super::send`]) or STOW-RS ([`super::stow`]): the peer's
//! status for the instance, or why the send failed.

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {}: {reason}", path.display())]
    File { path: std::path::PathBuf, reason: String },
    #[error("association with {destination} failed: {reason}")]
    Association { destination: String, reason: String },
    #[error("{destination} accepted no presentation context for SOP class {sop_class}")]
    NoContext { destination: String, sop_class: String },
    #[error("{destination} did not answer within {seconds} s")]
    Timeout { destination: String, seconds: u64 },
    #[error("STOW-RS to {destination} failed: {reason}")]
    Http { destination: String, reason: String },
}

/// What went out: the SOP Instance UID and the peer's C-STORE status.
#[derive(Debug, Clone)]
pub struct Sent {
    pub sop_instance_uid: String,
    pub status: u16,
    pub error_comment: Option<String>,
}
