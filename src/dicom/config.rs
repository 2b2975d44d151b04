//! The two places DICOM is configured: the pipeline's `[dicom]` ([`DicomConfig`]: windowing and
//! the SEG's labels, per pipeline) and the service's `[dicom]` ([`PatientIdConfig`]: the
//! pseudonym key, a site secret that belongs in the environment, not in a pipeline file).

use serde::{Deserialize, Serialize};

use super::{DicomFile, Identity, SegConfig, WindowSetting};

/// The pipeline's `[dicom]` section: how DICOM inputs are windowed and how their SEG is labelled.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// VOI window: `"fromfile"` (the file's window or VOI LUT), `{ fixed = { center, width } }`
    /// or `{ percentile = { low, high } }`.
    #[serde(default)]
    pub window: WindowSetting,
    /// The Segmentation's segment label, codes, algorithm and what to do with an empty mask.
    #[serde(default)]
    pub seg: SegConfig,
    /// What one case is: a series (every instance with the same Series Instance UID, one stack at
    /// a time) or each instance's frame on its own.
    #[serde(default)]
    pub unit: Unit,
}

/// The unit of work for DICOM inputs (`[dicom] unit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// One case per series (per stack of it): one multi-frame SEG, one volume, one row.
    #[default]
    Series,
    /// One case per frame of each instance, as 2D images.
    Instance,
}

/// The service's `[dicom]` section (config/default.toml): how Patient IDs reach the record, and
/// `[dicom.sr]`, whether a measurement report goes beside each SEG.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatientIdConfig {
    /// Key of the keyed hash (HMAC-SHA256) that pseudonymises DICOM Patient IDs in the record.
    /// Empty: the Patient ID is withheld. Set it through EFEN_DICOM__PSEUDONYM_KEY, not the file.
    pub pseudonym_key: String,
    /// Record the Patient ID as in the file instead of its keyed hash. Off by default; only for
    /// sites whose store may hold identifiers.
    pub raw_patient_id: bool,
    /// `[dicom.sr]`: the TID 1500 measurement report (`sr.dcm`) beside each SEG.
    #[serde(default)]
    pub sr: super::SrConfig,
}

impl PatientIdConfig {
    /// The identity of a DICOM input as the record keeps it: the patient ID raw, keyed-hashed
    /// or withheld, as configured.
    pub fn identity(&self, file: &DicomFile) -> Identity {
        if self.raw_patient_id {
            file.identity_with_raw_patient_id()
        } else {
            file.identity((!self.pseudonym_key.is_empty()).then_some(self.pseudonym_key.as_bytes()))
        }
    }
}
