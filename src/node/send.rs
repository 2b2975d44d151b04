//! Sending one DICOM file to a destination: a C-STORE peer over its own association, or a DICOMweb
//! server by STOW-RS ([`super::stow`]); either way the peer's status code comes back.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use super::dimse::{self, Command};
use super::scp::UNCOMPRESSED;
pub use super::sent::{SendError, Sent};

/// Where results go: a C-STORE peer (`AE@host:port`) or a DICOMweb server
/// (`dicomweb:http://host:port/dicom-web`, or https).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Dimse(Peer),
    DicomWeb(super::stow::StowTarget),
}

impl FromStr for Destination {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix(super::stow::SCHEME) {
            Some(url) => url.parse().map(Destination::DicomWeb),
            None => text.parse().map(Destination::Dimse),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Dimse(peer) => peer.fmt(f),
            Destination::DicomWeb(target) => write!(f, "{}{target}", super::stow::SCHEME),
        }
    }
}

impl Destination {
    /// The host and port a send connects to.
    pub fn address(&self) -> Option<(String, u16)> {
        match self {
            Destination::Dimse(peer) => {
                Some((peer.host.trim_start_matches('[').trim_end_matches(']').into(), peer.port))
            }
            Destination::DicomWeb(target) => target.address(),
        }
    }
}

/// A C-STORE peer: `AE@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("destination {text:?} is neither AE@host:port nor dicomweb:http(s)://host:port/<DICOMweb root>");
        let (ae_title, address) = text.split_once('@').ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        if ae_title.is_empty() || ae_title.len() > 16 || host.is_empty() {
            return Err(bad());
        }
        Ok(Peer { ae_title: ae_title.into(), host: host.into(), port })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
    }
}

/// Sends `file` to `destination`: C-STORE as `calling_ae`, or STOW-RS through `http`; the whole
/// exchange within `timeout`.
pub async fn send(
    file: &Path,
    calling_ae: &str,
    destination: &Destination,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<Sent, SendError> {
    match destination {
        Destination::Dimse(peer) => store(file, calling_ae, peer, timeout).await,
        Destination::DicomWeb(target) => {
            let name = destination.to_string();
            match tokio::time::timeout(timeout, super::stow::store(file, http, target, &name)).await {
                Ok(result) => result,
                Err(_) => Err(SendError::Timeout { destination: name, seconds: timeout.as_secs() }),
            }
        }
    }
}

/// Sends `file` to the C-STORE peer `destination` as `calling_ae`; the whole exchange within `timeout`.
pub async fn store(file: &Path, calling_ae: &str, destination: &Peer, timeout: Duration) -> Result<Sent, SendError> {
    let name = destination.to_string();
    match tokio::time::timeout(timeout, store_inner(file, calling_ae, destination)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Timeout { destination: name, seconds: timeout.as_secs() }),
    }
}

