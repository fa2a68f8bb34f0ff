//! Keep-alive HTTP/1.1 connections to one target, on hyper's client connection API.
//!
//! A general-purpose client keys one pool by scheme and authority (hashing both per request),
//! boxes its futures and runs a checkout state machine; profiles put that at ≈ 10% of the
//! instructions of a proxied request. A target here is known when the upstream is built, so
//! its pool is a plain queue: a connection goes back as soon as its response head arrived and
//! is handed out again once hyper reports it ready (its previous response fully read). A
//! connection the target closed while idle is noticed when the request could not be written,
//! and the request is sent again on another connection.
//!
//! Each worker has its own queue: a connection's I/O runs as a task on the worker that opened
//! it, so a request on another worker would wake that thread to write and be woken back by it
//! to read — two cross-thread wake-ups per request ([`crate::worker`]).

use crate::body::Body;
use crate::tls::upstream::UpstreamTls;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why a request got no response head from the target.
pub enum SendError {
    /// No connection could be opened (nothing was sent).
    Connect(String),
    /// The TLS handshake failed (nothing was sent).
    Tls(String),
    /// The connection failed after the request was (possibly) sent.
    Exchange(hyper::Error),
}

/// One target and its idle connections.
pub struct TargetPool {
    authority: Authority,
    /// `Host` for requests that do not preserve the client's.
    host: HeaderValue,
    /// Idle connections, one queue per worker.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// Per worker.
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// For an `https://` target.
    tls: Option<UpstreamTls>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl TargetPool {
    /// A pool for `authority` keeping up to `max_idle` connections per worker (of `workers`)
    /// for `idle_timeout`; connections speak TLS when `tls` is given.
    pub fn new(
        authority: Authority,
        workers: usize,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        tls: Option<UpstreamTls>,
    ) -> Result<Self, String> {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("target `{authority}`: {e}"))?;
        Ok(TargetPool {
            authority,
            host,
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            max_idle,
            idle_timeout,
            connect_timeout,
            tls,
        })
    }

    /// The target's `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Send `request` (origin-form URI) and wait for the response head.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Incoming>, SendError> {
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());
        loop {
            let pooled = self.checkout();
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.checkin(sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    // A reused connection closed before the request went out: try another.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(failed.into_error())),
                },
            }
        }
    }

    /// The oldest idle connection that is ready; stale and closed ones are dropped, and ones
    /// still reading their previous response stay queued.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        let mut busy = 0;
        while busy < idle.len() {
            let conn = idle.pop_front()?;
            if conn.sender.is_closed() || conn.since.elapsed() > self.idle_timeout {
                continue;
            }
            if conn.sender.is_ready() {
                return Some(conn.sender);
            }
            idle.push_back(conn);
            busy += 1;
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Body>) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// The calling worker's queue (uncontended: only that worker's thread takes it).
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let queue = &self.idle[crate::worker::current() % self.idle.len()];
        // A panic while holding the lock cannot leave the queue itself inconsistent.
        queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: TCP, then TLS for an `https://` target, both within the connect
    /// timeout.
    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let host = self.authority.host();
        let port = self.authority.port_u16().unwrap_or(80);
        let opened = async {
            let stream = TcpStream::connect((host, port))
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            match &self.tls {
                None => self.start(stream).await,
                Some(tls) => {
                    let stream = tls.connect(host, stream).await.map_err(SendError::Tls)?;
                    self.start(stream).await
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, opened).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Connect("connect timed out".into())),
        }
    }

    /// HTTP/1.1 on an open stream, its I/O a task of the calling worker.
    async fn start<S>(&self, stream: S) -> Result<SendRequest<Body>, SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Exchange)?;
        let target = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, "upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}
