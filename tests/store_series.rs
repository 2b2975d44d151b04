//! A series case in the store: `Store::record` writes the result's frame count and volumes, the
//! `dicom_series` row and every `series_slices` row in one go, on both backends; recording the same
//! case again (a takeover after a crash) is refused quietly, not by a primary-key error.

#[macro_use]
mod common;

use common::{Backend, World};
use efen::store::{CaseRecord, Claim, NewCase, NewRun, SeriesRecord, SliceRecord, Store};

on_both_backends!(a_series_case_is_recorded_with_its_series_and_slices, a_long_series_is_recorded_whole);

const RUN: &str = "run-series";
const CASE: &str = "case-series";
const SERIES_UID: &str = "1.2.826.0.1.3680043.8.498.1";

fn new_run() -> NewRun {
    NewRun {
        run_id: RUN.into(),
        command: "run".into(),
        pipeline: "default".into(),
        pipeline_settings: "{}".into(),
        model_name: "efen-small".into(),
        model_sha256: "ab".repeat(32),
    }
}

fn new_case() -> NewCase {
    NewCase {
        case_id: CASE.into(),
        run_id: RUN.into(),
        pipeline: "default".into(),
        model_sha256: "ab".repeat(32),
        source_path: "drop/series/CT".into(),
        source_sha256: "cd".repeat(32),
        file_sha256: "cd".repeat(32),
        size_bytes: 3 * 1024,
        ground_truth_path: None,
        worker: None,
    }
}

/// Three slices: two with findings and ground truth, the middle one left out (it failed to decode).
fn record() -> CaseRecord {
    let slice = |index: i64, position_mm, foreground_px, error: Option<&str>| SliceRecord {
        index,
        sop_instance_uid: Some(format!("{SERIES_UID}.{}", index + 1)),
        file_sha256: format!("{index:064x}"),
        frame_number: 1,
        position_mm,
        foreground_px,
        tp: foreground_px.map(|n| n - 1),
        fp: foreground_px.map(|_| 1),
        fn_: foreground_px.map(|_| 2),
        tn: foreground_px.map(|n| 64 * 64 - n - 2),
        error: error.map(String::from),
    };
    CaseRecord {
        case_id: CASE.into(),
        run_id: RUN.into(),
        status: "succeeded".into(),
        kind: Some("dicom-series".into()),
        width: Some(64),
        height: Some(64),
        has_ground_truth: true,
        dsc: Some(0.9),
        n_frames: Some(3),
        volume_ml: Some(1.25),
        truth_volume_ml: Some(1.5),
        series: Some(SeriesRecord {
            study_instance_uid: Some("1.2.826.0.1.3680043.8.498.0".into()),
            series_instance_uid: SERIES_UID.into(),
            stack: 1,
            stack_reason: None,
            modality: Some("CT".into()),
            instances: 3,
            frames: 3,
            slice_spacing_mm: Some(2.5),
            pixel_spacing: Some([0.5, 0.75]),
            orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            warnings: vec!["gap: 1 slice missing".into(), "irregular spacing".into()],
            slices: vec![
                slice(0, Some(-10.0), Some(40), None),
                slice(1, None, None, Some("decode: truncated pixel data")),
                slice(2, Some(-5.0), Some(25), None),
            ],
        }),
        ..CaseRecord::default()
    }
}

type SliceRow = (i64, Option<String>, i64, Option<f64>, Option<i64>, Option<i64>, Option<i64>, Option<String>);

