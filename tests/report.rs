//! `efen report` and the reporting views (issue 6): the real binary on the samples against SQLite
//! and PostgreSQL; every number the report writes is checked against the store, computed here
//! with plain SQL over the tables (not the views); the exports are read back by pandas and
//! pyarrow; the HTML report is opened in headless Chromium.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Backend, World, count, stderr, stdout};
use sqlx::AnyPool;

/// A run over the 12 samples, two bad inputs (both fail at decode) and one renamed copy of a
/// sample (a duplicate); returns the run id.
async fn run_samples(world: &World) -> String {
    let drop = world.drop_dir();
    std::fs::write(drop.join("empty.png"), b"").unwrap();
    let png = std::fs::read(common::repo().join("samples/synthetic/case12.png")).unwrap();
    std::fs::write(drop.join("truncated.png"), &png[..png.len() / 3]).unwrap();
    let samples = common::repo().join("samples/synthetic");
    std::fs::copy(samples.join("case02.png"), drop.join("again.png")).unwrap();
    std::fs::copy(samples.join("case02_mask.png"), drop.join("again_mask.png")).unwrap();
    let output = world.run(&["run", samples.to_str().unwrap(), drop.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "two inputs fail");
    let pool = world.pool().await;
    let (run_id,): (String,) = sqlx::query_as("SELECT run_id FROM runs").fetch_one(&pool).await.unwrap();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results").await, 14);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM duplicates").await, 1);
    pool.close().await;
    run_id
}

fn report(world: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let output = world.run(&all);
    assert_eq!(output.status.code(), Some(0), "efen {all:?}: {}", stderr(&output));
    output
}

/// A table as a peer reads it back: pandas for CSV, pyarrow for Parquet (through
/// tests/report_read.py), as rows of JSON values.
#[derive(Debug)]
struct Peer {
    columns: Vec<String>,
    rows: Vec<Vec<serde_json::Value>>,
}

impl Peer {
    fn height(&self) -> usize {
        self.rows.len()
    }

    fn at(&self, column: &str, i: usize) -> &serde_json::Value {
        let c = self.columns.iter().position(|c| c == column).unwrap_or_else(|| panic!("no column {column}: {self:?}"));
        &self.rows[i][c]
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self)
    }
}

fn read_back(kind: &str, path: &Path) -> Peer {
    let output = Command::new(common::venv_python())
        .arg(common::repo().join("tests/report_read.py"))
        .args(["--table", kind])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python: {e}; scripts/python-env.sh sets up the venv with pandas and pyarrow"));
    assert!(output.status.success(), "report_read.py {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    let split: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let columns = split["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let rows = split["data"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect();
    Peer { columns, rows }
}

fn read_csv(path: &Path) -> Peer {
    read_back("csv", path)
}

fn read_parquet(path: &Path) -> Peer {
    read_back("parquet", path)
}

fn f64_at(frame: &Peer, column: &str, i: usize) -> Option<f64> {
    frame.at(column, i).as_f64()
}

fn str_at(frame: &Peer, column: &str, i: usize) -> String {
    frame.at(column, i).as_str().unwrap_or_default().to_string()
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: report {a} vs store {b}"),
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

/// Nearest-rank percentile, written independently of the report's: sort, take ceil(p·n/100).
fn percentile(mut values: Vec<f64>, p: f64) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0 * values.len() as f64).ceil() as usize).max(1);
    values.get(rank - 1).copied()
}

async fn floats(pool: &AnyPool, sql: &str, run_id: &str) -> Vec<f64> {
    let rows: Vec<(f64,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string())).bind(run_id).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

const SCORED: &str = "status = 'succeeded' AND has_ground_truth";

