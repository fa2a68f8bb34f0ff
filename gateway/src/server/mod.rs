//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (prior knowledge) on them
//! with hyper, handing each request to the pipeline; on SIGINT/SIGTERM stop accepting and give
//! in-flight requests the configured grace period.

use crate::proxy;
use crate::runtime::Runtime;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serve `runtime` on `listeners` until a shutdown signal, then drain for up to `grace`.
pub async fn serve(runtime: Arc<Runtime>, listeners: Vec<TcpListener>, grace: Duration) {
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_loops = Vec::new();
    for listener in listeners {
        let runtime = runtime.clone();
        let builder = builder.clone();
        let graceful = graceful.clone();
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
                let runtime = runtime.clone();
                let peer = Arc::new(proxy::Peer::new(client));
                let service = service_fn(move |request| {
                    let runtime = runtime.clone();
                    let peer = peer.clone();
                    async move {
                        Ok::<_, Infallible>(proxy::handle(runtime, &peer, "http", request).await)
                    }
                });
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%client, "connection ended with error: {e}");
                    }
                });
            }
        }));
    }

    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, draining for up to {grace:?}");
    let _ = stop_tx.send(true);
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    // The accept loops held the only other references; they have ended.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
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
