//! Access: with `http.bearer_token` set, every request needs `Authorization: Bearer <token>`,
//! except the open checks an orchestrator and a scraper make (`/healthz`, `/readyz`, and `/metrics`
//! unless `http.protect_metrics`). Everything else is guarded, known route or not, so a route
//! added later under `/v1` or `/dicomweb` is guarded without a word here.
//!
//! A refusal is `401` with `WWW-Authenticate: Bearer` and the JSON error, a log line, a count in
//! `efen_http_unauthorized_total` and an `http_unauthorized` row in the store's audit log. None of
//! them holds the token, nor what the client sent in its place.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::Service;
use super::error::ApiError;

/// The paths that stay open with a token set: liveness and readiness for the orchestrator.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];
/// Audit rows written at once; past that, a flood of refusals is logged and counted only.
const AUDITS_IN_FLIGHT: usize = 32;
/// Longest request path kept in the log and the audit log, in bytes.
const MAX_PATH: usize = 200;

/// A secret from the configuration. It never shows: `Debug` and `Serialize` print `<redacted>`
/// (or nothing when it is empty), so neither a log line nor a settings dump can hold it.
#[derive(Clone, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// The value itself, for the one place that compares it.
    fn expose(&self) -> &str {
        &self.0
    }

    fn shown(&self) -> &'static str {
        if self.is_set() { "<redacted>" } else { "" }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

/// Who may pass: the token's SHA-256 (compared in constant time, whatever the length of what is
/// presented), and whether `/metrics` is guarded too.
pub struct Access {
    token: Option<[u8; 32]>,
    protect_metrics: bool,
    audits: Arc<Semaphore>,
}

impl Access {
    pub fn new(token: &Secret, protect_metrics: bool) -> Access {
        let token = token.is_set().then(|| Sha256::digest(token.expose().as_bytes()).into());
        Access { token, protect_metrics, audits: Arc::new(Semaphore::new(AUDITS_IN_FLIGHT)) }
    }

    /// Whether a token is required at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    fn is_open(&self, path: &str) -> bool {
        OPEN.contains(&path) || (path == "/metrics" && !self.protect_metrics)
    }

    /// Why the request may not pass, or None when it may.
    fn refusal(&self, request: &Request) -> Option<Refusal> {
        let expected = self.token.as_ref()?;
        if self.is_open(request.uri().path()) {
            return None;
        }
        let Some(presented) = bearer(request) else { return Some(Refusal::Missing) };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(presented[..].ct_eq(&expected[..])) { None } else { Some(Refusal::Wrong) }
    }
}

/// What was wrong with a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that is not the one configured.
    Wrong,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
        }
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case), if that is the header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The middleware, layered over the whole router by [`super::router`].
pub(super) async fn guard(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let Some(refusal) = service.access.refusal(&request) else {
        return next.run(request).await;
    };
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
    let client = client.unwrap_or_else(|| "unknown".into());
    let path = clipped(request.uri().path());
    let method = request.method().to_string();
    crate::telemetry::RequestUnauthorized { client: &client, method: &method, path: &path, reason: refusal.as_str() }
        .emit();
    audit(&service, format!("{method} {path} from {client}: {} bearer token", refusal.as_str()));
    refused(refusal)
}

/// Writes the audit row without holding the answer back (the store may be slow or away).
fn audit(service: &Service, detail: String) {
    let Some(store) = service.readiness.store().cloned() else {
        tracing::warn!("the refusal is not in the audit log: the store is not open yet");
        return;
    };
    let Ok(permit) = service.access.audits.clone().try_acquire_owned() else {
        tracing::warn!("the refusal is not in the audit log: {AUDITS_IN_FLIGHT} audit rows are being written already");
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = store.audit_event(None, "http_unauthorized", &detail).await {
            tracing::warn!("cannot write the audit log: {e}");
        }
        drop(permit);
    });
}

/// `401` with the JSON error and the challenge (RFC 6750: `invalid_token` when one was sent).
fn refused(refusal: Refusal) -> Response {
    let (message, challenge) = match refusal {
        Refusal::Missing => {
            ("this server needs Authorization: Bearer <token> (http.bearer_token)", "Bearer realm=\"efen\"")
        }
        Refusal::Wrong => (
            "the bearer token is not the one configured (http.bearer_token)",
            "Bearer realm=\"efen\", error=\"invalid_token\"",
        ),
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// At most [`MAX_PATH`] bytes of `path`, cut at a character boundary.
fn clipped(path: &str) -> String {
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    if end < path.len() { format!("{}…", &path[..end]) } else { path.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, authorization: Option<&str>) -> Request {
        let mut builder = axum::http::Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_the_right_token_passes_and_only_the_checks_are_open() {
        let access = Access::new(&Secret::new("s3cret-token"), false);
        assert!(access.enabled());
        let refusal = |path: &str, authorization: Option<&str>| access.refusal(&request(path, authorization));
        for path in ["/v1/cases", "/v1/runs", "/dicomweb/studies", "/nothing", "/", "//v1/cases", "/healthz/x"] {
            assert_eq!(refusal(path, None), Some(Refusal::Missing), "{path}");
            assert_eq!(refusal(path, Some("Bearer wrong")), Some(Refusal::Wrong), "{path}");
            assert_eq!(refusal(path, Some("Bearer s3cret-token")), None, "{path}");
        }
        assert_eq!(refusal("/v1/cases", Some("bearer  s3cret-token ")), None, "the scheme in any case");
        assert_eq!(refusal("/v1/cases", Some("Bearer s3cret-token2")), Some(Refusal::Wrong));
        assert_eq!(refusal("/v1/cases", Some("Bearer s3cret")), Some(Refusal::Wrong));
        assert_eq!(refusal("/v1/cases", Some("Basic czNjcmV0LXRva2Vu")), Some(Refusal::Missing));
        assert_eq!(refusal("/v1/cases", Some("s3cret-token")), Some(Refusal::Missing));
        assert_eq!(refusal("/v1/cases", Some("Bearer ")), Some(Refusal::Missing));
        for open in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(refusal(open, None), None, "{open}");
        }
        let guarded = Access::new(&Secret::new("s3cret-token"), true);
        assert_eq!(guarded.refusal(&request("/metrics", None)), Some(Refusal::Missing));
        assert_eq!(guarded.refusal(&request("/healthz", None)), None);
        let open = Access::new(&Secret::default(), true);
        assert!(!open.enabled());
        assert_eq!(open.refusal(&request("/v1/cases", None)), None, "no token configured: all open");
    }

    #[test]
    fn a_secret_never_shows() {
        let secret = Secret::new("s3cret-token");
        assert_eq!(format!("{secret:?}"), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        let parsed: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(parsed, Secret::new("abc"));
        assert_eq!(clipped(&"é".repeat(150)).chars().count(), 101);
        assert_eq!(clipped("/v1/cases"), "/v1/cases");
    }
}
