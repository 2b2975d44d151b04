//! Access and bad input of `efen watch`'s HTTP face (issue 15, item 6 and "Bad input"): the bearer
//! token, refusals in the audit log and never the token itself, `/metrics` guarded only on demand,
//! a flood of uploads held back with 503 and none lost, a body that is no image, HTTPS through
//! rustls; and `efen doctor`'s checks of the listener (issue 15, item 8).

#[macro_use]
mod common;

use std::time::Duration;

use common::http::{Answer, free_port, get, post, sample, start_watch, stop, wait_ready};
use common::{Backend, World, count};

/// A 401 with the challenge and the JSON error.
fn assert_refused(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {}", answer.text());
    assert!(answer.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{what}: {}", answer.head);
    assert_eq!(answer.json()["error"], "unauthorized", "{what}");
}

/// Polls a case until it has ended (succeeded or failed); returns its body.
async fn wait_ended(world: &World, port: u16, url: &str, auth: &[(&str, &str)]) -> serde_json::Value {
    let mut body = serde_json::Value::Null;
    world
        .wait_for(&format!("{url} to end"), Duration::from_secs(120), async || {
            let answer = get(port, url, auth);
            assert_eq!(answer.status, 200, "{url}: {}", answer.text());
            body = answer.json();
            body["status"] == "succeeded" || body["status"] == "failed"
        })
        .await;
    body
}

on_both_backends!(the_bearer_token_guards_the_api_and_refusals_are_audited_without_it);

/// With `EFEN_HTTP__BEARER_TOKEN`: no token or a wrong one is 401 on `/v1` (and `/dicomweb`, and
/// unknown paths), each refusal counted and in the audit log; the right token passes: an image
/// succeeds, and bytes that are no image are accepted and fail at decode with their reason. The
/// health checks and `/metrics` stay open. The token is in neither the log nor the store.
async fn the_bearer_token_guards_the_api_and_refusals_are_audited_without_it(backend: Backend) {
    let token = format!("tok-{}-not-in-any-log", uuid::Uuid::new_v4().simple());
    let world = World::new(backend).await;
    let port = free_port();
    let env = [("EFEN_HTTP__BEARER_TOKEN", token.as_str()), ("EFEN_LOG", "debug,ort=warn")];
    let mut child = start_watch(&world, port, &env, "efen");
    wait_ready(&world, &mut child, port).await;
    assert_eq!(get(port, "/healthz", &[]).status, 200);
    let png = std::fs::read(common::repo().join("samples/synthetic/case01.png")).unwrap();

    let wrong = format!("Bearer {token}x");
    let refusals = [
        ("POST", "/v1/cases", None),
        ("POST", "/v1/cases", Some(wrong.as_str())),
        ("GET", "/v1/runs", None),
        ("GET", "/v1/cases/000000000000000000000000", Some("Basic dXNlcjpwYXNz")),
        ("GET", "/dicomweb/studies", None),
        ("GET", "/nothing-here", None),
    ];
    for (method, path, authorization) in refusals {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
        let answer = common::http::request(port, method, path, &headers, &png).unwrap();
        assert_refused(&answer, &format!("{method} {path} {authorization:?}"));
        if authorization == Some(wrong.as_str()) {
            assert!(answer.header("www-authenticate").unwrap().contains("invalid_token"), "{}", answer.head);
        }
    }
    assert!(!world.drop_dir().join("http").exists(), "a refused upload leaves nothing");

    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let accepted = post(port, "/v1/cases?name=case01.png", &auth, &png);
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let image_url = accepted.json()["status_url"].as_str().unwrap().to_string();
    let garbage = post(port, "/v1/cases?name=notes.txt", &auth, b"these bytes are neither an image nor DICOM");
    assert_eq!(garbage.status, 202, "bytes that are no image are accepted: {}", garbage.text());
    let garbage_url = garbage.json()["status_url"].as_str().unwrap().to_string();
    assert_eq!(wait_ended(&world, port, &image_url, &auth).await["status"], "succeeded");
    let failed = wait_ended(&world, port, &garbage_url, &auth).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_stage"], "decode", "{failed}");
    assert!(failed["source_path"].as_str().unwrap().ends_with("http/notes.txt"), "the file is named: {failed}");
    let reason = failed["error_message"].as_str().unwrap();
    assert!(reason.contains("not a supported image"), "and the reason: {reason}");
    assert_eq!(get(port, "/v1/runs", &auth).status, 200);

    let metrics = get(port, "/metrics", &[]);
    assert_eq!(metrics.status, 200, "/metrics is open without http.protect_metrics");
    let refused = |reason| sample(&metrics.text(), "efen_http_unauthorized_total", &[("reason", reason)]);
    assert_eq!((refused("missing"), refused("wrong")), (Some(5.0), Some(1.0)), "{}", metrics.text());

    let pool = world.pool().await;
    world
        .wait_for("six refusals in the audit log", Duration::from_secs(30), async || {
            count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'http_unauthorized'").await == 6
        })
        .await;
    let details: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, detail FROM audit_log WHERE action = 'http_unauthorized' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        details
            .iter()
            .any(|(_, d)| d.starts_with("POST /v1/cases from 127.0.0.1:") && d.ends_with(": wrong bearer token"))
    );
    assert!(
        details
            .iter()
            .any(|(_, d)| d.starts_with("GET /dicomweb/studies from 127.0.0.1:")
                && d.ends_with(": missing bearer token"))
    );
    // Nowhere in the store: the audit log, the runs, the cases and their results.
    let mut texts: Vec<String> = details.into_iter().flat_map(|(actor, detail)| [actor, detail]).collect();
    for sql in [
        "SELECT COALESCE(detail, '') FROM audit_log",
        "SELECT command || ' ' || pipeline_settings FROM runs",
        "SELECT source_path FROM cases",
        "SELECT COALESCE(error_message, '') FROM case_results",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        texts.extend(rows.into_iter().map(|(t,)| t));
    }
    assert!(texts.iter().all(|t| !t.contains(&token)), "the token is in the store");
    pool.close().await;
    if backend == Backend::Sqlite {
        for file in ["efen.db", "efen.db-wal"] {
            let bytes = std::fs::read(world.state().join(file)).unwrap_or_default();
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "the token is in {file}");
        }
    }
    stop(&world, child).await;
    let log = std::fs::read_to_string(world.dir.path().join("efen.log")).unwrap();
    assert!(log.contains("HTTP request refused"), "each refusal is logged");
    assert!(!log.contains(&token), "the token is in the log");
    world.close().await;
}

