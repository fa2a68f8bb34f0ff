//! Prometheus metrics (`gateway_` prefix, base units), kept in a registry of the gateway's own
//! and rendered by the admin listener's `GET /metrics`.
//!
//! The hot path never looks a series up by its labels where that can be avoided: a route's
//! histograms and byte counters ([`RouteSeries`]), each chain entry's call counters
//! ([`PluginSeries`]) and each upstream target's ([`TargetSeries`]) are resolved once, when the
//! config is compiled; `requests_total{route,method,status}`, whose status is known only at the
//! end, goes through a per-worker (thread-local) cache of handles, so no lock is taken per
//! request. What remains per request is a few relaxed atomic additions.
//!
//! Everything is counted only while [`enabled`] (the admin listener serves `/metrics`): with
//! metrics off, a request pays one relaxed load.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are being counted.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Start counting (the admin listener serves `/metrics`).
pub fn enable() {
    let _ = metrics();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Request and upstream latencies: from 0.5 ms (a pooled local upstream) to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Plugin calls: from 10 µs (a pooled header check) to 1 s (past any sensible timeout).
const PLUGIN_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    1.0,
];

/// Fuel burnt by a plugin call: from a thousand units (a header check) to a billion (past
/// any sensible budget), by powers of ten with a half step.
const FUEL_BUCKETS: &[f64] = &[
    1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9,
];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// `gateway_requests_total{route,method,status}`.
    pub requests: IntCounterVec,
    /// `gateway_request_duration_seconds{route}`: head in to response head out.
    pub request_duration: HistogramVec,
    /// `gateway_request_bytes_total{route}`: request bodies (declared lengths).
    pub request_bytes: IntCounterVec,
    /// `gateway_response_bytes_total{route}`: response bodies (known lengths).
    pub response_bytes: IntCounterVec,
    /// `gateway_errors_total{route,code}`: answers the gateway made itself, by error code.
    pub errors: IntCounterVec,
    /// `gateway_plugin_calls_total{plugin,route,phase,outcome}`.
    pub plugin_calls: IntCounterVec,
    /// `gateway_plugin_call_duration_seconds{plugin,route,phase}`.
    pub plugin_duration: HistogramVec,
    /// `gateway_plugin_fuel_consumed{plugin,route,phase}`: for uses with a fuel budget.
    pub plugin_fuel: HistogramVec,
    /// `gateway_plugin_host_call_duration_seconds{plugin,route,phase}`: time a call spent
    /// waiting in host calls.
    pub plugin_host_duration: HistogramVec,
    /// `gateway_plugin_instances_total{plugin,event}`: instances created and discarded.
    pub plugin_instances_total: IntCounterVec,
    /// `gateway_plugin_instances{plugin,route,state}`: warm and busy, set at each scrape.
    pub plugin_instances: IntGaugeVec,
    /// `gateway_upstream_attempts_total{upstream,target,outcome}`.
    pub upstream_attempts: IntCounterVec,
    /// `gateway_upstream_response_duration_seconds{upstream,target}`: to the response head.
    pub upstream_duration: HistogramVec,
    /// `gateway_upstream_target_healthy{upstream,target}`: 1 in rotation, 0 unhealthy (active
    /// checks) or ejected (outlier detection).
    pub target_healthy: IntGaugeVec,
    /// `gateway_upstream_ejections_total{upstream,target}`: outlier ejections.
    pub ejections: IntCounterVec,
    /// `gateway_upstream_health_checks_total{upstream,target,result}`: pass or fail.
    pub health_checks: IntCounterVec,
    /// `gateway_upstream_rejected_total{upstream,reason}`: requests answered 503 without an
    /// attempt (overloaded, circuit_open, no_healthy).
    pub upstream_rejected: IntCounterVec,
    /// `gateway_upstream_circuit_state{upstream}`: 0 closed, 1 open, 2 half-open.
    pub circuit_state: IntGaugeVec,
    /// `gateway_upstream_retries_total{upstream,reason}`: attempts made again by a route's
    /// retry policy.
    pub upstream_retries: IntCounterVec,
    /// `gateway_upstream_retry_budget_exhausted_total{upstream}`: retries the budget refused.
    pub retry_budget_exhausted: IntCounterVec,
    /// `gateway_upstream_dns_resolutions_total{upstream,target,result}`: re-resolutions of
    /// hostname targets (same, changed, failed).
    pub dns_resolutions: IntCounterVec,
    /// `gateway_route_split_total{route,upstream,placed}`: where a split route's requests
    /// went, by weight or override.
    pub route_split: IntCounterVec,
    /// `gateway_mirror_requests_total{route,upstream,outcome}`: copies sent to a shadow
    /// upstream (ok, error) or not sent (busy, body).
    pub mirror_requests: IntCounterVec,
    /// `gateway_upstream_connections{upstream,target,state}`: idle and active, set at each
    /// scrape.
    pub upstream_connections: IntGaugeVec,
    /// `gateway_connections_accepted_total{listener,protocol}`.
    pub connections_accepted: IntCounterVec,
    /// `gateway_connections_open{listener}`.
    pub connections_open: IntGaugeVec,
    /// `gateway_connections_refused_total{reason}`: closed at accept by a connection cap.
    pub connections_refused: IntCounterVec,
    /// `gateway_tls_handshake_failures_total{listener,reason}`.
    pub tls_failures: IntCounterVec,
    /// `gateway_state_backend_calls_total{outcome}`: Redis calls, `ok` or `error`.
    pub state_calls: IntCounterVec,
    /// `gateway_state_backend_call_duration_seconds`.
    pub state_duration: Histogram,
    /// `gateway_state_backend_outages_total`: times the backend became unavailable.
    pub state_outages: IntCounter,
    /// `gateway_state_backend_up`: 1 while the backend answers (or none is configured).
    pub state_up: IntGauge,
    /// `gateway_jwks_fetches_total{key_set,outcome}`.
    pub jwks_fetches: IntCounterVec,
    /// `gateway_access_log_dropped_total`: lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// `gateway_config_loaded_timestamp_seconds`: when the serving config was loaded.
    pub config_loaded: Gauge,
    /// `gateway_config_reloads_total{result}`: reloads that took effect (`ok`) or not
    /// (`error`).
    pub config_reloads: IntCounterVec,
    /// `gateway_ready`: 1 while serving, 0 while draining.
    pub ready: IntGauge,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(e));
    register(registry, vec)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, labels).unwrap_or_else(|e| invalid(e));
    register(registry, vec)
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(e));
    register(registry, vec)
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| invalid(e));
    c
}

