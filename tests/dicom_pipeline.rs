//! Issue 4 through the real binary: DICOM files in a drop become cases (one per frame), with a
//! `seg.dcm` that an independent validator accepts; files that hold no image fail with a reason.

mod common;

use common::{Backend, World, count, stderr};

fn fixtures() -> std::path::PathBuf {
    let dir = common::repo().join("tests/fixtures/dicom");
    assert!(dir.join("manifest.json").is_file(), "DICOM fixtures missing: run scripts/dicom-fixtures.sh first");
    dir
}

#[tokio::test]
async fn a_dicom_drop_yields_cases_per_frame_and_valid_segs() {
    let world = World::new(Backend::Sqlite).await;
    for file in [
        "pydicom_CT_small.dcm",
        "pydicom_SC_rgb_rle_2frame.dcm",
        "dcmtk_gray16_jpegls_lossless.dcm",
        "pydicom_rtplan.dcm",
        "dcmtk_gray12_jpeg_extended12.dcm",
    ] {
        std::fs::copy(fixtures().join(file), world.drop_dir().join(file)).unwrap();
    }
    let output = world.run(&["run", world.drop_dir().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "two files hold no decodable image");
    let log = stderr(&output);
    assert!(
        log.contains("pydicom_rtplan.dcm: decode: no pixel data (SOP class 1.2.840.10008.5.1.4.1.1.481.5"),
        "{log}"
    );
    assert!(
        log.contains("dcmtk_gray12_jpeg_extended12.dcm: decode: unsupported transfer syntax 1.2.840.10008.1.2.4.51"),
        "{log}"
    );

    let pool = world.pool().await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await,
        4,
        "CT, two frames, JPEG-LS"
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results WHERE source_path LIKE '%2frame.dcm#frame=_'").await, 2);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'failed' AND error_stage = 'decode'").await,
        2
    );

    let (case_id,): (String,) =
        sqlx::query_as("SELECT case_id FROM case_results WHERE source_path LIKE '%CT_small.dcm'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let case = world.out().join(&case_id);
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(case.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["dicom"]["identity"]["modality"], "CT");
    assert_eq!(result["dicom"]["identity"]["patient_id_form"], "withheld", "no key configured: no patient ID recorded");
    let seg = case.join("seg.dcm");
    assert!(seg.is_file());
    // dciodvfy (dicom3tools) is the independent judge of the SEG; tests/dicom.rs also reads SEGs
    // back with pydicom and compares their frames with the mask.
    let verdict = std::process::Command::new("dciodvfy")
        .arg(&seg)
        .output()
        .expect("dciodvfy (scripts/dicom-fixtures.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&verdict.stdout), String::from_utf8_lossy(&verdict.stderr));
    assert!(!text.lines().any(|l| l.starts_with("Error")), "dciodvfy:\n{text}");

    // A SEG dropped back in is refused, not segmented.
    let again = world.dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::copy(&seg, again.join("seg.dcm")).unwrap();
    let output = world.run(&["run", again.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("seg.dcm: decode: this is a DICOM Segmentation"), "{}", stderr(&output));
    pool.close().await;
    world.close().await;
}
