//! Issue 4 through the real binary: DICOM files in a drop become cases (one per frame), with a
//! `seg.dcm` that an independent validator accepts; files that hold no image fail with a reason.

#[macro_use]
mod common;

use common::fixtures::{self, fixtures};
use common::{Backend, World, count, stderr, stdout};

on_both_backends!(a_dicom_drop_yields_cases_per_frame_and_valid_segs);

async fn a_dicom_drop_yields_cases_per_frame_and_valid_segs(backend: Backend) {
    let world = World::new(backend).await;
    for file in [
        "pydicom_CT_small.dcm",
        "pydicom_SC_rgb_rle_2frame.dcm",
        "dcmtk_gray16_jpegls_lossless.dcm",
        "pydicom_rtplan.dcm",
        "dcmtk_gray12_jpeg_extended12.dcm",
    ] {
        std::fs::copy(fixtures().join(file), world.drop_dir().join(file)).unwrap();
    }
    // With a pseudonym key: the store keeps the keyed hash of the Patient ID, the logs nothing.
    let output = world
        .efen()
        .env("EFEN_DICOM__PSEUDONYM_KEY", "site-secret")
        .args(["run", "--pipeline", world.pipeline("instances", "[dicom]\nunit = \"instance\"").to_str().unwrap()])
        .arg(world.drop_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "two files hold no decodable image");
    let log = stderr(&output);
    assert!(!log.contains("1CT1") && !stdout(&output).contains("1CT1"), "the CT's Patient ID is never printed");
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
    // The identity in the store: by instance and frame, the patient ID as its keyed hash.
    let (modality, frame, form, patient, uid, seg_path): (String, i64, String, String, String, String) =
        sqlx::query_as(
            "SELECT d.modality, d.frame_number, d.patient_id_form, d.patient_id, d.sop_instance_uid, r.seg_path
             FROM dicom_cases d JOIN results r ON r.case_id = d.case_id WHERE d.case_id = $1",
        )
        .bind(&case_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((modality.as_str(), frame, form.as_str()), ("CT", 1, "hmac-sha256"));
    assert_eq!(patient, efen::dicom::pseudonym(b"site-secret", "1CT1"));
    assert!(uid.starts_with("1.3.6.1.4.1.5962"), "{uid}");
    assert!(seg_path.ends_with("seg.dcm"));
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM dicom_cases WHERE sop_instance_uid IS NOT NULL AND frame_number = 2").await,
        1,
        "the second frame of the 2-frame file"
    );
    let case = world.out().join(&case_id);
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(case.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["dicom"]["identity"]["modality"], "CT");
    assert_eq!(result["dicom"]["identity"]["patient_id_form"], "hmac-sha256");
    let seg = case.join("seg.dcm");
    assert!(seg.is_file());
    // dciodvfy (dicom3tools) is the independent judge of the SEG; tests/dicom.rs also reads SEGs
    // back with pydicom and compares their frames with the mask.
    let errors = fixtures::dciodvfy_errors(&seg);
    assert!(errors.is_empty(), "dciodvfy:\n{}", errors.join("\n"));
    // Issue 29: one frame's measurement report (TID 1410): its area is the SEG's foreground
    // pixels times the CT's Pixel Spacing; highdicom builds the same report.
    let report = common::sr_check(
        &case.join("sr.dcm"),
        &seg,
        &case.join("result.json"),
        &["--source", fixtures().join("pydicom_CT_small.dcm").to_str().unwrap(), "--highdicom", "--dcmqi"],
    );
    assert_eq!(report["groups"]["planar"], 1, "{report}");
    assert!(report["area_mm2"].as_f64().unwrap() > 0.0, "{report}");

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

/// A pipeline that makes each DICOM frame a case (these tests are about decoding every file, not
/// series; tests/series.rs has those) and writes a SEG for every case, empty masks included.
fn seg_always(world: &World) -> String {
    world.pipeline("dicom", "[dicom]\nunit = \"instance\"\n[dicom.seg]\nwrite_empty = true").display().to_string()
}

/// Issue 4's "done when": a drop of every fixture through `efen run`. Each file with a decodable
/// image is one succeeded case per frame, with a mask and a seg.dcm that dciodvfy accepts; every
/// other file is one failed case whose line names the file and the reason.
#[tokio::test]
async fn every_fixture_through_efen_run() {
    let world = World::new(Backend::Sqlite).await;
    let entries = fixtures::manifest();
    for entry in &entries {
        std::fs::copy(fixtures().join(&entry.file), world.drop_dir().join(&entry.file)).unwrap();
    }
    let output = world.run(&["run", "--pipeline", &seg_always(&world), world.drop_dir().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "some fixtures hold no decodable image");
    let log = stderr(&output);

    let pool = world.pool().await;
    type Row = (String, String, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.source_path, r.status, r.error_message, r.mask_path, r.seg_path
         FROM cases c JOIN results r ON r.case_id = c.case_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let must_fail = fixtures::expected_failures();
    let mut problems = Vec::new();
    let (mut segs, mut succeeded) = (0, 0);
    let mut seen = std::collections::HashMap::new();
    for entry in &entries {
        let cases: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                let name = r.0.rsplit('/').next().unwrap();
                name == entry.file || name.starts_with(&format!("{}#frame=", entry.file))
            })
            .collect();
        // The pydicom wheel ships two files with the same bytes: the second is a duplicate.
        let bytes = std::fs::read(fixtures().join(&entry.file)).unwrap();
        if let Some(first) = seen.insert(bytes, entry.file.clone()) {
            if !cases.is_empty() || !log.contains(&format!("{}: duplicate", entry.file)) {
                problems.push(format!("{}: same bytes as {first}, expected a duplicate line and no case", entry.file));
            }
            continue;
        }
        // A Segmentation is a result or a ground truth, never an image to segment.
        let seg = entry.sop_class == "1.2.840.10008.5.1.4.1.1.66.4";
        let image_bearing = entry.has_pixel_data && !seg && !must_fail.contains_key(entry.file.as_str());
        if !image_bearing {
            let expected = match must_fail.get(entry.file.as_str()) {
                Some(expected) => *expected,
                None if seg => "this is a DICOM Segmentation",
                None => "",
            };
            let line = log.lines().find(|l| l.contains(&format!("{}: ", entry.file)));
            match (cases.as_slice(), line) {
                ([(_, status, Some(message), _, _)], Some(_))
                    if status == "failed" && message.to_lowercase().contains(&expected.to_lowercase()) => {}
                _ => problems.push(format!("{}: expected one failed case ({expected:?}), got {cases:?}", entry.file)),
            }
            continue;
        }
        let frames = entry.frames.max(1) as usize;
        if cases.len() != frames || cases.iter().any(|c| c.1 != "succeeded") {
            problems.push(format!("{}: expected {frames} succeeded case(s), got {cases:?}", entry.file));
            continue;
        }
        for (_, _, _, mask, seg) in cases {
            succeeded += 1;
            if !mask.as_ref().is_some_and(|m| std::path::Path::new(m).is_file()) {
                problems.push(format!("{}: no mask.png", entry.file));
            }
            let Some(seg) = seg.as_ref().filter(|s| std::path::Path::new(s).is_file()) else {
                problems.push(format!("{}: no seg.dcm", entry.file));
                continue;
            };
            segs += 1;
            let errors = fixtures::dciodvfy_errors(std::path::Path::new(seg));
            if !errors.is_empty() {
                problems.push(format!("{}: dciodvfy on its SEG: {}", entry.file, errors.join("; ")));
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(succeeded >= 100 && segs == succeeded, "{succeeded} succeeded cases, {segs} SEGs");
    // The identity of every DICOM case is in the store, the patient ID withheld without a key.
    let dicom_rows = count(&pool, "SELECT COUNT(*) FROM dicom_cases").await;
    assert!(dicom_rows >= succeeded as i64, "{dicom_rows} dicom_cases rows for {succeeded} succeeded cases");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM dicom_cases WHERE patient_id IS NOT NULL").await, 0);
    pool.close().await;
    world.close().await;
}

/// A DICOM SEG among the inputs of `efen run` is the ground truth of the instance (and frame) it
/// references, whatever its file is called; a SEG whose instance is not in the run fails.
#[tokio::test]
async fn a_dicom_seg_is_ground_truth_for_the_instance_it_references() {
    let sources = ["syn_gray8.dcm", "syn_gray8_3frames.dcm"];
    // efen's own SEGs of the sources are the ground truth of a second run: the masks must agree
    // exactly (DSC 1), which also shows the SEG frames read back pixel for pixel.
    let first = World::new(Backend::Sqlite).await;
    for file in sources {
        std::fs::copy(fixtures().join(file), first.drop_dir().join(file)).unwrap();
    }
    let output = first.run(&["run", "--pipeline", &seg_always(&first), first.drop_dir().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let pool = first.pool().await;
    let segs: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.source_path, r.seg_path FROM cases c JOIN results r ON r.case_id = c.case_id
         WHERE r.seg_path IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(segs.len(), 4, "one SEG per frame");
    pool.close().await;

    let second = World::new(Backend::Sqlite).await;
    for file in sources {
        std::fs::copy(fixtures().join(file), second.drop_dir().join(file)).unwrap();
    }
    for (i, (_, seg)) in segs.iter().enumerate() {
        std::fs::copy(seg, second.drop_dir().join(format!("reading_{i}.dcm"))).unwrap();
    }
    let output = second.run(&["run", "--pipeline", &seg_always(&second), second.drop_dir().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let pool = second.pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, 4, "the SEGs are ground truth, not cases");
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM cases WHERE ground_truth_path LIKE '%reading_%.dcm'").await,
        4,
        "each frame found its SEG"
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results WHERE has_ground_truth AND dsc = 1.0").await, 4);

    // Named by a pattern (how `watch` pairs it), a SEG is ground truth the same way.
    let named = second.dir.path().join("named");
    std::fs::create_dir_all(&named).unwrap();
    std::fs::copy(fixtures().join("syn_gray8.dcm"), named.join("scan.dcm")).unwrap();
    let single_frame_seg = &segs.iter().find(|(source, _)| source.ends_with("/syn_gray8.dcm")).unwrap().1;
    std::fs::copy(single_frame_seg, named.join("scan_seg.dcm")).unwrap();
    // And a PNG mask, as for images: syn_rgb8.dcm is samples/synthetic/case01.png.
    std::fs::copy(fixtures().join("syn_rgb8.dcm"), named.join("colour.dcm")).unwrap();
    std::fs::copy(common::repo().join("samples/synthetic/case01_mask.png"), named.join("colour_mask.png")).unwrap();
    let by_pattern = second.pipeline(
        "by-pattern",
        "[ground_truth]\npatterns = [\"{stem}_seg.dcm\", \"{stem}_mask.png\"]\n[dicom]\nunit = \"instance\"",
    );
    let output = second.run(&["run", "--pipeline", by_pattern.to_str().unwrap(), named.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM case_results WHERE pipeline = 'by-pattern' AND dsc = 1.0").await,
        1,
        "{}",
        stderr(&output)
    );
    assert_eq!(
        count(
            &pool,
            // paired with its own mask; the DSC only rules out a foreign mask (which scores about 0):
            // the bundled model finds part of case01's small, faint lesion (0.42 with its weights now)
            "SELECT COUNT(*) FROM provenance WHERE pipeline = 'by-pattern' AND source_path LIKE '%colour.dcm' \
             AND ground_truth_path LIKE '%colour_mask.png' AND dsc > 0.2"
        )
        .await,
        1
    );
    pool.close().await;

    // A SEG on its own references nothing in the run: a failed case that says what it is.
    let alone = second.dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(&segs[0].1, alone.join("orphan.dcm")).unwrap();
    let output = second.run(&["run", "--pipeline", &seg_always(&second), alone.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("orphan.dcm: decode: this is a DICOM Segmentation"), "{}", stderr(&output));
    first.close().await;
    second.close().await;
}