/// A metric definition below is wrong: a bug in this file, found by its unit test.
fn invalid(e: prometheus::Error) -> ! {
    panic!("invalid metric definition: {e}")
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let state_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_state_backend_call_duration_seconds",
                "Round-trip time of calls to the state backend (Redis).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| invalid(e));
        let state_outages = IntCounter::new(
            "gateway_state_backend_outages_total",
            "Times the state backend became unavailable.",
        )
        .unwrap_or_else(|e| invalid(e));
        let state_up = IntGauge::new(
            "gateway_state_backend_up",
            "1 while the state backend answers (always 1 for the in-memory backend).",
        )
        .unwrap_or_else(|e| invalid(e));
        state_up.set(1);
        let access_log_dropped = IntCounter::new(
            "gateway_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind.",
        )
        .unwrap_or_else(|e| invalid(e));
        let config_loaded = Gauge::new(
            "gateway_config_loaded_timestamp_seconds",
            "When the config being served was loaded (Unix time).",
        )
        .unwrap_or_else(|e| invalid(e));
        let ready = IntGauge::new("gateway_ready", "1 while serving, 0 while draining.")
            .unwrap_or_else(|e| invalid(e));
        let build_info = gauge_vec(
            &r,
            "gateway_build_info",
            "The gateway's version (always 1).",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let connections_refused = counter_vec(
            &r,
            "gateway_connections_refused_total",
            "Client connections closed at accept by a connection cap.",
            &["reason"],
        );
        // Every reason is exported from the start (at 0), so dashboards and alerts find it.
        for reason in ["max_connections", "max_connections_per_ip"] {
            connections_refused.with_label_values(&[reason]);
        }
        Metrics {
            connections_refused,
            requests: counter_vec(
                &r,
                "gateway_requests_total",
                "Requests answered, by route, method and status code.",
                &["route", "method", "status"],
            ),
            request_duration: histogram_vec(
                &r,
                "gateway_request_duration_seconds",
                "Time from a request's head to its response head, by route.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            request_bytes: counter_vec(
                &r,
                "gateway_request_bytes_total",
                "Request body bytes received (declared Content-Length), by route.",
                &["route"],
            ),
            response_bytes: counter_vec(
                &r,
                "gateway_response_bytes_total",
                "Response body bytes sent (bodies of known length), by route.",
                &["route"],
            ),
            errors: counter_vec(
                &r,
                "gateway_errors_total",
                "Responses the gateway made itself on an error, by route and error code.",
                &["route", "code"],
            ),
            plugin_calls: counter_vec(
                &r,
                "gateway_plugin_calls_total",
                "Plugin calls by plugin, route, phase and outcome (continue, respond, or the violation label).",
                &["plugin", "route", "phase", "outcome"],
            ),
            plugin_duration: histogram_vec(
                &r,
                "gateway_plugin_call_duration_seconds",
                "Duration of plugin calls (waiting for an instance included).",
                &["plugin", "route", "phase"],
                PLUGIN_BUCKETS,
            ),
            plugin_fuel: histogram_vec(
                &r,
                "gateway_plugin_fuel_consumed",
                "Fuel burnt per plugin call, for uses with a fuel budget (calls that ran out burnt all of it).",
                &["plugin", "route", "phase"],
                FUEL_BUCKETS,
            ),
            plugin_host_duration: histogram_vec(
                &r,
                "gateway_plugin_host_call_duration_seconds",
                "Time per plugin call spent in host calls that can wait (state backend, key sets); the rest of the call's duration is the plugin's own.",
                &["plugin", "route", "phase"],
                PLUGIN_BUCKETS,
            ),
            plugin_instances_total: counter_vec(
                &r,
                "gateway_plugin_instances_total",
                "Plugin instances created and discarded.",
                &["plugin", "event"],
            ),
            upstream_connections: gauge_vec(
                &r,
                "gateway_upstream_connections",
                "Pooled upstream connections by state: idle (ready for a request) or active.",
                &["upstream", "target", "state"],
            ),
            plugin_instances: gauge_vec(
                &r,
                "gateway_plugin_instances",
                "Plugin instances per use, warm (idle) or busy.",
                &["plugin", "route", "state"],
            ),
            upstream_attempts: counter_vec(
                &r,
                "gateway_upstream_attempts_total",
                "Attempts to get a response from an upstream target, by outcome (ok, connect_failure, tls_failure, timeout, error).",
                &["upstream", "target", "outcome"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "gateway_upstream_response_duration_seconds",
                "Time from sending to an upstream target to its response head.",
                &["upstream", "target"],
                LATENCY_BUCKETS,
            ),
            target_healthy: gauge_vec(
                &r,
                "gateway_upstream_target_healthy",
                "1 while a target is in rotation; 0 while active checks hold it unhealthy or outlier detection ejected it.",
                &["upstream", "target"],
            ),
            ejections: counter_vec(
                &r,
                "gateway_upstream_ejections_total",
                "Targets ejected by outlier detection (consecutive failures).",
                &["upstream", "target"],
            ),
            health_checks: counter_vec(
                &r,
                "gateway_upstream_health_checks_total",
                "Active health checks by result (pass, fail).",
                &["upstream", "target", "result"],
            ),
            upstream_rejected: counter_vec(
                &r,
                "gateway_upstream_rejected_total",
                "Requests answered 503 without trying the upstream, by reason (overloaded, circuit_open, no_healthy).",
                &["upstream", "reason"],
            ),
            circuit_state: gauge_vec(
                &r,
                "gateway_upstream_circuit_state",
                "The error-rate circuit breaker: 0 closed, 1 open, 2 half-open.",
                &["upstream"],
            ),
            upstream_retries: counter_vec(
                &r,
                "gateway_upstream_retries_total",
                "Attempts made again by a route's retry policy, by what failed (reset, timeout, status).",
                &["upstream", "reason"],
            ),
            retry_budget_exhausted: counter_vec(
                &r,
                "gateway_upstream_retry_budget_exhausted_total",
                "Retries a route's policy asked for that the upstream's retry budget refused.",
                &["upstream"],
            ),
            dns_resolutions: counter_vec(
                &r,
                "gateway_upstream_dns_resolutions_total",
                "Resolutions of hostname targets, by result (same, changed, failed: the last answer is kept).",
                &["upstream", "target", "result"],
            ),
            route_split: counter_vec(
                &r,
                "gateway_route_split_total",
                "Requests of a route with several upstreams, by the upstream taken and why (weight, override).",
                &["route", "upstream", "placed"],
            ),
            mirror_requests: counter_vec(
                &r,
                "gateway_mirror_requests_total",
                "Request copies for a shadow upstream: answered (ok), failed or 5xx (error), or not sent because max_in_flight were out (busy) or the body could not be copied (body).",
                &["route", "upstream", "outcome"],
            ),
            connections_accepted: counter_vec(
                &r,
                "gateway_connections_accepted_total",
                "Client connections accepted, by listener and protocol (h1, h2).",
                &["listener", "protocol"],
            ),
            connections_open: gauge_vec(
                &r,
                "gateway_connections_open",
                "Client connections open, by listener.",
                &["listener"],
            ),
            tls_failures: counter_vec(
                &r,
                "gateway_tls_handshake_failures_total",
                "TLS handshakes that failed (error) or did not finish in time (timeout).",
                &["listener", "reason"],
            ),
            state_calls: counter_vec(
                &r,
                "gateway_state_backend_calls_total",
                "Calls to the state backend (Redis), by outcome (ok, error).",
                &["outcome"],
            ),
            state_duration: register(&r, state_duration),
            state_outages: register(&r, state_outages),
            state_up: register(&r, state_up),
            jwks_fetches: counter_vec(
                &r,
                "gateway_jwks_fetches_total",
                "JWKS fetches by key set and outcome (ok, error).",
                &["key_set", "outcome"],
            ),
            access_log_dropped: register(&r, access_log_dropped),
            config_reloads: counter_vec(
                &r,
                "gateway_config_reloads_total",
                "Config reloads by result: ok (the new config serves) or error (the old one still does).",
                &["result"],
            ),
            config_loaded: register(&r, config_loaded),
            ready: register(&r, ready),
            registry: r,
        }
    }
}

/// The registry in the Prometheus text exposition format.
/// Register a family a plugin declared (see [`super::plugin_metrics`]); refused when the
/// name is taken, the gateway's own names included.
pub fn register_plugin_family(
    family: Box<dyn prometheus::core::Collector>,
) -> Result<(), prometheus::Error> {
    metrics().registry.register(family)
}

pub fn render() -> String {
    let families = metrics().registry.gather();
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A method as a label from a bounded set (extension methods are `other`).
fn method_label(method: &http::Method) -> (u8, &'static str) {
    const KNOWN: [(http::Method, &str); 9] = [
        (http::Method::GET, "GET"),
        (http::Method::HEAD, "HEAD"),
        (http::Method::POST, "POST"),
        (http::Method::PUT, "PUT"),
        (http::Method::DELETE, "DELETE"),
        (http::Method::PATCH, "PATCH"),
        (http::Method::OPTIONS, "OPTIONS"),
        (http::Method::CONNECT, "CONNECT"),
        (http::Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .position(|(known, _)| known == method)
        .map_or((9, "other"), |i| (i as u8, KNOWN[i].1))
}

/// A route's series, resolved when the route is compiled.
pub struct RouteSeries {
    /// The route's name (the `route` label), shared with the route.
    pub route: Arc<str>,
    duration: Histogram,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
}

/// Handles of `gateway_requests_total` this worker has counted into, by route name (the
/// pointer of its `Arc<str>`: the cache holds the `Arc`, so the address is never reused for
/// another name while cached), method and status.
type RequestCache = HashMap<(usize, u8, u16), (Arc<str>, IntCounter)>;

thread_local! {
    static REQUESTS: RefCell<RequestCache> = RefCell::new(HashMap::new());
}

impl RouteSeries {
    /// The series of route `route` (`-` for requests that matched none).
    pub fn new(route: Arc<str>) -> Self {
        let m = metrics();
        let label = [&*route];
        RouteSeries {
            duration: m.request_duration.with_label_values(&label),
            request_bytes: m.request_bytes.with_label_values(&label),
            response_bytes: m.response_bytes.with_label_values(&label),
            route,
        }
    }

    /// Count one answered request.
    pub fn count(
        &self,
        method: &http::Method,
        status: u16,
        took: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.duration.observe(took.as_secs_f64());
        if bytes_in > 0 {
            self.request_bytes.inc_by(bytes_in);
        }
        if bytes_out > 0 {
            self.response_bytes.inc_by(bytes_out);
        }
        let (index, method) = method_label(method);
        let key = (
            Arc::as_ptr(&self.route).cast::<u8>() as usize,
            index,
            status,
        );
        REQUESTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, counter)) = cache.get(&key) {
                counter.inc();
                return;
            }
            let status_text = status.to_string();
            let counter =
                metrics()
                    .requests
                    .with_label_values(&[&*self.route, method, status_text.as_str()]);
            counter.inc();
            cache.insert(key, (self.route.clone(), counter));
        });
    }
}

