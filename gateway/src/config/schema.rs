//! The TOML schema: what an operator can write, with defaults.
//!
//! Every struct denies unknown fields so a typo is an error with a line number, not a silently
//! ignored setting. Durations carry their unit in the key name (`_ms`, `_s`), sizes in bytes
//! unless the name says otherwise (`memory_mb`).

use serde::Deserialize;
use std::collections::BTreeMap;

/// Adds the [`LimitsConfig`] fields (and a `limits()` accessor) to a config struct.
macro_rules! with_limits {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            /// Wall-clock time allowed per call (default 20).
            #[serde(default)]
            pub timeout_ms: Option<u64>,
            /// Deterministic instruction budget per call; unset means no fuel metering.
            #[serde(default)]
            pub fuel: Option<u64>,
            /// Linear memory allowed per instance, in MiB (default 16).
            #[serde(default)]
            pub memory_mb: Option<u64>,
            /// Most header changes a plugin may emit per call (default 100).
            #[serde(default)]
            pub max_headers: Option<usize>,
            /// Most bytes of header names and values a plugin may emit per call (default 64 KiB).
            #[serde(default)]
            pub max_header_bytes: Option<usize>,
            /// Most body bytes a plugin may emit per call (default 1 MiB).
            #[serde(default)]
            pub max_body_bytes: Option<usize>,
            /// `deny` (default) or `allow`.
            #[serde(default)]
            pub on_error: Option<OnError>,
            /// Status answered when the plugin fails and `on_error = "deny"` (default 500).
            #[serde(default)]
            pub error_status: Option<u16>,
        }

        impl $name {
            /// The limit fields as written here.
            pub fn limits(&self) -> LimitsConfig {
                LimitsConfig {
                    timeout_ms: self.timeout_ms,
                    fuel: self.fuel,
                    memory_mb: self.memory_mb,
                    max_headers: self.max_headers,
                    max_header_bytes: self.max_header_bytes,
                    max_body_bytes: self.max_body_bytes,
                    on_error: self.on_error,
                    error_status: self.error_status,
                }
            }
        }
    };
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// Plugin chain entries run before every route's own chain.
    #[serde(default)]
    pub global_plugins: Vec<PluginUse>,
    /// Named upstream services.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// How hostname targets are resolved and followed.
    #[serde(default)]
    pub resolver: super::ResolverConfig,
    /// Named plugins: which module, what it may import, its limits.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Routes, matched most specific first (see the router).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where the `counters` and `kv` capabilities keep their state.
    #[serde(default)]
    pub state: StateConfig,
    /// Named key sets the `crypto` capability verifies tokens against.
    #[serde(default)]
    pub keys: BTreeMap<String, KeySetConfig>,
    /// The admin listener; none unless configured.
    #[serde(default)]
    pub admin: Option<super::AdminConfig>,
    /// The access log; none unless configured.
    #[serde(default)]
    pub access_log: Option<super::AccessLogConfig>,
    /// Trace context.
    #[serde(default)]
    pub tracing: super::TracingConfig,
}

