//! Listeners and workers: every address is bound once per worker (`SO_REUSEPORT`, so the
//! kernel spreads new connections over the workers' sockets); each worker is a thread running
//! a single-threaded runtime that accepts on its own sockets and serves those connections to
//! the end ([`connection::serve`]: HTTP/1.1, parked between requests, or HTTP/2 with prior
//! knowledge). On SIGINT/SIGTERM every worker stops accepting, in-flight requests get up to the
//! configured grace period, idle connections close.
//!
//! Why a runtime per worker rather than one work-stealing runtime over all threads: a request
//! then never changes threads — no work-stealing queues, no cross-thread wake-ups between the
//! client connection, the request and its upstream connection — which is what made one worker's
//! `current_thread` runtime serve 18% more requests per CPU-second than the multi-threaded one.
//! The cost is nginx's: a worker busy with a slow synchronous step (a fresh plugin instance)
//! delays only its own connections, and few long-lived connections may hash unevenly.

mod connection;
mod park;
mod sparse;
mod stream;
mod trim;
mod tunnel;

pub use connection::ConnectionSettings;

use crate::compile::Serves;
use crate::proxy::Live;
use crate::telemetry;
use crate::telemetry::metrics::{self, ListenerSeries};
use crate::tls::TlsListener;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// Pending connections the kernel queues per socket (tokio's own default).
const BACKLOG: u32 = 1024;

/// What a listening address serves.
pub enum Listener {
    /// Cleartext HTTP/1.1, and HTTP/2 by prior knowledge.
    Plain,
    /// HTTPS: HTTP/1.1 or HTTP/2 by ALPN.
    Tls(Arc<TlsListener>),
    /// A 308 to HTTPS on `port` for every request.
    Redirect {
        /// The HTTPS port redirected to.
        port: u16,
    },
}

impl Listener {
    /// A word for logs: `http`, `https` or `redirect`.
    pub fn describe(&self) -> &'static str {
        match self {
            Listener::Plain => "http",
            Listener::Tls(_) => "https",
            Listener::Redirect { .. } => "redirect",
        }
    }
}

/// Bound sockets and the runtimes that will serve them, one set per worker.
pub struct Listeners {
    /// The bound addresses, ephemeral ports resolved, in the order of the config, with what
    /// each serves.
    pub addresses: Vec<(SocketAddr, Arc<Listener>)>,
    workers: Vec<Worker>,
}

impl Listeners {
    /// The TLS listener blocks served, each once.
    pub fn tls(&self) -> Vec<Arc<TlsListener>> {
        let mut blocks: Vec<Arc<TlsListener>> = Vec::new();
        for (_, listener) in &self.addresses {
            if let Listener::Tls(tls) = &**listener
                && !blocks.iter().any(|seen| Arc::ptr_eq(seen, tls))
            {
                blocks.push(tls.clone());
            }
        }
        blocks
    }
}

/// One worker before it starts: its runtime and its socket for each address.
struct Worker {
    runtime: tokio::runtime::Runtime,
    listeners: Vec<(TcpListener, Arc<Listener>, Arc<ListenerSeries>)>,
}

/// Build `workers` runtimes and bind each of `addresses` once per worker. An address with
/// port 0 gets one ephemeral port, shared by all workers. `tls[i]` serves `Serves::Tls(i)`;
/// a redirect goes to the port its block's first address was bound to.
pub fn bind(
    addresses: &[(SocketAddr, Serves)],
    tls: &[Arc<TlsListener>],
    workers: usize,
) -> io::Result<Listeners> {
    let mut built = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        built.push(Worker {
            runtime,
            listeners: Vec::new(),
        });
    }
    let mut bound: Vec<(SocketAddr, Arc<Listener>)> = Vec::with_capacity(addresses.len());
    // HTTPS first, so a redirect knows the port it points to.
    let mut order: Vec<&(SocketAddr, Serves)> = addresses.iter().collect();
    order.sort_by_key(|(_, serves)| matches!(serves, Serves::Redirect(_)));
    let mut https_ports = vec![None; tls.len()];
    for (address, serves) in order {
        let listener = match *serves {
            Serves::Plain => Listener::Plain,
            Serves::Tls(block) => Listener::Tls(tls[block].clone()),
            Serves::Redirect(block) => Listener::Redirect {
                port: https_ports[block].unwrap_or(443),
            },
        };
        let listener = Arc::new(listener);
        let local = bind_all(*address, &listener, &mut built)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
        if let Serves::Tls(block) = serves {
            https_ports[*block].get_or_insert(local.port());
        }
        bound.push((local, listener));
    }
    Ok(Listeners {
        addresses: bound,
        workers: built,
    })
}