/// One chain entry's call counters for one phase, resolved when the route is compiled;
/// violations (rare) are looked up by label when they happen.
pub struct PhaseSeries {
    plugin: Arc<str>,
    route: Arc<str>,
    phase: &'static str,
    answered_label: &'static str,
    passed: IntCounter,
    answered: IntCounter,
    duration: Histogram,
}

impl PhaseSeries {
    fn new(
        plugin: &Arc<str>,
        route: &Arc<str>,
        phase: &'static str,
        answered: &'static str,
    ) -> Self {
        let m = metrics();
        PhaseSeries {
            passed: m
                .plugin_calls
                .with_label_values(&[&**plugin, &**route, phase, "continue"]),
            answered: m
                .plugin_calls
                .with_label_values(&[&**plugin, &**route, phase, answered]),
            duration: m
                .plugin_duration
                .with_label_values(&[&**plugin, &**route, phase]),
            plugin: plugin.clone(),
            route: route.clone(),
            phase,
            answered_label: answered,
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// `request` or `response`.
    pub fn phase(&self) -> &'static str {
        self.phase
    }

    /// The `outcome` label of `outcome`.
    pub fn outcome_label<'a>(&self, outcome: CallOutcome<'a>) -> &'a str {
        match outcome {
            CallOutcome::Passed => "continue",
            CallOutcome::Answered => self.answered_label,
            CallOutcome::Failed(label) => label,
        }
    }

    /// Count one call that took `took`.
    pub fn call(&self, outcome: CallOutcome<'_>, took: Duration) {
        match outcome {
            CallOutcome::Passed => self.passed.inc(),
            CallOutcome::Answered => self.answered.inc(),
            CallOutcome::Failed(label) => metrics()
                .plugin_calls
                .with_label_values(&[&*self.plugin, &*self.route, self.phase, label])
                .inc(),
        }
        self.duration.observe(took.as_secs_f64());
    }
}

