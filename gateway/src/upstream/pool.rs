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
//! HTTP/2 targets (`protocol = "http2"`, or `"auto"` when TLS's ALPN picks `h2`) multiplex:
//! each worker keeps one connection per target and sends every request on it as a stream,
//! opening a new one only once it closed.
//!
//! Each worker has its own queue: a connection's I/O runs as a task on the worker that opened
//! it, so a request on another worker would wake that thread to write and be woken back by it
//! to read — two cross-thread wake-ups per request ([`crate::worker`]).

use crate::body::Body;
use crate::config::UpstreamProtocol;
use crate::tls::upstream::UpstreamTls;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// How a target is reached.
pub struct TargetOptions {
    /// Idle HTTP/1.1 connections kept per worker.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// For an `https://` target.
    pub tls: Option<UpstreamTls>,
    /// HTTP/1.1, HTTP/2, or HTTP/2 when ALPN says so.
    pub protocol: UpstreamProtocol,
}

/// One target and its idle connections.
pub struct TargetPool {
    authority: Authority,
    /// `Host` for requests that do not preserve the client's.
    host: HeaderValue,
    /// Idle HTTP/1.1 connections, one queue per worker.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// The HTTP/2 connection of each worker, shared by its requests.
    multiplexed: Box<[Mutex<Option<Multiplexed>>]>,
    options: TargetOptions,
    /// A hostname target's addresses as DNS last said.
    addresses: Option<super::dns::Addresses>,
    /// Connections open now, on every worker (each one's task holds an [`OpenConnection`]).
    open: Arc<AtomicUsize>,
}

/// Counts a connection among its target's open ones while its I/O task runs.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's HTTP/2 connection, with the DNS answer it was opened under.
type Multiplexed = (http2::SendRequest<Body>, u64);

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
    /// The DNS answer it was opened under.
    generation: u64,
}

/// A connection opened, before HTTP.
enum Opened {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A connection ready for a request.
enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

impl TargetPool {
    /// A pool for `authority` for `workers` workers.
    pub fn new(
        authority: Authority,
        workers: usize,
        options: TargetOptions,
    ) -> Result<Self, String> {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("target `{authority}`: {e}"))?;
        let workers = workers.max(1);
        Ok(TargetPool {
            authority: authority.clone(),
            host,
            idle: (0..workers).map(|_| Mutex::new(VecDeque::new())).collect(),
            multiplexed: (0..workers).map(|_| Mutex::new(None)).collect(),
            addresses: super::dns::Addresses::of(&authority),
            options,
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Connections now: idle (pooled, ready for a request) and active (the rest of the open
    /// ones: a request or the rest of a response body on them, or HTTP/2). Takes every
    /// worker's queue lock briefly: for a scrape, not for the request path.
    pub fn connections(&self) -> (usize, usize) {
        let idle: usize = self
            .idle
            .iter()
            .map(|queue| {
                let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
                queue
                    .iter()
                    .filter(|c| !c.sender.is_closed() && c.sender.is_ready())
                    .count()
            })
            .sum();
        let open = self.open.load(Ordering::Relaxed);
        (idle.min(open), open.saturating_sub(idle))
    }

    /// The target's `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Send `request` (origin-form URI) and wait for the response head; a new connection
    /// is given `connect_timeout`.
    pub async fn send(
        &self,
        mut request: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());
        if request.headers().contains_key(http::header::UPGRADE) {
            return self.send_upgrade(request, connect_timeout).await;
        }
        loop {
            let generation = self.generation();
            let pooled = self.checkout(generation);
            let reused = pooled.is_some();
            let sender = match pooled {
                Some(sender) => sender,
                None => self.connect(connect_timeout, generation).await?,
            };
            let failed = match sender {
                Sender::Http1(mut sender) => match sender.try_send_request(request).await {
                    Ok(response) => {
                        self.checkin(sender, generation);
                        return Ok(response);
                    }
                    Err(failed) => failed,
                },
                Sender::Http2(mut sender) => {
                    let request = self.as_http2(request);
                    match sender.try_send_request(request).await {
                        Ok(response) => return Ok(response),
                        Err(failed) => failed,
                    }
                }
            };
            let mut failed = failed;
            match failed.take_message() {
                // A reused connection closed before the request went out: try another.
                Some(unsent) if reused => request = unsent,
                _ => return Err(SendError::Exchange(failed.into_error())),
            }
        }
    }

    /// An upgrade (WebSocket) on a connection of its own, never pooled: once upgraded, the
    /// connection is the tunnel's. The response's extensions carry hyper's `OnUpgrade`.
    async fn send_upgrade(
        &self,
        request: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let stream = self.open(connect_timeout).await?;
        let result = match stream {
            Opened::Plain(stream) => self.exchange_upgrade(stream, request).await,
            Opened::Tls(stream) => self.exchange_upgrade(stream, request).await,
        };
        result.map_err(SendError::Exchange)
    }

    async fn exchange_upgrade<S>(
        &self,
        stream: S,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let target = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(%target, "upstream upgrade connection ended: {e}");
            }
        });
        sender.send_request(request).await
    }

