//! Issue 25 through the real binary, judged by peers: a series is its distinct instances (by SOP
//! Instance UID), a 4D CT told apart only by Acquisition Number is one stack per time point
//! (dcm2niix agrees), a gap keeps its true spacing in `mask.nii.gz` (nibabel, dcmqi), a tilted
//! series' volume has no qform to contradict its sheared sform, and a localizer in a CT series
//! sent by C-STORE gets no SEG, while the series re-sent, and one instance of it re-sent in
//! another transfer syntax, only ever give SEGs of its distinct instances (Orthanc as the PACS).

mod common;
mod node_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Backend, World, count, stderr};
use node_support::{Orthanc, dcmtk, free_port, wait_listening};

fn series() -> PathBuf {
    let dir = common::repo().join("tests/fixtures/series");
    assert!(dir.join("manifest.json").is_file(), "run scripts/series-fixtures.sh (scripts/test.sh does)");
    dir
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(series().join("manifest.json")).unwrap()).unwrap()
}

/// Every succeeded case's `result.json`, in stack order.
fn results(world: &World) -> Vec<serde_json::Value> {
    let mut found: Vec<serde_json::Value> = std::fs::read_dir(world.out())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("result.json")).ok())
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .collect();
    found.sort_by_key(|r| r["series"]["stack"].as_u64());
    found
}

fn case_dir(world: &World, result: &serde_json::Value) -> PathBuf {
    world.out().join(result["case_id"].as_str().unwrap())
}

