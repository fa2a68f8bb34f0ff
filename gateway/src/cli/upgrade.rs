//! Binary upgrade on `SIGUSR2`: start the gateway's executable again (the file now at the path
//! it was started from, so a replaced binary is what runs), hand it every listening socket,
//! and once it says it serves, stop accepting and drain ([`crate::server::Inherited`] has the
//! protocol and why sockets are handed over). A successor that fails — its config no longer
//! compiles, the binary does not start — is logged, and this process serves on.

use crate::server::{self, Listening};
use std::ffi::OsString;
use std::io::BufRead as _;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How to start a successor: the executable's path and arguments as this process got them,
/// and the signal that asks for it.
pub struct Successor {
    exe: PathBuf,
    args: Vec<OsString>,
    user2: Option<Signal>,
}

impl Successor {
    /// This process's own executable and arguments, read now (once the binary is replaced,
    /// `/proc/self/exe` names a deleted file).
    pub fn of_this_process() -> Option<Successor> {
        let exe = std::env::current_exe().ok()?;
        Some(Successor {
            exe,
            args: std::env::args_os().skip(1).collect(),
            user2: None,
        })
    }

    /// Take `SIGUSR2` from now on (its default action would end the process): call before
    /// the gateway says it is ready. Must run inside the runtime.
    pub fn listen(&mut self) {
        self.user2 = signal(SignalKind::user_defined2()).ok();
    }
}

/// On each `SIGUSR2`, try an upgrade; returns once a successor serves (the caller then drains).
pub async fn on_user2(mut successor: Successor, listening: Arc<Listening>, admin: Option<RawFd>) {
    let Some(mut user2) = successor.user2.take() else {
        return std::future::pending().await;
    };
    while user2.recv().await.is_some() {
        let sockets = listening.sockets();
        tracing::info!(exe = %successor.exe.display(), "upgrade: starting a new process");
        let started = start(&successor, &sockets, admin);
        let outcome = match started {
            Ok(started) => tokio::task::spawn_blocking(move || started.wait_ready())
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
            Err(e) => Err(format!("cannot start {}: {e}", successor.exe.display())),
        };
        match outcome {
            Ok(pid) => {
                tracing::info!(pid, "upgrade: the new process serves; this one drains");
                println!("handed over to pid {pid}");
                return;
            }
            Err(why) => tracing::error!("upgrade failed, this process serves on: {why}"),
        }
    }
    std::future::pending().await
}

/// A successor started, not yet ready.
struct Started {
    child: Child,
    ready: std::io::PipeReader,
}

impl Started {
    /// Its pid once it says it serves; why not, once it exited first.
    fn wait_ready(mut self) -> Result<u32, String> {
        let mut line = String::new();
        let read = std::io::BufReader::new(&mut self.ready).read_line(&mut line);
        if read.is_ok() && line.trim() == "ready" {
            return Ok(self.child.id());
        }
        match self.child.wait() {
            Ok(status) => Err(format!(
                "the new process exited ({status}) before it was ready"
            )),
            Err(e) => Err(format!("the new process is gone: {e}")),
        }
    }
}

#[allow(unsafe_code)]
fn start(
    successor: &Successor,
    sockets: &[(std::net::SocketAddr, Vec<RawFd>)],
    admin: Option<RawFd>,
) -> std::io::Result<Started> {
    let (ready, announce) = std::io::pipe()?;
    let mut kept: Vec<RawFd> = sockets.iter().flat_map(|(_, fds)| fds.clone()).collect();
    kept.extend(admin);
    kept.push(announce.as_raw_fd());
    let mut command = Command::new(&successor.exe);
    command
        .args(&successor.args)
        .env(server::LISTEN_FDS, server::describe_sockets(sockets, admin))
        .env(server::UPGRADE_FD, announce.as_raw_fd().to_string());
    // SAFETY: the closure runs between fork and exec and only calls fcntl on descriptors this
    // process has open.
    unsafe {
        command.pre_exec(move || server::keep_across_exec(&kept));
    }
    let child = command.spawn()?;
    // Ours closed, so the pipe ends when the successor exits.
    drop(announce);
    Ok(Started { child, ready })
}
