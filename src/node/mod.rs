//! efen as a DICOM application entity, beside `efen watch`:
//!
//! ```text
//! modality/PACS ─C-STORE→ scp ─durable write→ <state>/incoming/<series>/   (spool)
//!   series (quiet time, [select] rules) ─claim→ <state>/claimed/<worker>/… ─hand over→ admission
//!   pipeline → seg.dcm ─outbox (sends table, retries)→ C-STORE or STOW-RS → destinations
//! ```
//! STOW-RS (`crate::http::dicomweb`) writes into the same spool, so the collector and the outbox
//! also run for `efen watch` with an HTTP face and no Storage SCP.
//! Associations come from dicom-ul; the DIMSE command sets are efen's ([`dimse`]).

pub mod dimse;
pub mod outbox;
pub mod overlay;
pub mod scp;
pub mod send;
mod sent;
pub mod series;
pub mod spool;
pub mod stow;

use std::path::Path;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use series::SelectConfig;

/// The service's `[node]` section: efen as a DICOM node (`efen watch` with `listen` set): Storage SCP, series, outbox.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `host:port` of the Storage SCP; empty: no DICOM node.
    pub listen: String,
    /// This node's AE title; associations called for another title are rejected.
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: anyone.
    pub allowed_callers: Vec<String>,
    /// Compressed transfer syntaxes accepted besides Explicit and Implicit VR Little Endian.
    pub accept_compressed: Vec<String>,
    /// Largest P-DATA PDU this node receives.
    pub max_pdu_length: u32,
    /// A series is complete once no instance has arrived for this long.
    pub series_quiet_ms: u64,
    /// Where SEGs are sent: `AE@host:port`.
    pub destinations: Vec<String>,
    /// Also send the overlay as a Secondary Capture image, for viewers that do not show SEG.
    pub send_overlay: bool,
    /// Attempts per send before it is recorded as failed (retried again after a restart).
    pub send_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub send_backoff_ms: u64,
    /// Limit for one whole send (association, C-STORE, release).
    pub send_timeout_ms: u64,
}

/// Starts what `efen watch` needs of the node: with `spool` (the receive spool, shared with STOW-RS)
/// the series collector, and the Storage SCP when `[node] listen` is set; the outbox when there are
/// destinations. They stop when `shutdown` is cancelled. `drop_dir` is the watched drop folder,
/// `state` the state folder (series the rules ignore go to its `ignored/`), `rules` the
/// pipeline's `[select]` section, `store` the engine's store (whose pool the node shares). Each
/// complete series is claimed into `links.claimed_dir` and handed to `links.series_tx`; the
/// outbox wakes on `links.sends_queued`.
pub async fn start(
    node: &NodeConfig,
    state: &Path,
    store: &crate::store::Store,
    drop_dir: &Path,
    links: NodeLinks,
    rules: SelectConfig,
    spool: Option<spool::Spool>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    if let Some(spool) = spool {
        if node.enabled() {
            let listener = tokio::net::TcpListener::bind(&node.listen)
                .await
                .map_err(|e| anyhow::anyhow!("DICOM node cannot listen on {}: {e}", node.listen))?;
            let settings = scp::ScpSettings {
                ae_title: node.ae_title.clone(),
                allowed_callers: node.allowed_callers.clone(),
                transfer_syntaxes: node.transfer_syntaxes(),
                max_pdu_length: node.max_pdu_length,
            };
            tracing::info!(
                listen = %node.listen,
                ae_title = %node.ae_title,
                callers = if node.allowed_callers.is_empty() { "any".to_string() } else { node.allowed_callers.join(",") },
                "DICOM node listening"
            );
            tasks.spawn(scp::serve(listener, settings, spool.clone(), shutdown.clone()));
        }
        let collector = series::Collector {
            incoming: spool.incoming.clone(),
            drop_dir: drop_dir.to_path_buf(),
            claimed_dir: links.claimed_dir,
            ignored: state.join("ignored"),
            quiet: Duration::from_millis(node.series_quiet_ms),
            rules,
        };
        tasks.spawn(collect(collector, store.clone(), links.series_tx, shutdown.clone()));
    }

    let destinations = node.destinations()?;
    if !destinations.is_empty() {
        let http = reqwest::Client::builder()
            .user_agent(concat!("efen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot make the HTTP client for DICOMweb destinations: {e}"))?;
        let settings = outbox::OutboxSettings {
            calling_ae: node.ae_title.clone(),
            destinations,
            http,
            attempts: node.send_attempts.max(1),
            backoff: Duration::from_millis(node.send_backoff_ms),
            timeout: Duration::from_millis(node.send_timeout_ms),
            poll: Duration::from_millis(500),
            queued: links.sends_queued,
        };
        tasks.spawn(outbox::run(store.clone(), settings, shutdown));
    }
    Ok(tasks)
}

