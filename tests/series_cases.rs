//! Issue 12 through the real binary: a DICOM series is one case, one `results` row and one
//! multi-frame SEG, whatever order its files come in, from `efen run` and from `efen watch`'s drop
//! folder. The SEGs and volumes efen writes are judged by peers (tests/series_check.py: dciodvfy,
//! highdicom, nibabel, dcmqi's segimage2itkimage, and numpy for the 3D Dice).

#[macro_use]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Backend, World, count, stderr};

fn series() -> PathBuf {
    let dir = common::repo().join("tests/fixtures/series");
    assert!(dir.join("manifest.json").is_file(), "run scripts/series-fixtures.sh (scripts/test.sh does)");
    dir
}

/// (case id, n_frames, dsc, volume_ml, truth_volume_ml) of the series case whose source path ends
/// with `suffix`.
async fn series_case(pool: &sqlx::AnyPool, suffix: &str) -> (String, i64, Option<f64>, Option<f64>, Option<f64>) {
    sqlx::query_as(
        "SELECT c.case_id, CAST(r.n_frames AS BIGINT), r.dsc, r.volume_ml, r.truth_volume_ml
         FROM cases c JOIN results r ON r.case_id = c.case_id WHERE c.source_path LIKE $1",
    )
    .bind(format!("%{suffix}"))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("one case for {suffix}: {e}"))
}

on_both_backends!(each_series_is_one_case_with_one_seg);

