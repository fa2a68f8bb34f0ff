//! How an upstream copes with failing targets, as written in `[upstreams.NAME]`: weighted
//! targets, the balancing policy and its hash key, active health checks, passive outlier
//! detection, circuit breakers and connection caps.

use serde::Deserialize;
use std::fmt;

/// One entry of `targets`: `"host:port"`, or `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TargetSpec {
    /// Weight 1.
    Address(String),
    /// With a weight.
    Weighted {
        /// `host:port` or `https://host[:port]`.
        address: String,
        /// Share of requests relative to the other targets (1 to 1000).
        #[serde(default = "one")]
        weight: u32,
    },
}

fn one() -> u32 {
    1
}

impl TargetSpec {
    /// The address as written.
    pub fn address(&self) -> &str {
        match self {
            TargetSpec::Address(address) | TargetSpec::Weighted { address, .. } => address,
        }
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        match self {
            TargetSpec::Address(_) => 1,
            TargetSpec::Weighted { weight, .. } => *weight,
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Address(address) => write!(f, "{address:?}"),
            TargetSpec::Weighted { address, weight } => write!(f, "{address:?} (weight {weight})"),
        }
    }
}

/// How an upstream spreads requests over its targets.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each target in turn, as often as its weight says.
    #[default]
    RoundRobin,
    /// The less busy (requests in flight per weight) of two targets picked at random.
    LeastRequest,
    /// A target at random, by weight.
    Random,
    /// The same target for the same `hash_on` key (Maglev: removing one of N targets moves
    /// about 1/N of the keys).
    ConsistentHash,
}

/// What to do when every target is unhealthy or ejected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoHealthy {
    /// Use all targets anyway (a health check that is wrong must not take the service down).
    #[default]
    Panic,
    /// Answer 503 `no_healthy_upstream` at once.
    Fail,
}

/// `[upstreams.NAME.health_check]`: active HTTP checks of every target.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested (`GET`).
    #[serde(default = "defaults::path")]
    pub path: String,
    /// Time between checks of a target (each jittered by up to 10%).
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    /// A check without a response head within this long fails.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive passes that make an unhealthy target healthy.
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Statuses that pass (default: any 2xx).
    #[serde(default)]
    pub expected_statuses: Vec<u16>,
    /// State before the first check: `healthy` (serves at once) or `unknown` (serves once a
    /// check passed).
    #[serde(default)]
    pub initial: InitialHealth,
}

/// A target's health before its first check.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InitialHealth {
    /// Serves until checks say otherwise.
    #[default]
    Healthy,
    /// Serves once a check passed.
    Unknown,
}

/// `[upstreams.NAME.outlier]`: passive detection from real traffic, on by default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Consecutive failures (5xx, connect failure, timeout) that eject a target; 0: never.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection's length; each further one is this times the number of ejections.
    #[serde(default = "defaults::base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// Longest ejection.
    #[serde(default = "defaults::max_ejection_ms")]
    pub max_ejection_ms: u64,
    /// At most this share of the targets is ejected at once (at least one may be).
    #[serde(default = "defaults::max_ejected_percent")]
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: defaults::consecutive_failures(),
            base_ejection_ms: defaults::base_ejection_ms(),
            max_ejection_ms: defaults::max_ejection_ms(),
            max_ejected_percent: defaults::max_ejected_percent(),
        }
    }
}

/// `[upstreams.NAME.breaker]`: circuit breakers, off unless set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Requests in flight to the upstream at once; more wait (`max_pending`) or get 503
    /// `upstream_overloaded`. 0: no limit.
    #[serde(default)]
    pub max_requests: usize,
    /// Requests that may wait for a slot under `max_requests`; 0: none wait.
    #[serde(default)]
    pub max_pending: usize,
    /// Longest a pending request waits.
    #[serde(default = "defaults::pending_timeout_ms")]
    pub pending_timeout_ms: u64,
    /// Error rate (0 to 1) over `window_s` that opens the circuit; unset: no error-rate breaker.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The window the error rate is measured over.
    #[serde(default = "defaults::window_s")]
    pub window_s: u64,
    /// Requests the window needs before the rate counts.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u64,
    /// How long the circuit stays open (503 `circuit_open`) before it half-opens.
    #[serde(default = "defaults::open_ms")]
    pub open_ms: u64,
    /// Requests let through half-open; all succeed: closed, one fails: open again.
    #[serde(default = "defaults::probes")]
    pub probes: u32,
}

