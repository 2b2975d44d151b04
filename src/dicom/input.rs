//! A DICOM input as a case carries it: the object parsed once at ingest (its pixel data dropped or
//! kept), its identity for the record, and the decoder that reads its frames.

/// A parsed DICOM input and what the record keeps about it.
pub struct DicomInput {
    pub file: super::DicomFile,
    /// With the patient ID pseudonymised, withheld or raw, as `dicom` in the configuration says.
    pub identity: super::Identity,
    pub decoder: String,
}

impl std::fmt::Debug for DicomInput {
    // Never the identity: it may hold a raw patient ID, and Debug output ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomInput").field("file", &self.file).finish_non_exhaustive()
    }
}
