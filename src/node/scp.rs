//! The Storage SCP: accepts associations (calling AE titles checked against the configured list),
//! answers C-ECHO, and streams each C-STORE data set into the [`Spool`]; the response reports
//! success only once the instance is durable, and a failure status when it cannot be stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, UserIdentity};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::dimse::{self, Command, status};
use super::spool::{PartFile, Spool, SpoolError, is_plain_uid};
use crate::telemetry::{AssociationAccepted, InstanceReceived};

/// Image storage SOP classes whose pixel data the decode stage reads.
pub const IMAGE_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.1",        // Computed Radiography
    "1.2.840.10008.5.1.4.1.1.1.1",      // Digital X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",    // Digital X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.1.2",      // Digital Mammography, for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",    // Digital Mammography, for processing
    "1.2.840.10008.5.1.4.1.1.1.3",      // Digital Intra-Oral X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1",    // Digital Intra-Oral X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.2",        // CT
    "1.2.840.10008.5.1.4.1.1.2.1",      // Enhanced CT
    "1.2.840.10008.5.1.4.1.1.3.1",      // Ultrasound Multi-frame
    "1.2.840.10008.5.1.4.1.1.4",        // MR
    "1.2.840.10008.5.1.4.1.1.4.1",      // Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",      // Ultrasound
    "1.2.840.10008.5.1.4.1.1.7",        // Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1",      // Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",      // Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",      // Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",      // Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.12.1",     // X-Ray Angiography
    "1.2.840.10008.5.1.4.1.1.12.2",     // X-Ray Radiofluoroscopy
    "1.2.840.10008.5.1.4.1.1.20",       // Nuclear Medicine
    "1.2.840.10008.5.1.4.1.1.128",      // PET
    "1.2.840.10008.5.1.4.1.1.481.1",    // RT Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",   // VL Endoscopic
    "1.2.840.10008.5.1.4.1.1.77.1.2",   // VL Microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.4",   // VL Photographic
    "1.2.840.10008.5.1.4.1.1.77.1.5.1", // Ophthalmic Photography 8 bit
    "1.2.840.10008.5.1.4.1.1.77.1.5.2", // Ophthalmic Photography 16 bit
];

