//! Accepting connections for the servers (the DICOM node's Storage SCP, the HTTPS face): one loop
//! for both, which waits out an accept error (out of file descriptors and the like) instead of
//! spinning on it, and stops at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next connection on `listener`, or None once `shutdown` is cancelled. `server` names the
/// listener in the warning an accept error gets.
pub async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    server: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    tracing::warn!("{server} cannot accept a connection: {e}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
}

/// How long an accept error waits before the next try: long enough for connections to close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