/// `[state]`: the backend of the `counters` and `kv` capabilities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (default: per process, nothing to run) or `redis` (shared by every gateway
    /// using the same server).
    #[serde(default)]
    pub backend: StateBackend,
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`; required for `backend = "redis"`.
    #[serde(default)]
    pub url: Option<String>,
    /// Time allowed for one Redis round trip (and for connecting) before the call counts as
    /// unavailable.
    #[serde(default = "defaults::state_timeout_ms")]
    pub timeout_ms: u64,
    /// What rate limiters do while the backend is unavailable: `allow` (fail open, default)
    /// or `deny` (fail closed).
    #[serde(default)]
    pub on_unavailable: UnavailablePolicy,
    /// Prefix of every Redis key the gateway writes.
    #[serde(default = "defaults::state_key_prefix")]
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::default(),
            url: None,
            timeout_ms: defaults::state_timeout_ms(),
            on_unavailable: UnavailablePolicy::default(),
            key_prefix: defaults::state_key_prefix(),
        }
    }
}

/// Where shared plugin state lives.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// In this process (a `dashmap`); limits are per gateway process.
    #[default]
    Memory,
    /// In Redis; limits hold across every gateway sharing it.
    Redis,
}

/// Fail open or closed when the state backend is down.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnavailablePolicy {
    /// Let requests through.
    #[default]
    Allow,
    /// Refuse requests.
    Deny,
}

/// `[keys.NAME]`: a key set for JWS verification. Give one or more sources; keys from all of
/// them are candidates, chosen by the token's `kid` and `alg`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetConfig {
    /// A JWKS document on disk (relative to the config file).
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// A JWKS document fetched by the gateway (`https://`; `http://` only from loopback),
    /// cached, refreshed every `refresh_s` and on an unknown `kid`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM bundle of CAs the `jwks_url` server's certificate must chain to; default the
    /// system's roots.
    #[serde(default)]
    pub jwks_ca: Option<String>,
    /// Public keys (RSA, EC or Ed25519) in PEM files.
    #[serde(default)]
    pub pem: Vec<PemKeyConfig>,
    /// HMAC secrets (for HS256/384/512).
    #[serde(default)]
    pub secrets: Vec<SecretConfig>,
    /// Re-fetch `jwks_url` this often even when every `kid` is known.
    #[serde(default = "defaults::jwks_refresh_s")]
    pub refresh_s: u64,
    /// Fetch `jwks_url` at most once per this interval, however many unknown `kid`s arrive.
    #[serde(default = "defaults::jwks_min_refetch_ms")]
    pub min_refetch_ms: u64,
    /// Time allowed for one fetch of `jwks_url`.
    #[serde(default = "defaults::jwks_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
}

/// One PEM public key: `{ path = "keys/rsa.pem", kid = "2024-01" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PemKeyConfig {
    /// PEM file (relative to the config file).
    pub path: String,
    /// Key id matched against the token's `kid`; a key without one matches any token.
    #[serde(default)]
    pub kid: Option<String>,
}

/// One HMAC secret, given by exactly one of `env`, `file` or `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// Key id matched against the token's `kid`; a key without one matches any token.
    #[serde(default)]
    pub kid: Option<String>,
    /// Name of an environment variable holding the secret (preferred: keeps it out of files).
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the secret (relative to the config file; one trailing newline is ignored).
    #[serde(default)]
    pub file: Option<String>,
    /// The secret itself (for tests and examples).
    #[serde(default)]
    pub value: Option<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on for plain HTTP/1.1 and HTTP/2 (prior knowledge), e.g.
    /// `127.0.0.1:8080`; may be empty when `[[server.tls]]` listens.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Worker threads, each with its own event loop and listening sockets; 0 means one per CPU
    /// core the process may use.
    #[serde(default)]
    pub workers: usize,
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/gateway` or `~/.cache/gateway`.
    #[serde(default)]
    pub plugin_cache_dir: Option<String>,
    /// How long to wait for in-flight requests on shutdown.
    #[serde(default = "defaults::shutdown_grace_s")]
    pub shutdown_grace_s: u64,
    /// On shutdown, how long `/ready` answers 503 while the listeners still accept, so load
    /// balancers polling it stop sending before connections are refused (default 0).
    #[serde(default)]
    pub readiness_grace_ms: u64,
    /// How long a client connection may wait for its first request, or an HTTP/1.1 keep-alive
    /// connection between requests, before the gateway closes it.
    #[serde(default = "defaults::idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// Longest a request head may take to arrive, from its first byte (slowloris); an
    /// HTTP/2 connection must open its first stream within this time of connecting.
    #[serde(default = "defaults::request_head_timeout_ms")]
    pub request_head_timeout_ms: u64,
    /// Longest pause between two reads of a request body (408 before the response started).
    #[serde(default = "defaults::request_body_timeout_ms")]
    pub request_body_timeout_ms: u64,
    /// Open client connections allowed in total; one past it is closed as soon as accepted.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Open client connections allowed per client IP (an IPv6 client counts by its /64);
    /// trusted proxies are exempt.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// CIDRs (`10.0.0.0/8`, `::1/128`, or a bare address) of proxies in front of the gateway:
    /// only their `X-Forwarded-For` entries and PROXY headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Every connection from a trusted proxy starts with a PROXY protocol v2 header giving the
    /// client's address (connections from elsewhere never do).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// This gateway's name in the `Via` header it adds to every request.
    #[serde(default = "defaults::via")]
    pub via: String,
    /// Refuse (508) a request whose `Via` already names this gateway this many times: a loop.
    #[serde(default = "defaults::max_loops")]
    pub max_loops: usize,
    /// `[server.http]`: how strictly requests are read.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[server.http2]`: HTTP/2 connection limits.
    #[serde(default)]
    pub http2: Http2Config,
    /// `[[server.tls]]`: HTTPS listeners.
    #[serde(default)]
    pub tls: Vec<super::tls::TlsListenerConfig>,
}