/// Issue 6: the runs CSV, the cases Parquet, the paper table and the failures equal the store.
async fn report_numbers_equal_the_store(backend: Backend) {
    let world = World::new(backend).await;
    let run_id = run_samples(&world).await;
    let pool = world.pool().await;
    let dir = world.dir.path();
    let (runs_csv, cases_parquet, paper_csv, failures_csv) =
        (dir.join("runs.csv"), dir.join("cases.parquet"), dir.join("paper.csv"), dir.join("failures.csv"));
    report(&world, &["--format", "csv", "--table", "runs", "--out", runs_csv.to_str().unwrap()]);
    report(&world, &["--format", "parquet", "--table", "cases", "--out", cases_parquet.to_str().unwrap()]);
    report(&world, &["--format", "csv", "--table", "paper", "--out", paper_csv.to_str().unwrap()]);
    report(&world, &["--format", "csv", "--table", "failures", "--out", failures_csv.to_str().unwrap()]);

    // Runs: every number against SQL over the tables.
    let runs = read_csv(&runs_csv);
    assert_eq!(runs.height(), 1);
    assert_eq!(str_at(&runs, "run_id", 0), run_id);
    let (cases, succeeded, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END),
                SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) FROM results WHERE run_id = $1",
    )
    .bind(&run_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((cases, succeeded, failed), (14, 12, 2));
    close(f64_at(&runs, "cases", 0), Some(cases as f64), "cases");
    close(f64_at(&runs, "succeeded", 0), Some(succeeded as f64), "succeeded");
    close(f64_at(&runs, "failed", 0), Some(failed as f64), "failed");
    close(f64_at(&runs, "duplicates", 0), Some(1.0), "duplicates");
    let dsc = floats(&pool, &format!("SELECT dsc FROM results WHERE run_id = $1 AND {SCORED}"), &run_id).await;
    let iou = floats(&pool, &format!("SELECT iou FROM results WHERE run_id = $1 AND {SCORED}"), &run_id).await;
    let latency =
        floats(&pool, "SELECT latency_ms FROM results WHERE run_id = $1 AND status = 'succeeded'", &run_id).await;
    assert_eq!(dsc.len(), 12);
    let mean = |v: &[f64]| Some(v.iter().sum::<f64>() / v.len() as f64);
    close(f64_at(&runs, "mean_dsc", 0), mean(&dsc), "mean DSC");
    close(f64_at(&runs, "median_dsc", 0), percentile(dsc.clone(), 50.0), "median DSC");
    close(f64_at(&runs, "min_dsc", 0), dsc.iter().copied().reduce(f64::min), "min DSC");
    close(f64_at(&runs, "mean_iou", 0), mean(&iou), "mean IoU");
    close(f64_at(&runs, "median_iou", 0), percentile(iou.clone(), 50.0), "median IoU");
    close(f64_at(&runs, "p50_latency_ms", 0), percentile(latency.clone(), 50.0), "p50 latency");
    close(f64_at(&runs, "p95_latency_ms", 0), percentile(latency.clone(), 95.0), "p95 latency");
    for (column, sql) in [("mean_precision", "\"precision\""), ("mean_recall", "recall")] {
        let values = floats(&pool, &format!("SELECT {sql} FROM results WHERE run_id = $1 AND {SCORED}"), &run_id).await;
        close(f64_at(&runs, column, 0), mean(&values), column);
    }
    // Throughput: succeeded cases over the seconds from the run's start to its last result.
    let time = |c: &str| chrono::DateTime::parse_from_rfc3339(&str_at(&runs, c, 0)).unwrap();
    let elapsed = (time("last_result_at") - time("started_at")).num_microseconds().unwrap() as f64 / 1e6;
    let reported = f64_at(&runs, "elapsed_s", 0).unwrap();
    assert!((reported - elapsed).abs() < 0.002 && reported > 0.0, "elapsed {reported} s vs {elapsed} s");
    close(f64_at(&runs, "throughput_per_s", 0), Some(succeeded as f64 / reported), "throughput");

    // Cases: one row per result, the same metrics.
    let frame = read_parquet(&cases_parquet);
    assert_eq!(frame.height(), 14);
    let store: Vec<(String, Option<f64>, Option<f64>, String)> =
        sqlx::query_as("SELECT case_id, dsc, latency_ms, status FROM results").fetch_all(&pool).await.unwrap();
    let by_id: HashMap<String, usize> = (0..frame.height()).map(|i| (str_at(&frame, "case_id", i), i)).collect();
    for (case_id, dsc, latency, status) in &store {
        let i = by_id[case_id];
        close(f64_at(&frame, "dsc", i), *dsc, "case DSC");
        close(f64_at(&frame, "latency_ms", i), *latency, "case latency");
        assert_eq!(&str_at(&frame, "status", i), status);
        for series_only in ["n_frames", "volume_ml", "truth_volume_ml"] {
            assert!(frame.at(series_only, i).is_null(), "an image has no {series_only}");
        }
    }

    // Paper table: the mean of per-case values and the pooled pixel counts.
    let paper = read_csv(&paper_csv);
    assert_eq!(paper.height(), 2, "{paper}");
    assert_eq!(str_at(&paper, "aggregate", 0), "mean of per-case values");
    for (column, sql) in [("dsc", "dsc"), ("miou", "miou"), ("recall", "recall"), ("precision", "\"precision\"")] {
        let values = floats(&pool, &format!("SELECT {sql} FROM results WHERE run_id = $1 AND {SCORED}"), &run_id).await;
        close(f64_at(&paper, column, 0), mean(&values), column);
    }
    let (tp, fp, fn_): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(SUM(tp) AS BIGINT), CAST(SUM(fp) AS BIGINT), CAST(SUM(fn) AS BIGINT) FROM results WHERE {SCORED}"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let pooled_dsc = 2.0 * tp as f64 / (2.0 * tp as f64 + fp as f64 + fn_ as f64);
    close(f64_at(&paper, "dsc", 1), Some(pooled_dsc), "pooled DSC");
    close(f64_at(&paper, "recall", 1), Some(tp as f64 / (tp + fn_) as f64), "pooled recall");

    // Failures: the report's and the failures view agree, and both match the results.
    let failures = read_csv(&failures_csv);
    let view: Vec<(String, String, i64, String)> =
        sqlx::query_as("SELECT stage, reason, cases, latest_case_id FROM failures ORDER BY reason")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(view.len(), 2, "{view:?}");
    assert_eq!(failures.height(), view.len(), "{failures}");
    for (stage, reason, n, latest) in &view {
        let i = (0..failures.height()).find(|&i| &str_at(&failures, "reason", i) == reason).expect(reason);
        assert_eq!((&str_at(&failures, "stage", i), f64_at(&failures, "cases", i)), (stage, Some(*n as f64)));
        assert_eq!(&str_at(&failures, "latest_case_id", i), latest);
        assert_eq!(stage, "decode");
    }

    // From Python: pandas reads the CSV, pyarrow the Parquet, with the same numbers.
    let python = python_read(&runs_csv, &cases_parquet);
    close(python["runs"][&run_id]["mean_dsc"].as_f64(), mean(&dsc), "pandas mean DSC");
    close(python["runs"][&run_id]["median_dsc"].as_f64(), percentile(dsc.clone(), 50.0), "pandas median DSC");
    close(python["runs"][&run_id]["p95_latency_ms"].as_f64(), percentile(latency, 95.0), "pandas p95");
    assert_eq!(python["runs"][&run_id]["failed"], 2);
    assert_eq!(python["scored"], 12);
    close(python["mean_dsc"].as_f64(), mean(&dsc), "pyarrow mean DSC");
    for (case_id, dsc, _, _) in &store {
        close(python["cases"][case_id].as_f64(), *dsc, "pyarrow case DSC");
    }

    // The terminal report and the filters.
    let text = stdout(&report(&world, &[]));
    assert!(text.contains("Paper table") && text.contains(&run_id[..12]) && text.contains("decode"), "{text}");
    let filtered = |args: &[&str]| {
        let out = dir.join("filtered.csv");
        let mut all = vec!["--format", "csv", "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        report(&world, &all);
        read_csv(&out).height()
    };
    assert_eq!(filtered(&["--table", "cases", "--run", &run_id]), 14);
    assert_eq!(filtered(&["--table", "cases", "--run", "no-such-run"]), 0);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::repo().join("models/efen-small.card.json")).unwrap()).unwrap();
    let model_prefix = &card["sha256"].as_str().unwrap()[..8];
    assert_eq!(filtered(&["--table", "cases", "--model", model_prefix]), 14, "a prefix of the bundled model");
    assert_eq!(filtered(&["--table", "cases", "--model", "0000ffff"]), 0);
    assert_eq!(filtered(&["--table", "runs", "--since", "2000-01-01", "--until", "2000-12-31"]), 0);
    assert_eq!(filtered(&["--table", "runs", "--since", "2000-01-01", "--pipeline", "default"]), 1);
    let refused = world.run(&["report", "--table", "daily", "--run", &run_id]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--run does not apply to the daily table"), "{}", stderr(&refused));
    let daily = stdout(&report(&world, &["--format", "json", "--table", "daily"]));
    let daily: serde_json::Value = serde_json::from_str(&daily).unwrap();
    assert_eq!(daily[0]["cases"], 14, "{daily}");
    pool.close().await;
    world.close().await;
}

