//! The DICOM module on real files: the pydicom wheel's samples and files converted with dcmtk
//! (made by `scripts/dicom-fixtures.sh`), compared with a reference decode; SEG objects checked
//! with dciodvfy (dicom3tools) and read back with pydicom.

mod common;

use std::path::Path;
use std::process::Command;

use efen::dicom::{self, DicomError, SegConfig, WindowSetting};
use image::{GrayImage, Luma};

use common::fixtures::{FIXTURE_SCRIPT, dciodvfy_errors, expected_failures, fixtures, manifest, read};

/// A minimal .npy reader for the int32 references the fixture script writes.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<i32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'<i4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data =
        bytes[start + header_len..].chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (shape, data)
}

#[test]
fn every_fixture_decodes_or_fails_with_its_documented_reason() {
    let failures_expected = expected_failures();
    let mut problems = Vec::new();
    let mut decoded = 0;
    for entry in manifest() {
        let bytes = read(&entry.file);
        let result = dicom::open(&bytes).and_then(|file| {
            file.frame_samples(entry.frames.saturating_sub(1))?;
            file.frame_rgb(0, &WindowSetting::FromFile)?;
            Ok(file)
        });
        match (result, failures_expected.get(entry.file.as_str()), entry.has_pixel_data) {
            (Ok(_), None, true) => decoded += 1,
            (Ok(file), _, _) => {
                problems.push(format!("{}: decoded ({}) but was expected to fail", entry.file, file.decoder_name()))
            }
            (Err(error), Some(expected), _) => {
                let message = error.to_string();
                if !message.to_lowercase().contains(&expected.to_lowercase()) {
                    problems.push(format!("{}: failed with {message:?}, expected {expected:?}", entry.file));
                }
            }
            (Err(_), None, false) => {}
            (Err(error), None, true) => {
                problems.push(format!("{} ({} {}): {error}", entry.file, entry.transfer_syntax, entry.photometric))
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(decoded >= 80, "only {decoded} fixtures decoded");
}

#[test]
fn decoded_samples_match_the_reference_decode() {
    let failures_expected = expected_failures();
    let mut problems = Vec::new();
    let mut compared = 0;
    for entry in manifest() {
        let Some(reference) = &entry.reference else { continue };
        if failures_expected.contains_key(entry.file.as_str()) {
            continue;
        }
        let Ok(file) = dicom::open(&read(&entry.file)) else {
            continue; // reported by the test above
        };
        let (shape, data) = read_npy(&fixtures().join(reference));
        let frame_len = shape[1..].iter().product::<usize>();
        let color = shape[3] == 3;
        let ybr = entry.photometric.starts_with("YBR");
        for frame in 0..entry.frames.min(3) {
            let samples = match file.frame_samples(frame) {
                Ok(samples) => samples,
                Err(error) => {
                    problems.push(format!("{} frame {frame}: {error}", entry.file));
                    continue;
                }
            };
            let expected = &data[frame as usize * frame_len..(frame as usize + 1) * frame_len];
            if samples.values.len() != expected.len() {
                problems.push(format!(
                    "{} frame {frame}: {} values, reference has {}",
                    entry.file,
                    samples.values.len(),
                    expected.len()
                ));
                continue;
            }
            let range = expected.iter().max().unwrap() - expected.iter().min().unwrap();
            let diffs: Vec<u64> = samples
                .values
                .iter()
                .zip(expected) // The reference is int32: unsigned 32-bit values wrap there.
                .map(|(a, b)| (*a as i32 as i64).abs_diff(*b as i64))
                .collect();
            let max = *diffs.iter().max().unwrap();
            let mean = diffs.iter().sum::<u64>() as f64 / diffs.len() as f64;
            // Lossless gray must match exactly; colour conversions may round differently;
            // lossy streams decoded by another decoder differ by a few levels.
            let (max_ok, mean_ok) = if entry.lossy {
                (u64::MAX, 1.0 + 0.01 * range as f64)
            } else if color && ybr {
                (3, 1.0)
            } else {
                (0, 0.0)
            };
            if max > max_ok || mean > mean_ok {
                problems.push(format!(
                    "{} frame {frame}: max difference {max}, mean {mean:.3} (allowed {max_ok}, {mean_ok:.3})",
                    entry.file
                ));
            }
        }
        compared += 1;
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(compared >= 70, "only {compared} fixtures compared");
}

#[test]
fn windows_modality_lut_and_monochrome1() {
    // syn_gray16_window: rescale intercept -1024, window 31000/20000 in modality units.
    let file = dicom::open(&read("syn_gray16_window.dcm")).unwrap();
    let samples = file.frame_samples(0).unwrap();
    let rgb = file.frame_rgb(0, &WindowSetting::FromFile).unwrap();
    for (i, stored) in samples.values.iter().enumerate().step_by(997) {
        let x = *stored as f64 - 1024.0;
        let expected = (((x - 30999.5) / 19999.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
        let got = rgb.as_raw()[3 * i];
        assert!(got.abs_diff(expected) <= 1, "pixel {i}: {got} vs {expected}");
    }
    let fixed = file.frame_rgb(0, &WindowSetting::Fixed { center: 0.0, width: 1.0 }).unwrap();
    assert!(fixed.as_raw().iter().all(|v| *v == 0 || *v == 255));
    let stretched = file.frame_rgb(0, &WindowSetting::Percentile { low: 0.0, high: 100.0 }).unwrap();
    assert_eq!(stretched.as_raw().iter().max(), Some(&255));
    assert_eq!(stretched.as_raw().iter().min(), Some(&0));

    // syn_modality_lut: a Modality LUT Sequence (v → 4000 - 15 v) replaces rescale; window 2000/4000.
    let file = dicom::open(&read("syn_modality_lut.dcm")).unwrap();
    let samples = file.frame_samples(0).unwrap();
    let rgb = file.frame_rgb(0, &WindowSetting::FromFile).unwrap();
    for (i, stored) in samples.values.iter().enumerate() {
        let x = 4000.0 - 15.0 * *stored as f64;
        let expected = (((x - 1999.5) / 3999.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
        let got = rgb.as_raw()[3 * i];
        assert!(got.abs_diff(expected) <= 1, "pixel {i}: {got} vs {expected}");
    }
    let brightest = samples.values.iter().enumerate().max_by_key(|(_, v)| **v).unwrap().0;
    let darkest = samples.values.iter().enumerate().min_by_key(|(_, v)| **v).unwrap().0;
    assert!(rgb.as_raw()[3 * brightest] < rgb.as_raw()[3 * darkest], "the LUT inverts, rescale would not");

    // MONOCHROME1 is the inverse of the same pixels as MONOCHROME2 (no window: min/max).
    let mono2 = dicom::open(&read("syn_gray8.dcm")).unwrap();
    let mono1 = dicom::open(&read("syn_mono1.dcm")).unwrap();
    let a = mono2.frame_rgb(0, &WindowSetting::FromFile).unwrap();
    let b = mono1.frame_rgb(0, &WindowSetting::FromFile).unwrap();
    assert!(a.as_raw().iter().zip(b.as_raw()).all(|(x, y)| *x == 255 - *y));

    // Palette: the image is in colour.
    let palette = dicom::open(&read("pydicom_examples_palette.dcm")).unwrap();
    let rgb = palette.frame_rgb(0, &WindowSetting::FromFile).unwrap();
    assert!(rgb.pixels().any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2]));
}

#[test]
fn enhanced_multi_frame_rescale_and_windows_come_from_the_functional_groups() {
    // Shared Pixel Value Transformation: intercept -1024; per-frame windows 30000/20000, 40000/4000.
    let file = dicom::open(&read("syn_enhanced_ct.dcm")).unwrap();
    for (frame, (center, width)) in [(0, (30000.0, 20000.0)), (1, (40000.0, 4000.0))] {
        let samples = file.frame_samples(frame).unwrap();
        let rgb = file.frame_rgb(frame, &WindowSetting::FromFile).unwrap();
        for (i, stored) in samples.values.iter().enumerate().step_by(499) {
            let x = *stored as f64 - 1024.0;
            let expected = (((x - (center - 0.5)) / (width - 1.0) + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
            assert!(rgb.as_raw()[3 * i].abs_diff(expected) <= 1, "frame {frame} pixel {i}");
        }
    }
}

#[test]
fn non_images_and_bad_input_fail_with_reasons() {
    for (file, expected) in [
        (
            "pydicom_rtplan.dcm",
            "no pixel data (SOP class 1.2.840.10008.5.1.4.1.1.481.5 is not an image: RT Plan Storage)",
        ),
        ("pydicom_test-SR.dcm", "no pixel data"),
        ("pydicom_waveform_ecg.dcm", "no pixel data"),
        ("pydicom_rtplan_truncated.dcm", ""),
    ] {
        let error = dicom::open(&read(file)).unwrap_err().to_string();
        assert!(error.contains(expected), "{file}: {error}");
        assert_eq!(error, error.trim_end_matches('.'), "{file}");
    }
    assert_eq!(dicom::open(&[]).unwrap_err(), DicomError::Empty);
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/synthetic/case01.png")).unwrap();
    assert!(!dicom::looks_like_dicom(&png));
    assert_eq!(dicom::open(&png).unwrap_err(), DicomError::NotDicom);
    let file = dicom::open(&read("syn_gray8.dcm")).unwrap();
    assert!(matches!(
        file.frame_rgb(1, &WindowSetting::FromFile),
        Err(DicomError::FrameOutOfRange { frame: 1, frames: 1 })
    ));
}

#[test]
fn truncated_and_corrupted_files_never_panic() {
    for name in [
        "syn_gray8.dcm",
        "dcmtk_rgb8_jpeg_baseline.dcm",
        "dcmtk_gray16_rle.dcm",
        "pydicom_MR_small_jp2klossless.dcm",
        "dcmtk_gray8_jpegls_lossless.dcm",
        "dcmtk_gray8_deflated.dcm",
    ] {
        let bytes = read(name);
        let step = (bytes.len() / 300).max(1);
        for end in (0..bytes.len()).step_by(step) {
            if let Ok(file) = dicom::open(&bytes[..end]) {
                let _ = file.frame_rgb(0, &WindowSetting::FromFile);
            }
        }
        // Flip bytes in the second half (mostly pixel data).
        let mut corrupt = bytes.clone();
        for i in (bytes.len() / 2..bytes.len()).step_by(97) {
            corrupt[i] ^= 0x5A;
        }
        if let Ok(file) = dicom::open(&corrupt) {
            let _ = file.frame_rgb(0, &WindowSetting::FromFile);
        }
    }
}

#[test]
fn a_frame_count_the_pixel_data_cannot_hold_is_refused() {
    // The 2-frame RLE file, claiming 9 frames (the value "2 " becomes "9 "), must not become nine
    // cases: the encapsulated pixel data has two fragments.
    let bytes = read("pydicom_SC_rgb_rle_2frame.dcm");
    let header = [0x28, 0x00, 0x08, 0x00, b'I', b'S', 0x02, 0x00, b'2', b' '];
    let at = bytes.windows(header.len()).position(|w| w == header).expect("Number of Frames \"2 \"");
    let mut more = bytes.clone();
    more[at + 8] = b'9';
    let error = dicom::open(&more).unwrap_err();
    assert!(matches!(error, DicomError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("Number of Frames is 9"), "{error}");
    assert_eq!(dicom::open(&bytes).unwrap().frame_count(), 2);
}

#[test]
fn data_sets_and_meta_groups_that_claim_gigabytes_are_refused_before_reading() {
    // Found by scripts/fuzz.sh: 39 KB that inflate to a data set with a 1.7 GB value, which made
    // dicom-rs allocate 1.6 GB. The length walk runs on the inflated data set too.
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_deflated_overrun.dcm")).unwrap();
    let error = dicom::open(&bytes).unwrap_err();
    assert!(error.to_string().contains("element (5250,5E51) declares 1683511894 bytes"), "{error}");
    // Also found by the fuzzer: 3.6 KB whose meta group claims a value of about a gigabyte.
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_meta_overrun.dcm")).unwrap();
    let error = dicom::open(&bytes).unwrap_err();
    assert!(matches!(error, DicomError::Truncated { .. }) && error.to_string().contains("declares"), "{error}");
}

#[test]
fn looks_like_dicom_and_bare_data_sets() {
    for entry in manifest() {
        let bytes = read(&entry.file);
        if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
            assert!(dicom::looks_like_dicom(&bytes), "{}", entry.file);
        }
    }
    // Without preamble and meta group: pydicom's no-meta samples open with a guessed syntax.
    for name in ["pydicom_ExplVR_LitEndNoMeta.dcm", "pydicom_ExplVR_BigEndNoMeta.dcm"] {
        assert!(dicom::looks_like_dicom(&read(name)), "{name}");
    }
}

#[test]
fn identity_pseudonymises_the_patient_id() {
    let file = dicom::open(&read("syn_gray8.dcm")).unwrap();
    let keyed = file.identity(Some(b"site key"));
    assert_eq!(keyed.patient_id.as_deref(), Some(dicom::pseudonym(b"site key", "EFEN-0001").as_str()));
    assert_eq!(keyed.patient_id_form, dicom::PatientIdForm::HmacSha256);
    assert_eq!(file.identity(None).patient_id, None);
    assert_eq!(file.identity(None).patient_id_form, dicom::PatientIdForm::Withheld);
    let raw = file.identity_with_raw_patient_id();
    assert_eq!(raw.patient_id.as_deref(), Some("EFEN-0001"));
    assert_eq!(keyed.accession_number.as_deref(), Some("ACC-0001"));
    assert_eq!(keyed.transfer_syntax.uid, "1.2.840.10008.1.2.1");
    assert_eq!(keyed.pixel_spacing, Some([0.5, 0.5]));
    let json = serde_json::to_value(&keyed).unwrap();
    assert_eq!(json["patient_id_form"], "hmac-sha256");
    assert!(!json.to_string().contains("EFEN-0001"));
}

// --- SEG ---------------------------------------------------------------------------------------

fn circle_mask(file: &dicom::DicomFile) -> GrayImage {
    let (w, h) = (file.columns(), file.rows());
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f64 - w as f64 / 2.0, y as f64 - h as f64 / 3.0);
        Luma([if dx * dx + dy * dy < (w.min(h) as f64 / 4.0).powi(2) { 255 } else { 0 }])
    })
}

/// Reads the SEG back with pydicom and checks its one frame equals the mask.
fn pydicom_reads_back(seg: &Path, mask: &GrayImage) {
    let raw = seg.with_extension("mask");
    std::fs::write(&raw, mask.as_raw().iter().map(|v| u8::from(*v != 0)).collect::<Vec<u8>>()).unwrap();
    let script = r#"
import sys, numpy as np, pydicom
ds = pydicom.dcmread(sys.argv[1])
assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", ds.SOPClassUID
assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
mask = np.fromfile(sys.argv[2], dtype=np.uint8).reshape(ds.Rows, ds.Columns)
assert frames.shape[0] == 1, frames.shape
assert (frames[0] == mask).all(), int((frames[0] != mask).sum())
print("ok", int(mask.sum()))
"#;
    let output = Command::new(common::venv_python())
        .args(["-c", script])
        .arg(seg)
        .arg(&raw)
        .output()
        .unwrap_or_else(|e| panic!("python: {e}; run {FIXTURE_SCRIPT} to set up the venv with pydicom"));
    assert!(
        output.status.success(),
        "pydicom could not read {} back:\n{}{}",
        seg.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn seg_objects_pass_dciodvfy_and_read_back_in_pydicom() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    // With geometry (frame of reference, plane position/orientation, pixel spacing), without
    // (secondary capture from img2dcm), CT and MR, a frame of a multi-frame image, a colour JPEG.
    for (name, frame) in [
        ("syn_gray8.dcm", 0),
        ("img2dcm_case05_bmp.dcm", 0),
        ("pydicom_CT_small.dcm", 0),
        ("pydicom_MR_small.dcm", 0),
        ("syn_gray8_3frames.dcm", 2),
        ("syn_enhanced_ct.dcm", 1),
        ("pydicom_examples_ybr_color.dcm", 4),
        ("dcmtk_rgb8_jpeg_baseline.dcm", 0),
    ] {
        let source = dicom::open(&read(name)).unwrap();
        let mask = circle_mask(&source);
        let seg = dicom::write_seg(
            &source,
            frame,
            &mask,
            &SegConfig::default(),
            &dicom::SegOrigin::new(&"ab12".repeat(16), "test"),
        )
        .unwrap();
        let path = dir.path().join(name.replace(".dcm", ".seg.dcm"));
        std::fs::write(&path, &seg).unwrap();
        let errors = dciodvfy_errors(&path);
        if !errors.is_empty() {
            problems.push(format!("{name}:\n  {}", errors.join("\n  ")));
        }
        pydicom_reads_back(&path, &mask);
        // Our own reader opens it too, and sees the mask.
        let back = dicom::open(&seg).unwrap();
        let samples = back.frame_samples(0).unwrap();
        assert!(samples.values.iter().zip(mask.as_raw()).all(|(a, b)| (*a != 0) == (*b != 0)), "{name}");
        let identity = back.identity_with_raw_patient_id();
        let source_identity = source.identity_with_raw_patient_id();
        assert_eq!(identity.study_instance_uid, source_identity.study_instance_uid, "{name}");
        assert_ne!(identity.series_instance_uid, source_identity.series_instance_uid, "{name}");
        assert_eq!(identity.patient_id, source_identity.patient_id, "{name}");
        if name == "syn_enhanced_ct.dcm" {
            // Geometry comes from the source's functional groups for that frame.
            let position = back.object().element_by_name("PerFrameFunctionalGroupsSequence").unwrap().items().unwrap()
                [0]
            .element_by_name("PlanePositionSequence")
            .unwrap()
            .items()
            .unwrap()[0]
                .element_by_name("ImagePositionPatient")
                .unwrap()
                .to_multi_float64()
                .unwrap();
            assert_eq!(position, vec![-100.0, -100.0, 2.0]);
        }
    }
    assert!(problems.is_empty(), "dciodvfy found errors:\n{}", problems.join("\n"));
}

#[test]
fn empty_masks_are_no_findings_unless_write_empty() {
    let source = dicom::open(&read("syn_gray8.dcm")).unwrap();
    let empty = GrayImage::new(source.columns(), source.rows());
    let error =
        dicom::write_seg(&source, 0, &empty, &SegConfig::default(), &dicom::SegOrigin::new("ab", "test")).unwrap_err();
    assert!(error.is_no_findings(), "{error}");
    let settings = SegConfig { write_empty: true, ..SegConfig::default() };
    let seg = dicom::write_seg(&source, 0, &empty, &settings, &dicom::SegOrigin::new("ab", "test")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.seg.dcm");
    std::fs::write(&path, &seg).unwrap();
    assert_eq!(dciodvfy_errors(&path), Vec::<String>::new());
    pydicom_reads_back(&path, &empty);

    let wrong = GrayImage::new(7, 5);
    let error =
        dicom::write_seg(&source, 0, &wrong, &SegConfig::default(), &dicom::SegOrigin::new("ab", "test")).unwrap_err();
    assert!(error.to_string().starts_with("mask is 7×5 but the source image is"), "{error}");
    let bad_label = SegConfig { content_label: "lower case".into(), ..SegConfig::default() };
    assert!(
        dicom::write_seg(&source, 0, &circle_mask(&source), &bad_label, &dicom::SegOrigin::new("ab", "test")).is_err()
    );
}

#[test]
fn seg_settings_read_from_toml_with_defaults() {
    let settings: SegConfig = toml::from_str(
        r#"
        segment_label = "polyp"
        write_empty = true
        [category]
        value = "49755003"
        scheme = "SCT"
        meaning = "Morphologically Altered Structure"
        "#,
    )
    .unwrap();
    assert_eq!(settings.segment_label, "polyp");
    assert!(settings.write_empty);
    assert_eq!(settings.algorithm_name, "EFEN");
    assert!(toml::from_str::<SegConfig>("segment_lable = \"x\"").is_err());
}
