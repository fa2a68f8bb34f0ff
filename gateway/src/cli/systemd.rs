//! systemd's readiness protocol (`sd_notify`): with `Type=notify` in the unit, systemd learns
//! when the gateway serves (`READY=1`), that it stops (`STOPPING=1`), and, after a binary
//! upgrade, which process is now the service's main one (`MAINPID=`; the unit needs
//! `NotifyAccess=all`, since the successor is not yet the main process when it says so).
//! Without `NOTIFY_SOCKET` in the environment, nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Send `state` (newline-separated `KEY=VALUE`s) to systemd, if it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let address = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(&path),
    };
    let sent = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd at {path}: {e}");
    }
}