/// `[server.http]`: limits and normalization applied to every request before routing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Most bytes of request header names and values (431 past it).
    #[serde(default = "defaults::max_request_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request header fields (431 past it).
    #[serde(default = "defaults::max_request_headers")]
    pub max_headers: usize,
    /// Longest request target, path and query (414 past it).
    #[serde(default = "defaults::max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Request headers whose name has an `_`: `drop` (default, as nginx), `reject` (400) or
    /// `allow`.
    #[serde(default)]
    pub underscores_in_headers: Underscores,
    /// Merge runs of `/` in the path into one.
    #[serde(default = "defaults::yes")]
    pub merge_slashes: bool,
    /// Paths with `%2F`, `%5C`, `;` parameters or dot segments that survive decoding:
    /// `reject` (400, default) or `keep` (routed and forwarded as they are, opaque).
    #[serde(default)]
    pub escaped_path: EscapedPath,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: defaults::max_request_header_bytes(),
            max_headers: defaults::max_request_headers(),
            max_uri_bytes: defaults::max_uri_bytes(),
            underscores_in_headers: Underscores::default(),
            merge_slashes: true,
            escaped_path: EscapedPath::default(),
        }
    }
}

/// What happens to a request header with `_` in its name.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Underscores {
    /// Removed before any plugin or upstream sees the request.
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Passed on like any other header.
    Allow,
}

/// What happens to a path the gateway cannot put in one canonical spelling.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EscapedPath {
    /// Refused with 400.
    #[default]
    Reject,
    /// Routed and forwarded with those escapes untouched.
    Keep,
}

/// `[server.http2]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Streams a client may have open at once on one connection.
    #[serde(default = "defaults::h2_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Send a PING after this long without frames from the client (0: never).
    #[serde(default = "defaults::h2_keepalive_interval_s")]
    pub keepalive_interval_s: u64,
    /// Close the connection when a PING is not answered within this.
    #[serde(default = "defaults::h2_keepalive_timeout_s")]
    pub keepalive_timeout_s: u64,
    /// Streams a client may reset before the gateway processed them (rapid reset); past it
    /// the connection is closed.
    #[serde(default = "defaults::h2_max_pending_resets")]
    pub max_pending_resets: usize,
    /// Streams the gateway may reset for a client's protocol errors before it closes the
    /// connection.
    #[serde(default = "defaults::h2_max_error_resets")]
    pub max_error_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: defaults::h2_max_concurrent_streams(),
            keepalive_interval_s: defaults::h2_keepalive_interval_s(),
            keepalive_timeout_s: defaults::h2_keepalive_timeout_s(),
            max_pending_resets: defaults::h2_max_pending_resets(),
            max_error_resets: defaults::h2_max_error_resets(),
        }
    }
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Targets: `host:port` (cleartext) or `https://host:port` (TLS, port 443 if omitted),
    /// each alone or as `{ address = "…", weight = N }`.
    pub targets: Vec<super::TargetSpec>,
    /// Load-balancing policy.
    #[serde(default)]
    pub balance: super::Balance,
    /// The key of `balance = "consistent_hash"`: `header:NAME`, `cookie:NAME`, `client_ip`
    /// or `context:KEY` (a value a plugin set, e.g. `context:consumer`).
    #[serde(default)]
    pub hash_on: Option<String>,
    /// Sticky sessions: the gateway sets a cookie naming the target that answered, and a
    /// request bearing it goes back there while that target serves.
    #[serde(default)]
    pub sticky_cookie: Option<super::StickyCookieConfig>,
    /// Every target unhealthy or ejected: `panic` (use them all) or `fail` (503).
    #[serde(default)]
    pub no_healthy: super::NoHealthy,
    /// Active health checks; none unless set.
    #[serde(default)]
    pub health_check: Option<super::HealthCheckConfig>,
    /// Passive outlier detection (on by default).
    #[serde(default)]
    pub outlier: super::OutlierConfig,
    /// Circuit breakers (off by default).
    #[serde(default)]
    pub breaker: super::BreakerConfig,
    /// Requests in flight to one target at once (an HTTP/1.1 connection each); a target at
    /// its cap is passed over; when all are at their cap a request waits (`max_pending`) or
    /// gets 503 `upstream_overloaded`. 0: no cap.
    #[serde(default)]
    pub max_connections: usize,
    /// Requests that may wait for a target under `max_connections`; 0: none wait.
    #[serde(default)]
    pub max_pending: usize,
    /// Longest such a request waits (then 503 `upstream_overloaded`).
    #[serde(default = "defaults::upstream_pending_timeout_ms")]
    pub pending_timeout_ms: u64,
    /// Retries (of routes' `retry` policies) allowed to this upstream.
    #[serde(default)]
    pub retry_budget: super::RetryBudgetConfig,
    /// Time allowed to open a TCP connection to a target.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed from sending the request to receiving the response head.
    #[serde(default = "defaults::response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept.
    #[serde(default = "defaults::pool_idle_timeout_s")]
    pub pool_idle_timeout_s: u64,
    /// Idle keep-alive connections kept per target by each worker.
    #[serde(default = "defaults::pool_max_idle_per_target")]
    pub pool_max_idle_per_target: usize,
    /// Longest pause while reading a response body; past it the response is cut off.
    #[serde(default = "defaults::body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// How `https://` targets are verified, and the client certificate presented to them.
    #[serde(default)]
    pub tls: super::tls::UpstreamTlsConfig,
    /// `http1` (default), `http2` (prior knowledge on cleartext, ALPN `h2` on TLS; needed
    /// for gRPC), or `auto` (HTTP/2 where TLS's ALPN picks it, else HTTP/1.1).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

