//! Upstream services: targets, balancing, health, breakers, pooled keep-alive connections,
//! timeouts.
//!
//! Each target keeps its own pool of keep-alive connections ([`pool`]). A request first
//! passes the upstream's circuit breakers ([`breaker`]), then goes to a target the balancer
//! picks ([`balance`]) among those in rotation ([`health`]: active checks, outlier ejection)
//! and under their connection cap. A connection failure is retried on another target when
//! the request body can be replayed (it is empty or was buffered); a missing response head
//! after `response_timeout_ms` is a 504. Every attempt's outcome feeds outlier detection and
//! the error-rate breaker.

mod balance;
mod breaker;
mod dns;
mod health;
mod mirror;
mod pool;
mod retry;
mod split;
mod sticky;
mod window;

pub use dns::nameserver;
pub use mirror::Mirror;
pub use retry::RetryPolicy;
pub use split::Split;

use crate::body::{Body, BodyFault, Held, Release};
use crate::config::NoHealthy;
use crate::config::{KeyPath, ResolverConfig, UpstreamConfig};
use crate::error::{Culprit, ErrorKind, GatewayError};
use crate::key_path;
use crate::telemetry::metrics::{self, AttemptOutcome, TargetSeries};
use crate::tls::upstream::UpstreamTls;
use balance::Balancer;
use breaker::{Breaker, Refusal};
use bytes::Bytes;
use health::{Checker, Health, Outcome};
use http::HeaderName;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use pool::{SendError, TargetOptions, TargetPool};
use retry::{Failure, RetryBudget};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A named upstream service.
pub struct Upstream {
    name: String,
    targets: Vec<TargetPool>,
    /// Each target's `host:port` (the `target` label) and metrics, as `targets`.
    series: Vec<(Arc<str>, TargetSeries)>,
    balancer: Balancer,
    hash_on: Option<HashOn>,
    sticky: Option<sticky::Sticky>,
    health: Arc<Health>,
    checks: Option<Arc<Checker>>,
    /// Its health checks and DNS task were started.
    started: AtomicBool,
    /// How hostname targets are followed (`[resolver]`).
    resolver: ResolverConfig,
    breaker: Breaker,
    budget: RetryBudget,
    max_connections: usize,
    /// Each target's requests in flight, as `targets`.
    loads: Vec<Arc<TargetLoad>>,
    /// Requests waiting for a target under `max_connections` (at most `max_pending`, each
    /// for up to `pending_timeout`), woken as requests finish.
    room: Arc<Room>,
    max_pending: usize,
    pending_timeout: Duration,
    /// Requests in flight per target are counted (`least_request`, `max_connections`).
    counts_load: bool,
    no_healthy: NoHealthy,
    connect_timeout: Duration,
    response_timeout: Duration,
    body_timeout: Duration,
}

/// What `balance = "consistent_hash"` hashes: `hash_on = "header:NAME" | "cookie:NAME" |
/// "client_ip" | "context:KEY"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP (behind trusted proxies, the forwarded one).
    ClientIp,
    /// A context value a plugin set (`consumer`, …).
    Context(String),
}

impl HashOn {
    /// Parse `hash_on` as written.
    pub fn parse(text: &str) -> Result<HashOn, String> {
        match text.split_once(':') {
            _ if text == "client_ip" => Ok(HashOn::ClientIp),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .map(HashOn::Header)
                .map_err(|_| format!("`{name}` is not a header name")),
            Some(("cookie", name)) if !name.is_empty() => Ok(HashOn::Cookie(name.to_string())),
            Some(("context", key)) if !key.is_empty() => Ok(HashOn::Context(key.to_string())),
            _ => Err(format!(
                "`{text}`: expected header:NAME, cookie:NAME, client_ip or context:KEY"
            )),
        }
    }

    /// The hash of what this names in a request, if the request has it.
    pub fn key(&self, parts: &http::request::Parts, affinity: &Affinity<'_>) -> Option<u64> {
        match self {
            HashOn::Header(name) => parts
                .headers
                .get(name)
                .map(|value| balance::hash_of(&value.as_bytes())),
            HashOn::Cookie(name) => cookie(parts, name).map(|value| balance::hash_of(&value)),
            HashOn::ClientIp => Some(balance::hash_of(&affinity.client)),
            HashOn::Context(key) => {
                let value = (affinity.context?)(key)?;
                Some(balance::hash_of(&value.as_bytes()))
            }
        }
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a [u8]> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value.as_bytes())
        })
}

/// A target's requests in flight: from the attempt until its response body is done.
struct TargetLoad {
    in_flight: AtomicUsize,
    room: Arc<Room>,
}

