//! The DICOM fixtures that `scripts/dicom-fixtures.sh` builds: their manifest, and which of them
//! must fail (and how). Shared by tests/dicom.rs (the module) and tests/dicom_pipeline.rs (the
//! binary).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const FIXTURE_SCRIPT: &str = "scripts/dicom-fixtures.sh";

pub fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom");
    assert!(
        dir.join("manifest.json").is_file(),
        "{} is missing: run {FIXTURE_SCRIPT} first (it installs dcmtk, dicom3tools and pydicom and \
         builds the DICOM fixtures)",
        dir.display()
    );
    dir
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub file: String,
    #[serde(default)]
    pub transfer_syntax: String,
    #[serde(default)]
    pub sop_class: String,
    #[serde(default)]
    pub photometric: String,
    #[serde(default)]
    pub frames: u32,
    #[serde(default)]
    pub has_pixel_data: bool,
    #[serde(default)]
    pub lossy: bool,
    pub reference: Option<String>,
}
pub fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn read(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; rerun {FIXTURE_SCRIPT}", path.display()))
}

/// Files that must fail, with a piece of the message they must fail with. Every other file with
/// pixel data must decode. Keep in step with the table in src/dicom/README.md.
pub fn expected_failures() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("dcmtk_gray12_jpeg_extended12.dcm", "unsupported transfer syntax 1.2.840.10008.1.2.4.51"),
        ("pydicom_JPEG-lossy.dcm", "unsupported transfer syntax 1.2.840.10008.1.2.4.51"),
        ("pydicom_JPGExtended.dcm", "unsupported transfer syntax 1.2.840.10008.1.2.4.51"),
        ("pydicom_MR_truncated.dcm", "truncated file"),
        ("pydicom_meta_missing_tsyntax.dcm", "missing data element `transfersyntax`"),
        ("pydicom_nested_priv_SQ.dcm", "missing attribute rows (0028,0010)"),
        ("pydicom_JPEG2000-embedded-sequence-delimiter.dcm", "cannot decode frame 0"),
    ])
}

/// dciodvfy's complaints: the lines that say "Error".
pub fn dciodvfy_errors(path: &Path) -> Vec<String> {
    let output = std::process::Command::new("dciodvfy")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("dciodvfy: {e}; run {FIXTURE_SCRIPT} to install dicom3tools"));
    let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    text.lines().filter(|l| l.contains("Error")).map(str::to_string).collect()
}
