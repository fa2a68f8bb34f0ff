//! Upstream services: targets, round-robin balancing, pooled keep-alive connections, timeouts.
//!
//! Each target keeps its own pool of keep-alive connections ([`pool`]). A connection failure
//! is retried on the next target when the request body can be replayed (it is empty or was
//! buffered); a missing response head after `response_timeout_ms` is a 504.

mod pool;

use crate::body::{Body, BodyFault};
use crate::config::{KeyPath, UpstreamConfig};
use crate::error::{Culprit, ErrorKind, GatewayError};
use crate::key_path;
use crate::telemetry::metrics::{self, AttemptOutcome, TargetSeries};
use crate::tls::upstream::UpstreamTls;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use pool::{SendError, TargetOptions, TargetPool};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A named upstream service.
pub struct Upstream {
    name: String,
    targets: Vec<TargetPool>,
    /// Each target's `host:port` (the `target` label) and metrics, as `targets`.
    series: Vec<(Arc<str>, TargetSeries)>,
    next: AtomicUsize,
    connect_timeout: Duration,
    response_timeout: Duration,
    body_timeout: Duration,
}

impl Upstream {
    /// Build from validated config, with connection pools for `workers` workers; TLS files
    /// are read relative to `base_dir`. A problem is placed at its key.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        workers: usize,
        base_dir: &Path,
    ) -> Result<Self, (KeyPath, String)> {
        let at = key_path!["upstreams", name];
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let mut tls = None;
        let mut targets = Vec::with_capacity(config.targets.len());
        for (i, text) in config.targets.iter().enumerate() {
            let target = Target::parse(text).map_err(|e| (at.key("targets").index(i), e))?;
            let target_tls = match (target.tls, &tls) {
                (false, _) => None,
                (true, Some(built)) => Some(UpstreamTls::clone(built)),
                (true, None) => {
                    let built =
                        UpstreamTls::build(&config.tls, config.protocol, base_dir, &at.key("tls"))?;
                    tls = Some(built.clone());
                    Some(built)
                }
            };
            let options = TargetOptions {
                max_idle: config.pool_max_idle_per_target,
                idle_timeout: Duration::from_secs(config.pool_idle_timeout_s),
                connect_timeout,
                tls: target_tls,
                protocol: config.protocol,
            };
            let pool = TargetPool::new(target.authority, workers, options)
                .map_err(|e| (at.key("targets").index(i), e))?;
            targets.push(pool);
        }
        let series = targets
            .iter()
            .map(|pool| {
                let label = pool.authority().to_string();
                let series = TargetSeries::new(name, &label);
                (Arc::from(label), series)
            })
            .collect();
        Ok(Upstream {
            name: name.to_string(),
            targets,
            series,
            next: AtomicUsize::new(0),
            connect_timeout,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            body_timeout: Duration::from_millis(config.body_timeout_ms),
        })
    }

    /// Each target's label with its idle and active pooled connections now.
    pub fn connections(&self) -> impl Iterator<Item = (&str, usize, usize)> {
        self.targets
            .iter()
            .zip(&self.series)
            .map(|(pool, (label, _))| {
                let (idle, active) = pool.connections();
                (&**label, idle, active)
            })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Longest pause allowed while reading a response body.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Send `request` (origin-form URI) to the next target, retrying connection failures on
    /// further targets when the body can be replayed; `answered` is set to the target that
    /// sent the response head.
    /// No response head by `deadline` (the route's) is a `RouteTimeout`; none within the
    /// upstream's own `response_timeout_ms` of an attempt, an `UpstreamTimeout`.
    pub async fn send(
        &self,
        request: Request<Body>,
        mut deadline: RouteDeadline,
        answered: &mut Option<Arc<str>>,
    ) -> Result<Response<Incoming>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        parts.version = Version::HTTP_11;
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let replayable = match &body {
            Either::Right(full) => Some(full.clone()),
            Either::Left(incoming) if hyper::body::Body::is_end_stream(incoming) => {
                Some(Full::new(Bytes::new()))
            }
            Either::Left(_) => None,
        };
        let attempts = if replayable.is_some() {
            self.targets.len()
        } else {
            1
        };
        if attempts > 1 {
            // The route's time covers every attempt.
            deadline = RouteDeadline::At(deadline.instant(Instant::now()));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut body = Some(body);
        let mut parts = Some(parts);
        let mut last_error = None;
        for attempt in 0..attempts {
            let index = (start + attempt) % self.targets.len();
            let target = &self.targets[index];
            // The head is copied only while a later attempt may still need it.
            let mut attempt_parts = match parts.take() {
                Some(head) if attempt + 1 < attempts => {
                    let copy = clone_parts(&head);
                    parts = Some(head);
                    copy
                }
                Some(head) => head,
                None => break,
            };
            attempt_parts.uri = Uri::from(path.clone());
            let attempt_body = match (&replayable, body.take()) {
                (Some(full), _) => Either::Right(full.clone()),
                (None, Some(body)) => body,
                (None, None) => break,
            };
            match self
                .send_once(
                    Request::from_parts(attempt_parts, attempt_body),
                    target,
                    &self.series[index].1,
                    deadline,
                )
                .await
            {
                Ok(response) => {
                    *answered = Some(self.series[index].0.clone());
                    return Ok(response);
                }
                Err(error) if error.is_retryable() => {
                    let target = target.authority();
                    tracing::warn!(upstream = %self.name, %target, "{}", error.message());
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            self.error(ErrorKind::UpstreamUnreachable, "no target could be tried")
        }))
    }

    async fn send_once(
        &self,
        request: Request<Body>,
        target: &TargetPool,
        series: &TargetSeries,
        deadline: RouteDeadline,
    ) -> Result<Response<Incoming>, GatewayError> {
        let authority = target.authority();
        // One clock read gives both deadlines, and one timer keeps the nearer.
        let now = Instant::now();
        let own = now + self.response_timeout;
        let deadline = deadline.instant(now);
        let result = tokio::time::timeout_at(own.min(deadline), target.send(request)).await;
        if metrics::enabled() {
            let outcome = match &result {
                Err(_) => AttemptOutcome::Timeout,
                Ok(Ok(_)) => AttemptOutcome::Ok,
                Ok(Err(SendError::Connect(_))) => AttemptOutcome::ConnectFailure,
                Ok(Err(SendError::Tls(_))) => AttemptOutcome::TlsFailure,
                Ok(Err(SendError::Exchange(_))) => AttemptOutcome::Error,
            };
            series.attempt(outcome, now.elapsed());
        }
        match result {
            Err(_) if deadline < own => Err(self.error(
                ErrorKind::RouteTimeout,
                format!("the route's deadline passed waiting for {authority}"),
            )),
            Err(_) => Err(self.error(
                ErrorKind::UpstreamTimeout,
                format!(
                    "{authority} sent no response within {} ms",
                    self.response_timeout.as_millis()
                ),
            )),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(SendError::Connect(reason))) => Err(self
                .error(
                    ErrorKind::UpstreamUnreachable,
                    format!(
                        "cannot connect to {authority} (connect timeout {} ms): {reason}",
                        self.connect_timeout.as_millis(),
                    ),
                )
                .retryable(true)),
            Ok(Err(SendError::Tls(reason))) => Err(self
                .error(
                    ErrorKind::UpstreamTls,
                    format!("TLS to {authority} failed: {reason}"),
                )
                .retryable(true)),
            Ok(Err(SendError::Exchange(e))) => match BodyFault::find(&e) {
                // The client's body failed on its way: its error, not the upstream's.
                Some(fault) => Err(fault.request_error()),
                None => Err(self
                    .error(
                        ErrorKind::UpstreamBadResponse,
                        format!("{authority} failed: {}", cause(&e)),
                    )
                    .with_cause(e)),
            },
        }
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> GatewayError {
        GatewayError::new(kind, Culprit::Upstream(self.name.clone()), message)
    }
}

