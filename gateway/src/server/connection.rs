//! One client connection, from accept to close: HTTP/2 when the client opens with the HTTP/2
//! preface (prior knowledge), HTTP/1.1 otherwise, parked once idle for a park check
//! ([`super::park`]) and closed after `idle_timeout` without a request.
//!
//! ```text
//! accept ─▶ first bytes ─┬─ HTTP/2 preface ─▶ hyper http2 until closed
//!                        └─ otherwise ─▶ hyper http1 ─▶ idle ─▶ parked: socket only ─┐
//!                                          ▲                                        │
//!                                          └──────────── readable ◀─────────────────┘
//! ```

use super::Listener;
use super::park::{Activity, Home, PARK_CHECK, ParkingIo, Tracked};
use super::sparse::Sparse;
use super::stream::ClientStream;
use super::tunnel;
use crate::compile::ServerSettings;
use crate::edge::admission::{Admission, Admitted};
use crate::edge::trusted::TrustedProxies;
use crate::edge::{proxy_protocol, redirect};
use crate::proxy::websocket::Tunnel;
use crate::proxy::{self, Peer};
use crate::proxy::{Live, Runtime};
use crate::telemetry::metrics::ListenerSeries;
use crate::tls::facts;
use futures::FutureExt as _;
use http::{HeaderValue, header};
use hyper::body::Body as _;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// How client connections are served: timeouts, caps, and hyper's builders, configured once.
pub struct ConnectionSettings {
    /// How long a connection may wait for its first request, or idle between requests
    /// (HTTP/1.1 keep-alive, HTTP/2 without open streams), before it is closed (give or take
    /// one park check).
    pub idle_timeout: Duration,
    /// How long a request head may take from its first byte (HTTP/1.1, checked once a
    /// [`PARK_CHECK`]), a PROXY header from connecting, and an HTTP/2 connection to open its
    /// first stream.
    pub head_timeout: Duration,
    /// Read a PROXY v2 header first on connections from `trusted`.
    pub proxy_protocol: bool,
    /// Trusted proxies.
    pub trusted: Arc<TrustedProxies>,
    /// Open-connection caps, checked on accept.
    pub admission: Arc<Admission>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl ConnectionSettings {
    /// From the compiled `[server]`.
    pub fn new(server: &ServerSettings) -> Self {
        let mut h1 = http1::Builder::new();
        // hyper's own limits are loose bounds on the head as it reads it (request line,
        // separators included; past them hyper answers 431 or 414); the exact limits on names
        // and values are `edge::request`'s. Neither costs a request anything: a non-default
        // field count would (hyper then builds its header arrays per request), so hyper's
        // default of 100 is left alone; the read buffer cap is what bounds a head's memory.
        if server.max_headers != HYPER_MAX_HEADERS {
            h1.max_headers(server.max_headers);
        }
        h1.max_buf_size(
            (server.max_header_bytes + server.max_uri_bytes + 4 * server.max_headers + 1024)
                .max(HYPER_MIN_BUF),
        );
        let config = &server.http2;
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(config.max_concurrent_streams)
            // HPACK counts 32 bytes per field on top of its name and value (RFC 9113 §6.5.2).
            .max_header_list_size(
                u32::try_from(server.max_header_bytes + 32 * server.max_headers)
                    .unwrap_or(u32::MAX),
            )
            .keep_alive_interval(
                (config.keepalive_interval_s > 0)
                    .then(|| Duration::from_secs(config.keepalive_interval_s)),
            )
            .keep_alive_timeout(Duration::from_secs(config.keepalive_timeout_s))
            .max_pending_accept_reset_streams(config.max_pending_resets)
            .max_local_error_reset_streams(config.max_error_resets);
        ConnectionSettings {
            idle_timeout: server.idle_timeout,
            head_timeout: server.request_head_timeout,
            proxy_protocol: server.proxy_protocol,
            trusted: server.trusted.clone(),
            admission: server.admission.clone(),
            http1: h1,
            http2: h2,
        }
    }
}

/// hyper's default field count per head (`DEFAULT_MAX_HEADERS`).
const HYPER_MAX_HEADERS: usize = 100;
/// The least read buffer hyper accepts.
const HYPER_MIN_BUF: usize = 8192;

/// What every request on a connection shares.
#[derive(Debug)]
struct Shared {
    peer: Peer,
    activity: Activity,
    answers: Answers,
    /// The WebSocket tunnel the connection became, once upgraded.
    tunnel: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Its listener stopped: each HTTP/1.1 response now says `Connection: close`.
    draining: AtomicBool,
}

impl Shared {
    fn new(peer: Peer, answers: Answers) -> Arc<Self> {
        Arc::new(Shared {
            peer,
            activity: Activity::default(),
            answers,
            tunnel: std::sync::Mutex::new(None),
            draining: AtomicBool::new(false),
        })
    }