/// The HTTP version spoken to an upstream's targets.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, connections pooled per worker.
    #[default]
    Http1,
    /// HTTP/2, one multiplexed connection per worker and target.
    Http2,
    /// HTTP/2 if ALPN selects it (TLS targets), else HTTP/1.1.
    Auto,
}

with_limits! {
/// `[plugins.NAME]`. The limit fields are the defaults for every use of the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// `builtin:NAME` or a path to a `.wasm` component (relative to the config file).
    pub module: String,
    /// Optional pin: the module's SHA-256 in hex; a mismatch refuses to load.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Host interfaces the plugin may import: `log`, `clock`, `wasi`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `pooled` (warm instances reused) or `request` (a fresh instance per request).
    #[serde(default)]
    pub isolation: Isolation,
    /// Most live instances per use (warm or busy), and so most requests in it at once.
    #[serde(default = "defaults::max_instances")]
    pub max_instances: usize,
    /// Longest a request waits for one of `max_instances` before failing as `busy`.
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// Live `kv` keys the plugin may hold on the `memory` backend.
    #[serde(default = "defaults::kv_max_keys")]
    pub kv_max_keys: usize,
    /// `kv` bytes (keys plus values) the plugin may hold on the `memory` backend.
    #[serde(default = "defaults::kv_max_bytes")]
    pub kv_max_bytes: usize,
    /// Live `counters` keys the plugin may hold on the `memory` backend.
    #[serde(default = "defaults::counters_max_keys")]
    pub counters_max_keys: usize,
    /// Recycle a pooled instance after this many requests (0 = never).
    #[serde(default)]
    pub max_uses: u64,
}
}

/// Where a plugin's instances come from per request.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Reuse warm instances; an instance that trapped is discarded.
    #[default]
    Pooled,
    /// A fresh instance for every request (no state survives between requests).
    Request,
}

/// What happens to the request when a plugin fails.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail closed: answer with `error_status`.
    #[default]
    Deny,
    /// Fail open: skip the plugin and go on.
    Allow,
}

/// Per-plugin limits as written: in `[plugins.NAME]` and, overriding those, in a chain entry.
/// Serde's `flatten` cannot be combined with `deny_unknown_fields`, so [`with_limits!`] writes
/// these fields into both tables and `limits()` reads them back out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// Wall-clock time allowed per call (default 20).
    pub timeout_ms: Option<u64>,
    /// Deterministic instruction budget per call; unset means no fuel metering.
    pub fuel: Option<u64>,
    /// Linear memory allowed per instance, in MiB (default 16).
    pub memory_mb: Option<u64>,
    /// Most header changes a plugin may emit per call (default 100).
    pub max_headers: Option<usize>,
    /// Most bytes of header names and values a plugin may emit per call (default 64 KiB).
    pub max_header_bytes: Option<usize>,
    /// Most body bytes a plugin may emit per call (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// `deny` (default) or `allow`.
    pub on_error: Option<OnError>,
    /// Status answered when the plugin fails and `on_error = "deny"` (default 500).
    pub error_status: Option<u16>,
}

