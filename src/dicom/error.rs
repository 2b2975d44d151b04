//! The one error type of the DICOM module.

/// Everything that can go wrong while reading a DICOM file, decoding a frame or writing a SEG.
///
/// Variants are named for the action that failed and carry what a user needs to act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DicomError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a DICOM file: no \"DICM\" at byte 128 and no data set at the start")]
    NotDicom,
    #[error("truncated file: {reason}")]
    Truncated { reason: String },
    #[error("cannot read the DICOM data set: {reason}")]
    ReadDataSet { reason: String },
    #[error("missing attribute {name} {tag}")]
    MissingAttribute { name: &'static str, tag: String },
    #[error("invalid {name} {value:?}: {reason}")]
    InvalidAttribute { name: &'static str, value: String, reason: String },
    #[error(
        "no pixel data (SOP class {sop_class_uid} is not an image: {sop_class_name}); \
         only image objects can be segmented"
    )]
    NoPixelData { sop_class_uid: String, sop_class_name: String },
    #[error("unsupported transfer syntax {uid} ({name}): {hint}")]
    UnsupportedTransferSyntax { uid: String, name: String, hint: String },
    #[error(
        "pixel data is {actual} bytes but rows×columns×samples×bits \
         ({rows}×{columns}×{samples}×{bits_allocated} bits × {frames} frame(s)) needs {expected}"
    )]
    PixelDataSize {
        actual: usize,
        expected: usize,
        rows: u32,
        columns: u32,
        samples: u16,
        bits_allocated: u16,
        frames: u32,
    },
    #[error("unsupported pixel format ({photometric}, {samples} sample(s), {bits_allocated} bits): {reason}")]
    UnsupportedPixelFormat { photometric: String, samples: u16, bits_allocated: u16, reason: String },
    #[error("frame {frame} out of range: the file has {frames} frame(s), numbered from 0")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error("cannot decode frame {frame} ({transfer_syntax}): {reason}")]
    DecodeFrame { frame: u32, transfer_syntax: String, reason: String },
    #[error("invalid window setting: {reason}")]
    InvalidWindow { reason: String },
    #[error(
        "mask is {mask_width}×{mask_height} but the source image is {columns}×{rows}: \
         resize the mask to the source first"
    )]
    MaskSize { mask_width: u32, mask_height: u32, columns: u32, rows: u32 },
    /// Not a failure of the case: the mask has no foreground and `write_empty` is false.
    #[error("the mask is empty and write_empty is false: no findings, no SEG written")]
    EmptyMask,
    #[error("not a DICOM Segmentation (SOP class {SEG})", SEG = super::SEGMENTATION_STORAGE)]
    NotSegmentation,
    #[error(
        "this is a DICOM Segmentation (a result or a ground truth), not an image to segment; \
         as ground truth it must reference an image in the same run"
    )]
    SegmentationAsInput,
    #[error("the SEG has no frame derived from instance {sop_instance_uid}, frame {frame_number}")]
    NotReferenced { sop_instance_uid: String, frame_number: u32 },
    #[error("cannot write the SEG: {reason}")]
    WriteSeg { reason: String },
    #[error("dicom-rs panicked while {action}: {message} (please report this file)")]
    Panicked { action: &'static str, message: String },
}

impl DicomError {
    /// True for [`DicomError::EmptyMask`]: record "no findings" rather than a failure.
    pub fn is_no_findings(&self) -> bool {
        matches!(self, DicomError::EmptyMask)
    }
}

crate::error_types!(DicomError {
    Empty => "empty_file",
    NotDicom => "not_dicom",
    Truncated => "truncated",
    ReadDataSet => "read_data_set",
    MissingAttribute => "missing_attribute",
    InvalidAttribute => "invalid_attribute",
    NoPixelData => "no_pixel_data",
    UnsupportedTransferSyntax => "unsupported_transfer_syntax",
    PixelDataSize => "pixel_data_size",
    UnsupportedPixelFormat => "unsupported_pixel_format",
    FrameOutOfRange => "frame_out_of_range",
    DecodeFrame => "decode_frame",
    InvalidWindow => "invalid_window",
    MaskSize => "mask_size",
    EmptyMask => "empty_mask",
    NotSegmentation => "not_segmentation",
    SegmentationAsInput => "segmentation_as_input",
    NotReferenced => "not_referenced",
    WriteSeg => "write_seg",
    Panicked => "panicked",
});

/// Runs `f`, turning a panic inside dicom-rs into [`DicomError::Panicked`].
pub(crate) fn guard<T>(action: &'static str, f: impl FnOnce() -> T) -> Result<T, DicomError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        DicomError::Panicked { action, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_messages_are_lowercase() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<DicomError>();
        let message = DicomError::UnsupportedTransferSyntax {
            uid: "1.2.840.10008.1.2.4.51".into(),
            name: "JPEG Extended (Process 2 & 4)".into(),
            hint: "12-bit".into(),
        }
        .to_string();
        assert!(message.starts_with("unsupported transfer syntax 1.2.840.10008.1.2.4.51"));
    }

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        let result = guard("testing", || panic!("boom"));
        assert_eq!(result.unwrap_err().to_string(), "dicom-rs panicked while testing: boom (please report this file)");
    }
}
