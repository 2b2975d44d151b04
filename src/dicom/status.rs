//! DICOM status codes efen gives and reads, once for both faces: a C-STORE response's Status
//! (PS3.4 Annex B.2.3, PS3.7 Annex C) and a STOW-RS response's Failure Reason (0008,1197;
//! PS3.18 Table I.2-2) share their values.

pub const SUCCESS: u16 = 0x0000;
/// Processing failure: the instance could not be written.
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Refused: SOP Class not supported (not an image storage class that decode reads).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// Refused: out of resources (the disk is full; the sender may retry later).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: cannot understand (not readable PS3.10 DICOM, or no usable UIDs).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Referenced Transfer Syntax not supported (not in node.accept_compressed).
pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
/// The instance's Study Instance UID is not the study of STOW-RS's `/studies/{study}` (efen's
/// code, as dcm4chee's, in the Cxxx "cannot understand" range).
pub const STUDY_MISMATCH: u16 = 0xC409;

/// Success (0000) and the warnings (0001, Bxxx) mean the peer stored the object.
pub fn is_stored(code: u16) -> bool {
    code == SUCCESS || code == 0x0001 || (code & 0xF000) == 0xB000
}
