//! A plain HTTP/1.0 client for tests that talk to efen's HTTP face: any method, extra headers
//! (a bearer token), a body written while the answer is read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{KillOnDrop, World};

/// `efen watch` on the world's drop folder serving HTTP on `port`, with `env` on top; its stderr
/// goes to the world's log `log`.
pub fn start_watch(world: &World, port: u16, env: &[(&str, &str)], log: &str) -> KillOnDrop {
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("EFEN_HTTP__LISTEN", listen.as_str())];
    all.extend_from_slice(env);
    world.watch(&all, log)
}

/// Waits for `/readyz` (open, token or not) to answer 200; fails at once, with the logs, if efen
/// exits instead.
pub async fn wait_ready(world: &World, child: &mut KillOnDrop, port: u16) {
    world
        .wait_for("/readyz to answer 200", Duration::from_secs(90), async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("efen exited ({status}) before it was ready\n{}", world.logs());
            }
            request(port, "GET", "/readyz", &[], b"").is_ok_and(|answer| answer.status == 200)
        })
        .await;
}

/// SIGTERM, and efen must exit 0 within a minute (its requests drained).
pub async fn stop(world: &World, mut child: KillOnDrop) {
    super::signal(&child, "TERM");
    let status = super::wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", world.logs());
}

/// A loopback port nobody listens on right now, and that this test process has not handed out
/// before: the OS may give a port again once its probe socket is closed, and two servers of one
/// test (efen and its Orthanc) must not both be told to take it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// An answer: the status code, the header lines and the body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let values = self.head.lines().filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        });
        values.collect()
    }
}

/// `<method> http://127.0.0.1:<port><path>` with `headers` and `body`, over HTTP/1.0, so that the
/// body of the answer ends with the connection. The body is written on a thread while the answer
/// is read: a server that refuses a body may answer before reading it. A POST without a
/// Content-Type header is sent as `application/octet-stream`.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Answer> {
    exchange(port, method, path, headers, body, None)
}

/// As [`request`], but with `declared` as the Content-Length when it is given: the body is then
/// followed by a shut write side, as from a client that cut its upload short.
pub fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    declared: Option<usize>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n")?;
    for (name, value) in headers {
        write!(stream, "{name}: {value}\r\n")?;
    }
    if method == "POST" {
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            write!(stream, "Content-Type: application/octet-stream\r\n")?;
        }
        write!(stream, "Content-Length: {}\r\n", declared.unwrap_or(body.len()))?;
    }
    write!(stream, "\r\n")?;
    let mut writer = stream.try_clone()?;
    let body = body.to_vec();
    let sent = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
        if declared.is_some() {
            let _ = writer.shutdown(std::net::Shutdown::Write);
        }
    });
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    let _ = sent.join();
    // A refused body may end in a reset once the answer is in.
    if response.is_empty() {
        read?;
    }
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok(Answer { status, head, body })
}

/// `GET` with `headers`; panics when the connection fails.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(port, "GET", path, headers, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `POST` with `headers`; panics when the connection fails.
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    request(port, "POST", path, headers, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The value of the series `name{labels}` (exactly these labels, in any order) in a Prometheus
/// text exposition.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let found: std::collections::BTreeMap<&str, &str> =
            labels.split(',').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
        (series_name == name && found == wanted).then(|| value.parse().ok())?
    })
}