/// `http.protect_metrics` guards `/metrics` too, the health checks stay open. The token is all
/// digits: read as it is from the environment, not as a number.
#[tokio::test]
async fn protect_metrics_guards_the_metrics_but_not_the_health_checks() {
    let token = "20261130181500123456789";
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let env = [("EFEN_HTTP__BEARER_TOKEN", token), ("EFEN_HTTP__PROTECT_METRICS", "true")];
    let mut child = start_watch(&world, port, &env, "efen");
    wait_ready(&world, &mut child, port).await;
    assert_eq!(get(port, "/healthz", &[]).status, 200);
    assert_eq!(get(port, "/readyz", &[]).status, 200);
    assert_refused(&get(port, "/metrics", &[]), "/metrics without the token");
    let bearer = format!("Bearer {token}");
    let metrics = get(port, "/metrics", &[("Authorization", bearer.as_str())]);
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let refused = sample(&metrics.text(), "efen_http_unauthorized_total", &[("reason", "missing")]);
    assert_eq!(refused, Some(1.0), "{}", metrics.text());
    stop(&world, child).await;
    world.close().await;
}

/// A flood of 100 different images posted at once while the watcher takes none (a settle time
/// longer than the test): exactly `max_queued_uploads` are accepted, the others are 503 with
/// `Retry-After`, nothing of them is kept. After a restart the watcher takes the accepted ones:
/// each is exactly one case in the store, and no other case exists.
#[tokio::test]
async fn a_flood_of_uploads_is_held_back_with_503_and_none_is_lost() {
    const UPLOADS: u32 = 100;
    const QUEUE: usize = 10;
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let queue = QUEUE.to_string();
    let env = [
        ("EFEN_HTTP__MAX_QUEUED_UPLOADS", queue.as_str()),
        ("EFEN_WATCH__SETTLE_MS", "3600000"),
        ("EFEN_WATCH__UPLOAD_SETTLE_MS", "3600000"),
    ];
    let mut child = start_watch(&world, port, &env, "efen-flood");
    wait_ready(&world, &mut child, port).await;
    let threads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            std::thread::spawn(move || {
                let answer = post(port, &format!("/v1/cases?name=flood-{i}.png"), &[], &common::unique_png(i));
                (answer.status, answer.header("retry-after").map(str::to_string), answer.json())
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted: Vec<&serde_json::Value> = answers.iter().filter(|(s, _, _)| *s == 202).map(|(_, _, b)| b).collect();
    for (status, retry_after, body) in answers.iter().filter(|(s, _, _)| *s != 202) {
        assert_eq!((status, body["error"].as_str()), (&503, Some("busy")), "{body}");
        assert!(retry_after.as_deref().is_some_and(|s| s.parse::<u32>().is_ok()), "Retry-After: {retry_after:?}");
    }
    assert_eq!(accepted.len(), QUEUE, "exactly the queue's room is accepted");
    assert_eq!(common::names(&world.drop_dir().join("http")).len(), QUEUE, "and only they are kept");
    let metrics = get(port, "/metrics", &[]).text();
    assert_eq!(
        sample(&metrics, "efen_http_uploads_total", &[("result", "busy")]),
        Some(f64::from(UPLOADS) - QUEUE as f64)
    );
    assert_eq!(sample(&metrics, "efen_http_inbox_queued", &[]), Some(QUEUE as f64), "{metrics}");
    stop(&world, child).await;

    let mut child = start_watch(&world, port, &[], "efen-after");
    wait_ready(&world, &mut child, port).await;
    let pool = world.pool().await;
    world
        .wait_for("every accepted upload recorded", Duration::from_secs(120), async || {
            count(&pool, "SELECT COUNT(*) FROM results").await == QUEUE as i64
        })
        .await;
    for body in &accepted {
        let id = body["case_id"].as_str().unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM cases WHERE case_id = $1").bind(id).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1, "{body}");
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, QUEUE as i64, "no case but the accepted ones");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await, QUEUE as i64);
    pool.close().await;
    stop(&world, child).await;
    world.close().await;
}

/// HTTPS from a certificate and key made by `openssl` now: curl trusts that certificate alone
/// and reaches `/healthz` and, with the token, `/v1/runs`; plain HTTP on that port gets no answer;
/// SIGTERM still stops the server and the watch.
#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let world = World::new(Backend::Sqlite).await;
    let (cert, key) = (world.dir.path().join("cert.pem"), world.dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = free_port();
    let env = [
        ("EFEN_HTTP__TLS_CERT", cert.to_str().unwrap()),
        ("EFEN_HTTP__TLS_KEY", key.to_str().unwrap()),
        ("EFEN_HTTP__BEARER_TOKEN", "tls-token"),
    ];
    let mut child = start_watch(&world, port, &env, "efen");
    let curl = |path: &str, extra: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&cert)
            .args(extra)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    world
        .wait_for("/readyz over HTTPS", Duration::from_secs(90), async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("efen exited ({status})\n{}", world.logs());
            }
            curl("/readyz", &["--fail"]).0
        })
        .await;
    let (ok, body, stderr) = curl("/healthz", &["--fail"]);
    assert!(ok && body == "ok\n", "{body} {stderr}");
    let (ok, body, stderr) = curl("/v1/runs", &["--fail", "-H", "Authorization: Bearer tls-token"]);
    assert!(ok, "{stderr}");
    let runs: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(runs["runs"][0]["command"], "watch", "{runs}");
    let (_, body, _) = curl("/v1/runs", &[]);
    assert!(body.contains("unauthorized"), "{body}");
    let plain = common::http::request(port, "GET", "/healthz", &[], b"");
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|a| a.status != 200), "plain HTTP is not served");
    stop(&world, child).await;
    world.close().await;
}

