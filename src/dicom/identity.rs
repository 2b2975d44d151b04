//! Identity: what a case record keeps about a DICOM input, with the patient ID pseudonymised.

use dicom_dictionary_std::tags;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::DicomFile;
use super::read::{floats, string, transfer_syntax_name};

/// How [`Identity::patient_id`] was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientIdForm {
    /// HMAC-SHA256 of the Patient ID under the site's key, as lowercase hex.
    HmacSha256,
    /// The Patient ID as in the file: only from [`DicomFile::identity_with_raw_patient_id`].
    Raw,
    /// No key was given, so the Patient ID is left out.
    Withheld,
    /// The file has no Patient ID.
    Absent,
}

impl PatientIdForm {
    /// The name used in result.json and the store (`dicom_cases.patient_id_form`).
    pub fn as_str(self) -> &'static str {
        match self {
            PatientIdForm::HmacSha256 => "hmac-sha256",
            PatientIdForm::Raw => "raw",
            PatientIdForm::Withheld => "withheld",
            PatientIdForm::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferSyntaxId {
    pub uid: String,
    pub name: String,
}

/// The identifying and geometric attributes of one DICOM input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub patient_id: Option<String>,
    pub patient_id_form: PatientIdForm,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub accession_number: Option<String>,
    pub transfer_syntax: TransferSyntaxId,
    pub rows: u32,
    pub columns: u32,
    pub photometric_interpretation: String,
    /// Row spacing then column spacing, in mm (Pixel Spacing, else Imager Pixel Spacing).
    pub pixel_spacing: Option<[f64; 2]>,
    pub number_of_frames: u32,
}

pub(crate) enum PatientIdPolicy<'a> {
    Keyed(&'a [u8]),
    Withheld,
    Raw,
}

/// HMAC-SHA256 of `message` under `key`, as lowercase hex.
pub fn pseudonym(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(crate) fn identity(file: &DicomFile, policy: PatientIdPolicy<'_>) -> Identity {
    let obj = &file.obj;
    let raw_id = string(obj, tags::PATIENT_ID);
    let (patient_id, patient_id_form) = match (raw_id, policy) {
        (None, _) => (None, PatientIdForm::Absent),
        (Some(id), PatientIdPolicy::Keyed(key)) => (Some(pseudonym(key, &id)), PatientIdForm::HmacSha256),
        (Some(_), PatientIdPolicy::Withheld) => (None, PatientIdForm::Withheld),
        (Some(id), PatientIdPolicy::Raw) => (Some(id), PatientIdForm::Raw),
    };
    let spacing = |tag| floats(obj, tag).ok().filter(|v| v.len() >= 2).map(|v| [v[0], v[1]]);
    Identity {
        patient_id,
        patient_id_form,
        study_instance_uid: string(obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: string(obj, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: string(obj, tags::SOP_INSTANCE_UID),
        sop_class_uid: string(obj, tags::SOP_CLASS_UID),
        modality: string(obj, tags::MODALITY),
        accession_number: string(obj, tags::ACCESSION_NUMBER),
        transfer_syntax: TransferSyntaxId {
            uid: file.info.ts_uid.clone(),
            name: transfer_syntax_name(&file.info.ts_uid),
        },
        rows: file.info.rows,
        columns: file.info.columns,
        photometric_interpretation: file.info.photometric.clone(),
        pixel_spacing: spacing(tags::PIXEL_SPACING).or_else(|| spacing(tags::IMAGER_PIXEL_SPACING)),
        number_of_frames: file.info.frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_id_form_names_match_their_json() {
        for form in [PatientIdForm::HmacSha256, PatientIdForm::Raw, PatientIdForm::Withheld, PatientIdForm::Absent] {
            assert_eq!(serde_json::to_value(form).unwrap(), form.as_str());
        }
    }

    #[test]
    fn pseudonym_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            pseudonym(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