async fn each_series_is_one_case_with_one_seg(backend: Backend) {
    let world = World::new(backend).await;
    let fixtures = series();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("manifest.json")).unwrap()).unwrap();
    let uid = |name: &str| manifest["fixtures"][name]["series_instance_uid"].as_str().unwrap().to_string();
    let inputs: Vec<PathBuf> =
        ["ct_sphere", "ct_sphere_seg.dcm", "enhanced_mr.dcm", "enhanced_mr_seg.dcm", "two_orientations", "gap"]
            .iter()
            .map(|name| fixtures.join(name))
            .collect();
    let mut args = vec!["run".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let output = world.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let pool = world.pool().await;
    // 24 CT slices, 176 Enhanced MR frames, two stacks of one series, one series with a gap; the
    // two ground-truth SEGs are not cases.
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results").await, 5, "{}", stderr(&output));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await, 5);

    // The CT: one case of 24 slices, its 3D Dice and volumes equal what numpy computes from the
    // SEG (read by highdicom) and the fixture's truth volume.
    let (ct, frames, dsc, volume, truth_volume) =
        series_case(&pool, &format!("ct_sphere#series={}", uid("ct_sphere"))).await;
    assert_eq!(frames, 24);
    let out = world.out().join(&ct);
    let report = common::series_check(
        &out.join("seg.dcm"),
        &fixtures.join("ct_sphere"),
        &[
            "--nifti",
            out.join("mask.nii.gz").to_str().unwrap(),
            "--truth",
            fixtures.join("ct_sphere_truth.npy").to_str().unwrap(),
            "--dcmqi",
        ],
    );
    let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() < 1e-6;
    assert!(close(dsc.unwrap(), &report["truth"]["dsc"]), "efen's 3D DSC {dsc:?} vs numpy: {report}");
    assert!(close(volume.unwrap(), &report["truth"]["seg_volume_ml"]), "{volume:?} vs {report}");
    assert!(close(truth_volume.unwrap(), &report["truth"]["truth_volume_ml"]), "{truth_volume:?} vs {report}");
    let (compared,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM series_slices WHERE case_id = $1 AND tp IS NOT NULL")
            .bind(&ct)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(compared, 24, "every slice compared with the ground-truth SEG, empty frames included");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["series"]["slices"], 24);
    assert!(out.join("overlay.png").is_file() && !out.join("mask.png").exists());
    // Issue 29: the measurement report beside the SEG, judged by dciodvfy, highdicom (which also
    // builds the same report from seg.dcm) and dcmqi; its volume is result.json's and its DSC the
    // store's.
    assert_eq!(result["outputs"]["sr"], out.join("sr.dcm").display().to_string());
    let sr = common::sr_check(
        &out.join("sr.dcm"),
        &out.join("seg.dcm"),
        &out.join("result.json"),
        &["--dcmqi", "--highdicom"],
    );
    assert_eq!(sr["groups"]["volumetric"], 1, "{sr}");
    assert!((sr["volume_ml"].as_f64().unwrap() - volume.unwrap()).abs() < 0.01, "{sr}");
    assert!((sr["dsc"].as_f64().unwrap() - dsc.unwrap()).abs() < 1e-9, "the SR's DSC is the store's: {sr}");

    // The Enhanced MR: one file, 176 frames, one case; its SEG names each source frame.
    let (mr, frames, dsc, _, _) = series_case(&pool, &format!("enhanced_mr.dcm#series={}", uid("enhanced_mr"))).await;
    assert_eq!(frames, 176);
    assert!(dsc.is_some(), "the Enhanced MR's ground-truth SEG was used");
    let out = world.out().join(&mr);
    common::series_check(
        &out.join("seg.dcm"),
        &fixtures.join("enhanced_mr.dcm"),
        &[
            "--nifti",
            out.join("mask.nii.gz").to_str().unwrap(),
            "--truth",
            fixtures.join("enhanced_mr_truth.npy").to_str().unwrap(),
        ],
    );

    // Two orientations: two stacks, each a case, each saying why it is apart; their SEGs are
    // instances 1 and 2 of one SEG series (one per source series, pipeline and model).
    let stacks: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT CAST(stack AS BIGINT), stack_reason FROM dicom_series WHERE series_instance_uid = $1 ORDER BY stack",
    )
    .bind(uid("two_orientations"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stacks.len(), 2, "{stacks:?}");
    assert!(
        stacks.iter().all(|(_, reason)| reason.as_deref().is_some_and(|r| r.contains("orientation"))),
        "{stacks:?}"
    );
    let mut seg_series = Vec::new();
    let mut sr_series = Vec::new();
    for n in 1..=2 {
        let (case, _, _, _, _) = series_case(&pool, &format!("#series={}#stack={n}", uid("two_orientations"))).await;
        let out = world.out().join(&case);
        let seg = dicom_object::open_file(out.join("seg.dcm")).unwrap();
        let text = |tag| seg.element(tag).unwrap().to_str().unwrap().trim_end_matches('\0').to_string();
        assert_eq!(text(dicom_dictionary_std::tags::INSTANCE_NUMBER), n.to_string());
        seg_series.push(text(dicom_dictionary_std::tags::SERIES_INSTANCE_UID));
        let report = common::sr_check(&out.join("sr.dcm"), &out.join("seg.dcm"), &out.join("result.json"), &[]);
        sr_series.push(report["series_instance_uid"].as_str().unwrap().to_string());
        common::series_check(
            &out.join("seg.dcm"),
            &fixtures.join("two_orientations"),
            &["--stack", &(n - 1).to_string(), "--nifti", out.join("mask.nii.gz").to_str().unwrap()],
        );
    }
    assert_eq!(seg_series[0], seg_series[1], "one SEG series for the source series");
    assert_eq!(sr_series[0], sr_series[1], "and one SR series beside it");

    // The gap is a warning on the case, not a failure.
    let (warnings,): (Option<String>,) =
        sqlx::query_as("SELECT geometry_warnings FROM dicom_series WHERE series_instance_uid = $1")
            .bind(uid("gap"))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(warnings.as_deref().is_some_and(|w| w.contains("a slice may be missing")), "{warnings:?}");

    // The HTML report shows a series case by its montage and its volume.
    let html = world.dir.path().join("report.html");
    let output = world.run(&["report", "--format", "html", "--out", html.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("the slices with the most foreground"), "the montage is shown");
    assert!(page.contains("24 slices, ") || page.contains("176 slices, "), "a series case says its slices and volume");

    // The same series again (other file names, other order) is the same case, not a new one.
    let copy = world.dir.path().join("again");
    std::fs::create_dir_all(&copy).unwrap();
    for (k, entry) in std::fs::read_dir(fixtures.join("ct_sphere")).unwrap().enumerate() {
        std::fs::copy(entry.unwrap().path(), copy.join(format!("{}.dcm", 1000 - k))).unwrap();
    }
    let output = world.run(&["run", copy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results").await, 5, "{}", stderr(&output));
    // Some of its instances again, on their own: a case of their own, which says that the series
    // was segmented before, and as which case.
    let late = world.dir.path().join("late");
    std::fs::create_dir_all(&late).unwrap();
    for name in common::names(&copy).iter().take(4) {
        std::fs::copy(copy.join(name), late.join(name)).unwrap();
    }
    let output = world.run(&["run", late.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (warnings,): (Option<String>,) =
        sqlx::query_as("SELECT geometry_warnings FROM dicom_series WHERE series_instance_uid = $1 AND frames = 4")
            .bind(uid("ct_sphere"))
            .fetch_one(&pool)
            .await
            .unwrap();
    let warnings = warnings.unwrap_or_default();
    assert!(warnings.contains(&format!("was segmented before (case {ct}, 24 slices)")), "{warnings}");
    pool.close().await;
    world.close().await;
}

/// `efen watch`: the files of a series dropped one by one become one case once the series has been
/// quiet, and go to the series' folder under done/. Instances that come after it was segmented
/// make a case of the whole series again, never a partial one.
#[tokio::test]
async fn a_dropped_series_becomes_one_case_and_late_instances_make_it_whole_again() {
    let world = World::new(Backend::Sqlite).await;
    let mut child = world.watch(&[("EFEN_WATCH__SERIES_QUIET_MS", "1500"), ("EFEN_WATCH__SETTLE_MS", "200")], "watch");
    let source = series().join("ct_sphere");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (now, later) = files.split_at(20);
    let target = world.drop_dir().join("ct");
    std::fs::create_dir_all(&target).unwrap();
    // Half now, half a little later: still one series, as long as the gap is under the quiet time.
    for (k, file) in now.iter().enumerate() {
        std::fs::copy(file, target.join(file.file_name().unwrap())).unwrap();
        if k == now.len() / 2 {
            std::thread::sleep(Duration::from_millis(600));
        }
    }
    let pool = world.pool().await;
    world
        .wait_for("the series case", Duration::from_secs(60), async || {
            common::try_count(&pool, "SELECT COUNT(*) FROM case_results WHERE n_frames = 20").await == Some(1)
        })
        .await;
    // The series' folder under done/: the files are moved there just after the case is recorded.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(series().join("manifest.json")).unwrap()).unwrap();
    let uid = manifest["fixtures"]["ct_sphere"]["series_instance_uid"].as_str().unwrap();
    let done = efen::ingest::disposition::series_done_dir(&world.state(), uid);
    world
        .wait_for("every file in the series' folder under done/", Duration::from_secs(30), async || {
            common::names(&done).len() == now.len()
        })
        .await;

    // The last four instances of the series arrive after it was segmented.
    for file in later {
        std::fs::copy(file, target.join(file.file_name().unwrap())).unwrap();
    }
    world
        .wait_for("the whole series again", Duration::from_secs(60), async || {
            common::try_count(&pool, "SELECT COUNT(*) FROM case_results WHERE n_frames = 24").await == Some(1)
        })
        .await;
    world
        .wait_for("all 24 files under done/", Duration::from_secs(30), async || common::names(&done).len() == 24)
        .await;
    let (warnings,): (Option<String>,) =
        sqlx::query_as("SELECT geometry_warnings FROM dicom_series WHERE frames = 24").fetch_one(&pool).await.unwrap();
    let warnings = warnings.unwrap_or_default();
    assert!(warnings.contains("was segmented before") && warnings.contains("the whole series again"), "{warnings}");
    common::signal(&child, "TERM");
    let status = common::wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", world.logs());
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results").await, 2, "{}", world.logs());
    assert!(common::claimed_files(&world.state()).is_empty());
    pool.close().await;
    world.close().await;
}

/// A slice that does not decode is left out: the series case goes on with the others, records
/// which slice, instance and file, and why; its SEG still passes the peers.
#[tokio::test]
async fn a_slice_that_fails_to_decode_is_left_out_and_named() {
    let world = World::new(Backend::Sqlite).await;
    let source = series().join("ct_sphere");
    let dir = world.dir.path().join("ct");
    std::fs::create_dir_all(&dir).unwrap();
    let names = common::names(&source);
    for name in &names {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    // One instance as RLE Lossless (dcmtk's dcmcrle) whose first segment offset points past the
    // frame: it parses, so it joins its series, and fails when its pixels are decoded.
    let broken = dir.join(&names[5]);
    let rle = world.dir.path().join("rle.dcm");
    let status = std::process::Command::new("dcmcrle").arg(&broken).arg(&rle).status().expect("dcmcrle (Debian dcmtk)");
    assert!(status.success());
    let mut bytes = std::fs::read(&rle).unwrap();
    let header = bytes.windows(8).position(|w| w == [2, 0, 0, 0, 0x40, 0, 0, 0]).expect("the RLE header of 2 segments");
    bytes[header + 4..header + 8].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    std::fs::write(&broken, bytes).unwrap();

    let output = world.run(&["run", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("24 slices; ") && stderr(&output).contains("1 slice(s) left out"));
    let pool = world.pool().await;
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT c.case_id, s.error FROM series_slices s JOIN cases c ON c.case_id = s.case_id WHERE s.error IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let error = rows[0].1.as_deref().unwrap();
    assert!(error.starts_with("decode: ") && error.contains(&names[5]) && error.contains("RLE"), "{error}");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'succeeded' AND n_frames = 24").await, 1);
    let out = world.out().join(&rows[0].0);
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["series"]["failed_slices"].as_array().unwrap().len(), 1, "{result}");
    common::series_check(&out.join("seg.dcm"), &dir, &[]);
    pool.close().await;
    world.close().await;
}