async fn store_inner(file: &Path, calling_ae: &str, destination: &Peer) -> Result<Sent, SendError> {
    let unreadable = |reason: String| SendError::File { path: file.to_path_buf(), reason };
    let object = dicom_object::open_file(file).map_err(|e| unreadable(e.to_string()))?;
    let meta = object.meta();
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let (sop_class, sop_instance, file_ts) = (
        trim(&meta.media_storage_sop_class_uid),
        trim(&meta.media_storage_sop_instance_uid),
        trim(meta.transfer_syntax()),
    );
    let mut syntaxes = vec![file_ts.clone()];
    syntaxes.extend(UNCOMPRESSED.iter().map(|s| s.to_string()).filter(|s| *s != file_ts));
    let failed = |reason: String| SendError::Association { destination: destination.to_string(), reason };
    let mut association = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_string())
        .called_ae_title(destination.ae_title.clone())
        .with_presentation_context(sop_class.clone(), syntaxes)
        .establish_async(format!("{}:{}", destination.host, destination.port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let _ = association.inner_stream().set_nodelay(true);
    let Some(context) = association.presentation_contexts().first().cloned() else {
        let _ = association.abort().await;
        return Err(SendError::NoContext { destination: destination.to_string(), sop_class });
    };
    let ts = TransferSyntaxRegistry
        .get(&context.transfer_syntax)
        .ok_or_else(|| failed(format!("unknown transfer syntax {}", context.transfer_syntax)))?;
    let mut data = Vec::new();
    object.write_dataset_with_ts(&mut data, ts).map_err(|e| unreadable(e.to_string()))?;

    let command = Command::c_store_rq(1, &sop_class, &sop_instance).encode();
    let pdv = |value_type, is_last, data: Vec<u8>| PDataValue {
        presentation_context_id: context.id,
        value_type,
        is_last,
        data,
    };
    association
        .send(&Pdu::PData { data: vec![pdv(PDataValueType::Command, true, command)] })
        .await
        .map_err(|e| failed(e.to_string()))?;
    // One PDV per P-DATA-TF; its header (length, context, control) takes 6 of the PDU's bytes.
    let peer_max = association.acceptor_max_pdu_length();
    let chunk = if peer_max == 0 { 65536 } else { (peer_max as usize).saturating_sub(6).max(1024) };
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    for (i, part) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        association
            .send(&Pdu::PData { data: vec![pdv(PDataValueType::Data, last, part.to_vec())] })
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    let mut response = Vec::new();
    let reply = loop {
        match association.receive().await.map_err(|e| failed(e.to_string()))? {
            Pdu::PData { data } => {
                let mut done = None;
                for value in data.into_iter().filter(|v| v.value_type == PDataValueType::Command) {
                    response.extend_from_slice(&value.data);
                    if value.is_last {
                        done = Some(Command::decode(&response).map_err(|e| failed(e.to_string()))?);
                    }
                }
                if let Some(reply) = done {
                    break reply;
                }
            }
            other => {
                return Err(failed(format!(
                    "unexpected {} instead of the C-STORE response",
                    other.short_description()
                )));
            }
        }
    };
    if reply.command_field() != Some(dimse::C_STORE_RSP) {
        return Err(failed(format!("unexpected response command {:04X?}", reply.command_field())));
    }
    let _ = association.release().await;
    Ok(Sent {
        sop_instance_uid: sop_instance,
        status: reply.status().ok_or_else(|| failed("C-STORE response without a status".into()))?,
        error_comment: reply.error_comment(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_from_ae_at_host_port() {
        let d: Destination = "PACS@10.0.0.5:104".parse().unwrap();
        assert_eq!(d, Destination::Dimse(Peer { ae_title: "PACS".into(), host: "10.0.0.5".into(), port: 104 }));
        assert_eq!(d.to_string(), "PACS@10.0.0.5:104");
        assert!("PACS@host".parse::<Destination>().is_err());
        assert!("@host:1".parse::<Destination>().is_err());
        assert!("A_VERY_LONG_AE_TITLE@h:1".parse::<Destination>().is_err());
    }

    #[test]
    fn dicomweb_destinations_parse_and_print_without_credentials() {
        let d: Destination = "dicomweb:http://pacs:8042/dicom-web/".parse().unwrap();
        assert!(matches!(d, Destination::DicomWeb(_)));
        assert_eq!(d.to_string(), "dicomweb:http://pacs:8042/dicom-web");
        let secret: Destination = "dicomweb:https://efen:s3cret@pacs.example/dicom-web".parse().unwrap();
        assert_eq!(secret.to_string(), "dicomweb:https://pacs.example/dicom-web");
        assert!(!format!("{secret:?}").contains("s3cret"), "{secret:?}");
        for bad in ["dicomweb:", "dicomweb:ftp://pacs/dicom-web", "dicomweb:pacs:8042", "dicomweb:http://"] {
            let error = bad.parse::<Destination>().unwrap_err();
            assert!(error.contains("dicomweb:"), "{bad}: {error}");
        }
    }
}