async fn a_series_case_is_recorded_with_its_series_and_slices(backend: Backend) {
    let world = World::new(backend).await;
    let store = Store::open(&world.database_url, 2).await.unwrap();
    store.start_run(&new_run()).await.unwrap();
    assert_eq!(store.claim_case(&new_case(), true).await.unwrap(), Claim::New);
    assert!(store.record(&record()).await.unwrap(), "recorded the first time");

    let pool = world.pool().await;
    let (n_frames, volume_ml, truth_volume_ml): (i64, f64, f64) = sqlx::query_as(
        "SELECT CAST(n_frames AS BIGINT), volume_ml, truth_volume_ml FROM case_results WHERE case_id = $1",
    )
    .bind(CASE)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((n_frames, volume_ml, truth_volume_ml), (3, 1.25, 1.5));

    let (series_uid, stack, frames, spacing, row_mm, column_mm, orientation, warnings): (
        String,
        i64,
        i64,
        f64,
        f64,
        f64,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT series_instance_uid, CAST(stack AS BIGINT), CAST(frames AS BIGINT), slice_spacing_mm,
                pixel_spacing_row_mm, pixel_spacing_column_mm, orientation, geometry_warnings
         FROM dicom_series WHERE case_id = $1",
    )
    .bind(CASE)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((series_uid.as_str(), stack, frames), (SERIES_UID, 1, 3));
    assert_eq!((spacing, row_mm, column_mm), (2.5, 0.5, 0.75));
    assert_eq!(orientation, r"1\0\0\0\1\0");
    assert_eq!(warnings, "gap: 1 slice missing\nirregular spacing");

    let slices: Vec<SliceRow> = sqlx::query_as(
        "SELECT CAST(slice_index AS BIGINT), sop_instance_uid, CAST(frame_number AS BIGINT), position_mm,
                foreground_px, tp, tn, error
         FROM series_slices WHERE case_id = $1 ORDER BY slice_index",
    )
    .bind(CASE)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(slices.len(), 3, "{slices:?}");
    assert_eq!(slices[0], (0, Some(format!("{SERIES_UID}.1")), 1, Some(-10.0), Some(40), Some(39), Some(4054), None));
    assert_eq!(
        slices[1],
        (1, Some(format!("{SERIES_UID}.2")), 1, None, None, None, None, Some("decode: truncated pixel data".into()))
    );
    assert_eq!((slices[2].0, slices[2].3, slices[2].4), (2, Some(-5.0), Some(25)));

    let (summary_frames, summary_warnings): (i64, String) =
        sqlx::query_as("SELECT CAST(frames AS BIGINT), warnings FROM series_summary WHERE case_id = $1")
            .bind(CASE)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((summary_frames, summary_warnings.lines().count()), (3, 2));

    // A takeover records the same case again: no primary-key error, and nothing doubles.
    assert!(!store.record(&record()).await.unwrap(), "already recorded");
    for (table, rows) in [("results", 1), ("dicom_series", 1), ("series_slices", 3)] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE case_id = $1");
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(CASE).fetch_one(&pool).await.unwrap();
        assert_eq!(n, rows, "{table}");
    }

    pool.close().await;
    store.close().await;
    world.close().await;
}

/// 250 slices: more than one multi-row INSERT (two full chunks and a part), each slice where it
/// belongs.
async fn a_long_series_is_recorded_whole(backend: Backend) {
    let world = World::new(backend).await;
    let store = Store::open(&world.database_url, 2).await.unwrap();
    store.start_run(&new_run()).await.unwrap();
    assert_eq!(store.claim_case(&new_case(), true).await.unwrap(), Claim::New);
    let mut record = record();
    let series = record.series.as_mut().unwrap();
    series.slices = (0..250)
        .map(|i| SliceRecord {
            index: i,
            frame_number: i + 1,
            position_mm: Some(i as f64 * 2.5),
            foreground_px: Some(i * 10),
            ..SliceRecord::default()
        })
        .collect();
    record.n_frames = Some(250);
    assert!(store.record(&record).await.unwrap());

    let pool = world.pool().await;
    let rows: Vec<(i64, i64, f64, i64)> = sqlx::query_as(
        "SELECT CAST(slice_index AS BIGINT), CAST(frame_number AS BIGINT), position_mm, foreground_px
         FROM series_slices WHERE case_id = $1 ORDER BY slice_index",
    )
    .bind(CASE)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 250);
    for (i, row) in rows.iter().enumerate() {
        let i = i as i64;
        assert_eq!(*row, (i, i + 1, i as f64 * 2.5, i * 10));
    }
    pool.close().await;
    store.close().await;
    world.close().await;
}
