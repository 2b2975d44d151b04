//! Series geometry on real series (scripts/series-fixtures.sh, made with pydicom and highdicom,
//! checked by dciodvfy): efen's stacks and slice order equal what the fixture script wrote into
//! its manifest, for shuffled files, shuffled frames of an Enhanced MR, two orientations in one
//! series, and a series with a missing slice.

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