/// Bind `address` for every worker (port 0 resolved by the first, shared by the rest); returns
/// the address bound.
fn bind_all(
    address: SocketAddr,
    listener: &Arc<Listener>,
    workers: &mut [Worker],
) -> io::Result<SocketAddr> {
    let mut sockets = Vec::with_capacity(workers.len());
    let mut target = address;
    for worker in workers.iter() {
        // Sockets register with the reactor of the runtime entered.
        let _entered = worker.runtime.enter();
        let listener = listen_shared(target)?;
        target = listener.local_addr()?;
        sockets.push(listener);
    }
    let series = Arc::new(ListenerSeries::new(&target.to_string()));
    for (worker, socket) in workers.iter_mut().zip(sockets) {
        worker
            .listeners
            .push((socket, listener.clone(), series.clone()));
    }
    Ok(target)
}

/// A listening socket on `address` that other sockets of this process may share.
fn listen_shared(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Serve the snapshot in `live` (whatever reloads store there) on `listeners` until a
/// shutdown signal; then answer `/ready` with 503 for `readiness_grace` while still
/// accepting, stop accepting, and drain for up to `grace`. Runs on the control runtime, which
/// also keeps the background tasks (heap trimming).
pub async fn serve(
    listeners: Listeners,
    live: Arc<Live>,
    settings: Arc<ConnectionSettings>,
    (readiness_grace, grace): (Duration, Duration),
) -> io::Result<()> {
    // Every accept loop and connection holds a receiver: the sender learns when all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Tells the workers to end their runtimes, dropping whatever outlived the grace period.
    let (exit_tx, exit_rx) = watch::channel(false);
    let mut threads = Vec::with_capacity(listeners.workers.len());
    for (index, worker) in listeners.workers.into_iter().enumerate() {
        let live = live.clone();
        let stop = stop_rx.clone();
        let exit = exit_rx.clone();
        let settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name(format!("http-worker-{index}"))
            .spawn(move || run_worker(index, worker, live, settings, stop, exit))?;
        threads.push(thread);
    }
    drop(stop_rx);
    let trimmer = tokio::spawn(trim::run());

    shutdown_signal().await;
    // Load balancers polling `/ready` learn first; the listeners stop once they had time to.
    telemetry::set_ready(false);
    if !readiness_grace.is_zero() {
        tracing::info!("shutting down: /ready answers 503; accepting for {readiness_grace:?} more");
        tokio::time::sleep(readiness_grace).await;
    }
    tracing::info!("shutting down: no new connections, draining for up to {grace:?}");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
    let _ = exit_tx.send(true);
    trimmer.abort();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    Ok(())
}

/// One worker thread: accept on its sockets until `stop`, then keep serving the connections
/// it has until `exit`.
fn run_worker(
    index: usize,
    worker: Worker,
    live: Arc<Live>,
    settings: Arc<ConnectionSettings>,
    stop: watch::Receiver<bool>,
    mut exit: watch::Receiver<bool>,
) {
    crate::worker::enter(index);
    let Worker {
        runtime: tokio_runtime,
        listeners,
    } = worker;
    tokio_runtime.block_on(async move {
        for (socket, listener, series) in listeners {
            tokio::spawn(accept_loop(
                socket,
                listener,
                series,
                live.clone(),
                settings.clone(),
                stop.clone(),
            ));
        }
        drop(stop);
        let _ = exit.wait_for(|exit| *exit).await;
    });
}

/// Accept connections on `listener` and serve each on a task of its own, until `stop`.
async fn accept_loop(
    socket: TcpListener,
    listener: Arc<Listener>,
    series: Arc<ListenerSeries>,
    live: Arc<Live>,
    settings: Arc<ConnectionSettings>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let admitted = match settings.admission.admit(client.ip()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                // Closed before a byte is read: a flood costs an accept and a close each.
                tracing::debug!(%client, cap = refused.reason(), "connection refused");
                if metrics::enabled() {
                    metrics::metrics()
                        .connections_refused
                        .with_label_values(&[refused.reason()])
                        .inc();
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve(
            stream,
            client,
            live.clone(),
            settings.clone(),
            stop.clone(),
            admitted,
            listener.clone(),
            series.clone(),
        ));
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