    /// Wait for the connection's tunnel, if it has one.
    async fn tunnel_done(&self) {
        let tunnel = self.tunnel.lock().ok().and_then(|mut slot| slot.take());
        if let Some(tunnel) = tunnel {
            let _ = tunnel.await;
        }
    }
}

/// How a connection's requests are answered.
#[derive(Debug)]
enum Answers {
    /// Proxied: routes, plugins, upstreams. On HTTPS, with the listener's HSTS header.
    Proxy {
        scheme: &'static str,
        hsts: Option<HeaderValue>,
    },
    /// Each with a redirect to the same URL over HTTPS on `port`.
    RedirectToHttps { port: u16 },
}

/// A 101 the pipeline marked as a tunnel: join the client's upgrade with the upstream's.
fn start_tunnel(shared: &Shared, client: OnUpgrade, response: &mut http::Response<proxy::Body>) {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let extensions = response.extensions_mut();
    let (Some(tunnel), Some(upstream)) = (
        extensions.remove::<Tunnel>(),
        extensions.remove::<OnUpgrade>(),
    ) else {
        return;
    };
    let task = tokio::spawn(tunnel::run(client, upstream, tunnel.idle_timeout));
    if let Ok(mut slot) = shared.tunnel.lock() {
        *slot = Some(task);
    }
}

/// The response to one request of the connection `shared` describes.
async fn respond(
    runtime: Arc<Runtime>,
    shared: &Shared,
    mut request: http::Request<hyper::body::Incoming>,
) -> http::Response<proxy::Body> {
    match &shared.answers {
        Answers::Proxy { scheme, hsts } => {
            // hyper puts it there for requests that ask to upgrade.
            let client_upgrade = request.extensions_mut().remove::<OnUpgrade>();
            let mut response = proxy::handle(runtime, &shared.peer, scheme, request).await;
            if let Some(client_upgrade) = client_upgrade {
                start_tunnel(shared, client_upgrade, &mut response);
            }
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            response
        }
        Answers::RedirectToHttps { port } => redirect::to_https(&request, *port),
    }
}

impl AsRef<Activity> for Shared {
    fn as_ref(&self) -> &Activity {
        &self.activity
    }
}

/// How long a draining HTTP/1.1 connection with no request in flight waits for one (answered
/// with `Connection: close`) before it is closed.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serve one accepted connection until it closes, idles out, or `stop` turns true (then
/// in-flight requests finish first). `admitted` counts it against the caps until it ends;
/// `listener` says what the address serves.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    mut stream: TcpStream,
    mut client: SocketAddr,
    live: Arc<Live>,
    settings: Arc<ConnectionSettings>,
    stop: watch::Receiver<bool>,
    admitted: Admitted,
    listener: Arc<Listener>,
    series: Arc<ListenerSeries>,
) {
    let _admitted = admitted;
    let _open = series.opened();
    // Held until the connection ends: the server's drain waits for every holder (`stopped`
    // below lets its own receiver go as soon as it has seen the stop).
    let _draining = stop.clone();
    // Both live as long as the connection, so waiting on them registers once, not per request.
    // Fused: it resolves once, and a draining connection goes on polling it.
    let mut stopping = pin!(stopped(stop).fuse());
    let mut idle = pin!(tokio::time::sleep(settings.idle_timeout));

    if settings.proxy_protocol && settings.trusted.contains(client.ip()) {
        let header = tokio::time::timeout(
            settings.head_timeout,
            proxy_protocol::read_header(&mut stream),
        );
        match header.await {
            Ok(Ok(Some(source))) => client = source,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return tracing::debug!(%client, "connection closed: {e}"),
            Err(_) => return tracing::debug!(%client, "connection closed: no PROXY header in time"),
        }
    }
    let answers = match &*listener {
        Listener::Plain => Answers::Proxy {
            scheme: "http",
            hsts: None,
        },
        Listener::Redirect { port } => Answers::RedirectToHttps { port: *port },
        Listener::Tls(tls) => Answers::Proxy {
            scheme: "https",
            hsts: tls.hsts.clone(),
        },
    };
    let Listener::Tls(tls) = &*listener else {
        let shared = Shared::new(Peer::new(client), answers);
        let http2 = tokio::select! {
            sniffed = sniff_http2(&stream) => match sniffed {
                Ok(http2) => http2,
                Err(_) => return,
            },
            () = idle.as_mut() => return,
            () = stopping.as_mut() => return,
        };
        series.protocol(http2);
        return serve_http(stream, http2, shared, live, &settings, idle, stopping).await;
    };
    let handshake = tokio::time::timeout(tls.handshake_timeout, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        accepted = handshake => match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                series.tls_failed(false);
                return tracing::debug!(%client, "TLS handshake failed: {e}");
            }
            Err(_) => {
                series.tls_failed(true);
                return tracing::debug!(
                %client,
                "TLS handshake not complete within {:?}",
                tls.handshake_timeout
                );
            }
        },
        () = stopping.as_mut() => return,
    };
    let connection = stream.get_ref().1;
    let http2 = connection.alpn_protocol() == Some(b"h2");
    series.protocol(http2);
    let peer = Peer::new(client).with_attributes(facts::of(connection));
    let shared = Shared::new(peer, answers);
    serve_http(stream, http2, shared, live, &settings, idle, stopping).await;
}

