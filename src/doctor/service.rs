//! `efen doctor`'s checks of what `efen watch` opens to the network: the HTTP listener (its port
//! free, its TLS files, a token when it listens beyond loopback) and the DICOM node (its port free,
//! each destination reachable). A destination that does not answer is a warning: the outbox keeps
//! its sends and retries them.

use std::time::Duration;

use crate::config::Config;
use crate::node::send::Destination;

/// How long a destination has to accept a TCP connection.
const CONNECT: Duration = Duration::from_secs(3);

/// What doctor says of one check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    /// Works, but deserves a look; does not fail `efen doctor`.
    Warn(String),
    Fail(String),
    /// Not configured: nothing to check.
    Info(String),
}

/// Every check of the HTTP listener and the DICOM node, named, in order.
pub async fn checks(config: &Config) -> Vec<(&'static str, Verdict)> {
    let mut verdicts = Vec::new();
    let http = &config.http;
    if http.enabled() {
        verdicts.push(("http listener", bindable(&http.listen, "http.listen")));
        if let Some((cert, key)) = http.tls_files() {
            let loaded = crate::http::tls::server_config(cert, key)
                .map(|_| format!("HTTPS with {} and {}", cert.display(), key.display()));
            verdicts.push(("http tls", loaded.map_or_else(|e| Verdict::Fail(e.to_string()), Verdict::Ok)));
        }
        let access = match (http.bearer_token.is_set(), http.is_loopback()) {
            (true, _) => Verdict::Ok("bearer token set (/v1 and every route but the health checks need it)".into()),
            (false, true) => Verdict::Ok("no bearer token; only this machine reaches the loopback address".into()),
            (false, false) => Verdict::Warn(format!(
                "{} is reachable beyond this machine and no http.bearer_token is set: anyone who reaches the port \
                 can submit files and read results (set EFEN_HTTP__BEARER_TOKEN, or listen on 127.0.0.1)",
                http.listen.trim()
            )),
        };
        verdicts.push(("http access", access));
    } else {
        verdicts.push(("http", Verdict::Info("no HTTP server (http.listen is empty)".into())));
    }

    let node = &config.node;
    if node.enabled() {
        verdicts.push(("dicom node listener", bindable(&node.listen, "node.listen")));
    }
    // Destinations are checked even without a listener: they may be configured ahead of it.
    // Parsed as the outbox parses them, and named by their Display: no password in the output.
    for destination in &node.destinations {
        let verdict = match destination.parse::<Destination>() {
            Ok(parsed) => match parsed.address() {
                Some((host, port)) => reachable(&host, port).await.named(&parsed.to_string()),
                None => Verdict::Fail(format!("{parsed} names no host")),
            },
            Err(message) => Verdict::Fail(message),
        };
        verdicts.push(("destination", verdict));
    }
    verdicts
}

impl Verdict {
    /// The verdict's text prefixed by what it is about.
    fn named(self, what: &str) -> Verdict {
        match self {
            Verdict::Ok(d) => Verdict::Ok(format!("{what}: {d}")),
            Verdict::Warn(d) => Verdict::Warn(format!("{what}: {d}")),
            Verdict::Fail(d) => Verdict::Fail(format!("{what}: {d}")),
            Verdict::Info(d) => Verdict::Info(format!("{what}: {d}")),
        }
    }
}

/// Whether `listen` can be bound now (it is then released at once).
fn bindable(listen: &str, key: &str) -> Verdict {
    let listen = listen.trim();
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Verdict::Ok(format!("{listen} can be bound")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Verdict::Fail(format!(
            "cannot bind {listen}: the port is in use (is efen watch already running? else choose another {key})"
        )),
        Err(e) => Verdict::Fail(format!("cannot bind {listen}: {e} (check {key})")),
    }
}

/// Whether a TCP connection to `host:port` opens within [`CONNECT`].
async fn reachable(host: &str, port: u16) -> Verdict {
    match tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Verdict::Ok(format!("{host}:{port} accepts connections")),
        Ok(Err(e)) => {
            Verdict::Warn(format!("cannot connect to {host}:{port}: {e} (sends wait in the outbox and are retried)"))
        }
        Err(_) => Verdict::Warn(format!(
            "{host}:{port} did not answer within {} s (sends wait in the outbox and are retried)",
            CONNECT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_name_their_host_and_port() {
        let at = |host: &str, port| Some((host.to_string(), port));
        let address = |text: &str| text.parse::<Destination>().ok().and_then(|d| d.address());
        assert_eq!(address("PACS@10.0.0.5:104"), at("10.0.0.5", 104));
        assert_eq!(address("PACS@[::1]:11112"), at("::1", 11112));
        assert_eq!(address("dicomweb:http://orthanc:8042/dicom-web"), at("orthanc", 8042));
        assert_eq!(address("dicomweb:https://pacs.example/dicomweb"), at("pacs.example", 443));
        assert_eq!(address("dicomweb:http://user@host/x"), at("host", 80));
        assert_eq!(address("dicomweb:ftp://host/x"), None);
        assert_eq!(address("PACS@host"), None);
        assert_eq!(address("host:104"), None);
    }

    #[tokio::test]
    async fn a_busy_port_fails_and_a_closed_destination_warns() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = busy.local_addr().unwrap().to_string();
        let Verdict::Fail(message) = bindable(&listen, "http.listen") else { panic!("{listen} is in use") };
        assert!(message.contains("port is in use") && message.contains("http.listen"), "{message}");
        assert!(matches!(bindable("127.0.0.1:0", "http.listen"), Verdict::Ok(_)));
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        assert!(matches!(reachable("127.0.0.1", closed).await, Verdict::Warn(_)));
        let port = busy.local_addr().unwrap().port();
        assert!(matches!(reachable("127.0.0.1", port).await, Verdict::Ok(_)));
    }
}