/// How a plugin call ended.
#[derive(Debug, Clone, Copy)]
pub enum CallOutcome<'a> {
    /// It let the request (or response) through: `continue`.
    Passed,
    /// It answered the request (`respond`) or replaced the response (`replace`).
    Answered,
    /// It failed with this violation (`timeout`, `fuel`, `memory`, `trap`, …).
    Failed(&'a str),
}

/// A plugin use's cost in one phase on one route: fuel (when it has a budget) and host-call
/// time, resolved when the config is compiled.
pub struct CostSeries {
    fuel: Option<Histogram>,
    host_time: Histogram,
}

impl CostSeries {
    /// The series of `plugin` on `route` in `phase`; `fueled`: the use has a fuel budget.
    pub fn new(plugin: &str, route: &str, phase: &str, fueled: bool) -> Self {
        let m = metrics();
        let labels = [plugin, route, phase];
        CostSeries {
            fuel: fueled.then(|| m.plugin_fuel.with_label_values(&labels)),
            host_time: m.plugin_host_duration.with_label_values(&labels),
        }
    }

    /// Count one call's fuel and host-call time.
    pub fn observe(&self, fuel: Option<u64>, host_time: Duration) {
        if let (Some(series), Some(fuel)) = (&self.fuel, fuel) {
            series.observe(fuel as f64);
        }
        self.host_time.observe(host_time.as_secs_f64());
    }
}

