//! Listeners and workers: every address is bound once per worker (`SO_REUSEPORT`, so the
//! kernel spreads new connections over the workers' sockets); each worker is a thread running
//! a single-threaded runtime that accepts on its own sockets and serves those connections to
//! the end ([`connection::serve`]: HTTP/1.1, parked between requests, or HTTP/2 with prior
//! knowledge). The addresses can change while it serves ([`listening`]: a reload binds new ones
//! and drains removed ones; a binary upgrade hands the sockets to a successor, [`inherit`]).
//! On SIGINT/SIGTERM every worker stops accepting, in-flight requests get up to the configured
//! grace period, HTTP/1.1 connections are told `Connection: close`, HTTP/2 ones GOAWAY.
//!
//! Why a runtime per worker rather than one work-stealing runtime over all threads: a request
//! then never changes threads — no work-stealing queues, no cross-thread wake-ups between the
//! client connection, the request and its upstream connection — which is what made one worker's
//! `current_thread` runtime serve 18% more requests per CPU-second than the multi-threaded one.
//! The cost is nginx's: a worker busy with a slow synchronous step (a fresh plugin instance)
//! delays only its own connections, and few long-lived connections may hash unevenly.

mod connection;
mod inherit;
mod listening;
mod park;
mod sparse;
mod stream;
mod trim;
mod tunnel;

pub use connection::ConnectionSettings;
pub use inherit::{
    Inherited, LISTEN_FDS, UPGRADE_FD, describe as describe_sockets, keep_across_exec,
};
pub use listening::Listening;

use crate::proxy::Live;
use crate::telemetry;
use crate::telemetry::metrics::{self, ListenerSeries};
use crate::tls::TlsListener;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Pending connections the kernel queues per socket (tokio's own default).
pub(super) const BACKLOG: u32 = 1024;

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

/// Why the gateway stops serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or SIGINT: `/ready` turns 503 for the readiness grace, then the drain.
    Signal,
    /// A successor process serves the same sockets: stop accepting now, then drain.
    HandedOver,
}

/// Serve on `listening` until `stop`; then (for a signal) answer `/ready` with 503 for
/// `readiness_grace` while still accepting, stop accepting, and drain for up to `grace`. Runs
/// on the control runtime, which also keeps the background tasks (heap trimming).
pub async fn serve(
    listening: Arc<Listening>,
    stop: impl Future<Output = Stop>,
    (readiness_grace, grace): (Duration, Duration),
) -> io::Result<()> {
    let trimmer = tokio::spawn(trim::run());
    let reason = stop.await;
    // Load balancers polling `/ready` learn first; the listeners stop once they had time to.
    telemetry::set_ready(false);
    if reason == Stop::Signal && !readiness_grace.is_zero() {
        tracing::info!("shutting down: /ready answers 503; accepting for {readiness_grace:?} more");
        tokio::time::sleep(readiness_grace).await;
    }
    tracing::info!("shutting down: no new connections, draining for up to {grace:?}");
    listening.close_all();
    if tokio::time::timeout(grace, listening.drained())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    listening.exit().await;
    trimmer.abort();
    Ok(())
}

/// Accept connections on `listener` and serve each on a task of its own, until `stop`.
pub(super) async fn accept_loop(
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

/// Resolves at SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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
