//! HTTPS: with `http.tls_cert` and `http.tls_key` (PEM files) the server speaks TLS through rustls
//! (the `ring` provider, which sqlx already builds). [`TlsListener`] is an `axum::serve` listener
//! whose connections arrive already through their handshake, so the server, its graceful shutdown
//! and `ConnectInfo` are the same as over plain HTTP.
//!
//! Handshakes run on tasks of their own (a slow or silent client holds up nobody) and are given
//! [`HANDSHAKE`] to finish; one that fails is logged at debug level and dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Time a client has to complete its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections through their handshake that wait for the server to take them.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {} holds no PEM {expected}: {reason}", path.display())]
    Parse { what: &'static str, path: PathBuf, expected: &'static str, reason: String },
    #[error("http.tls_cert and http.tls_key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's TLS configuration from the certificate chain and key files (PEM). The files are
/// checked here, before the server starts, so a wrong path is a clear error at startup.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
    };
    let parse = |what, path: &Path, expected, reason: String| TlsError::Parse {
        what,
        path: path.to_path_buf(),
        expected,
        reason,
    };
    let cert_pem = read("http.tls_cert", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| parse("http.tls_cert", cert, "certificate", e.to_string()))?;
    if chain.is_empty() {
        return Err(parse("http.tls_cert", cert, "certificate", "no CERTIFICATE section".into()));
    }
    let key_pem = read("http.tls_key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| parse("http.tls_key", key, "private key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections, runs their handshakes, and hands on those that complete.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` until `shutdown`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>, shutdown: CancellationToken) -> TlsListener {
        let local = listener.local_addr().expect("a bound listener has an address");
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Some((tcp, client)) =
                crate::listen::next_connection(&listener, &shutdown, "the HTTPS server").await
            {
                let (acceptor, ready_tx) = (acceptor.clone(), ready_tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready_tx.send((tls, client)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%client, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (shutdown): nothing more comes; the server stops on the same token.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_missing_or_not_pem_are_named() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("missing.pem");
        let message = server_config(&missing, &missing).unwrap_err().to_string();
        assert!(message.starts_with("cannot read http.tls_cert") && message.contains("missing.pem"), "{message}");
        let text = folder.path().join("cert.pem");
        std::fs::write(&text, "not a certificate").unwrap();
        let message = server_config(&text, &text).unwrap_err().to_string();
        assert!(message.contains("http.tls_cert") && message.contains("holds no PEM certificate"), "{message}");
    }
}