/// HTTP/2 or HTTP/1.1 on an open stream, until the connection ends.
async fn serve_http<S: ClientStream>(
    stream: S,
    http2: bool,
    shared: Arc<Shared>,
    live: Arc<Live>,
    settings: &ConnectionSettings,
    idle: Pin<&mut tokio::time::Sleep>,
    stopping: Pin<&mut impl Future<Output = ()>>,
) {
    // Each hyper connection lives in a box of its own: parked, the task keeps only this
    // function's few hundred bytes of state instead of room for hyper's (≈ 3.7 KB).
    if http2 {
        Box::pin(serve_http2(stream, shared, live, settings, stopping)).await;
    } else {
        serve_http1(stream, &shared, &live, settings, idle, stopping).await;
    }
}

/// HTTP/1.1 on `stream` until the connection ends: hyper connections one after another, the
/// connection parked between them.
async fn serve_http1<S: ClientStream>(
    stream: S,
    shared: &Arc<Shared>,
    live: &Arc<Live>,
    settings: &ConnectionSettings,
    mut idle: Pin<&mut tokio::time::Sleep>,
    mut stopping: Pin<&mut impl Future<Output = ()>>,
) {
    let client = shared.peer.addr;
    let home: Home<S> = Arc::default();
    let mut stream = stream;
    loop {
        let served = Box::pin(serve_http1_until_idle(
            stream,
            &home,
            shared,
            live,
            settings,
            stopping.as_mut(),
        ))
        .await;
        match served {
            Served::Closed(Ok(())) if shared.activity.take_parked() => {}
            Served::Closed(result) | Served::Stopped(result) => {
                shared.tunnel_done().await;
                return log_end(client, result);
            }
        }
        // hyper dropped its connection, and with it the socket's wrapper, which left the
        // socket here.
        let Some(back) = home.lock().ok().and_then(|mut home| home.take()) else {
            return;
        };
        stream = back;
        if stream.has_buffered() {
            // The client's next bytes are already above the socket (TLS read ahead).
            continue;
        }
        // Parked: only the socket and this task remain until the client speaks again.
        tracing::debug!(%client, "idle keep-alive connection parked");
        super::trim::parked();
        // It has been idle for at least one check period already.
        let idle_left = settings.idle_timeout.saturating_sub(PARK_CHECK);
        idle.as_mut().reset(Instant::now() + idle_left);
        if shared.draining.load(Ordering::Relaxed) {
            // Parked after answering with `Connection: close`: the client closes it.
            idle.as_mut().reset(Instant::now() + DRAIN_IDLE);
        }
        tokio::select! {
            readable = stream.readable() => if readable.is_err() { return },
            () = idle.as_mut() => return,
            () = stopping.as_mut() => {
                // A request may be on its way: served (with `Connection: close`) if it comes
                // within DRAIN_IDLE.
                shared.draining.store(true, Ordering::Relaxed);
                tokio::select! {
                    readable = stream.readable() => if readable.is_err() { return },
                    () = tokio::time::sleep(DRAIN_IDLE) => return,
                }
            }
        }
    }
}

