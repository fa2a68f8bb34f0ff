//! Listeners: accept TCP connections and hand each to [`connection::serve`] (HTTP/1.1, parked
//! between requests, or HTTP/2 with prior knowledge); on SIGINT/SIGTERM stop accepting, let
//! in-flight requests finish for up to the configured grace period, close idle connections.

mod connection;
mod park;
mod sparse;
mod trim;

pub use connection::ConnectionSettings;

use crate::runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serve `runtime` on `listeners` until a shutdown signal, then drain for up to `grace`.
pub async fn serve(
    runtime: Arc<Runtime>,
    listeners: Vec<TcpListener>,
    settings: ConnectionSettings,
    grace: Duration,
) {
    // Every accept loop and connection holds a receiver: the sender learns when all are gone.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_loops = Vec::new();
    for listener in listeners {
        let runtime = runtime.clone();
        let mut stop = stop_rx.clone();
        accept_loops.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
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
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection::serve(
                    stream,
                    client,
                    runtime.clone(),
                    settings,
                    stop.clone(),
                ));
            }
        }));
    }
    drop(stop_rx);
    let trimmer = tokio::spawn(trim::run());

    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, draining for up to {grace:?}");
    let _ = stop_tx.send(true);
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
    trimmer.abort();
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
