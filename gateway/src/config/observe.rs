//! `[admin]`, `[access_log]` and `[tracing]`: how the gateway is observed.

use serde::Deserialize;

/// `[admin]`: the admin listener (`/health`, `/ready`, `/metrics`, `/config`, `/routes`,
/// `/plugins`). Off unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address, e.g. `127.0.0.1:9901`; never one of the proxy listeners.
    pub listen: String,
    /// Bearer token required for everything but `/health` and `/ready` (at least 16
    /// characters). At most one of `token`, `token_env`.
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Count Prometheus metrics and serve them at `/metrics` (default true).
    #[serde(default = "yes")]
    pub metrics: bool,
}

fn yes() -> bool {
    true
}

/// `[access_log]`: one JSON line per request. Without this table there is none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout` (default), `off`, or a file path (relative to the config file), reopened on
    /// SIGUSR1.
    #[serde(default = "stdout")]
    pub to: String,
    /// Share of requests logged, 0 < sample ≤ 1 (default 1: every request).
    #[serde(default = "one")]
    pub sample: f64,
    /// Log the query string too (default false: queries often carry tokens).
    #[serde(default)]
    pub query: bool,
}

fn stdout() -> String {
    "stdout".to_string()
}

fn one() -> f64 {
    1.0
}

/// `[tracing]`: W3C trace context, and span export over OTLP/HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// `continue` (default: an inbound `traceparent` is continued to the upstream with the
    /// gateway's span as parent), `always` (start a trace for requests without one), `off`.
    #[serde(default)]
    pub traceparent: TraceMode,
    /// Share of the traces the gateway starts that are sampled, 0 ≤ sample ≤ 1 (default 1).
    /// A continued trace keeps its caller's decision.
    #[serde(default = "one")]
    pub sample: f64,
    /// Export spans of sampled requests to this OTLP/HTTP traces endpoint
    /// (`http://host:4318/v1/traces`); none without it.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `gateway`).
    #[serde(default = "service_name")]
    pub service_name: String,
    /// Spans waiting for export at most; beyond it new ones are dropped (default 2048).
    #[serde(default = "span_queue")]
    pub queue: usize,
    /// Spans are sent in batches at least this often, in milliseconds (default 1000).
    #[serde(default = "batch_delay_ms")]
    pub batch_delay_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            traceparent: TraceMode::default(),
            sample: one(),
            otlp_endpoint: None,
            service_name: service_name(),
            queue: span_queue(),
            batch_delay_ms: batch_delay_ms(),
        }
    }
}

fn service_name() -> String {
    "gateway".to_string()
}

fn span_queue() -> usize {
    2048
}

fn batch_delay_ms() -> u64 {
    1000
}

/// What the gateway does with trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceMode {
    /// Continue a trace a request carries; start none.
    #[default]
    Continue,
    /// Continue one, or start one for every request that has none.
    Always,
    /// Leave `traceparent` as it came.
    Off,
}
