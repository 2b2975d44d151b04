//! STOW-RS client (PS3.18 §10.5): one DICOM file as a one-part `multipart/related;
//! type="application/dicom"` POST to `<DICOMweb root>/studies`. The peer's Store Instances Response
//! (`application/dicom+json`) is read back into the C-STORE-like status the outbox records: 0000
//! (or the Warning Reason) when the Referenced SOP Sequence lists the instance, the Failure Reason
//! when the Failed SOP Sequence does.

use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use super::sent::{SendError, Sent};

/// The prefix that makes a destination a DICOMweb server: `dicomweb:http://host:port/dicom-web`.
pub const SCHEME: &str = "dicomweb:";

/// Store Instances Response attributes (PS3.18 Annex I), as DICOM JSON keys.
const REFERENCED_SOP_SEQUENCE: &str = "00081199";
const FAILED_SOP_SEQUENCE: &str = "00081198";
const REFERENCED_SOP_INSTANCE_UID: &str = "00081155";
const FAILURE_REASON: &str = "00081197";
const WARNING_REASON: &str = "00081196";

/// A DICOMweb root that takes STOW-RS. Credentials in the URL (`https://user:password@host/…`) are
/// sent as HTTP Basic authentication and never shown: the root prints without them.
#[derive(Clone, PartialEq, Eq)]
pub struct StowTarget {
    /// The root without credentials or a trailing slash.
    root: String,
    basic_auth: Option<(String, Option<String>)>,
}

impl StowTarget {
    /// `<root>/studies`, where STOW-RS posts.
    pub fn studies_url(&self) -> String {
        format!("{}/studies", self.root)
    }

    /// The host and port of the root (80 or 443 when the URL names none).
    pub fn address(&self) -> Option<(String, u16)> {
        let url = reqwest::Url::parse(&self.root).ok()?;
        Some((url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string(), url.port_or_known_default()?))
    }
}

impl std::fmt::Debug for StowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StowTarget")
            .field("root", &self.root)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Display for StowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.root)
    }
}

impl FromStr for StowTarget {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        // Named without what stands before an `@`: a password must not reach a log by a typo.
        let shown = match text.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => text.to_string(),
        };
        let bad = |why: &str| format!("destination {SCHEME}{shown}: {why}; write {SCHEME}http://host:port/dicom-web");
        let mut url = reqwest::Url::parse(text.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the DICOMweb root must be an http or https URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the URL must not have a query or fragment"));
        }
        let basic_auth =
            (!url.username().is_empty()).then(|| (percent_decode(url.username()), url.password().map(percent_decode)));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let root = url.as_str().trim_end_matches('/').to_string();
        Ok(StowTarget { root, basic_auth })
    }
}