impl LimitsConfig {
    /// These limits with every field set in `over` replacing ours.
    pub fn overridden_by(&self, over: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            fuel: over.fuel.or(self.fuel),
            memory_mb: over.memory_mb.or(self.memory_mb),
            max_headers: over.max_headers.or(self.max_headers),
            max_header_bytes: over.max_header_bytes.or(self.max_header_bytes),
            max_body_bytes: over.max_body_bytes.or(self.max_body_bytes),
            on_error: over.on_error.or(self.on_error),
            error_status: over.error_status.or(self.error_status),
        }
    }
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs and given to plugins.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// Tie-breaker between equally specific paths: higher wins.
    #[serde(default)]
    pub priority: i32,
    /// Upstream name. A route without one (nor `upstreams`) must answer from its plugins.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Several upstreams by weight instead of one (canary releases).
    #[serde(default)]
    pub upstreams: Vec<super::SplitArmConfig>,
    /// How a request is placed among `upstreams`: overrides and stickiness.
    #[serde(default)]
    pub split: Option<super::SplitConfig>,
    /// Copies of a share of requests to a shadow upstream.
    #[serde(default)]
    pub mirror: Option<super::MirrorConfig>,
    /// Overrides the upstream's `connect_timeout_ms` for this route.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Overrides the upstream's `response_timeout_ms` (per attempt, to the response head)
    /// for this route.
    #[serde(default)]
    pub response_timeout_ms: Option<u64>,
    /// Remove the matched `path_prefix` before proxying.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Send the client's `Host` upstream instead of the target's address.
    #[serde(default)]
    pub preserve_host: bool,
    /// Let WebSocket upgrades through (after the request chain ran on the handshake); off,
    /// an upgrade request is proxied as a plain request without its `Upgrade`.
    #[serde(default)]
    pub websocket: bool,
    /// Close a WebSocket tunnel after this long without a byte either way.
    #[serde(default = "defaults::websocket_idle_timeout_s")]
    pub websocket_idle_timeout_s: u64,
    /// Largest request body, streamed or buffered (413 past it), and largest response body
    /// buffered for plugins that read bodies (502 past it). Default 1 MiB, as nginx.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest a request may take from its arrival to the response head, plugins included
    /// (504 `route_timeout`).
    #[serde(default = "defaults::route_timeout_ms")]
    pub timeout_ms: u64,
    /// The route's plugin chain, run in order on the request, in reverse on the response.
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
    /// Which failed upstream attempts are tried again (none unless set, but for connect
    /// failures of a replayable request, which go to the next target).
    #[serde(default)]
    pub retry: Option<super::RetryConfig>,
}

/// `match = { … }`. All given conditions must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix on a segment boundary: `/api` matches `/api` and `/api/x`, not `/apix`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Methods (any if empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Hosts, exact or `*.example.com` (any if empty).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Headers that must be present with exactly this value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

with_limits! {
/// One entry of a plugin chain: `{ use = "name", config = { … }, timeout_ms = … }`; the limit
/// fields override the plugin's for this use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUse {
    /// Name of a `[plugins.NAME]` table.
    #[serde(rename = "use")]
    pub plugin: String,
    /// Configuration handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// A TOML or JSON file (relative to this config file) whose top-level table is merged
    /// under `config`, keys in `config` winning: keeps bulky or sensitive plugin settings
    /// (API key hashes) out of the main file while the plugin itself reads no files.
    #[serde(default)]
    pub config_file: Option<String>,
}
}

