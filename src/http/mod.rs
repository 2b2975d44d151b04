//! efen's HTTP face, beside `efen watch`'s drop folder and DICOM node: health for the orchestrator
//! (systemd, docker compose, Kubernetes), metrics for the site's Prometheus, and cases for
//! applications.
//!
//! ```text
//! GET  /healthz                 200 while the process serves
//! GET  /readyz                  200 when the store answers, the model is loaded and the folders are
//!                               writable; 503 and a JSON body naming each problem otherwise
//! GET  /metrics                 the Prometheus text format, from the typed events of crate::telemetry
//! POST /v1/cases[?name=]        a file into the drop folder's http/ inbox; 202 with its case id
//! GET  /v1/cases/{id}           queued, processing, succeeded or failed; result.json when done
//! GET  /v1/cases/{id}/{file}    mask.png, overlay.png, probabilities.png, seg.dcm, sr.dcm, mask.nii.gz, result.json
//! GET  /v1/instances/{sha256}   the case an uploaded file became (a DICOM instance: its series case)
//! GET  /v1/runs[?limit=]        the latest runs, newest first
//! GET  /v1/openapi.json         the OpenAPI 3.1 document of all of the above
//! POST /dicomweb/studies[/{study}]  STOW-RS: multipart/related DICOM instances into the node's spool
//! ```
//! With `http.bearer_token` set, every route but `/healthz`, `/readyz` (and `/metrics`, unless
//! `http.protect_metrics`) needs `Authorization: Bearer <token>` ([`auth`]); with `http.tls_cert`
//! and `http.tls_key`, the server speaks HTTPS ([`tls`]).
//! Uploads are not a second way into the engine: [`inbox`] writes them where the watcher looks,
//! and the watcher admits them through the ledger like any dropped file.
//! It runs on the watch's tokio runtime and stops with its shutdown token: SIGTERM stops accepting
//! connections and lets the requests in flight finish.

pub mod auth;
pub mod cases;
pub mod dicomweb;
pub mod error;
pub mod files;
pub mod inbox;
pub mod openapi;
pub mod ready;
pub mod runs;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use cases::Cases;
pub use ready::Readiness;

/// The service's `[http]` section: `efen watch`'s HTTP server.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to listen on (e.g. `127.0.0.1:8080`); empty: no HTTP server.
    pub listen: String,
    /// When set, every request but the health checks needs `Authorization: Bearer <token>`. Read
    /// from `EFEN_HTTP__BEARER_TOKEN` as it is (see [`crate::config`]); never logged or shown.
    pub bearer_token: auth::Secret,
    /// Guard `/metrics` with the token too (the health checks stay open).
    pub protect_metrics: bool,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS. Empty: plain HTTP.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// Uploads that may wait in `<drop>/http/` for the watcher; past it, `POST /v1/cases` is 503.
    pub max_queued_uploads: usize,
}

impl HttpConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled() {
            let port = self.listen.rsplit_once(':').and_then(|(host, port)| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty()).then(|| port.parse::<u16>().ok()).flatten()
            });
            if port.is_none() {
                problems.push(format!("http.listen {:?} must be host:port, e.g. \"127.0.0.1:8080\"", self.listen));
            }
        }
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            problems.push("http.tls_cert and http.tls_key go together: set both for HTTPS, or neither".into());
        }
        if self.max_queued_uploads == 0 {
            problems.push("http.max_queued_uploads must be at least 1".into());
        }
        problems
    }

    /// Whether `[http] listen` turns the server on.
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    /// The certificate and key files, when the server speaks HTTPS.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        (!self.tls_cert.as_os_str().is_empty()).then_some((self.tls_cert.as_path(), self.tls_key.as_path()))
    }

    /// Whether `listen` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`), which only
    /// this machine reaches.
    pub fn is_loopback(&self) -> bool {
        let host = self.listen.trim().rsplit_once(':').map_or("", |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// How long `/metrics` waits for the store before it reports it down.
const STORE_PROBE: Duration = Duration::from_secs(1);
/// How often the recorder's histograms are drained between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// What the endpoints read.
struct Service {
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
    cases: Arc<Cases>,
    stow: Arc<dicomweb::Stow>,
    access: auth::Access,
}

/// The running server.
pub struct Server {
    /// The address it listens on (the port chosen, for `:0`).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Waits until the server has stopped (after the shutdown token), its requests answered.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::warn!("HTTP server ended abnormally: {e}");
        }
    }
}