/// `%XX` escapes of a URL's user name or password, decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// POSTs `file` to `target`'s `/studies`; `name` is the destination as recorded.
pub async fn store(file: &Path, http: &reqwest::Client, target: &StowTarget, name: &str) -> Result<Sent, SendError> {
    let unreadable = |reason: String| SendError::File { path: file.to_path_buf(), reason };
    let bytes = tokio::fs::read(file).await.map_err(|e| unreadable(e.to_string()))?;
    let magic = if bytes.get(128..132) == Some(b"DICM") { 128 } else { 0 };
    let meta = dicom_object::FileMetaTable::from_reader(&bytes[magic..]).map_err(|e| unreadable(e.to_string()))?;
    let sop_instance = meta.media_storage_sop_instance_uid().to_string();

    let boundary = format!("efen-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(bytes.len() + 200);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let failed = |reason: String| SendError::Http { destination: name.to_string(), reason };
    let mut request = http
        .post(target.studies_url())
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header(reqwest::header::ACCEPT, "application/dicom+json")
        .body(body);
    if let Some((user, password)) = &target.basic_auth {
        request = request.basic_auth(user, password.as_ref());
    }
    let response = request.send().await.map_err(|e| failed(crate::error::chain(&e)))?;
    let status = response.status();
    let warning = response
        .headers()
        .get_all(reqwest::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .fold(String::new(), |all, w| if all.is_empty() { w.to_string() } else { format!("{all}; {w}") });
    let text = response.text().await.map_err(|e| failed(crate::error::chain(&e)))?;
    let answer = serde_json::from_str::<Value>(&text).ok();
    let code = answer.as_ref().and_then(|a| status_of(a, &sop_instance));
    let code = match code {
        Some(code) => code,
        // 200 means every instance was stored (PS3.18 Table 10.5.3-1), with or without a body.
        None if status == reqwest::StatusCode::OK => 0,
        None => {
            let snippet: String = text.chars().take(300).collect();
            return Err(failed(format!("HTTP {status}: {}", snippet.trim())));
        }
    };
    let comment = format!("HTTP {status}{}", if warning.is_empty() { String::new() } else { format!(", {warning}") });
    Ok(Sent { sop_instance_uid: sop_instance, status: code, error_comment: Some(comment) })
}

/// The status the response gives `sop_instance`: the Warning Reason or 0000 when it was stored, the
/// Failure Reason when it was not; None when the response does not name it.
fn status_of(answer: &Value, sop_instance: &str) -> Option<u16> {
    let items = |key: &str| answer[key]["Value"].as_array().cloned().unwrap_or_default();
    let names = |item: &Value| {
        item[REFERENCED_SOP_INSTANCE_UID]["Value"][0]
            .as_str()
            .is_some_and(|uid| uid.trim_end_matches('\0') == sop_instance)
    };
    let code = |item: &Value, key: &str| item[key]["Value"][0].as_u64().and_then(|c| u16::try_from(c).ok());
    if let Some(item) = items(REFERENCED_SOP_SEQUENCE).iter().find(|&item| names(item)) {
        return Some(code(item, WARNING_REASON).unwrap_or(0));
    }
    let failed = items(FAILED_SOP_SEQUENCE);
    // One instance was sent: a lone failed item is about it even when the peer left out its UID.
    let item = failed.iter().find(|&item| names(item)).or(if failed.len() == 1 { failed.first() } else { None })?;
    Some(code(item, FAILURE_REASON).unwrap_or(super::dimse::status::PROCESSING_FAILURE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_response_says_whether_the_instance_was_stored() {
        let stored = json!({ "00081199": { "vr": "SQ", "Value": [
            { "00081150": { "vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.66.4"] }, "00081155": { "vr": "UI", "Value": ["1.2.3"] } } ] } });
        assert_eq!(status_of(&stored, "1.2.3"), Some(0));
        assert_eq!(status_of(&stored, "1.2.4"), None, "another instance");
        let warned = json!({ "00081199": { "vr": "SQ", "Value": [
            { "00081155": { "vr": "UI", "Value": ["1.2.3"] }, "00081196": { "vr": "US", "Value": [45056] } } ] } });
        assert_eq!(status_of(&warned, "1.2.3"), Some(0xB000));
        let refused = json!({ "00081198": { "vr": "SQ", "Value": [
            { "00081155": { "vr": "UI", "Value": ["1.2.3"] }, "00081197": { "vr": "US", "Value": [290] } } ] } });
        assert_eq!(status_of(&refused, "1.2.3"), Some(0x0122));
        let anonymous =
            json!({ "00081198": { "vr": "SQ", "Value": [ { "00081197": { "vr": "US", "Value": [49152] } } ] } });
        assert_eq!(status_of(&anonymous, "1.2.3"), Some(0xC000));
        assert_eq!(status_of(&json!({}), "1.2.3"), None);
    }

    #[test]
    fn credentials_are_decoded_and_kept_out_of_the_name() {
        let target: StowTarget = "https://ef%40en:p%3Ass@pacs.example:8443/dicom-web//".parse().unwrap();
        assert_eq!(target.to_string(), "https://pacs.example:8443/dicom-web");
        assert_eq!(target.studies_url(), "https://pacs.example:8443/dicom-web/studies");
        assert_eq!(target.basic_auth, Some(("ef@en".into(), Some("p:ss".into()))));
        let plain: StowTarget = "http://127.0.0.1:8042/dicom-web/".parse().unwrap();
        assert_eq!((plain.studies_url().as_str(), plain.basic_auth), ("http://127.0.0.1:8042/dicom-web/studies", None));
        let refused = "https://user:secret@pacs.example/dicom-web?x=1".parse::<StowTarget>().unwrap_err();
        assert!(refused.contains("pacs.example") && !refused.contains("secret"), "{refused}");
    }
}
