//! A TCP proxy that can be cut, to take the store away from a running efen and give it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A TCP proxy to PostgreSQL that can be cut: open connections are dropped and new ones refused.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let (target, up2) = (target.to_string(), up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let (target, mut cuts) = (target.clone(), cuts.clone());
                // Only cuts after this connection opened concern it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    /// Up: connections pass. Down: open ones are dropped and new ones refused.
    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}