on_both_backends!(report_numbers_equal_the_store);

fn python_read(runs_csv: &Path, cases_parquet: &Path) -> serde_json::Value {
    let output = Command::new(common::venv_python())
        .arg(common::repo().join("tests/report_read.py"))
        .args([runs_csv, cases_parquet])
        .output()
        .unwrap_or_else(|e| panic!("python: {e}; scripts/python-env.sh sets up the venv with pandas and pyarrow"));
    assert!(output.status.success(), "report_read.py: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Issue 6: the HTML report is one self-contained file; headless Chromium renders it (the
/// screenshot is not blank) and every image in it decodes. The worst case's input is gone before
/// the report, as after a `watch`: its overlay.png stands in, and the page says so.
#[tokio::test]
async fn html_report_renders_in_chromium() {
    let world = World::new(Backend::Sqlite).await;
    let drop = world.drop_dir();
    for entry in std::fs::read_dir(common::repo().join("samples/synthetic")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, drop.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(drop.join("empty.png"), b"").unwrap();
    world.run(&["run", drop.to_str().unwrap()]);
    let pool = world.pool().await;
    let (worst,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.source_path FROM results r JOIN cases c ON c.case_id = r.case_id WHERE {SCORED} ORDER BY r.dsc, r.case_id LIMIT 1"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    std::fs::remove_file(&worst).unwrap();

    let html = world.dir.path().join("report.html");
    let output = report(&world, &["--format", "html", "--out", html.to_str().unwrap()]);
    assert!(stderr(&output).contains("wrote"), "{}", stderr(&output));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.matches("<svg").count() >= 3, "Dice histogram, sorted Dice, latency");
    assert!(page.contains("Paper table") && page.contains("Failures") && page.contains("empty file (0 bytes)"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("@import"),
        "self-contained"
    );
    let images = page.matches("<img ").count();
    assert_eq!(images, 11, "3 worst and 3 best cases, two panels each, one of them from overlay.png");
    assert!(page.contains("showing the overlay.png"), "the moved input is explained");
    assert!(page.contains(&format!("data-images-expected=\"{images}\"")));

    let chromium = chromium();
    let url = format!("file://{}", html.display());
    let dom = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains(&format!("data-images-loaded=\"{images}\"")),
        "every image decodes: {}",
        &dom[..dom.len().min(400)]
    );

    let shot = world.dir.path().join("report.png");
    let status = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    let png = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (1280, 2400));
    let background = *png.get_pixel(0, 0);
    let differing = png.pixels().filter(|p| **p != background).count();
    assert!(differing > png.len() / 3 / 10, "more than 10% of the screenshot is not background: {differing}");
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 500, "text, charts and images, not a flat page: {} colours", colours.len());
    if let Some(keep) = std::env::var_os("EFEN_KEEP_REPORT") {
        std::fs::copy(&html, Path::new(&keep).join("report.html")).unwrap();
        std::fs::copy(&shot, Path::new(&keep).join("report.png")).unwrap();
    }
    pool.close().await;
    world.close().await;
}

/// Debian's chromium (scripts/system-packages.sh installs it); the test fails rather than skips.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(output) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output()
            && output.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        }
    }
    panic!("no chromium: run scripts/system-packages.sh");
}

