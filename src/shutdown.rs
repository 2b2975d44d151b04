//! Shutdown: SIGINT or SIGTERM cancels one token. Ingest stops claiming when it is cancelled and
//! drops its senders; every stage then finishes what it holds and the process exits 0.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT or SIGTERM. A second signal exits at once.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        for _ in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if cancel.is_cancelled() {
                tracing::warn!("second signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!("signal received: draining");
            cancel.cancel();
        }
    });
    token
}
