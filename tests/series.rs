//! Series geometry on real series (scripts/series-fixtures.sh, made with pydicom and highdicom,
//! checked by dciodvfy): efen's stacks and slice order equal what the fixture script wrote into
//! its manifest, for shuffled files, shuffled frames of an Enhanced MR, two orientations in one
//! series, and a series with a missing slice. Then efen's multi-frame SEG and NIfTI of a stack
//! are judged by peers: dciodvfy, highdicom, nibabel and numpy (tests/series_check.py).

mod common;

use std::path::{Path, PathBuf};

use efen::dicom::{self, SliceHeader};

fn series() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/series");
    assert!(dir.join("manifest.json").is_file(), "run scripts/series-fixtures.sh (scripts/test.sh does)");
    dir
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(series().join("manifest.json")).unwrap()).unwrap()
}

/// Every slice of a fixture (a folder of instances, or one multi-frame file): its SOP Instance UID,
/// its 1-based frame number and its header.
fn slices(path: &Path) -> Vec<(String, u32, SliceHeader)> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let parsed = dicom::open(&std::fs::read(&file).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let uid = parsed.identity(None).sop_instance_uid.unwrap();
        for frame in 0..parsed.frame_count() {
            out.push((uid.clone(), frame + 1, SliceHeader::of(&parsed, frame)));
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn shuffled_files_become_one_stack_in_spatial_order() {
    let manifest = manifest();
    for name in ["ct_sphere", "gap"] {
        let fixture = &manifest["fixtures"][name];
        let slices = slices(&series().join(fixture["path"].as_str().unwrap()));
        let headers: Vec<SliceHeader> = slices.iter().map(|s| s.2.clone()).collect();
        let stacks = dicom::stacks(&headers);
        assert_eq!(stacks.len(), 1, "{name}");
        let expected = &fixture["expected_stacks"][0];
        let order: Vec<&str> = stacks[0].slices.iter().map(|&i| slices[i].0.as_str()).collect();
        let wanted: Vec<&str> =
            expected["slice_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(order, wanted, "{name}: slice order");
        let spacing = stacks[0].spacing.unwrap();
        assert!(close(spacing, 2.5), "{name}: spacing {spacing}");
        match name {
            "gap" => assert!(
                stacks[0].warnings.len() == 1 && stacks[0].warnings[0].contains("gap of 5.00 mm"),
                "{:?}",
                stacks[0].warnings
            ),
            _ => assert!(stacks[0].warnings.is_empty(), "{name}: {:?}", stacks[0].warnings),
        }
    }
}

#[test]
fn the_frames_of_an_enhanced_mr_are_placed_by_their_own_plane_positions() {
    let manifest = manifest();
    let fixture = &manifest["fixtures"]["enhanced_mr"];
    let slices = slices(&series().join(fixture["path"].as_str().unwrap()));
    assert_eq!(slices.len(), 176);
    let headers: Vec<SliceHeader> = slices.iter().map(|s| s.2.clone()).collect();
    let stacks = dicom::stacks(&headers);
    assert_eq!(stacks.len(), 1);
    let order: Vec<u64> = stacks[0].slices.iter().map(|&i| u64::from(slices[i].1)).collect();
    let wanted: Vec<u64> =
        fixture["expected_stacks"][0]["frame_order"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(order, wanted, "frames in spatial order");
    assert!(stacks[0].warnings.is_empty(), "{:?}", stacks[0].warnings);
    // The NIfTI affine's slice axis follows the normal the manifest gives, by the slice spacing.
    let planes: Vec<&dicom::SlicePlane> =
        stacks[0].slices.iter().map(|&i| headers[i].plane.as_ref().unwrap()).collect();
    let affine = dicom::nifti_affine(&planes).unwrap();
    let normal = &fixture["expected_stacks"][0]["normal"];
    let spacing = fixture["expected_stacks"][0]["spacing_between_slices"].as_f64().unwrap();
    for (axis, sign) in [(0, -1.0), (1, -1.0), (2, 1.0)] {
        assert!(close(affine[axis][2], sign * normal[axis].as_f64().unwrap() * spacing), "{affine:?}");
    }
}

#[test]
fn two_orientations_in_one_series_are_two_stacks() {
    let manifest = manifest();
    let fixture = &manifest["fixtures"]["two_orientations"];
    let slices = slices(&series().join(fixture["path"].as_str().unwrap()));
    let headers: Vec<SliceHeader> = slices.iter().map(|s| s.2.clone()).collect();
    let stacks = dicom::stacks(&headers);
    assert_eq!(stacks.len(), 2);
    for expected in fixture["expected_stacks"].as_array().unwrap() {
        let wanted: Vec<&str> =
            expected["slice_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let stack = stacks
            .iter()
            .find(|s| slices[s.slices[0]].0 == wanted[0])
            .unwrap_or_else(|| panic!("no stack starts with {}", wanted[0]));
        let order: Vec<&str> = stack.slices.iter().map(|&i| slices[i].0.as_str()).collect();
        assert_eq!(order, wanted);
        assert!(stack.distinct.as_deref().unwrap().starts_with("orientation "), "{:?}", stack.distinct);
    }
}

/// Writes efen's SEG (and NIfTI) for a stack whose masks are the fixture's ground truth (read from
/// its highdicom SEG), then has the peers judge them: dciodvfy, highdicom (every frame placed and
/// referenced right), nibabel (the NIfTI's geometry and voxels), and a 3D Dice of 1 against the
/// fixture's numpy truth.
fn seg_and_nifti_pass_the_peers(name: &str) {
    let manifest = manifest();
    let fixture = &manifest["fixtures"][name];
    let source = series().join(fixture["path"].as_str().unwrap());
    let truth_seg = std::fs::read(series().join(fixture["seg"]["file"].as_str().unwrap())).unwrap();
    let files: Vec<PathBuf> = if source.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&source).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    } else {
        vec![source.clone()]
    };
    let parsed: Vec<dicom::DicomFile> =
        files.iter().map(|f| dicom::open(&std::fs::read(f).unwrap()).unwrap()).collect();
    let mut slices = Vec::new(); // (file index, frame)
    for (f, file) in parsed.iter().enumerate() {
        slices.extend((0..file.frame_count()).map(|frame| (f, frame)));
    }
    let headers: Vec<SliceHeader> = slices.iter().map(|&(f, frame)| SliceHeader::of(&parsed[f], frame)).collect();
    let stack = &dicom::stacks(&headers)[0];
    let masks: Vec<image::GrayImage> = stack
        .slices
        .iter()
        .map(|&i| {
            let (f, frame) = slices[i];
            let uid = parsed[f].identity(None).sop_instance_uid.unwrap();
            dicom::seg_mask(&truth_seg, &uid, frame + 1)
                .unwrap_or_else(|_| image::GrayImage::new(parsed[f].columns(), parsed[f].rows()))
        })
        .collect();
    let seg_slices: Vec<dicom::SegSlice> = stack
        .slices
        .iter()
        .zip(&masks)
        .map(|(&i, mask)| dicom::SegSlice { source: &parsed[slices[i].0], frame: slices[i].1, mask })
        .collect();
    let bytes =
        dicom::write_series_seg(&seg_slices, stack.spacing, &dicom::SegConfig::default(), "ab".repeat(32).as_str())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("seg.dcm");
    std::fs::write(&seg, &bytes).unwrap();

    let planes: Vec<&dicom::SlicePlane> = stack.slices.iter().map(|&i| headers[i].plane.as_ref().unwrap()).collect();
    let (columns, rows) = masks[0].dimensions();
    let voxels: Vec<u8> = masks.iter().flat_map(|m| m.as_raw().iter().map(|v| u8::from(*v > 0))).collect();
    let volume = efen::output::nifti::MaskVolume {
        dims: [columns as usize, rows as usize, masks.len()],
        voxels: &voxels,
        affine: dicom::nifti_affine(&planes).unwrap(),
    };
    let nifti = dir.path().join("mask.nii.gz");
    efen::output::nifti::write_nifti_gz(&nifti, &volume).unwrap();

    let truth = series().join(fixture["truth"].as_str().unwrap());
    let output = std::process::Command::new(common::venv_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/series_check.py"))
        .args([&seg, &source])
        .arg("--nifti")
        .arg(&nifti)
        .arg("--truth")
        .arg(&truth)
        .args(["--min-dsc", "0.9999"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "series_check.py on {name}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    eprintln!("series_check.py on {name}: {report}");
    assert_eq!(report["truth"]["dsc"], 1.0, "{report}");
}

#[test]
fn a_series_seg_of_a_shuffled_ct_passes_dciodvfy_highdicom_and_nibabel() {
    seg_and_nifti_pass_the_peers("ct_sphere");
}

#[test]
fn a_series_seg_of_an_enhanced_mr_references_its_frames() {
    seg_and_nifti_pass_the_peers("enhanced_mr");
}