/// One hyper HTTP/1.1 connection on `stream`, until it closes, is stopped, or parks after
/// idling through a [`PARK_CHECK`] period.
async fn serve_http1_until_idle<S: ClientStream>(
    stream: S,
    home: &Home<S>,
    shared: &Arc<Shared>,
    live: &Arc<Live>,
    settings: &ConnectionSettings,
    stopping: Pin<&mut impl Future<Output = ()>>,
) -> Served {
    let activity = &shared.activity;
    let client = shared.peer.addr;
    let io = ParkingIo::new(stream, shared.clone(), home.clone());
    let for_service = shared.clone();
    let live = live.clone();
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let in_flight = Activity::begin(for_service.clone(), request.body().is_end_stream());
        // The snapshot this request runs on to its end, whatever a reload stores meanwhile.
        let runtime = live.current();
        async move {
            let owner = in_flight.owner();
            let mut response = respond(runtime, owner, request).await;
            if owner.draining.load(Ordering::Relaxed)
                && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                // The client learns not to reuse the connection before it could send on it
                // (closing it under an idle client instead races the client's next request).
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let connection = settings
        .http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut stopping = stopping;
    // The first check half a period in: a fresh connection's first bytes came just before
    // this, so a slow head is closed half a check (not a whole one) past its timeout.
    let mut checks = tokio::time::interval_at(Instant::now() + PARK_CHECK / 2, PARK_CHECK);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut began = activity.began();
    let mut idle_for = Duration::ZERO;
    let sparse = Sparse::new();
    loop {
        let event = next_event(&mut connection, &mut stopping, &mut checks, &sparse).await;
        match event {
            Event::Closed(result) => return Served::Closed(result),
            Event::Stop => {
                // Answered with `Connection: close` from now on; an idle one is given
                // DRAIN_IDLE for the request its client may be sending already.
                shared.draining.store(true, Ordering::Relaxed);
                idle_for = Duration::ZERO;
            }
            Event::Check => {
                activity.tick();
                if activity.began() != began || activity.in_flight() > 0 {
                    idle_for = Duration::ZERO;
                    began = activity.began();
                    continue;
                }
                idle_for += PARK_CHECK;
                if shared.draining.load(Ordering::Relaxed) {
                    if idle_for >= DRAIN_IDLE {
                        connection.as_mut().graceful_shutdown();
                        return Served::Stopped(connection.await);
                    }
                    continue;
                }
                // A head arriving slowly (slowloris): checked here rather than by a timer per
                // request, so it closes between the timeout and one check more after its
                // first byte.
                if activity
                    .head_waiting()
                    .is_some_and(|waited| waited >= settings.head_timeout)
                {
                    tracing::debug!(
                        %client,
                        "connection closed: request head not complete within {:?}",
                        settings.head_timeout
                    );
                    return Served::Closed(Ok(()));
                }
                if idle_for >= settings.idle_timeout {
                    // Idle too long without parking (its last request had a body), or stalled
                    // halfway through a request head: hyper closes it now, as it is idle.
                    connection.as_mut().graceful_shutdown();
                } else if activity.is_quiet() {
                    // Park at the next safe moment, which is at once if hyper is waiting for a
                    // request, since the loop polls it again now.
                    activity.request_park();
                }
            }
        }
    }
}

/// What wakes a running connection's loop next: the connection ending, the server stopping,
/// or a check period passing (the latter two polled sparsely, see [`Sparse`]).
async fn next_event<C, S>(
    connection: &mut Pin<&mut C>,
    stopping: &mut Pin<&mut S>,
    checks: &mut tokio::time::Interval,
    sparse: &Sparse,
) -> Event
where
    C: Future<Output = hyper::Result<()>>,
    S: Future<Output = ()>,
{
    poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Event::Closed(result));
        }
        sparse.poll(cx, |cx| {
            if stopping.as_mut().poll(cx).is_ready() {
                Poll::Ready(Event::Stop)
            } else if checks.poll_tick(cx).is_ready() {
                Poll::Ready(Event::Check)
            } else {
                Poll::Pending
            }
        })
    })
    .await
}