    /// An HTTP/2 request carries its target in `:scheme` and `:authority` (the `Host` it
    /// would have had), not in a `Host` header.
    fn as_http2(&self, request: Request<Body>) -> Request<Body> {
        let (mut parts, body) = request.into_parts();
        parts.version = Version::HTTP_2;
        let host = parts.headers.remove(http::header::HOST);
        let authority = host
            .as_ref()
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| self.authority.clone());
        let scheme = if self.options.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let mut uri = Uri::builder().scheme(scheme).authority(authority);
        if let Some(path) = parts.uri.path_and_query() {
            uri = uri.path_and_query(path.clone());
        }
        if let Ok(uri) = uri.build() {
            parts.uri = uri;
        }
        Request::from_parts(parts, body)
    }

    /// The worker's HTTP/2 connection if it is open, else the oldest idle HTTP/1.1
    /// connection that is ready; stale and closed ones are dropped, and ones still reading
    /// their previous response stay queued.
    fn checkout(&self, generation: u64) -> Option<Sender> {
        if let Some((sender, opened)) = self.multiplexed().as_ref()
            && !sender.is_closed()
            && *opened == generation
        {
            return Some(Sender::Http2(sender.clone()));
        }
        let mut idle = self.lock();
        let mut busy = 0;
        while busy < idle.len() {
            let conn = idle.pop_front()?;
            if conn.sender.is_closed()
                || conn.generation != generation
                || conn.since.elapsed() > self.options.idle_timeout
            {
                continue;
            }
            if conn.sender.is_ready() {
                return Some(Sender::Http1(conn.sender));
            }
            idle.push_back(conn);
            busy += 1;
        }
        None
    }

    /// Pool a connection opened under DNS answer `generation`, unless the answer changed.
    fn checkin(&self, sender: http1::SendRequest<Body>, generation: u64) {
        if generation != self.generation() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.options.max_idle {
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
                generation,
            });
        }
    }

    /// The DNS answer new connections are opened under (0 for an IP target).
    fn generation(&self) -> u64 {
        self.addresses.as_ref().map_or(0, |a| a.generation())
    }

    /// A hostname target's addresses, followed by the upstream's DNS task.
    pub fn addresses(&self) -> Option<&super::dns::Addresses> {
        self.addresses.as_ref()
    }

    /// The calling worker's queue (uncontended: only that worker's thread takes it).
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let queue = &self.idle[crate::worker::current() % self.idle.len()];
        // A panic while holding the lock cannot leave the queue itself inconsistent.
        queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calling worker's HTTP/2 connection slot.
    fn multiplexed(&self) -> std::sync::MutexGuard<'_, Option<Multiplexed>> {
        let slot = &self.multiplexed[crate::worker::current() % self.multiplexed.len()];
        slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An active health check: `GET path` on a connection of its own (never pooled, closed
    /// after), within `timeout`; the response's status.
    pub async fn probe(&self, path: &str, timeout: Duration) -> Result<http::StatusCode, String> {
        let request = Request::get(path)
            .header(http::header::HOST, self.host.clone())
            .header(http::header::USER_AGENT, "gateway-health-check")
            .body(http_body_util::Either::Right(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
            .map_err(|e| e.to_string())?;
        let http2 = self.options.protocol == UpstreamProtocol::Http2;
        let checked = async {
            let opened = self
                .open(self.options.connect_timeout)
                .await
                .map_err(|e| match e {
                    SendError::Connect(why) | SendError::Tls(why) => why,
                    SendError::Exchange(e) => e.to_string(),
                })?;
            let h2_request = |request| self.as_http2(request);
            let response = match opened {
                Opened::Plain(stream) if http2 => probe_on(stream, true, h2_request(request)).await,
                Opened::Plain(stream) => probe_on(stream, false, request).await,
                Opened::Tls(stream) => {
                    let h2 = match self.options.protocol {
                        UpstreamProtocol::Http1 => false,
                        UpstreamProtocol::Http2 => true,
                        UpstreamProtocol::Auto => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
                    };
                    let request = if h2 { h2_request(request) } else { request };
                    probe_on(stream, h2, request).await
                }
            };
            response.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, checked).await {
            Ok(result) => result,
            Err(_) => Err(format!("no response within {} ms", timeout.as_millis())),
        }
    }

    /// A new connection: TCP, then TLS for an `https://` target, both within the connect
    /// timeout; HTTP/2 if the protocol (or ALPN, for `auto`) says so.
    async fn connect(&self, timeout: Duration, generation: u64) -> Result<Sender, SendError> {
        let protocol = self.options.protocol;
        match self.open(timeout).await? {
            Opened::Plain(stream) => {
                let http2 = protocol == UpstreamProtocol::Http2;
                self.start(stream, http2, generation).await
            }
            Opened::Tls(stream) => {
                let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let http2 = match protocol {
                    UpstreamProtocol::Http1 => false,
                    UpstreamProtocol::Http2 => true,
                    UpstreamProtocol::Auto => alpn_h2,
                };
                self.start(stream, http2, generation).await
            }
        }
    }

    /// TCP, then TLS for an `https://` target, both within the connect timeout.
    async fn open(&self, timeout: Duration) -> Result<Opened, SendError> {
        let host = self.authority.host();
        let port = self.authority.port_u16().unwrap_or(80);
        let opened = async {
            let resolved = self.addresses.as_ref().and_then(|a| a.in_turn());
            let stream = match resolved {
                Some(addresses) => TcpStream::connect(&addresses[..]).await,
                None => TcpStream::connect((host, port)).await,
            }
            .map_err(|e| SendError::Connect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            match &self.options.tls {
                None => Ok(Opened::Plain(stream)),
                Some(tls) => {
                    let stream = tls.connect(host, stream).await.map_err(SendError::Tls)?;
                    Ok(Opened::Tls(Box::new(stream)))
                }
            }
        };
        match tokio::time::timeout(timeout, opened).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Connect("connect timed out".into())),
        }
    }

    /// HTTP on an open stream, its I/O a task of the calling worker. An HTTP/2 connection
    /// becomes the worker's shared one.
    async fn start<S>(&self, stream: S, http2: bool, generation: u64) -> Result<Sender, SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let target = self.authority.clone();
        if http2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(SendError::Exchange)?;
            let open = OpenConnection::new(&self.open);
            tokio::spawn(async move {
                let _open = open;
                if let Err(e) = connection.await {
                    tracing::debug!(%target, "upstream HTTP/2 connection ended: {e}");
                }
            });
            *self.multiplexed() = Some((sender.clone(), generation));
            return Ok(Sender::Http2(sender));
        }
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Exchange)?;
        let open = OpenConnection::new(&self.open);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!(%target, "upstream connection ended: {e}");
            }
        });
        Ok(Sender::Http1(sender))
    }
}

/// One request on a fresh connection over `stream`, which closes after it.
async fn probe_on<S>(
    stream: S,
    http2: bool,
    request: Request<Body>,
) -> Result<http::StatusCode, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if http2 {
        let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await?;
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        connection.abort();
        return response.map(|r| r.status());
    }
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    connection.abort();
    response.map(|r| r.status())
}