/// nibabel's view of a NIfTI file: shape, sform and codes, and the world positions (RAS, mm,
/// rounded to 0.01) of the centres of the 8 corner voxels of each 3D volume in it.
fn nibabel(path: &Path) -> serde_json::Value {
    let script = r#"
import itertools, json, sys
import nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
shape = img.shape
volumes = shape[3] if len(shape) > 3 else 1
corners = [sorted([round(float(v), 2) for v in img.affine @ [i, j, k, 1]][:3]
                  for i, j, k in itertools.product(*[(0, n - 1) for n in shape[:3]]))]
data = np.asanyarray(img.dataobj)
print(json.dumps({"shape": list(shape), "affine": img.affine.tolist(),
                  "sform_code": int(img.header["sform_code"]), "qform_code": int(img.header["qform_code"]),
                  "volumes": volumes, "corners": corners,
                  "empty_planes": [int(k) for k in range(shape[2]) if len(shape) == 3 and not data[:, :, k].any()]}))
"#;
    let output = Command::new(common::venv_python()).arg("-c").arg(script).arg(path).output().unwrap();
    assert!(output.status.success(), "nibabel on {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// 30 slices: 3 time points × 10 positions, told apart by nothing but Acquisition Number (and
/// Time). efen makes 3 stacks of 10; dcm2niix makes one 128×128×10×3 volume of the same voxels.
#[tokio::test]
async fn a_4d_ct_told_apart_by_acquisition_number_is_one_stack_per_time_point() {
    let world = World::new(Backend::Sqlite).await;
    let source = series().join("ct_4d");
    let output = world.run(&["run", source.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let results = results(&world);
    assert_eq!(results.len(), 3, "one case per time point: {}", stderr(&output));

    let converted = tempfile::tempdir().unwrap();
    let dcm2niix = Command::new("dcm2niix")
        .args(["-z", "y", "-b", "n", "-f", "ct4d", "-o"])
        .arg(converted.path())
        .arg(&source)
        .output()
        .expect("dcm2niix (Debian dcm2niix; scripts/system-packages.sh)");
    assert!(dcm2niix.status.success(), "dcm2niix: {}", String::from_utf8_lossy(&dcm2niix.stdout));
    let peer = nibabel(&converted.path().join("ct4d.nii.gz"));
    assert_eq!(peer["shape"], serde_json::json!([128, 128, 10, 3]), "{peer}");

    let (mut volumes, mut time_points) = (Vec::new(), Vec::new());
    for result in &results {
        let series = &result["series"];
        assert_eq!((series["slices"].as_u64(), series["stacks"].as_u64()), (Some(10), Some(3)), "{result}");
        let reason = series["stack_reason"].as_str().unwrap();
        time_points
            .push(reason.rsplit_once("acquisition ").map(|(_, n)| n.to_string()).unwrap_or_else(|| panic!("{reason}")));
        assert!(series["geometry_warnings"].as_array().unwrap().is_empty(), "no shared positions: {series}");
        let dir = case_dir(&world, result);
        let ours = nibabel(&dir.join("mask.nii.gz"));
        assert_eq!(ours["shape"], serde_json::json!([128, 128, 10]), "{ours}");
        assert_eq!(ours["corners"], peer["corners"], "efen's and dcm2niix's voxels lie at the same places");
        // The peer check knows no time points: it gets the instances this SEG's time point has.
        let time_point = instances_of(&dir.join("seg.dcm"), &source);
        let report = common::series_check(
            &dir.join("seg.dcm"),
            time_point.path(),
            &["--nifti", dir.join("mask.nii.gz").to_str().unwrap()],
        );
        assert_eq!(report["nifti"]["slices_matched"], 10, "{report}");
        volumes.push(series["volume_ml"].as_f64().unwrap());
    }
    time_points.sort();
    assert_eq!(time_points, ["1", "2", "3"], "one stack per Acquisition Number");
    eprintln!("ct_4d: volumes per time point {volumes:?} mL");
    world.close().await;
}

/// 12 slices of a 13-slice grid: the volume keeps the 2.5 mm spacing with an empty plane where the
/// slice is missing, where the SEG (and dcmqi's conversion of it) puts nothing.
#[tokio::test]
async fn a_gap_keeps_its_true_spacing_in_the_volume() {
    let world = World::new(Backend::Sqlite).await;
    let source = series().join("gap");
    let output = world.run(&["run", source.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result = &results(&world)[0];
    let dir = case_dir(&world, result);
    let nifti = dir.join("mask.nii.gz");
    let report = common::series_check(&dir.join("seg.dcm"), &source, &["--nifti", nifti.to_str().unwrap(), "--dcmqi"]);
    assert_eq!(report["nifti"]["shape"], serde_json::json!([128, 128, 13]), "{report}");
    assert_eq!(report["nifti"]["slices_matched"], 12, "{report}");
    assert_eq!(report["nifti"]["extra_slices"], 1, "the missing slice is one empty plane: {report}");
    let volume = nibabel(&nifti);
    assert!((volume["affine"][2][2].as_f64().unwrap() - 2.5).abs() < 1e-4, "the true spacing: {volume}");
    assert!(volume["empty_planes"].as_array().unwrap().contains(&serde_json::json!(6)), "{volume}");
    world.close().await;
}

/// A gantry tilt: the sform holds the sheared slice axis; the qform, which cannot, is unset, so a
/// reader of either finds the voxels where they are.
#[tokio::test]
async fn a_tilted_series_has_a_sheared_sform_and_no_qform_to_contradict_it() {
    let world = World::new(Backend::Sqlite).await;
    let source = series().join("tilt");
    let output = world.run(&["run", source.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result = &results(&world)[0];
    let warnings = result["series"]["geometry_warnings"].to_string();
    assert!(warnings.contains("gantry tilt"), "{warnings}");
    let dir = case_dir(&world, result);
    let nifti = dir.join("mask.nii.gz");
    let report = common::series_check(&dir.join("seg.dcm"), &source, &["--nifti", nifti.to_str().unwrap()]);
    assert_eq!((report["nifti"]["sform_code"].as_i64(), report["nifti"]["qform_code"].as_i64()), (Some(1), Some(0)));
    assert_eq!(report["nifti"]["slices_matched"], 12, "{report}");
    let volume = nibabel(&nifti);
    // LPS +0.5 mm in y per slice is RAS −0.5.
    assert!((volume["affine"][1][2].as_f64().unwrap() + 0.5).abs() < 1e-4, "the shear is kept: {volume}");
    world.close().await;
}

/// A source whose column direction is 0.9995 long (a private MR's rounding): the stack is built
/// with it normalised, the case says so, and the SEG carries unit vectors that dciodvfy accepts.
#[tokio::test]
async fn an_orientation_off_unit_length_is_normalised_into_the_seg() {
    let world = World::new(Backend::Sqlite).await;
    let source = series().join("unnormalised");
    let output = world.run(&["run", source.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result = &results(&world)[0];
    assert_eq!(result["series"]["slices"], 6, "{result}");
    let warnings = result["series"]["geometry_warnings"].to_string();
    assert!(warnings.contains("6 slice(s) was not of unit length: normalised"), "{warnings}");
    let seg = case_dir(&world, result).join("seg.dcm");
    let report = common::series_check(&seg, &source, &[]);
    assert_eq!(report["dciodvfy"]["errors"], 0, "{report}");
    world.close().await;
}

/// `efen run` on a series with one instance twice, the second copy in another transfer syntax:
/// still 24 slices, and the case says which copy it took.
#[tokio::test]
async fn a_second_copy_of_an_instance_adds_no_slice() {
    let world = World::new(Backend::Sqlite).await;
    let folder = world.dir.path().join("resent");
    std::fs::create_dir_all(&folder).unwrap();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(series().join("ct_sphere")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for file in &files {
        std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
    }
    let copy = folder.join("zz-again.dcm");
    let (code, text) = dcmtk("dcmconv", &["+tb", files[0].to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code, Some(0), "dcmconv: {text}");
    let output = world.run(&["run", folder.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let results = results(&world);
    assert_eq!(results.len(), 1);
    let series = &results[0]["series"];
    assert_eq!((series["slices"].as_u64(), series["instances"].as_u64()), (Some(24), Some(24)), "{series}");
    let warnings = series["geometry_warnings"].to_string();
    assert!(warnings.contains("came again in Explicit VR Big Endian"), "{warnings}");
    common::series_check(&case_dir(&world, &results[0]).join("seg.dcm"), &series_dir_of(&files), &[]);
    world.close().await;
}

/// A folder with the files of `source` that the SEG references (by SOP Instance UID).
fn instances_of(seg: &Path, source: &Path) -> tempfile::TempDir {
    let seg = dicom_object::open_file(seg).unwrap();
    let referenced: Vec<String> = seg
        .element(dicom_dictionary_std::tags::REFERENCED_SERIES_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .iter()
        .flat_map(|series| {
            series.element(dicom_dictionary_std::tags::REFERENCED_INSTANCE_SEQUENCE).unwrap().items().unwrap().to_vec()
        })
        .map(|item| {
            let uid = item.element(dicom_dictionary_std::tags::REFERENCED_SOP_INSTANCE_UID).unwrap();
            uid.to_str().unwrap().trim_end_matches('\0').to_string()
        })
        .collect();
    let folder = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap().flatten() {
        if referenced.contains(&sop_instance_uid(&entry.path())) {
            std::fs::copy(entry.path(), folder.path().join(entry.file_name())).unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), referenced.len());
    folder
}

fn sop_instance_uid(file: &Path) -> String {
    let object = dicom_object::open_file(file).unwrap();
    object
        .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

fn series_dir_of(files: &[PathBuf]) -> PathBuf {
    files[0].parent().unwrap().to_path_buf()
}

/// The PACS's side of a series case: each SEG in Orthanc references as many instances as it has
/// frames at distinct positions, and as many as the series has distinct instances (12).
fn assert_segs_reference_the_distinct_instances(orthanc: &Orthanc, expected: usize) {
    for (id, tags) in orthanc.segs() {
        let referenced = tags["ReferencedSeriesSequence"][0]["ReferencedInstanceSequence"].as_array().unwrap().len();
        assert_eq!(referenced, 12, "SEG {id} references the 12 axial instances, not the localizer");
        let seg = orthanc.try_get(&format!("/instances/{id}/file")).unwrap();
        let frames = node_support::seg_frames(&seg);
        let mut sources: Vec<&String> = frames.iter().map(|(sop, _)| sop).collect();
        sources.dedup();
        assert_eq!(sources.len(), frames.len(), "one frame per instance in SEG {id}");
    }
    assert_eq!(orthanc.segs().len(), expected, "SEGs in Orthanc");
}

/// C-STORE from dcmtk's storescu into efen's node, SEGs to Orthanc: a CT with a localizer gives one
/// SEG of its 12 axial images; the same series again gives none; one instance again in another
/// transfer syntax (`storescu -xi`) gives a SEG of 12 instances again, never 13.
#[tokio::test]
async fn a_resent_series_never_grows_and_its_localizer_gets_no_seg() {
    let world = World::new(Backend::Postgres).await;
    let pool = world.pool().await;
    let port = free_port();
    let orthanc = Orthanc::start(port).await;
    let destination = format!(r#"["ORTHANC@127.0.0.1:{}"]"#, orthanc.dicom_port);
    let listen = format!("127.0.0.1:{port}");
    // Every SEG frame, empty or not, so that frames and instances can be counted alike.
    let pipeline = world.pipeline("all-frames", "[dicom.seg]\nwrite_empty = true");
    let child = world.watch(
        &[
            ("EFEN_NODE__LISTEN", listen.as_str()),
            ("EFEN_NODE__SERIES_QUIET_MS", "1000"),
            ("EFEN_WATCH__SERIES_QUIET_MS", "1000"),
            ("EFEN_NODE__DESTINATIONS", destination.as_str()),
            ("EFEN_PATHS__DEFAULT_PIPELINE", pipeline.to_str().unwrap()),
        ],
        "node",
    );
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen\n{}", world.logs());
    let manifest = manifest();
    let fixture = &manifest["fixtures"]["with_localizer"];
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(series().join("with_localizer")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let send = |args: &[&str], files: &[PathBuf]| {
        let mut all: Vec<String> = ["-aet", "MODALITY", "-aec", "EFEN"].iter().map(|s| s.to_string()).collect();
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(["127.0.0.1".to_string(), port.to_string()]);
        all.extend(files.iter().map(|f| f.display().to_string()));
        let (code, text) = dcmtk("storescu", &all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, Some(0), "storescu: {text}");
    };
    let accepted = async |n: i64| {
        world
            .wait_for(&format!("{n} SEG(s) accepted by Orthanc"), Duration::from_secs(120), async || {
                count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'seg' AND status = 'accepted'").await == n
            })
            .await;
    };

    send(&[], &files);
    accepted(1).await;
    assert_segs_reference_the_distinct_instances(&orthanc, 1);
    let localizer = fixture["localizer_sop_instance_uid"].as_str().unwrap();
    let series_uid = fixture["series_instance_uid"].as_str().unwrap();
    let ignored = world.state().join("ignored").join(series_uid).join(format!("{localizer}.dcm"));
    assert!(ignored.is_file(), "the localizer is set aside, not segmented");

    // The same 13 instances again: nothing new to segment, nothing new sent.
    send(&[], &files);
    world
        .wait_for("the repeat to be recorded", Duration::from_secs(60), async || {
            count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'series_received'").await == 2
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'seg'").await, 1, "{}", world.logs());

    // One axial instance again, proposed in Implicit VR Little Endian only: other bytes, the same
    // instance. The new case is the 12 instances again.
    let axial = files.iter().find(|f| sop_instance_uid(f) != localizer).unwrap();
    send(&["-xi"], std::slice::from_ref(axial));
    accepted(2).await;
    assert_segs_reference_the_distinct_instances(&orthanc, 2);
    let frames: Vec<i64> = sqlx::query_scalar("SELECT CAST(frames AS BIGINT) FROM dicom_series ORDER BY frames")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(frames, [12, 12], "both cases are the 12 distinct axial instances");
    // The newer SEG follows the one it supersedes in the same SEG series, and the store says which
    // result stands; the earlier stays for audit.
    let mut numbers: Vec<(String, String)> = orthanc
        .segs()
        .iter()
        .map(|(_, tags)| {
            (
                tags["SeriesInstanceUID"].as_str().unwrap().to_string(),
                tags["InstanceNumber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    numbers.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(numbers[0].0, numbers[1].0, "one SEG series for the source series");
    assert_eq!((numbers[0].1.as_str(), numbers[1].1.as_str()), ("1", "2"), "{numbers:?}");
    let current: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT CAST(r.is_current AS BIGINT), CAST(s.frames AS BIGINT) FROM case_results r
         JOIN dicom_series s ON s.case_id = r.case_id ORDER BY r.created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(current, [(0, 12), (1, 12)], "the later case stands");

    common::http::stop(&world, child).await;
    pool.close().await;
    world.close().await;
}