/// One chain entry's series: its plugin's name, and a [`PhaseSeries`] per phase.
pub struct PluginSeries {
    /// The plugin (the `plugin` label).
    pub plugin: Arc<str>,
    /// Request phase: `continue`, `respond`, or a violation.
    pub request: PhaseSeries,
    /// Response phase, if the plugin has one: `continue`, `replace`, or a violation.
    pub response: Option<PhaseSeries>,
}

impl PluginSeries {
    /// The series of plugin `plugin` on route `route` (`response_phase`: it has one).
    pub fn new(plugin: &str, route: &Arc<str>, response_phase: bool) -> Self {
        let plugin: Arc<str> = Arc::from(plugin);
        PluginSeries {
            request: PhaseSeries::new(&plugin, route, "request", "respond"),
            response: response_phase
                .then(|| PhaseSeries::new(&plugin, route, "response", "replace")),
            plugin,
        }
    }
}

/// Outcome of one upstream attempt, as a label.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome {
    /// A response head arrived.
    Ok,
    /// No connection.
    ConnectFailure,
    /// The TLS handshake failed.
    TlsFailure,
    /// No response head in time.
    Timeout,
    /// The connection failed after sending.
    Error,
}

/// One upstream target's series.
pub struct TargetSeries {
    ok: IntCounter,
    connect_failure: IntCounter,
    tls_failure: IntCounter,
    timeout: IntCounter,
    error: IntCounter,
    duration: Histogram,
}

