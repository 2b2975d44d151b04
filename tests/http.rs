//! `efen watch` with `[http] listen` (issue 15): health, readiness and the Prometheus metrics of
//! the real binary, read directly and through a real Prometheus (Debian's `prometheus`) scraping
//! it; and cases submitted and followed over HTTP, images and a DICOM series.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::http::{Answer, free_port, sample, stop, wait_ready};
use common::{Backend, KillOnDrop, SpawnGuarded, World, count};

/// A request without extra headers.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
    common::http::request(port, method, path, &[], body)
}

/// `GET http://127.0.0.1:<port><path>`: the status code and the body as text.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let answer = request(port, "GET", path, b"")?;
    Ok((answer.status, String::from_utf8_lossy(&answer.body).into_owned()))
}

fn post(port: u16, path: &str, body: &[u8]) -> Answer {
    request(port, "POST", path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// `efen watch` on the world's drop folder, serving HTTP on `port`.
fn start_watch(world: &World, port: u16) -> KillOnDrop {
    start_watch_with(world, port, &[])
}

fn start_watch_with(world: &World, port: u16, env: &[(&str, &str)]) -> KillOnDrop {
    common::http::start_watch(world, port, env, "efen")
}

async fn wait_metric(world: &World, port: u16, what: &str, name: &str, labels: &[(&str, &str)], value: f64) {
    world
        .wait_for(what, Duration::from_secs(90), async || {
            get(port, "/metrics").is_ok_and(|(_, body)| sample(&body, name, labels) == Some(value))
        })
        .await;
}

/// Health, readiness, and the case counters after two good cases, a byte-for-byte copy of one of
/// them and a file that does not decode; the counters agree with the store; SIGTERM stops the
/// server with the watch.
#[tokio::test]
async fn health_readiness_and_metrics_of_the_real_binary() {
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = start_watch(&world, port);
    world.wait_for("/healthz", Duration::from_secs(60), async || matches!(get(port, "/healthz"), Ok((200, _)))).await;
    wait_ready(&world, &mut child, port).await;
    let (status, body) = get(port, "/readyz").unwrap();
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({"ready": true, "problems": []}));

    world.drop_samples(&["case01", "case02"]);
    std::fs::write(world.drop_dir().join("broken.png"), b"not an image").unwrap();
    let succeeded = [("status", "succeeded")];
    wait_metric(&world, port, "two succeeded cases", "efen_cases_total", &succeeded, 2.0).await;
    // The same bytes again under another name, once the first is recorded.
    std::fs::copy(common::repo().join("samples/synthetic/case01.png"), world.drop_dir().join("again.png")).unwrap();
    wait_metric(&world, port, "the duplicate", "efen_cases_total", &[("status", "duplicate")], 1.0).await;
    let failed = [("status", "failed"), ("stage", "decode"), ("error_type", "unknown_format")];
    wait_metric(&world, port, "the failure", "efen_cases_total", &failed, 1.0).await;

    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let pool = world.pool().await;
    let recorded = count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await;
    assert_eq!(sample(&metrics, "efen_cases_total", &succeeded), Some(recorded as f64), "as in the store");
    pool.close().await;
    assert_eq!(sample(&metrics, "efen_store_up", &[]), Some(1.0));
    assert_eq!(sample(&metrics, "efen_store_retries_total", &[]), Some(0.0));
    assert_eq!(sample(&metrics, "efen_case_latency_seconds_count", &succeeded), Some(2.0));
    for stage in ["decode", "preprocess", "infer", "postprocess", "evaluate", "emit"] {
        let n = sample(&metrics, "efen_stage_duration_seconds_count", &[("stage", stage)]);
        assert_eq!(n, Some(2.0), "{stage}:\n{metrics}");
    }
    for queue in ["prepare", "infer", "postprocess", "record"] {
        let waiting = sample(&metrics, "efen_queue_depth", &[("queue", queue)]);
        assert!(waiting.is_some_and(|n| (0.0..=8.0).contains(&n)), "{queue} queue: {waiting:?}");
    }
    let tiles = sample(&metrics, "efen_inference_batch_size_sum", &[]).unwrap();
    assert!(tiles >= 2.0, "one tile per case at least, got {tiles}");
    assert!(metrics.contains("# TYPE efen_case_latency_seconds histogram"), "{metrics}");
    assert!(metrics.contains(&format!("efen_build_info{{version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{metrics}");
    let started = sample(&metrics, "efen_process_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(now - started > 0.0 && now - started < 600.0, "started {started}, now {now}");
    assert_eq!(get(port, "/nothing-here").unwrap().0, 404);

    stop(&world, child).await;
    assert!(get(port, "/healthz").is_err(), "the server stopped with the watch");
    world.close().await;
}

/// `/readyz` during a PostgreSQL outage (the store behind a proxy that is cut): 503 with a body
/// naming the store, while `/healthz` stays 200; ready again once the store is back. Two worker
/// threads: the proxy's tasks must run while the test blocks on an HTTP request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_naming_the_store_while_the_database_is_away() {
    let world = World::new(Backend::Postgres).await;
    let proxy = common::proxy::Proxy::start("127.0.0.1:5432").await;
    let via_proxy = world.database_url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let port = free_port();
    let mut child = start_watch_with(&world, port, &[("DATABASE_URL", &via_proxy)]);
    wait_ready(&world, &mut child, port).await;

    proxy.set(false);
    let mut problems = serde_json::Value::Null;
    world
        .wait_for("/readyz to answer 503", Duration::from_secs(60), async || {
            let Ok(answer) = request(port, "GET", "/readyz", b"") else { return false };
            problems = if answer.status == 503 { answer.json() } else { serde_json::Value::Null };
            answer.status == 503
        })
        .await;
    assert_eq!(problems["ready"], false, "{problems}");
    let named = problems["problems"].as_array().unwrap().iter().any(|p| p.to_string().to_lowercase().contains("store"));
    assert!(named, "the store is named: {problems}");
    assert_eq!(get(port, "/healthz").unwrap().0, 200, "alive while not ready");
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(sample(&metrics, "efen_store_up", &[]), Some(0.0), "the gauge says so too");

    proxy.set(true);
    wait_ready(&world, &mut child, port).await;
    stop(&world, child).await;
    world.close().await;
}

/// Prometheus itself scrapes efen every second; the case counter reads back through its query API
/// with the value the store holds.
#[tokio::test]
async fn prometheus_scrapes_the_case_counters() {
    let version = std::process::Command::new("prometheus").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "Debian's prometheus is not installed: scripts/system-packages.sh installs it (apt-get install prometheus)"
    );
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let mut efen = start_watch(&world, port);
    wait_ready(&world, &mut efen, port).await;
    world.drop_samples(&["case01", "case02", "case03"]);
    let succeeded = [("status", "succeeded")];
    wait_metric(&world, port, "three succeeded cases", "efen_cases_total", &succeeded, 3.0).await;

    let prometheus_port = free_port();
    let config = world.dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: efen\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    let _prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", world.dir.path().join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(world.log("prometheus"))
        .spawn_guarded()
        .unwrap();

    // efen_cases_total{status="succeeded"}, as Prometheus stored it from its last scrape.
    let query = "/api/v1/query?query=efen_cases_total%7Bstatus%3D%22succeeded%22%7D";
    let mut answer = serde_json::Value::Null;
    world
        .wait_for("Prometheus to have scraped efen", Duration::from_secs(60), async || {
            let Ok((200, body)) = get(prometheus_port, query) else { return false };
            answer = serde_json::from_str(&body).unwrap_or_default();
            answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(answer["status"], "success", "{answer}");
    let series = &answer["data"]["result"][0];
    assert_eq!(series["metric"]["job"], "efen", "{answer}");
    let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
    let pool = world.pool().await;
    let recorded = count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await;
    pool.close().await;
    assert_eq!((value, recorded), (3.0, 3), "{answer}");

    // The scrape itself succeeded, and the target reports the store up.
    let (_, up) = get(prometheus_port, "/api/v1/query?query=efen_store_up").unwrap();
    let up: serde_json::Value = serde_json::from_str(&up).unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    world.close().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Polls `url` until its `status` is `succeeded` (failing at once on `failed`); returns the body.
async fn wait_succeeded(world: &World, port: u16, url: &str) -> serde_json::Value {
    let mut body = serde_json::Value::Null;
    world
        .wait_for(&format!("{url} to succeed"), Duration::from_secs(120), async || {
            let answer = request(port, "GET", url, b"").unwrap();
            assert_eq!(answer.status, 200, "{url}: {}", String::from_utf8_lossy(&answer.body));
            body = answer.json();
            assert_ne!(body["status"], "failed", "{body}");
            body["status"] == "succeeded"
        })
        .await;
    body
}

async fn count_bound(pool: &sqlx::AnyPool, sql: &'static str, value: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).bind(value).fetch_one(pool).await.unwrap();
    n
}

/// An image posted over HTTP is a case like a dropped one: its case id is the one efen records,
/// its status goes to succeeded with result.json, its mask is served; the same bytes again are the
/// same case with one result; an empty body, an oversize body, an unknown case and paths that try
/// to leave the case folder are refused. On both backends: the store's read queries differ.
#[tokio::test]
async fn an_image_posted_over_http_becomes_a_case_with_its_result_and_files() {
    image_over_http(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_image_posted_over_http_becomes_a_case_on_postgres() {
    image_over_http(Backend::Postgres).await;
}

async fn image_over_http(backend: Backend) {
    let world = World::new(backend).await;
    let port = free_port();
    let mut child = start_watch_with(&world, port, &[("EFEN_ENGINE__MAX_FILE_MB", "1")]);
    wait_ready(&world, &mut child, port).await;

    let png = std::fs::read(common::repo().join("samples/synthetic/case01.png")).unwrap();
    let sha256 = sha256_hex(&png);
    let accepted = post(port, "/v1/cases?name=case01.png", &png);
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let accepted = accepted.json();
    let case_id = accepted["case_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["sha256"], sha256.as_str());
    assert_eq!(accepted["name"], "case01.png");
    let status_url = format!("/v1/cases/{case_id}");
    assert_eq!(accepted["status_url"], status_url.as_str());

    let case = wait_succeeded(&world, port, &status_url).await;
    let pool = world.pool().await;
    let (recorded, source): (String, String) =
        sqlx::query_as("SELECT case_id, source_path FROM cases WHERE file_sha256 = $1")
            .bind(&sha256)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, case_id, "the case id efen records");
    assert!(source.ends_with("drop/http/case01.png"), "{source}");
    assert_eq!(case["state"], "recorded");
    assert_eq!(case["result"]["case_id"], case_id.as_str(), "{case}");
    assert_eq!(case["result"]["status"], "succeeded", "{case}");
    assert_eq!(case["files"]["mask.png"], format!("{status_url}/mask.png"), "{case}");

    let mask = request(port, "GET", &format!("{status_url}/mask.png"), b"").unwrap();
    assert_eq!((mask.status, mask.header("content-type")), (200, Some("image/png")));
    let mask = image::load_from_memory_with_format(&mask.body, image::ImageFormat::Png).unwrap();
    let image = image::load_from_memory(&png).unwrap();
    assert_eq!((mask.width(), mask.height()), (image.width(), image.height()));
    let result = request(port, "GET", &format!("{status_url}/result.json"), b"").unwrap();
    assert_eq!((result.status, result.header("content-type")), (200, Some("application/json")));
    assert_eq!(result.json(), case["result"]);

    // The same bytes again, without a name: the same case, recorded once, the repeat a duplicate.
    let again = post(port, "/v1/cases", &png);
    assert_eq!(again.status, 202);
    let again = again.json();
    assert_eq!(again["case_id"], case_id.as_str());
    assert_eq!(again["name"], format!("upload-{}.png", &sha256[..12]));
    world
        .wait_for("the repeat recorded as a duplicate", Duration::from_secs(60), async || {
            count_bound(&pool, "SELECT COUNT(*) FROM duplicates WHERE case_id = $1", &case_id).await == 1
        })
        .await;
    assert_eq!(count_bound(&pool, "SELECT COUNT(*) FROM results WHERE case_id = $1", &case_id).await, 1);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM results").await, 1);
    assert_eq!(wait_succeeded(&world, port, &status_url).await["case_id"], case_id.as_str());
    let by_file = request(port, "GET", &format!("/v1/instances/{sha256}"), b"").unwrap().json();
    assert_eq!((&by_file["case_id"], &by_file["case_ids"]), (&case["case_id"], &serde_json::json!([case_id])));

    // Refused.
    let empty = post(port, "/v1/cases", b"");
    assert_eq!((empty.status, empty.json()["error"].as_str()), (400, Some("empty_body")));
    let large = post(port, "/v1/cases?name=large.png", &vec![7u8; 2 << 20]);
    assert_eq!((large.status, large.json()["error"].as_str()), (413, Some("too_large")));
    let unknown = request(port, "GET", "/v1/cases/000000000000000000000000", b"").unwrap();
    assert_eq!((unknown.status, unknown.json()["error"].as_str()), (404, Some("not_found")));
    std::fs::write(world.dir.path().join("secret.txt"), b"secret").unwrap();
    for path in [
        format!("{status_url}/../../etc/passwd"),
        format!("{status_url}/..%2F..%2F..%2Fsecret.txt"),
        format!("{status_url}/%2e%2e"),
        format!("{status_url}/mask.png%00"),
        format!("{status_url}/.%2Fmask.png"),
        "/v1/cases/..%2F..%2Fsecret.txt/result.json".to_string(),
        "/v1/cases/../../etc/passwd".to_string(),
        format!("{status_url}/..%2F{case_id}%2Fresult.json"),
    ] {
        let answer = request(port, "GET", &path, b"").unwrap();
        assert_eq!(answer.status, 404, "{path}: {}", String::from_utf8_lossy(&answer.body));
        assert!(!String::from_utf8_lossy(&answer.body).contains("secret\""), "{path}");
    }
    assert!(!world.drop_dir().join("http").join("large.png").exists(), "nothing of a refused body is left");
    let leftovers = common::names(&world.drop_dir().join("http"));
    assert!(leftovers.iter().all(|n| !n.ends_with(".part")), "{leftovers:?}");

    let runs = request(port, "GET", "/v1/runs", b"").unwrap().json();
    assert_eq!(runs["runs"][0]["command"], "watch", "{runs}");
    assert_eq!(runs["runs"][0]["ended_at"], serde_json::Value::Null, "{runs}");
    assert_eq!(request(port, "GET", "/v1/runs?limit=0", b"").unwrap().status, 400);
    let openapi = request(port, "GET", "/v1/openapi.json", b"").unwrap().json();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/cases"]["post"].is_object(), "{openapi}");

    let (_, metrics) = get(port, "/metrics").unwrap();
    let uploads = |result| sample(&metrics, "efen_http_uploads_total", &[("result", result)]);
    assert_eq!((uploads("accepted"), uploads("empty"), uploads("too_large")), (Some(2.0), Some(1.0), Some(1.0)));

    stop(&world, child).await;
    pool.close().await;
    world.close().await;
}

/// The 24 instances of a CT series posted one by one: each answers with its series and a status
/// URL by its own SHA-256, and once the series has been quiet each resolves to the one series
/// case, with its 24 slices.
#[tokio::test]
async fn dicom_instances_posted_over_http_become_their_series_case() {
    let fixtures = common::repo().join("tests/fixtures/series");
    assert!(fixtures.join("manifest.json").is_file(), "run scripts/series-fixtures.sh (scripts/test.sh does)");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("manifest.json")).unwrap()).unwrap();
    let series_uid = manifest["fixtures"]["ct_sphere"]["series_instance_uid"].as_str().unwrap().to_string();
    let mut files: Vec<_> = std::fs::read_dir(fixtures.join("ct_sphere")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 24);

    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = start_watch_with(&world, port, &[("EFEN_WATCH__SERIES_QUIET_MS", "1000")]);
    wait_ready(&world, &mut child, port).await;
    let mut status_urls = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        let accepted = post(port, &format!("/v1/cases?name={name}"), &bytes);
        assert_eq!(accepted.status, 202, "{name}: {}", String::from_utf8_lossy(&accepted.body));
        let accepted = accepted.json();
        assert_eq!(accepted["case_id"], serde_json::Value::Null, "{accepted}");
        assert_eq!(accepted["series_instance_uid"], series_uid.as_str(), "{accepted}");
        assert_eq!(accepted["status_url"], format!("/v1/instances/{}", sha256_hex(&bytes)));
        status_urls.push(accepted["status_url"].as_str().unwrap().to_string());
    }
    let first = request(port, "GET", &status_urls[0], b"").unwrap();
    assert_eq!(first.status, 200, "an accepted instance is known at once");

    let case = wait_succeeded(&world, port, &status_urls[0]).await;
    assert_eq!(case["n_frames"], 24, "{case}");
    assert_eq!(case["result"]["series"]["slices"], 24, "{case}");
    assert_eq!(case["result"]["series"]["series_instance_uid"], series_uid.as_str());
    let case_id = case["case_id"].as_str().unwrap();
    assert_eq!(case["case_ids"], serde_json::json!([case_id]));
    for url in &status_urls[1..] {
        let answer = request(port, "GET", url, b"").unwrap().json();
        assert_eq!(answer["case_id"], case_id, "{url}: {answer}");
    }
    let seg = request(port, "GET", &format!("/v1/cases/{case_id}/seg.dcm"), b"").unwrap();
    assert_eq!((seg.status, seg.header("content-type")), (200, Some("application/dicom")));
    assert_eq!(&seg.body[128..132], b"DICM");
    let nifti = request(port, "GET", &format!("/v1/cases/{case_id}/mask.nii.gz"), b"").unwrap();
    assert_eq!((nifti.status, nifti.header("content-type")), (200, Some("application/gzip")));

    let pool = world.pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results").await, 1);
    pool.close().await;
    stop(&world, child).await;
    world.close().await;
}

/// Sixty different images posted at once from twelve threads, half of them under the same name:
/// every one is accepted under a name of its own, and each becomes exactly one case in the store.
#[tokio::test]
async fn concurrent_uploads_are_each_one_case() {
    const UPLOADS: u32 = 60;
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = start_watch(&world, port);
    wait_ready(&world, &mut child, port).await;
    let threads: Vec<_> = (0..12u32)
        .map(|t| {
            std::thread::spawn(move || {
                (t..UPLOADS)
                    .step_by(12)
                    .map(|i| {
                        let path = if i % 2 == 0 { "/v1/cases?name=same.png" } else { "/v1/cases" };
                        let answer = post(port, path, &common::unique_png(i));
                        assert_eq!(answer.status, 202, "{}", String::from_utf8_lossy(&answer.body));
                        answer.json()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let accepted: Vec<serde_json::Value> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let names: std::collections::BTreeSet<&str> = accepted.iter().map(|a| a["name"].as_str().unwrap()).collect();
    let ids: std::collections::BTreeSet<&str> = accepted.iter().map(|a| a["case_id"].as_str().unwrap()).collect();
    // A name is unique among the uploads waiting at once: the watcher takes each upload as soon as
    // it is published, after which its name may be given again. The case ids are all distinct.
    assert_eq!(ids.len(), UPLOADS as usize, "{ids:?}");
    assert!(names.contains("same.png"), "{names:?}");

    let pool = world.pool().await;
    world
        .wait_for("every upload recorded", Duration::from_secs(120), async || {
            count(&pool, "SELECT COUNT(*) FROM results").await == UPLOADS as i64
        })
        .await;
    let (recorded,): (i64,) =
        sqlx::query_as("SELECT COUNT(DISTINCT case_id) FROM case_results WHERE status = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, UPLOADS as i64);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM duplicates").await, 0);
    for id in &ids {
        assert_eq!(count_bound(&pool, "SELECT COUNT(*) FROM results WHERE case_id = $1", id).await, 1, "{id}");
    }
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(sample(&metrics, "efen_http_uploads_total", &[("result", "accepted")]), Some(UPLOADS as f64));
    stop(&world, child).await;
    pool.close().await;
    world.close().await;
}