/// What links the node to this worker's pipeline: where it hands complete series (claimed into
/// the worker's claim folder, then sent to admission, which takes each as one complete series),
/// and the signal the record stage gives when it queues sends (the outbox then sends at once; it
/// polls only as a fallback).
pub struct NodeLinks {
    pub claimed_dir: std::path::PathBuf,
    pub series_tx: tokio::sync::mpsc::Sender<ReceivedSeries>,
    pub sends_queued: std::sync::Arc<tokio::sync::Notify>,
}

/// A complete series the node received, its instances claimed for this worker.
#[derive(Debug)]
pub struct ReceivedSeries {
    pub series_uid: String,
    pub files: Vec<crate::ingest::watch::Claimed>,
}

/// Hands complete series over to admission, and logs and audits what it did.
async fn collect(
    collector: series::Collector,
    store: crate::store::Store,
    series_tx: tokio::sync::mpsc::Sender<ReceivedSeries>,
    shutdown: CancellationToken,
) {
    let period = (collector.quiet / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let pass = collector.clone();
        let outcomes = tokio::task::spawn_blocking(move || pass.collect()).await.unwrap_or_default();
        for outcome in outcomes {
            let (action, detail, handed) = match outcome {
                series::SeriesOutcome::Dispatched { series, claimed, left_out } => {
                    let instances = claimed.len();
                    let detail = match &left_out {
                        None => {
                            tracing::info!(series = %series, instances, "series complete, handed to the pipeline");
                            format!("series {series}: {instances} instance(s) to the pipeline")
                        }
                        Some((n, reason)) => {
                            tracing::info!(series = %series, instances, left_out = n, "series complete, handed to the pipeline; {n} instance(s) not selected: {reason}");
                            format!(
                                "series {series}: {instances} instance(s) to the pipeline; {n} not selected (first: {reason})"
                            )
                        }
                    };
                    ("series_received", detail, Some(ReceivedSeries { series_uid: series, files: claimed }))
                }
                series::SeriesOutcome::Ignored { series, instances, reason } => {
                    tracing::info!(series = %series, instances, "series not selected by the pipeline: {reason}");
                    let detail = format!("series {series}: {instances} instance(s) not selected: {reason}");
                    ("series_ignored", detail, None)
                }
            };
            if let Err(e) = store.audit_event(None, action, &detail).await {
                tracing::warn!("cannot write the audit log: {e}");
            }
            // Claimed already: if the watch loop has stopped, the next start redoes them.
            if let Some(series) = handed {
                let _ = series_tx.send(series).await;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

impl NodeConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Destinations also serve STOW-RS without a Storage SCP.
        if let Err(e) = self.destinations() {
            problems.push(e.to_string());
        }
        if !self.enabled() {
            return problems;
        }
        let ae = &self.ae_title;
        if ae.trim().is_empty() || ae.len() > 16 || ae.contains('\\') || !ae.is_ascii() {
            problems.push(format!("node.ae_title {ae:?} must be 1 to 16 ASCII characters without '\\'"));
        }
        if self.max_pdu_length < 4096 {
            problems.push("node.max_pdu_length must be at least 4096".to_string());
        }
        problems
    }

    /// Whether `[node] listen` turns the node on.
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    /// What the record stage queues for a case that came in over DICOM (C-STORE or STOW-RS): each
    /// object (the SEG, the measurement report with `sr`, and the overlay as Secondary Capture
    /// with `send_overlay`) to each destination.
    pub fn sends_for_received_cases(&self, sr: bool) -> Vec<(String, &'static str)> {
        let objects: Vec<&'static str> = [(true, "seg"), (sr, "sr"), (self.send_overlay, "overlay")]
            .into_iter()
            .filter_map(|(on, object)| on.then_some(object))
            .collect();
        let destinations = self.destinations().unwrap_or_default();
        destinations.iter().flat_map(|d| objects.iter().map(move |o| (d.to_string(), *o))).collect()
    }

    /// The transfer syntaxes taken in, by C-STORE or STOW-RS: Explicit and Implicit VR Little Endian,
    /// then `accept_compressed`.
    pub fn transfer_syntaxes(&self) -> Vec<String> {
        let mut syntaxes: Vec<String> = scp::UNCOMPRESSED.iter().map(|s| s.to_string()).collect();
        syntaxes.extend(self.accept_compressed.iter().cloned());
        syntaxes
    }

    pub fn destinations(&self) -> anyhow::Result<Vec<send::Destination>> {
        self.destinations
            .iter()
            .map(|d| d.parse().map_err(|e: String| anyhow::anyhow!("node.destinations: {e}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    /// A Secondary Capture header (no pixels: the spool reads headers only), with or without a
    /// Series Instance UID.
    fn instance(dir: &Path, sop: &str, series: Option<&str>) -> std::path::PathBuf {
        let mut obj = InMemDicomObject::new_empty();
        let ui = |tag, value: &str| DataElement::new(tag, VR::UI, PrimitiveValue::from(value));
        obj.put(ui(tags::SOP_CLASS_UID, uids::SECONDARY_CAPTURE_IMAGE_STORAGE));
        obj.put(ui(tags::SOP_INSTANCE_UID, sop));
        if let Some(series) = series {
            obj.put(ui(tags::SERIES_INSTANCE_UID, series));
        }
        let file = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)).unwrap();
        let path = dir.join(format!("{sop}.dcm"));
        file.write_to_file(&path).unwrap();
        path
    }

    #[tokio::test]
    async fn efens_scu_and_scp_agree_and_only_a_stored_instance_is_answered_with_success() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool::Spool::open(&dir.path().join("state")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let settings = scp::ScpSettings {
            ae_title: "EFEN".into(),
            allowed_callers: vec!["TEST".into()],
            transfer_syntaxes: scp::UNCOMPRESSED.iter().map(|s| s.to_string()).collect(),
            max_pdu_length: 16384,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(scp::serve(listener, settings, spool.clone(), shutdown.clone()));
        let efen: send::Peer = format!("EFEN@127.0.0.1:{port}").parse().unwrap();
        let timeout = Duration::from_secs(20);

        let good = instance(dir.path(), "1.2.3.4.1", Some("1.2.3.4"));
        let sent = send::store(&good, "TEST", &efen, timeout).await.unwrap();
        assert_eq!((sent.status, sent.sop_instance_uid.as_str()), (dimse::status::SUCCESS, "1.2.3.4.1"));
        let stored = spool.incoming.join("1.2.3.4/1.2.3.4.1.dcm");
        assert!(stored.is_file(), "acknowledged means on disk");
        assert_eq!(dicom_object::open_file(&stored).unwrap().meta().transfer_syntax(), uids::EXPLICIT_VR_LITTLE_ENDIAN);

        let no_series = instance(dir.path(), "1.2.3.4.2", None);
        let sent = send::store(&no_series, "TEST", &efen, timeout).await.unwrap();
        assert_eq!(sent.status, dimse::status::CANNOT_UNDERSTAND);

        let stranger = send::store(&good, "STRANGER", &efen, timeout).await.unwrap_err();
        assert!(stranger.to_string().contains("association with EFEN@"), "{stranger}");
        shutdown.cancel();
    }
}
