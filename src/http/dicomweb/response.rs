//! The Store Instances Response (PS3.18 Annex I) in DICOM JSON (PS3.18 Annex F), and the status
//! code of a STOW-RS answer (PS3.18 Table 10.5.3-1).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// Failure Reason (0008,1197) values (PS3.18 Table I.2-2): the DICOM status codes.
pub use crate::dicom::status as reason;

/// An instance as the response names it; the UIDs are empty when the part could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub sop_class: String,
    pub sop_instance: String,
}

/// Referenced SOP Sequence (0008,1199) for `stored`, Failed SOP Sequence (0008,1198) with each
/// Failure Reason (0008,1197) for `failed`, and the Retrieve URL (0008,1190), empty: efen keeps
/// no instances to retrieve (it has no WADO-RS).
pub fn body(stored: &[Reference], failed: &[(Reference, u16)]) -> Value {
    let mut body = Map::new();
    body.insert("00081190".into(), json!({ "vr": "UR" }));
    if !failed.is_empty() {
        let items: Vec<Value> = failed
            .iter()
            .map(|(reference, code)| {
                let mut item = item(reference);
                item.insert("00081197".into(), json!({ "vr": "US", "Value": [code] }));
                Value::Object(item)
            })
            .collect();
        body.insert("00081198".into(), json!({ "vr": "SQ", "Value": items }));
    }
    if !stored.is_empty() {
        let items: Vec<Value> = stored
            .iter()
            .map(|reference| {
                let mut item = item(reference);
                item.insert("00081190".into(), json!({ "vr": "UR" }));
                Value::Object(item)
            })
            .collect();
        body.insert("00081199".into(), json!({ "vr": "SQ", "Value": items }));
    }
    Value::Object(body)
}

/// The SOP Instance Reference Macro: class (0008,1150) and instance (0008,1155); an unknown UID is
/// present without a value.
fn item(reference: &Reference) -> Map<String, Value> {
    let uid =
        |value: &str| if value.is_empty() { json!({ "vr": "UI" }) } else { json!({ "vr": "UI", "Value": [value] }) };
    let mut item = Map::new();
    item.insert("00081150".into(), uid(&reference.sop_class));
    item.insert("00081155".into(), uid(&reference.sop_instance));
    item
}

/// 200 when every instance was stored, 202 when some were, 409 when none was.
pub fn status(stored: usize, failed: usize) -> StatusCode {
    match (stored, failed) {
        (_, 0) => StatusCode::OK,
        (0, _) => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    }
}

/// A `Warning` header value (RFC 7234 §5.5, as PS3.18 §8.7.3 uses it): `299 efen "<text>"`, the
/// text kept to visible ASCII without quotes or backslashes.
pub fn warning(text: &str) -> String {
    let clean: String = text
        .chars()
        .take(300)
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    format!("299 efen \"{clean}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(sop: &str) -> Reference {
        Reference { sop_class: "1.2.840.10008.5.1.4.1.1.2".into(), sop_instance: sop.into() }
    }

    #[test]
    fn the_body_references_stored_and_failed_instances_in_dicom_json() {
        let unknown = Reference { sop_class: String::new(), sop_instance: String::new() };
        let body = body(&[reference("1.2.3")], &[(unknown, reason::CANNOT_UNDERSTAND)]);
        assert_eq!(body["00081199"]["vr"], "SQ");
        assert_eq!(body["00081199"]["Value"][0]["00081155"], json!({ "vr": "UI", "Value": ["1.2.3"] }));
        assert_eq!(body["00081199"]["Value"][0]["00081150"]["Value"][0], "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(body["00081198"]["Value"][0]["00081197"], json!({ "vr": "US", "Value": [49152] }));
        assert_eq!(body["00081198"]["Value"][0]["00081155"], json!({ "vr": "UI" }));
        assert_eq!(body["00081190"], json!({ "vr": "UR" }));
        let all_good = super::body(&[reference("1.2.3")], &[]);
        assert!(all_good.get("00081198").is_none(), "no empty Failed SOP Sequence");
    }

    #[test]
    fn the_status_follows_ps3_18() {
        assert_eq!(status(3, 0), StatusCode::OK);
        assert_eq!(status(2, 1), StatusCode::ACCEPTED);
        assert_eq!(status(0, 3), StatusCode::CONFLICT);
    }

    #[test]
    fn warnings_are_plain_header_values() {
        let value = warning("part 2: not \"DICOM\" – café\n");
        assert_eq!(value, "299 efen \"part 2: not _DICOM_ _ caf__\"");
        assert!(axum::http::HeaderValue::from_str(&value).is_ok());
    }
}