impl TargetSeries {
    /// The series of `target` of upstream `upstream`.
    pub fn new(upstream: &str, target: &str) -> Self {
        let m = metrics();
        let attempts = |outcome: &str| {
            m.upstream_attempts
                .with_label_values(&[upstream, target, outcome])
        };
        TargetSeries {
            ok: attempts("ok"),
            connect_failure: attempts("connect_failure"),
            tls_failure: attempts("tls_failure"),
            timeout: attempts("timeout"),
            error: attempts("error"),
            duration: m.upstream_duration.with_label_values(&[upstream, target]),
        }
    }

    /// Count one attempt that took `took`.
    pub fn attempt(&self, outcome: AttemptOutcome, took: Duration) {
        let counter = match outcome {
            AttemptOutcome::Ok => {
                self.duration.observe(took.as_secs_f64());
                &self.ok
            }
            AttemptOutcome::ConnectFailure => &self.connect_failure,
            AttemptOutcome::TlsFailure => &self.tls_failure,
            AttemptOutcome::Timeout => &self.timeout,
            AttemptOutcome::Error => &self.error,
        };
        counter.inc();
    }
}

/// One listener's connection series.
pub struct ListenerSeries {
    open: IntGauge,
    h1: IntCounter,
    h2: IntCounter,
    tls_error: IntCounter,
    tls_timeout: IntCounter,
}

impl ListenerSeries {
    /// The series of the listener at `address`.
    pub fn new(address: &str) -> Self {
        let m = metrics();
        ListenerSeries {
            open: m.connections_open.with_label_values(&[address]),
            h1: m.connections_accepted.with_label_values(&[address, "h1"]),
            h2: m.connections_accepted.with_label_values(&[address, "h2"]),
            tls_error: m.tls_failures.with_label_values(&[address, "error"]),
            tls_timeout: m.tls_failures.with_label_values(&[address, "timeout"]),
        }
    }

    /// A connection was accepted; the guard counts it open until dropped.
    pub fn opened(self: &Arc<Self>) -> Option<OpenConnection> {
        enabled().then(|| {
            self.open.inc();
            OpenConnection(self.clone())
        })
    }

    /// The connection speaks HTTP/2 (`true`) or HTTP/1.x.
    pub fn protocol(&self, http2: bool) {
        if enabled() {
            if http2 { &self.h2 } else { &self.h1 }.inc();
        }
    }

    /// A TLS handshake failed (`timed_out`: it did not finish in time).
    pub fn tls_failed(&self, timed_out: bool) {
        if enabled() {
            if timed_out {
                &self.tls_timeout
            } else {
                &self.tls_error
            }
            .inc();
        }
    }
}

/// Counts a connection in `gateway_connections_open` while alive.
pub struct OpenConnection(Arc<ListenerSeries>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_valid_and_rendered() {
        let series = RouteSeries::new(Arc::from("r"));
        series.count(&http::Method::GET, 200, Duration::from_millis(2), 10, 20);
        series.count(
            &http::Method::from_bytes(b"BREW").unwrap(),
            418,
            Duration::ZERO,
            0,
            0,
        );
        let text = render();
        assert!(
            text.contains("gateway_requests_total{method=\"GET\",route=\"r\",status=\"200\"} 1")
        );
        assert!(
            text.contains("gateway_requests_total{method=\"other\",route=\"r\",status=\"418\"} 1")
        );
        assert!(text.contains("gateway_request_bytes_total{route=\"r\"} 10"));
        assert!(text.contains("gateway_build_info{version="));
    }
}