/// Issue 6: the audit log refuses changes in PostgreSQL, from the owner (the triggers) and from
/// the service role set up as the README says (its privileges); the service role can still append.
#[tokio::test]
async fn audit_log_refuses_changes_in_postgres() {
    let world = World::new(Backend::Postgres).await;
    world.drop_samples(&["case02"]);
    assert_eq!(world.run(&["run", world.drop_dir().to_str().unwrap()]).status.code(), Some(0));
    let pool = world.pool().await;
    let before = count(&pool, "SELECT COUNT(*) FROM audit_log").await;
    assert!(before >= 3, "run started, case claimed, case succeeded");
    for sql in ["UPDATE audit_log SET detail = 'edited'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let error = sqlx::query(sql).execute(&pool).await.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }

    // The service role, with the README's grants.
    let role = format!("efen_service_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN"))).execute(&pool).await.unwrap();
    for grant in SERVICE_ROLE_GRANTS.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let grant = grant.replace("efen_service", &role);
        sqlx::query(sqlx::AssertSqlSafe(grant.clone())).execute(&pool).await.unwrap_or_else(|e| panic!("{grant}: {e}"));
    }
    let url = world.database_url.replacen("postgres@", &format!("{role}@"), 1);
    let service = common::connect(&url).await;
    sqlx::query("INSERT INTO audit_log (actor, action, detail) VALUES ('test', 'note', 'appended')")
        .execute(&service)
        .await
        .expect("the service role appends");
    for sql in ["UPDATE audit_log SET detail = 'edited'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let error = sqlx::query(sql).execute(&service).await.expect_err(sql).to_string();
        assert!(error.contains("permission denied"), "{sql} as the service role: {error}");
    }
    assert_eq!(count(&service, "SELECT COUNT(*) FROM audit_log").await, before + 1);
    assert_eq!(count(&service, "SELECT COUNT(*) FROM audit_log WHERE detail = 'edited'").await, 0);
    // efen itself runs as the service role.
    world.drop_samples(&["case03"]);
    let output =
        world.efen().env("DATABASE_URL", &url).args(["run", world.drop_dir().to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "efen as the service role: {}", stderr(&output));
    assert_eq!(count(&service, "SELECT COUNT(*) FROM results").await, 2);
    service.close().await;
    let readme = std::fs::read_to_string(common::repo().join("docs/store.md")).unwrap();
    assert!(squash(&readme).contains(&squash(SERVICE_ROLE_GRANTS)), "the README documents these grants");
    pool.close().await;
    world.close().await;
    let admin = common::connect(&common::postgres_admin_url()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}"))).execute(&admin).await.unwrap();
    admin.close().await;
}