/// Always accepted: Explicit and Implicit VR Little Endian.
pub const UNCOMPRESSED: &[&str] = &["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// An association that sends nothing for this long is dropped (its partial instance with it).
const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// What the SCP needs to know.
#[derive(Debug, Clone)]
pub struct ScpSettings {
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: anyone.
    pub allowed_callers: Vec<String>,
    /// Transfer syntaxes accepted, in order of preference.
    pub transfer_syntaxes: Vec<String>,
    pub max_pdu_length: u32,
}

/// Rejects calling AE titles not on the list and associations addressed to another AE title.
struct CallerList {
    allowed: Vec<String>,
}

impl AccessControl for CallerList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let calling = calling_ae_title.trim();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.trim() == calling) {
            tracing::warn!(calling_ae = calling, "association rejected: calling AE title not on node.allowed_callers");
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        if called_ae_title.trim() != this_ae_title.trim() {
            tracing::warn!(
                calling_ae = calling,
                called_ae = called_ae_title.trim(),
                "association rejected: called AE title is not ours"
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        Ok(())
    }
}

type Options = ServerAssociationOptions<'static, CallerList, dicom_ul::association::server::DefaultNegotiation>;

/// Accepts associations until `shutdown`; each runs on its own task.
pub async fn serve(listener: TcpListener, settings: ScpSettings, spool: Spool, shutdown: CancellationToken) {
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(CallerList { allowed: settings.allowed_callers.clone() })
        .ae_title(settings.ae_title.clone())
        .max_pdu_length(settings.max_pdu_length)
        .read_timeout(IDLE)
        .with_abstract_syntax(dimse::VERIFICATION);
    for class in IMAGE_STORAGE {
        options = options.with_abstract_syntax(*class);
    }
    for ts in &settings.transfer_syntaxes {
        options = options.with_transfer_syntax(ts.clone());
    }
    let options: Arc<Options> = Arc::new(options);
    let spool = Arc::new(spool);
    while let Some((socket, peer)) = crate::listen::next_connection(&listener, &shutdown, "the DICOM node").await {
        // Small PDUs (C-STORE responses) must not wait for Nagle's algorithm.
        let _ = socket.set_nodelay(true);
        let (options, spool) = (options.clone(), spool.clone());
        tokio::spawn(async move {
            if let Err(e) = association(socket, &options, &spool).await {
                tracing::warn!(peer = %peer, "association ended abnormally: {e}");
            }
        });
    }
}

/// The message being received on an association.
enum Receiving {
    /// Streaming into the spool.
    Instance { request: Command, part: PartFile, context: u8 },
    /// Swallowing a data set that will be refused with `status`.
    Refused { request: Command, status: u16, context: u8, why: String },
}

async fn association(socket: TcpStream, options: &Options, spool: &Spool) -> anyhow::Result<()> {
    let mut association = match options.establish_async(socket).await {
        Ok(a) => a,
        Err(e) => {
            // Rejected callers are logged by the access control, with the reason; the rest are
            // port probes and broken requests.
            tracing::debug!("association not established: {e}");
            return Ok(());
        }
    };
    let caller = dicom_ul::association::Association::peer_ae_title(&association).trim().to_string();
    let contexts: HashMap<u8, String> =
        association.presentation_contexts().iter().map(|pc| (pc.id, pc.transfer_syntax.clone())).collect();
    AssociationAccepted { calling_ae: &caller, contexts: contexts.len() }.emit();
    let started = Instant::now();
    let (mut stored, mut refused, mut bytes) = (0u64, 0u64, 0u64);
    let mut command_bytes = Vec::new();
    let mut receiving: Option<Receiving> = None;
    loop {
        let pdu = association.receive().await?;
        let values = match pdu {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).await?;
                break;
            }
            Pdu::AbortRQ { .. } => {
                if let Some(Receiving::Instance { part, .. }) = receiving.take() {
                    part.discard();
                }
                break;
            }
            other => {
                let _ = association.abort().await;
                anyhow::bail!("unexpected PDU {}", other.short_description());
            }
        };
        for value in values {
            match value.value_type {
                PDataValueType::Command => {
                    command_bytes.extend_from_slice(&value.data);
                    if !value.is_last {
                        continue;
                    }
                    let command = Command::decode(&std::mem::take(&mut command_bytes))?;
                    let context = value.presentation_context_id;
                    match command.command_field() {
                        Some(dimse::C_ECHO_RQ) => {
                            respond(&mut association, context, Command::c_echo_rsp(&command)).await?;
                        }
                        Some(dimse::C_STORE_RQ) => {
                            let ts = contexts.get(&context).cloned().unwrap_or_default();
                            receiving = Some(start_store(spool, command, context, &ts, &caller));
                        }
                        other => {
                            let _ = association.abort().await;
                            anyhow::bail!("unsupported DIMSE command {other:04X?}");
                        }
                    }
                }
                PDataValueType::Data => {
                    bytes += value.data.len() as u64;
                    receiving = match receiving.take() {
                        Some(Receiving::Instance { request, mut part, context }) => match part.write(&value.data) {
                            Ok(()) => Some(Receiving::Instance { request, part, context }),
                            Err(e) => {
                                part.discard();
                                Some(refusal(request, context, &e))
                            }
                        },
                        other => other,
                    };
                    if !value.is_last {
                        continue;
                    }
                    let (request, context, code) = match receiving.take() {
                        Some(Receiving::Instance { request, part, context }) => {
                            let spool = spool.clone();
                            match tokio::task::spawn_blocking(move || part.commit(&spool)).await? {
                                Ok(_) => {
                                    InstanceReceived { from: &caller, refused: None }.emit();
                                    (request, context, status::SUCCESS)
                                }
                                Err(e) => {
                                    let code = refusal_status(&e);
                                    InstanceReceived { from: &caller, refused: Some((code, &e)) }.emit();
                                    (request, context, code)
                                }
                            }
                        }
                        Some(Receiving::Refused { request, status, context, why }) => {
                            InstanceReceived { from: &caller, refused: Some((status, &why)) }.emit();
                            (request, context, status)
                        }
                        None => anyhow::bail!("data set without a C-STORE request"),
                    };
                    if code == status::SUCCESS {
                        stored += 1;
                    } else {
                        refused += 1;
                    }
                    respond(&mut association, context, Command::c_store_rsp(&request, code)).await?;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if stored + refused > 0 {
        tracing::info!(
            calling_ae = %caller,
            stored,
            refused,
            mib = %format!("{:.1}", bytes as f64 / 1048576.0),
            seconds = %format!("{seconds:.2}"),
            per_second = %format!("{:.1}", stored as f64 / seconds.max(1e-6)),
            "association released"
        );
    }
    Ok(())
}

/// Checks a C-STORE request and opens its spool file, or decides how to refuse it.
fn start_store(spool: &Spool, request: Command, context: u8, ts: &str, caller: &str) -> Receiving {
    let class = request.affected_sop_class().unwrap_or_default();
    let instance = request.affected_sop_instance().unwrap_or_default();
    if !IMAGE_STORAGE.contains(&class.as_str()) {
        let why = format!("SOP class {class} is not an image storage class efen decodes");
        return Receiving::Refused { request, status: status::SOP_CLASS_NOT_SUPPORTED, context, why };
    }
    if !is_plain_uid(&instance) || ts.is_empty() {
        let why = format!("SOP instance UID {instance:?} or presentation context {context} is not usable");
        return Receiving::Refused { request, status: status::CANNOT_UNDERSTAND, context, why };
    }
    match spool.begin(&class, &instance, ts, caller) {
        Ok(part) => Receiving::Instance { request, part, context },
        Err(e) => refusal(request, context, &e),
    }
}

fn refusal(request: Command, context: u8, error: &SpoolError) -> Receiving {
    Receiving::Refused { request, status: refusal_status(error), context, why: error.to_string() }
}

/// Out of space: A700 (the sender may retry later); other write errors: 0110; not DICOM: C000.
pub(crate) fn refusal_status(error: &SpoolError) -> u16 {
    match error {
        e if e.is_out_of_space() => status::OUT_OF_RESOURCES,
        SpoolError::Io { .. } => status::PROCESSING_FAILURE,
        SpoolError::Unreadable(_) | SpoolError::NoSeries(_) => status::CANNOT_UNDERSTAND,
    }
}

async fn respond(
    association: &mut dicom_ul::association::server::AsyncServerAssociation<TcpStream>,
    context: u8,
    command: Command,
) -> anyhow::Result<()> {
    let value = PDataValue {
        presentation_context_id: context,
        value_type: PDataValueType::Command,
        is_last: true,
        data: command.encode(),
    };
    association.send(&Pdu::PData { data: vec![value] }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_be_stored_gets_the_matching_failure_status() {
        let io = |code| SpoolError::Io { path: "x".into(), source: std::io::Error::from_raw_os_error(code) };
        assert_eq!(refusal_status(&io(28)), status::OUT_OF_RESOURCES, "ENOSPC");
        assert_eq!(refusal_status(&io(122)), status::OUT_OF_RESOURCES, "EDQUOT");
        assert_eq!(refusal_status(&io(5)), status::PROCESSING_FAILURE, "EIO");
        assert_eq!(refusal_status(&SpoolError::NoSeries(String::new())), status::CANNOT_UNDERSTAND);
    }

    #[test]
    fn only_image_storage_classes_are_taken() {
        let state = tempfile::tempdir().unwrap();
        let spool = Spool::open(state.path()).unwrap();
        let rt_plan = Command::c_store_rq(1, "1.2.840.10008.5.1.4.1.1.481.5", "1.2.3");
        match start_store(&spool, rt_plan, 1, "1.2.840.10008.1.2", "X") {
            Receiving::Refused { status, .. } => assert_eq!(status, status::SOP_CLASS_NOT_SUPPORTED),
            Receiving::Instance { .. } => panic!("an RT Plan was taken"),
        }
    }
}
