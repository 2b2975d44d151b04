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

/// A fixture (a folder of instances, or one multi-frame file), parsed, and every slice of it: its
/// file and frame (from 0), and its header.
struct Fixture {
    files: Vec<dicom::DicomFile>,
    slices: Vec<(usize, u32)>,
    headers: Vec<SliceHeader>,
}

impl Fixture {
    fn load(path: &Path) -> Fixture {
        let mut paths: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect()
        } else {
            vec![path.to_path_buf()]
        };
        paths.sort();
        let files: Vec<dicom::DicomFile> = paths
            .iter()
            .map(|p| dicom::open(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .collect();
        let slices: Vec<(usize, u32)> = files
            .iter()
            .enumerate()
            .flat_map(|(f, file)| (0..file.frame_count()).map(move |frame| (f, frame)))
            .collect();
        let headers = slices.iter().map(|&(f, frame)| SliceHeader::of(&files[f], frame)).collect();
        Fixture { files, slices, headers }
    }

    /// The SOP Instance UID of slice `i`.
    fn uid(&self, i: usize) -> String {
        self.files[self.slices[i].0].identity(None).sop_instance_uid.unwrap()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn shuffled_files_become_one_stack_in_spatial_order() {
    let manifest = manifest();
    for name in ["ct_sphere", "gap"] {
        let fixture = &manifest["fixtures"][name];
        let fixture_files = Fixture::load(&series().join(fixture["path"].as_str().unwrap()));
        let stacks = dicom::stacks(&fixture_files.headers);
        assert_eq!(stacks.len(), 1, "{name}");
        let expected = &fixture["expected_stacks"][0];
        let order: Vec<String> = stacks[0].slices.iter().map(|&i| fixture_files.uid(i)).collect();
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
    let mr = Fixture::load(&series().join(fixture["path"].as_str().unwrap()));
    assert_eq!(mr.slices.len(), 176);
    let headers = &mr.headers;
    let stacks = dicom::stacks(headers);
    assert_eq!(stacks.len(), 1);
    // 1-based frame numbers, as the manifest gives them.
    let order: Vec<u64> = stacks[0].slices.iter().map(|&i| u64::from(mr.slices[i].1 + 1)).collect();
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
    let two = Fixture::load(&series().join(fixture["path"].as_str().unwrap()));
    let stacks = dicom::stacks(&two.headers);
    assert_eq!(stacks.len(), 2);
    for expected in fixture["expected_stacks"].as_array().unwrap() {
        let wanted: Vec<&str> =
            expected["slice_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let stack = stacks
            .iter()
            .find(|s| two.uid(s.slices[0]) == wanted[0])
            .unwrap_or_else(|| panic!("no stack starts with {}", wanted[0]));
        let order: Vec<String> = stack.slices.iter().map(|&i| two.uid(i)).collect();
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
    let fx = Fixture::load(&source);
    let (parsed, slices, headers) = (&fx.files, &fx.slices, &fx.headers);
    let stack = &dicom::stacks(headers)[0];
    let masks: Vec<image::GrayImage> = stack
        .slices
        .iter()
        .map(|&i| {
            let (f, frame) = slices[i];
            dicom::seg_mask(&truth_seg, &fx.uid(i), frame + 1)
                .unwrap_or_else(|_| image::GrayImage::new(parsed[f].columns(), parsed[f].rows()))
        })
        .collect();
    let packed: Vec<efen::postprocess::PackedMask> =
        masks.iter().map(efen::postprocess::PackedMask::from_gray).collect();
    let seg_slices: Vec<dicom::SegSlice> = stack
        .slices
        .iter()
        .zip(&packed)
        .map(|(&i, mask)| dicom::SegSlice { source: &parsed[slices[i].0], frame: slices[i].1, mask })
        .collect();
    let bytes = dicom::write_series_seg(
        &seg_slices,
        stack.spacing,
        &dicom::SegConfig::default(),
        &dicom::SegOrigin::new(&"ab".repeat(32), "test"),
    )
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
    let extra = ["--nifti", nifti.to_str().unwrap(), "--truth", truth.to_str().unwrap(), "--min-dsc", "0.9999"];
    let report = common::series_check(&seg, &source, &extra);
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
