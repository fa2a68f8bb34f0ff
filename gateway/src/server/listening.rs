//! The listening sockets of a running gateway, and the worker threads that accept on them.
//!
//! Workers start first and idle until told what to accept on; each address is then bound once
//! per worker (`SO_REUSEPORT`) and each worker gets its socket as an [`Accept`] command. That
//! one path serves the start, a reload that adds, changes or removes addresses
//! ([`Listening::prepare`] binds everything new first, all or nothing, so a failed bind changes
//! nothing; [`Listening::commit`] then starts the new and closes the removed), and a binary
//! upgrade, whose successor is handed these very sockets ([`super::inherit`]) so that no
//! connection waiting in an accept queue is lost.
//!
//! Each address has its own stop signal: closing it ends that address's accept loops and asks
//! its open connections to finish their in-flight requests and close (an HTTP/2 GOAWAY, an
//! HTTP/1.1 `Connection: close`), while the other addresses serve on.

use super::inherit::Inherited;
use super::{BACKLOG, ConnectionSettings, Listener, accept_loop};
use crate::compile::Serves;
use crate::proxy::Live;
use crate::telemetry::metrics::ListenerSeries;
use crate::tls::TlsListener;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

/// Tells a worker to accept on one more socket.
pub struct Accept {
    socket: TcpListener,
    listener: Arc<Listener>,
    series: Arc<ListenerSeries>,
    stop: watch::Receiver<bool>,
}

/// A worker thread as the control side sees it.
struct Worker {
    runtime: tokio::runtime::Handle,
    accept: mpsc::UnboundedSender<Accept>,
}

/// One address being served.
struct Bound {
    /// As the config names it (port 0 included): what reloads and upgrades match on.
    configured: SocketAddr,
    serves: Serves,
    local: SocketAddr,
    listener: Arc<Listener>,
    /// Its sockets, one per worker; valid while it is bound (the accept loops own them).
    fds: Vec<RawFd>,
    close: watch::Sender<bool>,
}

/// The serving addresses and the workers accepting on them.
pub struct Listening {
    workers: Vec<Worker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    bound: Mutex<Vec<Bound>>,
    /// Stop signals of closed addresses whose connections may still be open.
    draining: Mutex<Vec<watch::Sender<bool>>>,
    exit: watch::Sender<bool>,
}

/// What a reload would change, bound and ready: [`Listening::commit`] applies it, dropping it
/// closes what it bound.
pub struct Change {
    added: Vec<(Bound, Vec<TcpListener>)>,
    /// Indexes into the bound list (as it was when prepared) of addresses to close.
    removed: Vec<usize>,
}

impl Listening {
    /// Start `workers` worker threads serving `live`; they accept nothing until
    /// [`commit`](Self::commit)ted addresses.
    pub fn start(
        workers: usize,
        live: Arc<Live>,
        settings: Arc<ConnectionSettings>,
    ) -> io::Result<Listening> {
        let (exit, exit_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for index in 0..workers.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (accept, commands) = mpsc::unbounded_channel();
            handles.push(Worker {
                runtime: runtime.handle().clone(),
                accept,
            });
            let (live, settings, exit) = (live.clone(), settings.clone(), exit_rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("http-worker-{index}"))
                .spawn(move || run_worker(index, runtime, commands, live, settings, exit))?;
            threads.push(thread);
        }
        Ok(Listening {
            workers: handles,
            threads: Mutex::new(threads),
            bound: Mutex::new(Vec::new()),
            draining: Mutex::new(Vec::new()),
            exit,
        })
    }

    /// Every bound socket by configured address, for a successor process.
    pub fn sockets(&self) -> Vec<(SocketAddr, Vec<RawFd>)> {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        bound
            .iter()
            .map(|b| (b.configured, b.fds.clone()))
            .collect()
    }

