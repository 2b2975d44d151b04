//! sd_notify for `efen watch` as a systemd `Type=notify` service (deploy/systemd/efen.service):
//! `READY=1` once the model is loaded, the store answers and the drop folder is watched, so that
//! `systemctl start` returns (and units ordered after efen start) only then; `STOPPING=1` when a
//! signal starts the drain. Without `$NOTIFY_SOCKET` (not under systemd, or another service type)
//! nothing is sent. The protocol is one datagram on a Unix socket, so no crate is needed.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Tells systemd that the service is ready.
pub fn ready() {
    send("READY=1\nSTATUS=watching");
}

/// Tells systemd that the service is draining before it exits.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining the cases in flight");
}

fn send(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else { return };
    if let Err(e) = notify_to(&socket, state) {
        tracing::warn!("cannot notify systemd at {}: {e}", socket.to_string_lossy());
    }
}

/// Sends `state` to the notification socket `socket`: a path, or `@name` for a socket in the
/// abstract namespace (as systemd passes to some containers).
fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &address)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(io::ErrorKind::Unsupported, "abstract sockets need Linux"));
        }
    }
    sender.send_to(state.as_bytes(), std::path::Path::new(socket))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(receiver: &UnixDatagram) -> String {
        receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buffer = [0u8; 256];
        let n = receiver.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_socket_path_receives_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&receiver), "READY=1");
        notify_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(received(&receiver), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_receives_ready() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("efen-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(received(&receiver), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(notify_to(dir.path().join("absent").as_os_str(), "READY=1").is_err());
    }
}