/// Default values, named so the schema above reads as documentation.
pub mod defaults {
    /// Seconds in-flight requests get on shutdown.
    pub fn shutdown_grace_s() -> u64 {
        10
    }
    /// Seconds a client connection may idle (nginx and Kong: 60 or 75).
    pub fn idle_timeout_s() -> u64 {
        60
    }
    /// Request head deadline (nginx `client_header_timeout`: 60 s; Envoy: none).
    pub fn request_head_timeout_ms() -> u64 {
        10_000
    }
    /// Request body idle limit (nginx `client_body_timeout`).
    pub fn request_body_timeout_ms() -> u64 {
        60_000
    }
    /// Longest wait for a target under `max_connections`.
    pub fn upstream_pending_timeout_ms() -> u64 {
        1_000
    }
    /// Open client connections, all told.
    pub fn max_connections() -> usize {
        10_000
    }
    /// Open client connections per client IP.
    pub fn max_connections_per_ip() -> usize {
        1_000
    }
    /// The `Via` pseudonym.
    pub fn via() -> String {
        "gateway".into()
    }
    /// Passes through this gateway that make a loop.
    pub fn max_loops() -> usize {
        1
    }
    /// Request header bytes (nginx: 4 × 8 KiB buffers; Envoy: 60 KiB).
    pub fn max_request_header_bytes() -> usize {
        60 << 10
    }
    /// Request header fields (Envoy's default).
    pub fn max_request_headers() -> usize {
        100
    }
    /// Request target length (nginx: one 8 KiB buffer).
    pub fn max_uri_bytes() -> usize {
        8 << 10
    }
    /// For switches on by default.
    pub fn yes() -> bool {
        true
    }
    /// Seconds a WebSocket tunnel may stay silent (nginx's `proxy_read_timeout` is 60).
    pub fn websocket_idle_timeout_s() -> u64 {
        300
    }
    /// HTTP/2 streams per connection (hyper's default).
    pub fn h2_max_concurrent_streams() -> u32 {
        200
    }
    /// HTTP/2 keep-alive PING interval.
    pub fn h2_keepalive_interval_s() -> u64 {
        30
    }
    /// HTTP/2 keep-alive PING answer limit.
    pub fn h2_keepalive_timeout_s() -> u64 {
        20
    }
    /// HTTP/2 client resets before processing (hyper's default: rapid reset).
    pub fn h2_max_pending_resets() -> usize {
        20
    }
    /// HTTP/2 resets for client errors (hyper's default).
    pub fn h2_max_error_resets() -> usize {
        1024
    }
    /// Upstream response body idle limit.
    pub fn body_timeout_ms() -> u64 {
        60_000
    }
    /// Route deadline to the response head.
    pub fn route_timeout_ms() -> u64 {
        60_000
    }
    /// Upstream connect timeout.
    pub fn connect_timeout_ms() -> u64 {
        2_000
    }
    /// Upstream response-head timeout.
    pub fn response_timeout_ms() -> u64 {
        15_000
    }
    /// Idle keep-alive lifetime.
    pub fn pool_idle_timeout_s() -> u64 {
        90
    }
    /// Idle keep-alive connections per target.
    pub fn pool_max_idle_per_target() -> usize {
        256
    }
    /// Warm instances per plugin use.
    pub fn max_instances() -> usize {
        64
    }
    /// Wait for a busy plugin use's instance.
    pub fn queue_timeout_ms() -> u64 {
        10
    }
    /// `kv` keys per plugin (memory backend).
    pub fn kv_max_keys() -> usize {
        10_000
    }
    /// `kv` bytes per plugin (memory backend).
    pub fn kv_max_bytes() -> usize {
        16 << 20
    }
    /// `counters` keys per plugin (memory backend).
    pub fn counters_max_keys() -> usize {
        200_000
    }
    /// Route body buffering cap.
    pub fn max_body_bytes() -> usize {
        1 << 20
    }
    /// Redis round-trip budget.
    pub fn state_timeout_ms() -> u64 {
        10
    }
    /// Redis key prefix.
    pub fn state_key_prefix() -> String {
        "gateway".into()
    }
    /// Periodic JWKS refresh.
    pub fn jwks_refresh_s() -> u64 {
        300
    }
    /// Least time between two JWKS fetches.
    pub fn jwks_min_refetch_ms() -> u64 {
        10_000
    }
    /// JWKS fetch budget.
    pub fn jwks_fetch_timeout_ms() -> u64 {
        2_000
    }
    /// Plugin call timeout.
    pub const TIMEOUT_MS: u64 = 20;
    /// Plugin memory.
    pub const MEMORY_MB: u64 = 16;
    /// Status when a plugin fails closed.
    pub const ERROR_STATUS: u16 = 500;
}