    /// Bind what serving `wanted` needs beyond what is served now (`tls[i]` serves
    /// `Serves::Tls(i)`), taking inherited sockets first: all of it, or an error naming the
    /// address and nothing bound. A redirect goes to the port its block's first address has.
    pub fn prepare(
        &self,
        wanted: &[(SocketAddr, Serves)],
        tls: &[Arc<TlsListener>],
        inherited: &mut Inherited,
    ) -> io::Result<Change> {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = vec![false; bound.len()];
        let mut added = Vec::new();
        let mut https_ports = vec![None; tls.len()];
        // HTTPS first, so a redirect knows the port it points to.
        let mut order: Vec<&(SocketAddr, Serves)> = wanted.iter().collect();
        order.sort_by_key(|(_, serves)| matches!(serves, Serves::Redirect(_)));
        for &(configured, serves) in order {
            let listener = match serves {
                Serves::Plain => Listener::Plain,
                Serves::Tls(block) => Listener::Tls(tls[block].clone()),
                Serves::Redirect(block) => Listener::Redirect {
                    port: https_ports[block].unwrap_or(443),
                },
            };
            let same = bound.iter().enumerate().position(|(i, b)| {
                !kept[i]
                    && b.configured == configured
                    && b.serves == serves
                    && same_listener(&b.listener, &listener)
            });
            let local = match same {
                Some(i) => {
                    kept[i] = true;
                    bound[i].local
                }
                None => {
                    let sockets = self.bind(configured, inherited).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {configured}: {e}"))
                    })?;
                    let local = sockets[0].local_addr()?;
                    let (close, _) = watch::channel(false);
                    let fds = sockets.iter().map(AsRawFd::as_raw_fd).collect();
                    let entry = Bound {
                        configured,
                        serves,
                        local,
                        listener: Arc::new(listener),
                        fds,
                        close,
                    };
                    added.push((entry, sockets));
                    local
                }
            };
            if let Serves::Tls(block) = serves {
                https_ports[block].get_or_insert(local.port());
            }
        }
        let removed = (0..bound.len()).filter(|i| !kept[*i]).collect();
        Ok(Change { added, removed })
    }

    /// Apply `change`: the workers accept on what it added, what it removed stops accepting
    /// and drains. Returns a line per address for the log (`listening on …`, `closed …`).
    pub fn commit(&self, change: Change) -> Vec<String> {
        let mut lines = Vec::new();
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|close| !close.is_closed());
        for index in change.removed.iter().rev() {
            let gone = bound.remove(*index);
            let _ = gone.close.send(true);
            lines.push(format!(
                "closed {} ({}); its connections drain",
                gone.local,
                gone.listener.describe()
            ));
            draining.push(gone.close);
        }
        for (entry, sockets) in change.added {
            let series = Arc::new(ListenerSeries::new(&entry.local.to_string()));
            for (worker, socket) in self.workers.iter().cycle().zip(sockets) {
                let _ = worker.accept.send(Accept {
                    socket,
                    listener: entry.listener.clone(),
                    series: series.clone(),
                    stop: entry.close.subscribe(),
                });
            }
            lines.push(format!(
                "listening on {} ({})",
                entry.local,
                entry.listener.describe()
            ));
            bound.push(entry);
        }
        lines
    }

    /// Stop accepting everywhere; open connections finish their in-flight requests.
    pub fn close_all(&self) {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        for gone in bound.drain(..) {
            let _ = gone.close.send(true);
            draining.push(gone.close);
        }
    }

    /// Resolves once every closed address's connections are gone.
    pub async fn drained(&self) {
        let waiting: Vec<watch::Sender<bool>> = {
            let draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
            draining.clone()
        };
        for close in waiting {
            close.closed().await;
        }
    }

    /// End the workers, dropping whatever connection is still open, and wait for their threads.
    pub async fn exit(&self) {
        let _ = self.exit.send(true);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    /// One socket per worker on `address`: inherited ones first, then new ones (port 0
    /// resolved by the first, shared by the rest). A worker may get more than one inherited
    /// socket: every one is accepted on, or its queued connections would be lost.
    fn bind(&self, address: SocketAddr, inherited: &mut Inherited) -> io::Result<Vec<TcpListener>> {
        let mut sockets = Vec::with_capacity(self.workers.len());
        for (worker, socket) in self.workers.iter().cycle().zip(inherited.take(address)) {
            let _entered = worker.runtime.enter();
            socket.set_nonblocking(true)?;
            sockets.push(TcpListener::from_std(socket)?);
        }
        let mut target = match sockets.first() {
            Some(first) => first.local_addr()?,
            None => address,
        };
        for worker in self.workers.iter().skip(sockets.len()) {
            // Sockets register with the reactor of the runtime entered.
            let _entered = worker.runtime.enter();
            let socket = listen_shared(target)?;
            target = socket.local_addr()?;
            sockets.push(socket);
        }
        Ok(sockets)
    }
}

/// Whether a bound listener serves what `wanted` asks: the same TLS block, the same redirect.
fn same_listener(bound: &Listener, wanted: &Listener) -> bool {
    match (bound, wanted) {
        (Listener::Plain, Listener::Plain) => true,
        (Listener::Tls(a), Listener::Tls(b)) => Arc::ptr_eq(a, b),
        (Listener::Redirect { port: a }, Listener::Redirect { port: b }) => a == b,
        _ => false,
    }
}

/// A listening socket on `address` that other sockets may share (this process's other
/// workers, and a successor process during an upgrade).
fn listen_shared(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// One worker thread: accept on each socket it is given, until `exit` ends its runtime.
fn run_worker(
    index: usize,
    runtime: tokio::runtime::Runtime,
    mut commands: mpsc::UnboundedReceiver<Accept>,
    live: Arc<Live>,
    settings: Arc<ConnectionSettings>,
    mut exit: watch::Receiver<bool>,
) {
    crate::worker::enter(index);
    runtime.block_on(async move {
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(accept) = command else { break };
                    tokio::spawn(accept_loop(
                        accept.socket,
                        accept.listener,
                        accept.series,
                        live.clone(),
                        settings.clone(),
                        accept.stop,
                    ));
                }
                _ = exit.wait_for(|exit| *exit) => break,
            }
        }
        let _ = exit.wait_for(|exit| *exit).await;
    });
}
