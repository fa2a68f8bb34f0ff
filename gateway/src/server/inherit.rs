//! Sockets a predecessor process hands over in a binary upgrade, and the handover itself.
//!
//! Why hand sockets over rather than let the new process bind beside the old one with
//! `SO_REUSEPORT`: each reuse-port socket has its own accept queue, and when the old process
//! closes its sockets the kernel resets every connection still queued on them — under load,
//! a few connections per upgrade. A handed-over socket is the *same* socket, one queue shared
//! by both processes, so whatever the old one leaves unaccepted the new one accepts. (nginx,
//! HAProxy and Envoy's hot restart do the same.)
//!
//! The protocol (`gateway run` on `SIGUSR2`, [`crate::cli`]): the running gateway starts its
//! own executable again with the same arguments; the sockets stay open across `exec` and are
//! named in `GATEWAY_LISTEN_FDS` (`ADDRESS=FD,FD;…;admin=FD`, by configured address, so a
//! port-0 address finds its ephemeral port again); `GATEWAY_UPGRADE_FD` is the write end of a
//! pipe on which the new process says `ready` once it serves. Then the old one stops
//! accepting and drains; if the new one exits before it is ready (a config that no longer
//! compiles, say), the old one logs why and serves on.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

/// Names the inherited sockets: `ADDRESS=FD,FD;…;admin=FD`.
pub const LISTEN_FDS: &str = "GATEWAY_LISTEN_FDS";
/// The pipe on which the successor says it is ready.
pub const UPGRADE_FD: &str = "GATEWAY_UPGRADE_FD";
/// The key of the admin listener in [`LISTEN_FDS`].
const ADMIN: &str = "admin";

/// Sockets handed over by a predecessor, not yet taken; dropping it closes the rest.
#[derive(Default)]
pub struct Inherited {
    sockets: HashMap<String, Vec<TcpListener>>,
    ready: Option<File>,
}

impl Inherited {
    /// Nothing inherited (a gateway started by hand).
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// What the environment says a predecessor handed over. Only with both variables set;
    /// an entry that is not an open TCP listening socket is skipped.
    #[allow(unsafe_code)]
    pub fn from_env() -> Inherited {
        let (Ok(fds), Ok(ready)) = (std::env::var(LISTEN_FDS), std::env::var(UPGRADE_FD)) else {
            return Inherited::none();
        };
        let Some(ready) = ready.parse::<RawFd>().ok().filter(|fd| is_open(*fd)) else {
            return Inherited::none();
        };
        let mut inherited = Inherited {
            sockets: HashMap::new(),
            // SAFETY: an open descriptor the predecessor made for this process alone.
            ready: Some(unsafe { File::from_raw_fd(ready) }),
        };
        close_on_exec(ready);
        for (key, list) in parse(&fds) {
            for fd in list.into_iter().filter(|fd| is_open(*fd) && *fd != ready) {
                close_on_exec(fd);
                // SAFETY: an open descriptor handed over for this process to own.
                let socket = unsafe { TcpListener::from_raw_fd(fd) };
                if socket.local_addr().is_ok() {
                    inherited
                        .sockets
                        .entry(key.clone())
                        .or_default()
                        .push(socket);
                }
            }
        }
        inherited
    }

    /// Whether this process is a successor in an upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.ready.is_some()
    }

    /// The sockets listening on `address` (as the config names it).
    pub fn take(&mut self, address: SocketAddr) -> Vec<TcpListener> {
        let mut sockets = self
            .sockets
            .remove(&address.to_string())
            .unwrap_or_default();
        sockets.retain(|socket| {
            socket.local_addr().is_ok_and(|local| {
                local.ip() == address.ip()
                    && (address.port() == 0 || local.port() == address.port())
            })
        });
        sockets
    }

    /// The admin listener's socket, if it listens on `address`.
    pub fn take_admin(&mut self, address: SocketAddr) -> Option<TcpListener> {
        let socket = self.sockets.remove(ADMIN)?.into_iter().next()?;
        let local = socket.local_addr().ok()?;
        let same =
            local.ip() == address.ip() && (address.port() == 0 || local.port() == address.port());
        same.then_some(socket)
    }

    /// Tell the predecessor this process serves (it then stops accepting and drains).
    pub fn announce_ready(&mut self) {
        if let Some(mut pipe) = self.ready.take() {
            let _ = pipe.write_all(b"ready\n");
        }
    }
}

/// `GATEWAY_LISTEN_FDS` for these sockets (by configured address) and admin socket.
pub fn describe(sockets: &[(SocketAddr, Vec<RawFd>)], admin: Option<RawFd>) -> String {
    let mut entries: Vec<String> = sockets
        .iter()
        .map(|(address, fds)| format!("{address}={}", join(fds)))
        .collect();
    if let Some(fd) = admin {
        entries.push(format!("{ADMIN}={fd}"));
    }
    entries.join(";")
}

fn join(fds: &[RawFd]) -> String {
    fds.iter()
        .map(RawFd::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `ADDRESS=FD,FD;…` back into its entries; malformed ones are skipped.
fn parse(text: &str) -> Vec<(String, Vec<RawFd>)> {
    text.split(';')
        .filter_map(|entry| {
            let (key, fds) = entry.rsplit_once('=')?;
            let fds = fds.split(',').filter_map(|fd| fd.parse().ok()).collect();
            Some((key.to_string(), fds))
        })
        .collect()
}

#[allow(unsafe_code)]
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1
}

/// Inherited descriptors go no further than this process.
#[allow(unsafe_code)]
fn close_on_exec(fd: RawFd) {
    // SAFETY: sets a flag on a descriptor this process owns.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Clear close-on-exec on `fds`, in a forked child just before `exec`: they are what the
/// successor inherits. Only async-signal-safe calls.
#[allow(unsafe_code)]
pub fn keep_across_exec(fds: &[RawFd]) -> std::io::Result<()> {
    for &fd in fds {
        // SAFETY: fcntl is async-signal-safe; the descriptors are the parent's, open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_list_reads_back_as_written() {
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        let text = describe(&[(v4, vec![5, 6]), (v6, vec![7])], Some(9));
        assert_eq!(text, "127.0.0.1:0=5,6;[::1]:8443=7;admin=9");
        assert_eq!(
            parse(&text),
            vec![
                ("127.0.0.1:0".to_string(), vec![5, 6]),
                ("[::1]:8443".to_string(), vec![7]),
                ("admin".to_string(), vec![9]),
            ]
        );
        assert_eq!(
            parse("junk;=;a=x"),
            vec![("".to_string(), vec![]), ("a".to_string(), vec![])]
        );
    }

    #[test]
    fn a_socket_on_another_address_is_not_taken() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut inherited = Inherited::none();
        inherited.sockets.insert("127.0.0.1:1".into(), vec![socket]);
        assert!(inherited.take("127.0.0.1:1".parse().unwrap()).is_empty());
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        inherited.sockets.insert("127.0.0.1:0".into(), vec![socket]);
        assert_eq!(inherited.take("127.0.0.1:0".parse().unwrap()).len(), 1);
        assert!(inherited.take("127.0.0.1:0".parse().unwrap()).is_empty());
    }
}