/// Defaults of the settings above.
mod defaults {
    /// Health check path.
    pub fn path() -> String {
        "/".into()
    }
    /// Between checks.
    pub fn interval_ms() -> u64 {
        5_000
    }
    /// Check timeout.
    pub fn timeout_ms() -> u64 {
        1_000
    }
    /// Passes to turn healthy.
    pub fn healthy_threshold() -> u32 {
        2
    }
    /// Failures to turn unhealthy.
    pub fn unhealthy_threshold() -> u32 {
        3
    }
    /// Consecutive failures to eject (nginx's `max_fails` is 1 per 10 s; this is gentler).
    pub fn consecutive_failures() -> u32 {
        5
    }
    /// First ejection.
    pub fn base_ejection_ms() -> u64 {
        30_000
    }
    /// Longest ejection.
    pub fn max_ejection_ms() -> u64 {
        300_000
    }
    /// Share ejected at most.
    pub fn max_ejected_percent() -> u32 {
        50
    }
    /// Pending wait.
    pub fn pending_timeout_ms() -> u64 {
        1_000
    }
    /// Error-rate window.
    pub fn window_s() -> u64 {
        30
    }
    /// Requests before the rate counts.
    pub fn min_requests() -> u64 {
        20
    }
    /// Open for.
    pub fn open_ms() -> u64 {
        60_000
    }
    /// Half-open probes.
    pub fn probes() -> u32 {
        3
    }
}

/// `retry = { … }` on a route: which failed attempts are tried again, on another target.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    #[serde(default = "retry_defaults::attempts")]
    pub attempts: u32,
    /// What is retried: `"connect_failure"`, `"reset"` (the connection broke after the
    /// request went out), `"timeout"` (no response head within the per-try timeout), and
    /// response statuses (`502`).
    #[serde(default = "retry_defaults::on")]
    pub on: Vec<RetryOn>,
    /// Each attempt's time to the response head (default: the upstream's
    /// `response_timeout_ms`); the route's `timeout_ms` still bounds them all.
    #[serde(default)]
    pub per_try_timeout_ms: Option<u64>,
    /// Backoff before retry n: a random pause up to `backoff_ms` × 2ⁿ⁻¹, at most
    /// `max_backoff_ms` (full jitter).
    #[serde(default = "retry_defaults::backoff_ms")]
    pub backoff_ms: u64,
    /// Longest backoff.
    #[serde(default = "retry_defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// `idempotent` (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or `all`.
    #[serde(default)]
    pub methods: RetryMethods,
}

/// One entry of `retry.on`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RetryOn {
    /// A response status.
    Status(u16),
    /// `connect_failure`, `reset` or `timeout`.
    Condition(String),
}

/// Which methods a route's retry policy applies to.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryMethods {
    /// Those RFC 9110 calls idempotent.
    #[default]
    Idempotent,
    /// Every method (the route says its POSTs are safe to repeat).
    All,
}

/// `retry_budget = { … }` on an upstream: retries at most `percent` of its requests plus
/// `min_per_s` a second (over the last 10 s), so a failing upstream is not hit by a storm.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Share of requests that may be retries.
    #[serde(default = "retry_defaults::percent")]
    pub percent: u32,
    /// Retries a second allowed whatever the share.
    #[serde(default = "retry_defaults::min_per_s")]
    pub min_per_s: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            percent: retry_defaults::percent(),
            min_per_s: retry_defaults::min_per_s(),
        }
    }
}

mod retry_defaults {
    use super::RetryOn;
    pub fn attempts() -> u32 {
        2
    }
    pub fn on() -> Vec<RetryOn> {
        vec![
            RetryOn::Condition("connect_failure".into()),
            RetryOn::Condition("reset".into()),
            RetryOn::Status(502),
            RetryOn::Status(503),
            RetryOn::Status(504),
        ]
    }
    pub fn backoff_ms() -> u64 {
        25
    }
    pub fn max_backoff_ms() -> u64 {
        250
    }
    pub fn percent() -> u32 {
        20
    }
    pub fn min_per_s() -> u32 {
        3
    }
}

/// `[resolver]`: how hostname targets are resolved and re-resolved.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// Name servers as `ip:port` (port 53 if left out); empty: the system's
    /// (`/etc/resolv.conf`, with `/etc/hosts`).
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Shortest time between two resolutions of a name, whatever its TTL says (and the
    /// retry interval after a failed one).
    #[serde(default = "resolver_min_ttl_s")]
    pub min_ttl_s: u64,
    /// Longest time between two resolutions, whatever its TTL says.
    #[serde(default = "resolver_max_ttl_s")]
    pub max_ttl_s: u64,
    /// Longest wait for one answer.
    #[serde(default = "resolver_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            min_ttl_s: resolver_min_ttl_s(),
            max_ttl_s: resolver_max_ttl_s(),
            timeout_ms: resolver_timeout_ms(),
        }
    }
}

fn resolver_min_ttl_s() -> u64 {
    5
}

fn resolver_max_ttl_s() -> u64 {
    300
}

fn resolver_timeout_ms() -> u64 {
    2000
}

/// `sticky_cookie = { … }`: a client's requests go to the target a cookie the gateway set
/// names, while that target serves.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StickyCookieConfig {
    /// The cookie's name.
    pub name: String,
    /// Its `Max-Age`; 0: a session cookie.
    #[serde(default)]
    pub max_age_s: u64,
    /// Its `Path`.
    #[serde(default = "sticky_path")]
    pub path: String,
    /// Marked `Secure` (sent back over HTTPS only).
    #[serde(default)]
    pub secure: bool,
}

fn sticky_path() -> String {
    "/".into()
}