/// The service role's privileges, as documented in the README.
const SERVICE_ROLE_GRANTS: &str = "
GRANT USAGE, CREATE ON SCHEMA public TO efen_service;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO efen_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO efen_service;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM efen_service;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM efen_service;
";

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The README's query: which model produced the mask for this file (by the file's SHA-256).
const WHICH_MODEL: &str = "
SELECT source_path, model_name, model_sha256, pipeline, pipeline_settings, efen_version, recorded_at, mask_path
FROM provenance
WHERE source_sha256 = $1 OR file_sha256 = $1
   OR case_id IN (SELECT case_id FROM series_slices WHERE file_sha256 = $1)
ORDER BY recorded_at;";

/// The README's query: how Dice moved between two model versions on the same inputs.
const DICE_BETWEEN_MODELS: &str = "
SELECT a.source_path, a.dsc AS dsc_before, b.dsc AS dsc_after, b.dsc - a.dsc AS change
FROM case_results a
JOIN case_results b ON b.source_sha256 = a.source_sha256 AND b.pipeline = a.pipeline
WHERE a.model_sha256 = $1 AND b.model_sha256 = $2 AND a.has_ground_truth AND b.has_ground_truth
ORDER BY change;";

/// The README's query: every case below a Dice of 0.8 in the last 7 days, per backend.
const BELOW_POSTGRES: &str = "
SELECT source_path, dsc, model_sha256
FROM case_results
WHERE has_ground_truth AND dsc < 0.8 AND created_at >= now() - INTERVAL '7 days'
ORDER BY dsc;";
const BELOW_SQLITE: &str = "
SELECT source_path, dsc, model_sha256
FROM case_results
WHERE has_ground_truth AND dsc < 0.8 AND created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')
ORDER BY dsc;";

