//! The coded concepts of efen's measurement report (TID 1500), in one place. DCM, SCT, UCUM,
//! LN and RFC5646 codes are the standard's; the agreement measures against ground truth have no
//! standard code, so they use efen's private scheme `99EFEN` (docs/dicom.md, and the SR's
//! Coding Scheme Identification Sequence names it).

use super::super::Code;

fn code(value: &str, scheme: &str, meaning: &str) -> Code {
    Code::new(value, scheme, meaning)
}

// Document structure (TID 1500, 1001, 1204, 1600).
pub fn imaging_measurement_report() -> Code {
    code("126000", "DCM", "Imaging Measurement Report")
}
pub fn language_of_content() -> Code {
    code("121049", "DCM", "Language of Content Item and Descendants")
}
pub fn english_us() -> Code {
    code("en-US", "RFC5646", "English (United States)")
}
pub fn procedure_reported() -> Code {
    code("121058", "DCM", "Procedure reported")
}
pub fn imaging_measurements() -> Code {
    code("126010", "DCM", "Imaging Measurements")
}
pub fn measurement_group() -> Code {
    code("125007", "DCM", "Measurement Group")
}

// Observer context (TID 1002, 1004).
pub fn observer_type() -> Code {
    code("121005", "DCM", "Observer Type")
}
pub fn device() -> Code {
    code("121007", "DCM", "Device")
}
pub fn device_observer_uid() -> Code {
    code("121012", "DCM", "Device Observer UID")
}
pub fn device_observer_name() -> Code {
    code("121013", "DCM", "Device Observer Name")
}
pub fn device_observer_manufacturer() -> Code {
    code("121014", "DCM", "Device Observer Manufacturer")
}
pub fn device_observer_model_name() -> Code {
    code("121015", "DCM", "Device Observer Model Name")
}

// Measurement group (TID 1410, 1411, 4108, 4019).
pub fn tracking_identifier() -> Code {
    code("112039", "DCM", "Tracking Identifier")
}
pub fn tracking_uid() -> Code {
    code("112040", "DCM", "Tracking Unique Identifier")
}
pub fn finding_category() -> Code {
    code("276214006", "SCT", "Finding category")
}
pub fn finding() -> Code {
    code("121071", "DCM", "Finding")
}
pub fn algorithm_name() -> Code {
    code("111001", "DCM", "Algorithm Name")
}
pub fn algorithm_version() -> Code {
    code("111003", "DCM", "Algorithm Version")
}
pub fn algorithm_parameters() -> Code {
    code("111002", "DCM", "Algorithm Parameters")
}
pub fn referenced_segment() -> Code {
    code("121191", "DCM", "Referenced Segment")
}
pub fn referenced_segmentation_frame() -> Code {
    code("121214", "DCM", "Referenced Segmentation Frame")
}
pub fn source_series_for_segmentation() -> Code {
    code("121232", "DCM", "Source series for segmentation")
}
pub fn source_image_for_segmentation() -> Code {
    code("121233", "DCM", "Source image for segmentation")
}

// Measurements and units.
pub fn volume() -> Code {
    code("118565006", "SCT", "Volume")
}
pub fn area() -> Code {
    code("42798000", "SCT", "Area")
}
pub fn milliliter() -> Code {
    code("ml", "UCUM", "milliliter")
}
pub fn square_millimeter() -> Code {
    code("mm2", "UCUM", "square millimeter")
}
pub fn no_units() -> Code {
    code("1", "UCUM", "no units")
}

/// efen's private coding scheme, for what DICOM has no code for.
pub const PRIVATE_SCHEME: &str = "99EFEN";
pub const PRIVATE_SCHEME_NAME: &str = "efen segmentation agreement measures";

pub fn dice() -> Code {
    code("DSC", PRIVATE_SCHEME, "Dice similarity coefficient")
}
pub fn jaccard() -> Code {
    code("IOU", PRIVATE_SCHEME, "Intersection over union")
}
pub fn mean_jaccard() -> Code {
    code("MIOU", PRIVATE_SCHEME, "Mean intersection over union")
}
pub fn precision() -> Code {
    code("PRECISION", PRIVATE_SCHEME, "Precision")
}
pub fn recall() -> Code {
    code("RECALL", PRIVATE_SCHEME, "Recall")
}

/// Procedure reported (CID 100) for the source's modality: the LOINC "unspecified body region"
/// procedure of its kind, else SCT "Imaging procedure".
pub fn procedure_for(modality: &str) -> Code {
    match modality {
        "CT" => code("25045-6", "LN", "CT unspecified body region"),
        "MR" => code("25056-3", "LN", "MRI unspecified body region"),
        "PT" => code("44136-0", "LN", "PET unspecified body region"),
        "NM" => code("49118-3", "LN", "NM unspecified body region"),
        "CR" | "DX" | "RG" | "DR" | "MG" | "XA" | "RF" => code("43468-8", "LN", "XR unspecified body region"),
        _ => code("363679005", "SCT", "Imaging procedure"),
    }
}
