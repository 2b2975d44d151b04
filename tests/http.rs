//! `efen watch` with `[http] listen` (issue 15): health, readiness and the Prometheus metrics of
//! the real binary, read directly and through a real Prometheus (Debian's `prometheus`) scraping
//! it.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::{Backend, KillOnDrop, SpawnGuarded, World, count};

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET http://127.0.0.1:<port><path>`: the status code and the body. HTTP/1.0, so that neither
/// efen nor Prometheus answers in chunks and the body ends with the connection.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The value of the series `name{labels}` (exactly these labels, in any order) in a Prometheus
/// text exposition.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let found: BTreeMap<String, String> = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        (series_name == name && found == wanted).then(|| value.parse().ok())?
    })
}

/// `efen watch` on the world's drop folder, serving HTTP on `port`.
fn start_watch(world: &World, port: u16) -> KillOnDrop {
    world
        .efen()
        .args(["watch", world.drop_dir().to_str().unwrap()])
        .env("EFEN_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(world.log("efen"))
        .spawn_guarded()
        .unwrap()
}

/// Waits for `/readyz` to answer 200; fails at once, with its log, if efen exits instead.
async fn wait_ready(world: &World, child: &mut KillOnDrop, port: u16) {
    world
        .wait_for("/readyz to answer 200", Duration::from_secs(90), async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("efen exited ({status}) before it was ready\n{}", world.logs());
            }
            matches!(get(port, "/readyz"), Ok((200, _)))
        })
        .await;
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
    wait_metric(&world, port, "the failure", "efen_cases_total", &[("status", "failed"), ("stage", "decode")], 1.0)
        .await;

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
    let tiles = sample(&metrics, "efen_inference_batch_size_sum", &[]).unwrap();
    assert!(tiles >= 2.0, "one tile per case at least, got {tiles}");
    assert!(metrics.contains("# TYPE efen_case_latency_seconds histogram"), "{metrics}");
    assert!(metrics.contains(&format!("efen_build_info{{version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{metrics}");
    let started = sample(&metrics, "efen_process_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(now - started > 0.0 && now - started < 600.0, "started {started}, now {now}");
    assert_eq!(get(port, "/nothing-here").unwrap().0, 404);

    common::signal(&child, "TERM");
    let status = common::wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", world.logs());
    assert!(get(port, "/healthz").is_err(), "the server stopped with the watch");
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