/// What woke a running connection's loop.
enum Event {
    Closed(hyper::Result<()>),
    Stop,
    Check,
}

/// One HTTP/2 connection until it ends, is stopped, or idles out: no stream opened within
/// `head_timeout` of connecting (a preface-only or SETTINGS-only connection), or none open
/// for `idle_timeout` since. hyper's keep-alive PINGs close a peer that stopped answering.
async fn serve_http2<S: ClientStream>(
    stream: S,
    shared: Arc<Shared>,
    live: Arc<Live>,
    settings: &ConnectionSettings,
    mut stopping: Pin<&mut impl Future<Output = ()>>,
) {
    let client = shared.peer.addr;
    let activity_owner = shared.clone();
    // Each stream's future is spawned as a task of its own, which moves it several times on
    // the way in: boxed, only the pointer moves (HTTP/1.1 polls the future in place, where the
    // allocation would be pure cost).
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let runtime = live.current();
        let in_flight = Activity::begin(shared.clone(), true);
        Box::pin(async move {
            let response = respond(runtime, in_flight.owner(), request).await;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        })
    });
    let connection = settings
        .http2
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    let activity = &activity_owner.activity;
    let mut checks = tokio::time::interval_at(Instant::now() + PARK_CHECK, PARK_CHECK);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut began = 0;
    let mut idle_for = Duration::ZERO;
    let sparse = Sparse::new();
    let result = loop {
        let event = next_event(&mut connection, &mut stopping, &mut checks, &sparse).await;
        match event {
            Event::Closed(result) => break result,
            Event::Stop => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            Event::Check => {
                if activity.began() != began || activity.in_flight() > 0 {
                    idle_for = Duration::ZERO;
                    began = activity.began();
                    continue;
                }
                idle_for += PARK_CHECK;
                let limit = if began == 0 {
                    settings.head_timeout
                } else {
                    settings.idle_timeout
                };
                if idle_for >= limit {
                    // Dropped, not shut down gracefully: with no stream open there is nothing
                    // to finish, and hyper's graceful close waits for a PING answer that a
                    // silent client never sends.
                    tracing::debug!(%client, streams = began, "idle HTTP/2 connection closed");
                    break Ok(());
                }
            }
        }
    };
    log_end(client, result);
}

/// How a hyper HTTP/1.1 connection ended.
enum Served {
    /// On its own: the client closed, an error, or parking.
    Closed(hyper::Result<()>),
    /// After a graceful shutdown for `stop`.
    Stopped(hyper::Result<()>),
}

fn log_end(client: SocketAddr, result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(%client, "connection ended with error: {e}");
    }
}

/// Resolves once the server is stopping (or gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Whether the client opens with the HTTP/2 preface. Looks without consuming, so hyper reads
/// the same bytes; a client that sent only part of the preface so far is given a moment more.
async fn sniff_http2(stream: &TcpStream) -> std::io::Result<bool> {
    const ATTEMPTS: usize = 100;
    let mut first = [0u8; H2_PREFACE.len()];
    for _ in 0..ATTEMPTS {
        let n = stream.peek(&mut first).await?;
        if n == 0 || first[..n] != H2_PREFACE[..n] {
            // Closed before a byte (hyper sees the end) or not HTTP/2.
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // The socket stays readable while the bytes wait, so poll again after a pause.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}