/// Binds `config.listen`, installs the metrics recorder and serves until `shutdown` is cancelled.
/// `cases` is shared with the watch, which opens it to uploads once the engine is open; `stow`
/// writes into the DICOM node's spool.
pub async fn start(
    config: &HttpConfig,
    readiness: Arc<Readiness>,
    cases: Arc<Cases>,
    stow: Arc<dicomweb::Stow>,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    // The files first: a wrong path is an error before anything listens.
    let tls = match config.tls_files() {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen.trim())
        .await
        .map_err(|e| anyhow::anyhow!("HTTP server cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = crate::telemetry::install()?;
    tokio::spawn({
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(UPKEEP) => metrics.run_upkeep(),
                }
            }
        }
    });
    let access = auth::Access::new(&config.bearer_token, config.protect_metrics);
    let guarded =
        if access.enabled() { "bearer token required" } else { "no bearer token: open to anyone who reaches it" };
    let app = router(Arc::new(Service { readiness, metrics, cases, stow, access }));
    // The client's address reaches the handlers (and the audit log of refusals) as ConnectInfo.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
    tracing::info!(listen = %addr, access = guarded, "{scheme} server listening: /healthz, /readyz, /metrics, /v1 (cases, runs, openapi.json), /dicomweb (STOW-RS)");
    let stopping = shutdown.clone().cancelled_owned();
    let task = match tls {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopping).await {
                tracing::warn!("HTTP server failed: {e}");
            }
        }),
        Some(tls) => {
            // A no-op tap: axum gives ConnectInfo<SocketAddr> to a tapped listener of any kind.
            let listener = axum::serve::ListenerExt::tap_io(tls::TlsListener::new(listener, tls, shutdown), |_| {});
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopping).await {
                    tracing::warn!("HTTPS server failed: {e}");
                }
            })
        }
    };
    Ok(Server { addr, task })
}

fn router(service: Arc<Service>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cases", post(cases::submit))
        .route("/v1/cases/{id}", get(cases::status))
        .route("/v1/cases/{id}/{file}", get(files::serve))
        .route("/v1/instances/{sha256}", get(cases::instance))
        .route("/v1/runs", get(runs::list))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/dicomweb/studies", post(dicomweb::store))
        .route("/dicomweb/studies/{study}", post(dicomweb::store_in_study))
        .fallback(not_found)
        .with_state(service.clone());
    // Layered last, over the router as a whole: every route above and the fallback are guarded,
    // and so is any route added there later.
    routes.layer(axum::middleware::from_fn_with_state(service, auth::guard))
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no route {}; GET /v1/openapi.json lists them", uri.path()))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(service): State<Arc<Service>>) -> Response {
    service.readiness.check().await.into_response()
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    // The gauge is as fresh as the scrape: a store that went away between cases shows at once.
    if let Some(store) = service.readiness.store() {
        let up = matches!(tokio::time::timeout(STORE_PROBE, store.ping()).await, Ok(Ok(())));
        crate::telemetry::StoreAnswered { up }.emit();
    }
    let inbox = service.cases.inbox.clone();
    if let Ok(Ok(queued)) = tokio::task::spawn_blocking(move || inbox.queued(usize::MAX)).await {
        crate::telemetry::InboxQueued { files: queued }.emit();
    }
    let body = service.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

impl IntoResponse for ready::Report {
    fn into_response(self) -> Response {
        let status = if self.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (status, axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_must_be_host_and_port() {
        let config = |listen: &str| HttpConfig {
            listen: listen.into(),
            bearer_token: auth::Secret::default(),
            protect_metrics: false,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            max_queued_uploads: 10,
        };
        let problems = |listen: &str| config(listen).problems();
        assert!(problems("").is_empty(), "empty: no server");
        assert!(problems("127.0.0.1:8080").is_empty());
        assert!(problems("[::1]:8080").is_empty());
        assert!(problems("localhost:0").is_empty());
        for bad in ["8080", ":8080", "127.0.0.1", "127.0.0.1:http", "host:70000"] {
            assert!(problems(bad)[0].contains("http.listen"), "{bad}");
        }
        let half_tls = HttpConfig { tls_cert: "cert.pem".into(), ..config("127.0.0.1:8080") };
        assert!(half_tls.problems()[0].contains("http.tls_key"), "{:?}", half_tls.problems());
        let no_room = HttpConfig { max_queued_uploads: 0, ..config("") };
        assert!(no_room.problems()[0].contains("max_queued_uploads"));
        for (listen, loopback) in [
            ("127.0.0.1:8080", true),
            ("[::1]:80", true),
            ("localhost:1", true),
            ("0.0.0.0:8080", false),
            ("10.1.2.3:80", false),
        ] {
            assert_eq!(config(listen).is_loopback(), loopback, "{listen}");
        }
        let secret = HttpConfig { bearer_token: auth::Secret::new("s3cret-token"), ..config("") };
        assert!(!format!("{secret:?}").contains("s3cret"), "Debug shows no token");
        assert!(!toml::to_string(&secret).unwrap().contains("s3cret"), "nor a settings dump");
    }
}