/// Issue 6: each question is one documented query, and it gives the right answer.
async fn documented_queries_answer_the_questions(backend: Backend) {
    let world = World::new(backend).await;
    let samples = common::repo().join("samples/synthetic");
    assert_eq!(world.run(&["run", samples.to_str().unwrap()]).status.code(), Some(0));
    let pool = world.pool().await;
    let readme = squash(&std::fs::read_to_string(common::repo().join("docs/store.md")).unwrap());
    for query in [WHICH_MODEL, DICE_BETWEEN_MODELS, BELOW_POSTGRES, BELOW_SQLITE] {
        assert!(readme.contains(&squash(query)), "the README documents {query}");
    }
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::repo().join("models/efen-small.card.json")).unwrap()).unwrap();
    let model = card["sha256"].as_str().unwrap().to_string();

    // Which model produced the mask for case02.png.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(samples.join("case02.png")).unwrap()));
    // Times are not plain scalars for the Any driver: select the rest of the documented query.
    let columns = "source_path, model_name, model_sha256, pipeline, pipeline_settings, efen_version";
    let sql = format!("SELECT {columns} FROM ({}) q", WHICH_MODEL.trim().trim_end_matches(';'));
    let rows: Vec<(String, String, String, String, String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&sha).fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (path, name, sha_of_model, pipeline, settings, version) = &rows[0];
    assert!(path.ends_with("case02.png") && name == "efen-small" && sha_of_model == &model && pipeline == "default");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(serde_json::from_str::<serde_json::Value>(settings).unwrap()["threshold_used"].is_number());

    // A second model on the same inputs, halving every Dice: the comparison shows each input once.
    let other = "f".repeat(64);
    for sql in [
        "INSERT INTO runs (run_id, command, pipeline, pipeline_settings, model_name, model_sha256, efen_version, host)
         SELECT 'run-b', command, pipeline, pipeline_settings, 'efen-small-b', $1, efen_version, host FROM runs",
        "INSERT INTO cases (case_id, run_id, pipeline, model_sha256, source_path, source_sha256, size_bytes)
         SELECT case_id || '-b', 'run-b', pipeline, $1, source_path, source_sha256, size_bytes FROM cases",
    ] {
        sqlx::query(sql).bind(&other).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sqlx::query(
        "INSERT INTO results (case_id, run_id, status, has_ground_truth, dsc, iou, latency_ms)
         SELECT case_id || '-b', 'run-b', status, has_ground_truth, dsc / 2, iou, latency_ms FROM results",
    )
    .execute(&pool)
    .await
    .unwrap();
    let moved: Vec<(String, f64, f64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(DICE_BETWEEN_MODELS.to_string()))
        .bind(&model)
        .bind(&other)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(moved.len(), 12);
    for (path, before, after, change) in &moved {
        assert!((after - before / 2.0).abs() < 1e-12 && (change - (after - before)).abs() < 1e-12, "{path}");
    }
    let models = world.dir.path().join("models.csv");
    report(&world, &["--format", "csv", "--table", "models", "--out", models.to_str().unwrap()]);
    let models = read_csv(&models);
    assert_eq!(models.height(), 2, "{models}");
    assert_eq!(f64_at(&models, "cases", 0), Some(12.0));

    // Below 0.8 in the last 7 days: case02 now, not case03 (10 days old).
    let (recent, old) = match backend {
        Backend::Postgres => ("now()", "now() - INTERVAL '10 days'"),
        Backend::Sqlite => {
            ("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days')")
        }
    };
    for (stem, dsc, at) in [("case02.png", 0.5, recent), ("case03.jpg", 0.6, old)] {
        let sql = format!(
            "UPDATE results SET dsc = {dsc}, created_at = {at}
             WHERE run_id <> 'run-b' AND case_id IN (SELECT case_id FROM cases WHERE source_path LIKE '%{stem}')"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    let below = if backend == Backend::Postgres { BELOW_POSTGRES } else { BELOW_SQLITE };
    let rows: Vec<(String, f64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(below.to_string())).fetch_all(&pool).await.unwrap();
    assert!(rows.iter().any(|r| r.0.ends_with("case02.png") && r.1 == 0.5 && r.2 == model), "{rows:?}");
    assert!(!rows.iter().any(|r| r.0.ends_with("case03.jpg") && r.2 == model), "10 days old: {rows:?}");
    assert!(rows.iter().all(|r| r.1 < 0.8));
    let expected = count(&pool, "SELECT COUNT(*) FROM results WHERE has_ground_truth AND dsc < 0.8").await - 1;
    assert_eq!(rows.len() as i64, expected, "every recent case below 0.8: {rows:?}");
    pool.close().await;
    world.close().await;
}

on_both_backends!(documented_queries_answer_the_questions);

/// The audit log refuses changes in SQLite too (triggers).
#[tokio::test]
async fn audit_log_refuses_changes_in_sqlite() {
    let world = World::new(Backend::Sqlite).await;
    assert_eq!(world.run(&["db", "migrate"]).status.code(), Some(0));
    let pool = world.pool().await;
    sqlx::query("INSERT INTO audit_log (actor, action) VALUES ('test', 'note')").execute(&pool).await.unwrap();
    for sql in ["UPDATE audit_log SET detail = 'edited'", "DELETE FROM audit_log"] {
        let error = sqlx::query(sql).execute(&pool).await.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log").await, 1);
    pool.close().await;
    world.close().await;
}

/// A multi-frame DICOM file is found by its own SHA-256 with the documented query: as one series
/// case (the default), and, with `[dicom] unit = "instance"`, as one row per frame, each with its
/// instance and frame number; the HTML report still renders.
#[tokio::test]
async fn dicom_frames_are_traced_to_their_file() {
    let world = World::new(Backend::Sqlite).await;
    let file = common::fixtures::fixtures().join("syn_gray8_3frames.dcm");
    std::fs::copy(&file, world.drop_dir().join("three.dcm")).unwrap();
    assert_eq!(world.run(&["run", world.drop_dir().to_str().unwrap()]).status.code(), Some(0));
    let pool = world.pool().await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap()));
    let documented = format!("SELECT source_path FROM ({}) q", WHICH_MODEL.trim().trim_end_matches(';'));
    let found: Vec<(String,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(documented.clone())).bind(&sha).fetch_all(&pool).await.unwrap();
    assert_eq!(found.len(), 1, "the documented query finds the series case: {found:?}");
    assert!(found[0].0.ends_with("three.dcm#series=2.25.1111111111111111111111111111111.2"), "{found:?}");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results WHERE n_frames = 3").await, 1);

    let instances = world.pipeline("instances", "[dicom]\nunit = \"instance\"");
    let output = world.run(&["run", "--pipeline", instances.to_str().unwrap(), world.drop_dir().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let found: Vec<(String,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(documented)).bind(&sha).fetch_all(&pool).await.unwrap();
    assert_eq!(found.len(), 4, "and the file's three frames: {found:?}");
    let sql = "SELECT source_path, model_sha256, sop_instance_uid, CAST(frame_number AS BIGINT)
               FROM provenance WHERE file_sha256 = $1";
    let rows: Vec<(String, String, Option<String>, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&sha).fetch_all(&pool).await.unwrap();
    let frames: Vec<i64> = rows.iter().map(|r| r.3).collect();
    assert_eq!(frames.len(), 3, "{rows:?}");
    assert!(
        frames.iter().all(|f| (1..=3).contains(f))
            && frames.iter().collect::<std::collections::HashSet<_>>().len() == 3
    );
    assert!(rows.iter().all(|r| r.0.contains("three.dcm#frame=") && r.2.is_some()), "{rows:?}");
    let html = world.dir.path().join("report.html");
    report(&world, &["--format", "html", "--out", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("No case with ground truth."));
    assert!(page.contains("model efen-small: trained only on synthetic data"), "the report says what the model is for");
    pool.close().await;
    world.close().await;
}