/// Where requests wait for a target under `max_connections`.
#[derive(Default)]
struct Room {
    waiting: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl Release for TargetLoad {
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.room.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify.notify_one();
        }
    }
}

/// A response head and what its body holds until it is done (its target's place among the
/// requests in flight, where they are counted).
pub type Answer = (Response<Incoming>, Option<Held>);

/// What a route sets for one call to an upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions<'a> {
    /// The request's hash key for `consistent_hash`.
    pub key: Option<u64>,
    /// The route's retry policy.
    pub retry: Option<&'a RetryPolicy>,
    /// The route's `connect_timeout_ms`, over the upstream's.
    pub connect_timeout: Option<Duration>,
    /// The route's `response_timeout_ms`, over the upstream's (a retry's per-try timeout
    /// is over both).
    pub response_timeout: Option<Duration>,
}

/// Looks up a plugin context value by key.
pub type ContextLookup<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// What a request offers for consistent hashing besides its head.
pub struct Affinity<'a> {
    /// The client's IP.
    pub client: IpAddr,
    /// The plugin context, when the route has plugins.
    pub context: Option<&'a ContextLookup<'a>>,
}

impl Upstream {
    /// Build from validated config, with connection pools for `workers` workers; TLS files
    /// are read relative to `base_dir`; hostname targets are followed as `resolver` says.
    /// A problem is placed at its key.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        (workers, resolver): (usize, &ResolverConfig),
        base_dir: &Path,
    ) -> Result<Self, (KeyPath, String)> {
        let at = key_path!["upstreams", name];
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let mut tls = None;
        let mut targets = Vec::with_capacity(config.targets.len());
        for (i, spec) in config.targets.iter().enumerate() {
            let target =
                Target::parse(spec.address()).map_err(|e| (at.key("targets").index(i), e))?;
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
        let series: Vec<(Arc<str>, TargetSeries)> = targets
            .iter()
            .map(|pool| {
                let label = pool.authority().to_string();
                let series = TargetSeries::new(name, &label);
                (Arc::from(label), series)
            })
            .collect();
        let labels: Vec<String> = series.iter().map(|(label, _)| label.to_string()).collect();
        let identities: Vec<&str> = config.targets.iter().map(|t| t.address()).collect();
        let weights: Vec<u32> = config.targets.iter().map(|t| t.weight()).collect();
        let hash_on = match &config.hash_on {
            Some(text) => Some(HashOn::parse(text).map_err(|e| (at.key("hash_on"), e))?),
            None => None,
        };
        let room = Arc::new(Room::default());
        let loads = (0..targets.len())
            .map(|_| {
                Arc::new(TargetLoad {
                    in_flight: AtomicUsize::new(0),
                    room: room.clone(),
                })
            })
            .collect();
        let sticky = match &config.sticky_cookie {
            Some(cookie) => Some(
                sticky::Sticky::new(cookie, &identities)
                    .map_err(|e| (at.key("sticky_cookie"), e))?,
            ),
            None => None,
        };
        Ok(Upstream {
            loads,
            sticky,
            name: name.to_string(),
            targets,
            series,
            balancer: Balancer::new(config.balance, &weights, &identities),
            hash_on,
            health: Arc::new(Health::new(
                name,
                &labels,
                config.health_check.as_ref(),
                &config.outlier,
            )),
            checks: config
                .health_check
                .as_ref()
                .map(|c| Arc::new(Checker::new(c))),
            started: AtomicBool::new(false),
            resolver: resolver.clone(),
            breaker: Breaker::new(name, &config.breaker),
            budget: RetryBudget::new(&config.retry_budget),
            max_connections: config.max_connections,
            room: room.clone(),
            max_pending: config.max_pending,
            pending_timeout: Duration::from_millis(config.pending_timeout_ms),
            counts_load: config.max_connections > 0
                || config.balance == crate::config::Balance::LeastRequest,
            no_healthy: config.no_healthy,
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

    /// Longest wait for a response head, per attempt.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Send `request` (origin-form URI) to the next target, retrying connection failures on
    /// further targets when the body can be replayed; `answered` is set to the target that
    /// sent the response head.
    /// No response head by `deadline` (the route's) is a `RouteTimeout`; none within the
    /// upstream's own `response_timeout_ms` of an attempt, an `UpstreamTimeout`.
    pub async fn send(
        &self,
        request: Request<Body>,
        deadline: RouteDeadline,
        answered: &mut Option<Arc<str>>,
        options: CallOptions<'_>,
    ) -> Result<Answer, GatewayError> {
        if !self.breaker.is_set() {
            return self.attempts(request, deadline, answered, options).await;
        }
        let admission = self.breaker.admit().await.map_err(|refusal| {
            let (kind, reason, message) = match refusal {
                Refusal::Overloaded => (
                    ErrorKind::UpstreamOverloaded,
                    "overloaded",
                    "at its concurrency limit (breaker.max_requests) with no pending slot",
                ),
                Refusal::Open => (
                    ErrorKind::CircuitOpen,
                    "circuit_open",
                    "its circuit breaker is open",
                ),
            };
            self.rejected(reason);
            self.error(kind, format!("upstream `{}` is {message}", self.name))
        })?;
        let result = self.attempts(request, deadline, answered, options).await;
        let ok = match &result {
            Ok((response, _)) => !response.status().is_server_error(),
            Err(e) => e.kind().status().is_client_error(),
        };
        admission.finish(&self.breaker, ok);
        result
    }

    /// The hash key of a request for `balance = "consistent_hash"`; none without `hash_on`
    /// or when the request lacks what it names (it is then balanced round robin).
    pub fn hash_key(&self, parts: &http::request::Parts, affinity: &Affinity<'_>) -> Option<u64> {
        self.hash_on.as_ref()?.key(parts, affinity)
    }

    /// Start the active health checks and the re-resolution of hostname targets (once; they
    /// end when the upstream is dropped), as tasks of the runtime this is called on.
    pub fn start_tasks(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        self.health.publish();
        if self.targets.iter().any(|t| t.addresses().is_some()) {
            self.follow_dns();
        }
        let Some(checks) = &self.checks else { return };
        let checks = checks.clone();
        let upstream = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(upstream) = upstream.upgrade().filter(|u| !u.health.is_retired()) else {
                    return;
                };
                let probes = upstream.targets.iter().map(|target| async {
                    let status = target.probe(&checks.path, checks.timeout).await;
                    matches!(status, Ok(status) if checks.passes(status.as_u16()))
                });
                let results = futures::future::join_all(probes).await;
                for (i, passed) in results.into_iter().enumerate() {
                    checks.record(&upstream.health, i, passed);
                }
                drop(upstream);
                tokio::time::sleep(checks.next_pause()).await;
            }
        });
    }

    /// Replaced by a reload: its health no longer shows in the gauges it shares with its
    /// successor, and its checks and DNS task end (requests still in flight on it finish).
    pub fn retire(&self) {
        self.health.retire();
    }

    /// Resolve each hostname target again as its TTL runs out.
    fn follow_dns(self: &Arc<Self>) {
        let dns = match dns::Dns::new(&self.resolver) {
            Ok(dns) => dns,
            Err(e) => {
                tracing::warn!(upstream = %self.name, "hostname targets resolve through the system at each connection: {e}");
                return;
            }
        };
        let upstream = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(upstream) = upstream.upgrade().filter(|u| !u.health.is_retired()) else {
                    return;
                };
                let mut pause = Duration::MAX;
                for (target, (label, _)) in upstream.targets.iter().zip(&upstream.series) {
                    if let Some(addresses) = target.addresses() {
                        let next = dns.refresh(&upstream.name, label, addresses).await;
                        pause = pause.min(next);
                    }
                }
                drop(upstream);
                tokio::time::sleep(pause).await;
            }
        });
    }

    fn rejected(&self, reason: &str) {
        metrics::metrics()
            .upstream_rejected
            .with_label_values(&[&self.name, reason])
            .inc();
    }

    /// Whether target `i` is under its connection cap.
    fn has_room(&self, i: usize) -> bool {
        self.max_connections == 0
            || self.loads[i].in_flight.load(Ordering::Relaxed) < self.max_connections
    }

    /// The target for the next attempt (not one in `tried`): in rotation and under its
    /// connection cap; or why none can be tried.
    fn choose(&self, key: Option<u64>, tried: &[usize]) -> Result<usize, GatewayError> {
        let health = &*self.health;
        let cap = self.max_connections;
        let load = |i: usize| self.loads[i].in_flight.load(Ordering::Relaxed);
        let room = |i: usize| self.has_room(i);
        let fresh = |i: usize| !tried.contains(&i);
        let serving = |i: usize| fresh(i) && health.serves(i);
        if let Some(i) = self.balancer.pick(key, &|i| serving(i) && room(i), &load) {
            return Ok(i);
        }
        let overloaded = || {
            self.error(
                ErrorKind::UpstreamOverloaded,
                format!(
                    "every target of upstream `{}` is at max_connections = {cap}",
                    self.name
                ),
            )
        };
        if (0..health.len()).any(serving) {
            return Err(overloaded());
        }
        match self.no_healthy {
            NoHealthy::Fail => Err(self.error(
                ErrorKind::NoHealthyUpstream,
                format!("no target of upstream `{}` is healthy", self.name),
            )),
            // A health check that is wrong must not take the service down: all of them.
            NoHealthy::Panic => match self.balancer.pick(key, &|i| fresh(i) && room(i), &load) {
                Some(i) => Ok(i),
                None if (0..health.len()).any(fresh) => Err(overloaded()),
                None => Err(self.error(ErrorKind::UpstreamUnreachable, "no target could be tried")),
            },
        }
    }

    /// The attempts of one request, past the breakers.
    async fn attempts(
        &self,
        request: Request<Body>,
        mut deadline: RouteDeadline,
        answered: &mut Option<Arc<str>>,
        options: CallOptions<'_>,
    ) -> Result<Answer, GatewayError> {
        let CallOptions { key, retry, .. } = options;
        let (mut parts, body) = request.into_parts();
        parts.version = Version::HTTP_11;
        // The target a sticky cookie names, tried first.
        let stuck = self.sticky.as_ref().and_then(|s| s.target(&parts));
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
        // Only a body that can be sent again is (a streamed one went out once).
        let policy = retry.filter(|p| replayable.is_some() && p.allows(&parts.method));
        if policy.is_some() {
            self.budget.deposit();
        }
        // Nothing was sent on a connect failure: the next target, whatever the policy says.
        let attempts = match (&replayable, policy) {
            (None, _) => 1,
            (Some(_), None) => self.targets.len(),
            (Some(_), Some(p)) => self.targets.len().max(p.attempts as usize),
        };
        if attempts > 1 {
            // The route's time covers every attempt.
            deadline = RouteDeadline::At(deadline.instant(Instant::now()));
        }
        let per_try = policy
            .and_then(|p| p.per_try_timeout)
            .or(options.response_timeout);
        let connect_timeout = options.connect_timeout.unwrap_or(self.connect_timeout);
        let mut body = Some(body);
        let mut parts = Some(parts);
        let mut last_error = None;
        let mut tried = Vec::new();
        let mut retried = 0u32;
        let mut next = None;
        for attempt in 0..attempts {
            let index = match next.take() {
                Some(index) => index,
                None if attempt == 0 => self.first_target((key, stuck), &mut deadline).await?,
                None => match self.choose(key, &tried) {
                    Ok(index) => index,
                    Err(_) => break,
                },
            };
            let more = attempt + 1 < attempts;
            if more {
                tried.push(index);
            }
            let target = &self.targets[index];
            // The head is copied only while a later attempt may still need it.
            let mut attempt_parts = match parts.take() {
                Some(head) if more => {
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
            // Counted only where something reads it (a shared counter costs every request).
            let held = self.counts_load.then(|| {
                let load = &self.loads[index];
                load.in_flight.fetch_add(1, Ordering::Relaxed);
                Held::new(load.clone())
            });
            let sent = self
                .send_once(
                    Request::from_parts(attempt_parts, attempt_body),
                    target,
                    &self.series[index].1,
                    (deadline, per_try, connect_timeout),
                )
                .await;
            let failure = match &sent {
                Ok(response) if response.status().is_server_error() => {
                    Some(Failure::Status(response.status().as_u16()))
                }
                Ok(_) => None,
                Err(e) if e.is_retryable() => Some(Failure::Connect),
                Err(e) if e.kind() == ErrorKind::UpstreamTimeout => Some(Failure::Timeout),
                Err(e) if e.kind() == ErrorKind::UpstreamBadResponse && self.caused(e) => {
                    Some(Failure::Reset)
                }
                // The route's own deadline or the client's body: not the target's doing.
                Err(_) => None,
            };
            let outcome = match (&sent, failure) {
                (_, Some(_)) => Some(Outcome::Failure),
                (Ok(_), None) => Some(Outcome::Success),
                (Err(_), None) => None,
            };
            if let Some(outcome) = outcome {
                self.health.record(index, outcome);
            }
            // A failure the policy retries, with an attempt, a target and budget left.
            let retry_with = match (policy, failure) {
                (Some(p), Some(failure))
                    if more
                        && retried + 1 < p.attempts
                        && p.retries(failure)
                        && failure != Failure::Connect =>
                {
                    // Another target where there is one, else the same again.
                    match self.choose(key, &tried).or_else(|_| self.choose(key, &[])) {
                        Ok(next_index) if self.budget.withdraw() => Some((p, failure, next_index)),
                        Ok(_) => {
                            self.retry_denied();
                            None
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            if let Some((p, failure, next_index)) = retry_with {
                retried += 1;
                self.retried(failure);
                let pause = p.backoff(retried);
                let at = Instant::now() + pause;
                if at >= deadline.instant(Instant::now()) {
                    // No time left for another attempt: this answer stands.
                    return sent
                        .map(|response| self.answer(response, held, (index, stuck), answered));
                }
                tracing::debug!(upstream = %self.name, reason = failure.label(), ?pause, "retrying");
                tokio::time::sleep_until(at).await;
                next = Some(next_index);
                last_error = sent.err();
                continue;
            }
            match sent {
                Ok(response) => return Ok(self.answer(response, held, (index, stuck), answered)),
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

    /// The target of a request's first attempt: one under its cap now, or, when all are at
    /// `max_connections`, the first to have room within `pending_timeout` (at most
    /// `max_pending` requests wait).
    async fn first_target(
        &self,
        (key, stuck): (Option<u64>, Option<usize>),
        deadline: &mut RouteDeadline,
    ) -> Result<usize, GatewayError> {
        let refused = |error: GatewayError| {
            match error.kind() {
                ErrorKind::UpstreamOverloaded => self.rejected("overloaded"),
                ErrorKind::NoHealthyUpstream => self.rejected("no_healthy"),
                _ => {}
            }
            error
        };
        if let Some(i) = stuck
            && self.health.serves(i)
            && self.has_room(i)
        {
            return Ok(i);
        }
        let error = match self.choose(key, &[]) {
            Ok(index) => return Ok(index),
            Err(error) if error.kind() != ErrorKind::UpstreamOverloaded => {
                return Err(refused(error));
            }
            Err(error) => error,
        };
        let waiting = &self.room.waiting;
        if waiting.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(refused(error));
        }
        // The route's time covers the wait.
        let now = Instant::now();
        *deadline = RouteDeadline::At(deadline.instant(now));
        let until = (now + self.pending_timeout).min(deadline.instant(now));
        let waited = async {
            loop {
                let room = self.room.notify.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                match self.choose(key, &[]) {
                    Ok(index) => return Ok(index),
                    Err(e) if e.kind() != ErrorKind::UpstreamOverloaded => return Err(e),
                    Err(_) => {}
                }
                if tokio::time::timeout_at(until, room).await.is_err() {
                    return Err(error);
                }
            }
        }
        .await;
        waiting.fetch_sub(1, Ordering::Relaxed);
        waited.map_err(refused)
    }

    /// `response`, from target `index`, as the request's answer: the target noted, and a
    /// sticky cookie set when the request's (`stuck`) did not name it.
    fn answer(
        &self,
        mut response: Response<Incoming>,
        held: Option<Held>,
        (index, stuck): (usize, Option<usize>),
        answered: &mut Option<Arc<str>>,
    ) -> Answer {
        *answered = Some(self.series[index].0.clone());
        if let Some(sticky) = &self.sticky
            && stuck != Some(index)
        {
            let cookie = sticky.set_cookie(index).clone();
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
        (response, held)
    }

    fn retried(&self, failure: Failure) {
        metrics::metrics()
            .upstream_retries
            .with_label_values(&[&self.name, failure.label()])
            .inc();
    }

    fn retry_denied(&self) {
        metrics::metrics()
            .retry_budget_exhausted
            .with_label_values(&[&self.name])
            .inc();
    }

    async fn send_once(
        &self,
        request: Request<Body>,
        target: &TargetPool,
        series: &TargetSeries,
        (deadline, per_try, connect_timeout): (RouteDeadline, Option<Duration>, Duration),
    ) -> Result<Response<Incoming>, GatewayError> {
        let authority = target.authority();
        // One clock read gives both deadlines, and one timer keeps the nearer.
        let now = Instant::now();
        let response_timeout = per_try.unwrap_or(self.response_timeout);
        let own = now + response_timeout;
        let deadline = deadline.instant(now);
        let result =
            tokio::time::timeout_at(own.min(deadline), target.send(request, connect_timeout)).await;
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
                    response_timeout.as_millis()
                ),
            )),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(SendError::Connect(reason))) => Err(self
                .error(
                    ErrorKind::UpstreamUnreachable,
                    format!(
                        "cannot connect to {authority} (connect timeout {} ms): {reason}",
                        connect_timeout.as_millis(),
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
        GatewayError::new(kind, self.culprit(), message)
    }

    fn culprit(&self) -> Culprit {
        Culprit::Upstream(self.name.clone())
    }

    /// Whether this upstream (not the client's body) caused `error`.
    fn caused(&self, error: &GatewayError) -> bool {
        matches!(error.culprit(), Culprit::Upstream(name) if *name == self.name)
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