/// `efen doctor` names a busy HTTP port, a bad TLS file and an unreachable destination, warns
/// about a listener beyond loopback without a token, and is content once a token is set.
#[tokio::test]
async fn doctor_checks_the_listener_the_node_and_the_destinations() {
    let world = World::new(Backend::Sqlite).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let closed = free_port();
    let destinations = format!("[\"PACS@127.0.0.1:{closed}\"]");
    let missing_cert = world.dir.path().join("no-cert.pem");
    let doctor = |env: &[(&str, &str)]| {
        let output = world.efen().envs(env.iter().copied()).arg("doctor").output().unwrap();
        let stdout = common::stdout(&output);
        eprintln!("$ efen doctor {env:?}\n{stdout}{}", common::stderr(&output));
        (output.status.code(), stdout)
    };

    let (code, stdout) = doctor(&[
        ("EFEN_HTTP__LISTEN", busy_addr.as_str()),
        ("EFEN_HTTP__TLS_CERT", missing_cert.to_str().unwrap()),
        ("EFEN_HTTP__TLS_KEY", missing_cert.to_str().unwrap()),
        ("EFEN_NODE__DESTINATIONS", destinations.as_str()),
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    let expected = format!("FAIL  http listener: cannot bind {busy_addr}: the port is in use");
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(stdout.contains("FAIL  http tls: cannot read http.tls_cert") && stdout.contains("no-cert.pem"), "{stdout}");
    let unreachable = format!("warn  destination: PACS@127.0.0.1:{closed}: cannot connect to 127.0.0.1:{closed}");
    assert!(stdout.contains(&unreachable), "{stdout}");

    let (code, stdout) = doctor(&[("EFEN_HTTP__LISTEN", "0.0.0.0:0")]);
    assert!(stdout.contains("ok    http listener: 0.0.0.0:0 can be bound"), "{stdout}");
    assert!(stdout.contains("warn  http access: 0.0.0.0:0 is reachable beyond this machine"), "{stdout}");
    assert_eq!(code, Some(0), "a warning fails nothing: {stdout}");
    let (code, stdout) = doctor(&[("EFEN_HTTP__LISTEN", "0.0.0.0:0"), ("EFEN_HTTP__BEARER_TOKEN", "doctor-token")]);
    assert!(stdout.contains("ok    http access: bearer token set"), "{stdout}");
    assert!(!stdout.contains("doctor-token") && !stdout.contains("warn  "), "{stdout}");
    assert_eq!(code, Some(0), "{stdout}");
    drop(busy);
}