/// One entry of `targets`: `host:port`, or `https://host[:port]` for TLS.
pub struct Target {
    /// Where to connect.
    pub authority: Authority,
    /// Whether the connection speaks TLS.
    pub tls: bool,
}

impl Target {
    /// Parse a target as written in the config.
    pub fn parse(text: &str) -> Result<Target, String> {
        let (rest, tls, default_port) = match text.split_once("://") {
            Some(("https", rest)) => (rest, true, 443),
            Some(("http", rest)) => (rest, false, 80),
            Some((scheme, _)) => {
                return Err(format!(
                    "`{text}`: scheme `{scheme}` is not `http` or `https`"
                ));
            }
            None => (text, false, 0),
        };
        let authority = rest
            .trim_end_matches('/')
            .parse::<Authority>()
            .map_err(|e| format!("`{text}` is not host:port: {e}"))?;
        let authority = match (authority.port_u16(), default_port) {
            (Some(_), _) => authority,
            (None, 0) => {
                return Err(format!(
                    "`{text}` has no port (write host:port, or https://host)"
                ));
            }
            (None, port) => format!("{}:{port}", authority.host())
                .parse()
                .map_err(|e| format!("`{text}`: {e}"))?,
        };
        if rest.trim_end_matches('/').contains('/') || authority.as_str().contains('@') {
            return Err(format!(
                "`{text}`: a target is only a scheme, host and port"
            ));
        }
        Ok(Target { authority, tls })
    }
}

/// When the route needs its response head by.
#[derive(Debug, Clone, Copy)]
pub enum RouteDeadline {
    /// This long from the upstream call: a route without plugins reaches its upstream
    /// microseconds after routing, so its deadline is set where the call's own timer is.
    Within(Duration),
    /// By this instant (set at routing, before plugins ran).
    At(Instant),
}

impl RouteDeadline {
    fn instant(self, now: Instant) -> Instant {
        match self {
            RouteDeadline::Within(timeout) => now + timeout,
            RouteDeadline::At(at) => at,
        }
    }
}

/// The innermost cause of an error, which is where the useful words are.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// A copy of a request head (extensions are not copied).
pub fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field(
                "targets",
                &self
                    .targets
                    .iter()
                    .map(TargetPool::authority)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
