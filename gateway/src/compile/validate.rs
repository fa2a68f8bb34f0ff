//! The first half of compiling: what needs only the file. References resolve, values are in
//! range, names are unique, and values with a type become that type here — a route's match
//! conditions are built into its [`Matcher`] by the same code that checks them, so a condition
//! can never be checked one way and compiled another (or silently dropped).
//!
//! Every problem is collected (not just the first), each placed at its key path, so one
//! `gateway check` run shows the operator everything to fix.

use crate::config::{
    Config, ConfigError, EscapedPath, HttpConfig, Isolation, KeyPath, LimitsConfig, MatchConfig,
    PluginUse, SourceMap, StateBackend, UpstreamConfig, UpstreamProtocol,
};
use crate::edge::path::{Escaped, PathPolicy, normalize};
use crate::edge::trusted::TrustedProxies;
use crate::key_path;
use crate::plugin::capabilities::Capability;
use crate::plugin::engine::POOL_INSTANCES;
use crate::router::{Matcher, PathMatch};
use crate::upstream::Target;
use http::{HeaderName, HeaderValue, Method};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// Collects errors against one source file.
struct Checker<'a> {
    source: &'a SourceMap,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn fail(&mut self, path: KeyPath, message: impl Into<String>) {
        self.errors.push(self.source.error_at_path(path, message));
    }
}

/// What the static half yields, typed.
pub struct Checked {
    /// `routes[i]`'s match conditions.
    pub matchers: Vec<Matcher>,
    /// Every address to listen on, with what it serves.
    pub listen: Vec<(SocketAddr, Serves)>,
    /// `server.trusted_proxies`.
    pub trusted: Arc<TrustedProxies>,
    /// `[admin]`, typed.
    pub admin: Option<AdminSettings>,
}

/// `[admin]`, typed: the token resolved.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where the admin listener listens.
    pub listen: SocketAddr,
    /// Bearer token, if one is required.
    pub token: Option<String>,
    /// Whether metrics are counted and served.
    pub metrics: bool,
}

/// Shortest admin token accepted: 16 characters (a guessable token is no protection).
const MIN_TOKEN_CHARS: usize = 16;

/// Check `config` and build its typed values, or every static problem in it.
pub fn check(config: &Config, source: &SourceMap) -> Result<Checked, Vec<ConfigError>> {
    let mut c = Checker {
        source,
        errors: Vec::new(),
    };
    let listen = check_server(config, &mut c);
    let trusted = check_edge(config, &mut c);
    check_upstreams(config, &mut c);
    check_resolver(&config.resolver, &mut c);
    check_plugins(config, &mut c);
    for (i, use_) in config.global_plugins.iter().enumerate() {
        check_plugin_use(config, use_, key_path!["global_plugins", i], &mut c);
    }
    let matchers = check_routes(config, &mut c);
    check_instance_shares(config, &mut c);
    check_state(config, &mut c);
    let admin = check_admin(config, &listen, &mut c);
    check_access_log(config, &mut c);
    check_tracing(config, &mut c);
    for unit in crate::plugin::host::UNITS {
        for (path, message) in unit.check_config(config) {
            c.fail(path, message);
        }
    }
    match matchers {
        Some(matchers) if c.errors.is_empty() => Ok(Checked {
            matchers,
            listen,
            trusted: Arc::new(trusted),
            admin,
        }),
        _ => Err(c.errors),
    }
}

/// `[admin]`: a valid address that no proxy listener uses, and a token from one source.
fn check_admin(
    config: &Config,
    listen: &[(SocketAddr, Serves)],
    c: &mut Checker<'_>,
) -> Option<AdminSettings> {
    let admin = config.admin.as_ref()?;
    let at = key_path!["admin"];
    let address = match admin.listen.parse::<SocketAddr>() {
        Ok(address) if address.port() != 0 && listen.iter().any(|(a, _)| *a == address) => {
            c.fail(
                at.key("listen"),
                format!(
                    "`{}` is also a proxy listener; the admin API is never served on a public listener",
                    admin.listen
                ),
            );
            None
        }
        Ok(address) => Some(address),
        Err(_) => {
            c.fail(
                at.key("listen"),
                format!(
                    "`{}` is not an IP:port address (e.g. 127.0.0.1:9901)",
                    admin.listen
                ),
            );
            None
        }
    };
    let token = match (&admin.token, &admin.token_env) {
        (Some(_), Some(_)) => {
            c.fail(at.key("token_env"), "set `token` or `token_env`, not both");
            None
        }
        (Some(token), None) => Some((at.key("token"), token.clone())),
        (None, Some(var)) => match std::env::var(var) {
            Ok(token) => Some((at.key("token_env"), token)),
            Err(_) => {
                c.fail(
                    at.key("token_env"),
                    format!("environment variable `{var}` is not set (or not UTF-8)"),
                );
                None
            }
        },
        (None, None) => None,
    };
    let token = match token {
        Some((path, token)) if token.chars().count() < MIN_TOKEN_CHARS => {
            c.fail(
                path,
                format!("the admin token must have at least {MIN_TOKEN_CHARS} characters"),
            );
            None
        }
        Some((_, token)) => Some(token),
        None => None,
    };
    Some(AdminSettings {
        listen: address?,
        token,
        metrics: admin.metrics,
    })
}

/// `[access_log]`: a destination and a sampling share in range.
fn check_access_log(config: &Config, c: &mut Checker<'_>) {
    let Some(log) = &config.access_log else {
        return;
    };
    if !(log.sample > 0.0 && log.sample <= 1.0) {
        c.fail(
            key_path!["access_log", "sample"],
            format!(
                "must be greater than 0 and at most 1 (the share of requests logged), not {}",
                log.sample
            ),
        );
    }
    if log.to.trim().is_empty() {
        c.fail(
            key_path!["access_log", "to"],
            "must be `stdout`, `off` or a file path",
        );
    }
}

/// `[tracing]`: a sampling share in range, an `http://` OTLP endpoint, a queue.
fn check_tracing(config: &Config, c: &mut Checker<'_>) {
    let tracing = &config.tracing;
    if !(0.0..=1.0).contains(&tracing.sample) {
        c.fail(
            key_path!["tracing", "sample"],
            format!(
                "must be between 0 and 1 (the share of started traces sampled), not {}",
                tracing.sample
            ),
        );
    }
    if let Some(endpoint) = &tracing.otlp_endpoint {
        let valid = endpoint
            .parse::<http::Uri>()
            .is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.host().is_some());
        if !valid {
            c.fail(
                key_path!["tracing", "otlp_endpoint"],
                format!(
                    "must be an http:// URL of an OTLP/HTTP traces endpoint \
                     (e.g. `http://127.0.0.1:4318/v1/traces`; a local collector or agent \
                     forwards over TLS), not {endpoint:?}"
                ),
            );
        }
    }
    if tracing.queue == 0 {
        c.fail(key_path!["tracing", "queue"], "must be at least 1");
    }
    if tracing.batch_delay_ms == 0 {
        c.fail(key_path!["tracing", "batch_delay_ms"], "must be at least 1");
    }
}

/// Request-isolated uses take their instances from one pool of [`POOL_INSTANCES`] slots, and
/// each use's `max_instances` is its share: together the shares must fit, so that no use
/// (however slow its calls) can leave another without an instance.
fn check_instance_shares(config: &Config, c: &mut Checker<'_>) {
    let mut reserved = 0usize;
    let uses = config
        .global_plugins
        .iter()
        .chain(config.routes.iter().flat_map(|r| r.plugins.iter()));
    for use_ in uses {
        let Some(plugin) = config.plugins.get(&use_.plugin) else {
            continue;
        };
        if plugin.isolation != Isolation::Request {
            continue;
        }
        reserved = reserved.saturating_add(plugin.max_instances);
        if reserved > POOL_INSTANCES as usize {
            c.fail(
                key_path!["plugins", use_.plugin.as_str(), "max_instances"],
                format!(
                    "request-isolated plugin uses reserve {reserved} instances together (each \
                     use its `max_instances`), more than the instance pool's {POOL_INSTANCES}; \
                     lower `max_instances` or use `isolation = \"pooled\"`"
                ),
            );
            return;
        }
    }
}

fn check_state(config: &Config, c: &mut Checker<'_>) {
    let state = &config.state;
    match (state.backend, &state.url) {
        (StateBackend::Redis, None) => c.fail(
            key_path!["state", "backend"],
            "backend `redis` needs `url` (e.g. redis://127.0.0.1:6379)",
        ),
        (StateBackend::Redis, Some(url)) if redis::Client::open(url.as_str()).is_err() => c.fail(
            key_path!["state", "url"],
            format!("`{url}` is not a Redis URL (e.g. redis://127.0.0.1:6379/0)"),
        ),
        (StateBackend::Memory, Some(_)) => c.fail(
            key_path!["state", "url"],
            "`url` is only used with backend = \"redis\"",
        ),
        _ => {}
    }
    if state.timeout_ms == 0 {
        c.fail(key_path!["state", "timeout_ms"], "must be greater than 0");
    }
}

/// What a listening address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// `server.listen`: cleartext HTTP/1.1 and HTTP/2.
    Plain,
    /// `server.tls[i].listen`: HTTPS.
    Tls(usize),
    /// `server.tls[i].redirect_from`: a 308 to block `i`'s first address.
    Redirect(usize),
}

/// `[server]`; the listen addresses, parsed, each once.
fn check_server(config: &Config, c: &mut Checker<'_>) -> Vec<(SocketAddr, Serves)> {
    let server = &config.server;
    if server.listen.is_empty() && server.tls.iter().all(|tls| tls.listen.is_empty()) {
        c.fail(
            key_path!["server", "listen"],
            "at least one listen address (here or in a [[server.tls]]) is required",
        );
    }
    let mut lists = vec![(key_path!["server", "listen"], &server.listen, Serves::Plain)];
    for (i, tls) in server.tls.iter().enumerate() {
        let at = key_path!["server", "tls", i];
        if tls.listen.is_empty() {
            c.fail(
                at.key("listen"),
                "a TLS block needs at least one listen address",
            );
        }
        lists.push((at.key("listen"), &tls.listen, Serves::Tls(i)));
        lists.push((
            at.key("redirect_from"),
            &tls.redirect_from,
            Serves::Redirect(i),
        ));
        if tls.handshake_timeout_ms == 0 {
            c.fail(at.key("handshake_timeout_ms"), "must be greater than 0");
        }
    }
    let mut listen: Vec<(SocketAddr, Serves)> = Vec::new();
    for (path, addresses, serves) in lists {
        for (i, addr) in addresses.iter().enumerate() {
            match addr.parse::<SocketAddr>() {
                Ok(parsed) if parsed.port() != 0 && listen.iter().any(|(a, _)| *a == parsed) => {
                    c.fail(path.index(i), format!("`{addr}` is listed twice"));
                }
                Ok(parsed) => listen.push((parsed, serves)),
                Err(_) => c.fail(
                    path.index(i),
                    format!("`{addr}` is not an IP:port address (e.g. 127.0.0.1:8080)"),
                ),
            }
        }
    }
    if server.idle_timeout_s == 0 {
        c.fail(
            key_path!["server", "idle_timeout_s"],
            "must be greater than 0",
        );
    }
    listen
}

/// `[server]`'s edge settings: limits, timeouts, trusted proxies; the proxies, parsed.
fn check_edge(config: &Config, c: &mut Checker<'_>) -> TrustedProxies {
    let server = &config.server;
    let http = &server.http;
    let h2 = &server.http2;
    for (path, value) in [
        (
            key_path!["server", "request_head_timeout_ms"],
            server.request_head_timeout_ms,
        ),
        (
            key_path!["server", "request_body_timeout_ms"],
            server.request_body_timeout_ms,
        ),
        (
            key_path!["server", "max_connections"],
            server.max_connections as u64,
        ),
        (
            key_path!["server", "max_connections_per_ip"],
            server.max_connections_per_ip as u64,
        ),
        (key_path!["server", "max_loops"], server.max_loops as u64),
        (
            key_path!["server", "http", "max_header_bytes"],
            http.max_header_bytes as u64,
        ),
        (
            key_path!["server", "http", "max_headers"],
            http.max_headers as u64,
        ),
        (
            key_path!["server", "http", "max_uri_bytes"],
            http.max_uri_bytes as u64,
        ),
        (
            key_path!["server", "http2", "max_concurrent_streams"],
            u64::from(h2.max_concurrent_streams),
        ),
        (
            key_path!["server", "http2", "keepalive_timeout_s"],
            h2.keepalive_timeout_s,
        ),
    ] {
        if value == 0 {
            c.fail(path, "must be greater than 0");
        }
    }
    if http.max_header_bytes > MAX_HEADER_BYTES {
        c.fail(
            key_path!["server", "http", "max_header_bytes"],
            format!("at most {MAX_HEADER_BYTES} (1 MiB)"),
        );
    }
    if server.via.is_empty() || !server.via.bytes().all(is_token_byte) {
        c.fail(
            key_path!["server", "via"],
            format!(
                "`{}` is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)",
                server.via
            ),
        );
    }
    match TrustedProxies::parse(&server.trusted_proxies) {
        Ok(trusted) => {
            if server.proxy_protocol && trusted.is_empty() {
                c.fail(
                    key_path!["server", "proxy_protocol"],
                    "a PROXY header is read only from `trusted_proxies`, and none are given",
                );
            }
            trusted
        }
        Err((i, message)) => {
            c.fail(key_path!["server", "trusted_proxies", i], message);
            TrustedProxies::default()
        }
    }
}

/// Most `server.http.max_header_bytes`: hyper's read buffer is sized from it.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_upstreams(config: &Config, c: &mut Checker<'_>) {
    for (name, upstream) in &config.upstreams {
        let path = key_path!["upstreams", name];
        if upstream.targets.is_empty() {
            c.fail(path.key("targets"), "at least one target is required");
        }
        for (i, spec) in upstream.targets.iter().enumerate() {
            let target = spec.address();
            if !(1..=1000).contains(&spec.weight()) {
                c.fail(
                    path.key("targets").index(i).key("weight"),
                    "must be from 1 to 1000",
                );
            }
            match Target::parse(target) {
                Ok(parsed) if is_host(parsed.authority.host()) => {}
                Ok(_) => c.fail(
                    path.key("targets").index(i),
                    format!("`{target}` is not host:port (e.g. 127.0.0.1:9001)"),
                ),
                Err(e) => c.fail(path.key("targets").index(i), e),
            }
        }
        check_resilience(upstream, &path, c);
        for (key, value) in [
            ("connect_timeout_ms", upstream.connect_timeout_ms),
            ("response_timeout_ms", upstream.response_timeout_ms),
            ("body_timeout_ms", upstream.body_timeout_ms),
        ] {
            if value == 0 {
                c.fail(path.key(key), "must be greater than 0");
            }
        }
    }
}

/// A route's `retry` policy.
fn check_retry(retry: &crate::config::RetryConfig, at: &KeyPath, c: &mut Checker<'_>) {
    use crate::config::RetryOn;
    use crate::upstream::RetryPolicy;
    if !(1..=10).contains(&retry.attempts) {
        c.fail(at.key("attempts"), "must be from 1 to 10");
    }
    for (i, on) in retry.on.iter().enumerate() {
        match on {
            RetryOn::Status(status) if !(500..=599).contains(status) => {
                c.fail(at.key("on").index(i), "only 5xx statuses are retried")
            }
            RetryOn::Condition(name) if !RetryPolicy::CONDITIONS.contains(&name.as_str()) => c
                .fail(
                    at.key("on").index(i),
                    format!(
                        "`{name}`: expected a 5xx status or one of {}",
                        RetryPolicy::CONDITIONS.join(", ")
                    ),
                ),
            _ => {}
        }
    }
    if retry.per_try_timeout_ms == Some(0) {
        c.fail(at.key("per_try_timeout_ms"), "must be greater than 0");
    }
    if retry.max_backoff_ms < retry.backoff_ms {
        c.fail(at.key("max_backoff_ms"), "must be at least backoff_ms");
    }
}

/// Balancing, health checks, outlier detection and breakers of one upstream.
/// `[resolver]`: name servers as ip[:port], sane bounds.
fn check_resolver(resolver: &crate::config::ResolverConfig, c: &mut Checker<'_>) {
    let path = key_path!["resolver"];
    for (i, server) in resolver.nameservers.iter().enumerate() {
        if let Err(why) = crate::upstream::nameserver(server) {
            c.fail(path.key("nameservers").index(i), why);
        }
    }
    if resolver.min_ttl_s == 0 {
        c.fail(
            path.key("min_ttl_s"),
            "must be at least 1 (a name would be asked for in a loop)",
        );
    }
    if resolver.max_ttl_s < resolver.min_ttl_s {
        c.fail(path.key("max_ttl_s"), "must be at least min_ttl_s");
    }
    if resolver.timeout_ms == 0 {
        c.fail(path.key("timeout_ms"), "must be greater than 0");
    }
}

fn check_resilience(upstream: &UpstreamConfig, path: &KeyPath, c: &mut Checker<'_>) {
    if let Some(sticky) = &upstream.sticky_cookie {
        let at = path.key("sticky_cookie");
        if !is_cookie_name(&sticky.name) {
            c.fail(
                at.key("name"),
                format!("`{}` is not a cookie name", sticky.name),
            );
        }
        if !sticky.path.starts_with('/') || sticky.path.contains([';', ' ', '\r', '\n']) {
            c.fail(
                at.key("path"),
                "must be a path starting with `/`, without `;` or spaces",
            );
        }
    }
    if upstream.max_pending > 0 && upstream.max_connections == 0 {
        c.fail(
            path.key("max_pending"),
            "needs `max_connections` (requests wait for a target under it)",
        );
    }
    if upstream.pending_timeout_ms == 0 {
        c.fail(path.key("pending_timeout_ms"), "must be greater than 0");
    }
    let consistent = upstream.balance == crate::config::Balance::ConsistentHash;
    match &upstream.hash_on {
        Some(text) if consistent => {
            if let Err(e) = crate::upstream::HashOn::parse(text) {
                c.fail(path.key("hash_on"), e);
            }
        }
        Some(_) => c.fail(
            path.key("hash_on"),
            "only with balance = \"consistent_hash\"",
        ),
        None if consistent => c.fail(
            path.key("balance"),
            "consistent_hash needs hash_on (header:NAME, cookie:NAME, client_ip or context:KEY)",
        ),
        None => {}
    }
    if let Some(check) = &upstream.health_check {
        let at = path.key("health_check");
        if !check.path.starts_with('/') {
            c.fail(at.key("path"), "must start with `/`");
        }
        for (key, value) in [
            ("interval_ms", check.interval_ms),
            ("timeout_ms", check.timeout_ms),
            ("healthy_threshold", u64::from(check.healthy_threshold)),
            ("unhealthy_threshold", u64::from(check.unhealthy_threshold)),
        ] {
            if value == 0 {
                c.fail(at.key(key), "must be greater than 0");
            }
        }
        if check.timeout_ms > check.interval_ms {
            c.fail(at.key("timeout_ms"), "must not exceed interval_ms");
        }
        for (i, status) in check.expected_statuses.iter().enumerate() {
            if !(100..=599).contains(status) {
                c.fail(at.key("expected_statuses").index(i), "not an HTTP status");
            }
        }
    }
    let outlier = &upstream.outlier;
    if outlier.consecutive_failures > 0 {
        let at = path.key("outlier");
        if outlier.base_ejection_ms == 0 {
            c.fail(at.key("base_ejection_ms"), "must be greater than 0");
        }
        if outlier.max_ejection_ms < outlier.base_ejection_ms {
            c.fail(
                at.key("max_ejection_ms"),
                "must be at least base_ejection_ms",
            );
        }
        if outlier.max_ejected_percent > 100 {
            c.fail(at.key("max_ejected_percent"), "must be from 0 to 100");
        }
    }
    let breaker = &upstream.breaker;
    let at = path.key("breaker");
    if breaker.max_pending > 0 && breaker.max_requests == 0 {
        c.fail(at.key("max_pending"), "only with max_requests");
    }
    if let Some(rate) = breaker.error_rate {
        if !(rate > 0.0 && rate <= 1.0) {
            c.fail(at.key("error_rate"), "must be above 0 and at most 1");
        }
        for (key, value) in [
            ("window_s", breaker.window_s),
            ("min_requests", breaker.min_requests),
            ("open_ms", breaker.open_ms),
            ("probes", u64::from(breaker.probes)),
        ] {
            if value == 0 {
                c.fail(at.key(key), "must be greater than 0");
            }
        }
        if breaker.window_s > 3600 {
            c.fail(at.key("window_s"), "at most 3600");
        }
    }
}

/// A DNS name, IPv4 address or bracketed IPv6 address.
fn is_host(host: &str) -> bool {
    if host.starts_with('[') {
        return host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
}

fn check_plugins(config: &Config, c: &mut Checker<'_>) {
    for (name, plugin) in &config.plugins {
        let path = key_path!["plugins", name];
        if plugin.module.trim().is_empty() {
            c.fail(
                path.key("module"),
                "must name `builtin:NAME` or a .wasm file",
            );
        }
        if let Some(hash) = &plugin.sha256
            && (hash.len() != 64 || !hash.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            c.fail(path.key("sha256"), "must be 64 hex digits (a SHA-256)");
        }
        for (i, capability) in plugin.capabilities.iter().enumerate() {
            if Capability::find(capability).is_none() {
                c.fail(
                    path.key("capabilities").index(i),
                    format!(
                        "unknown capability `{capability}` (known: {})",
                        Capability::names().join(", ")
                    ),
                );
            }
        }
        if plugin.max_instances == 0 {
            c.fail(path.key("max_instances"), "must be at least 1");
        }
        if plugin.queue_timeout_ms > 60_000 {
            c.fail(
                path.key("queue_timeout_ms"),
                "must be at most 60000 (a minute): past that, shed the load instead",
            );
        }
        check_limits(&plugin.limits(), &path, c);
    }
}

fn check_limits(limits: &LimitsConfig, path: &KeyPath, c: &mut Checker<'_>) {
    if limits.timeout_ms == Some(0) {
        c.fail(path.key("timeout_ms"), "must be at least 1");
    }
    if limits.fuel == Some(0) {
        c.fail(
            path.key("fuel"),
            "must be at least 1 (omit it to disable fuel)",
        );
    }
    if let Some(mb) = limits.memory_mb
        && !(1..=4096).contains(&mb)
    {
        c.fail(path.key("memory_mb"), "must be between 1 and 4096");
    }
    if let Some(status) = limits.error_status
        && !(400..=599).contains(&status)
    {
        c.fail(
            path.key("error_status"),
            "must be an error status, 400 to 599",
        );
    }
}

fn check_plugin_use(config: &Config, use_: &PluginUse, path: KeyPath, c: &mut Checker<'_>) {
    if !config.plugins.contains_key(&use_.plugin) {
        c.fail(
            path.key("use"),
            format!(
                "plugin `{}` is not defined (defined: {})",
                use_.plugin,
                names(config.plugins.keys())
            ),
        );
    }
    check_limits(&use_.limits(), &path, c);
}

/// Check every route; the matchers, if every one of them compiled.
fn check_routes(config: &Config, c: &mut Checker<'_>) -> Option<Vec<Matcher>> {
    let mut seen = HashSet::new();
    let mut matchers = Vec::with_capacity(config.routes.len());
    let policy = path_policy(&config.server.http);
    for (i, route) in config.routes.iter().enumerate() {
        let path = key_path!["routes", i];
        if route.name.trim().is_empty() {
            c.fail(path.key("name"), "must not be empty");
        } else if !seen.insert(route.name.as_str()) {
            c.fail(
                path.key("name"),
                format!("duplicate route name `{}`", route.name),
            );
        }
        matchers.push(check_match(route, &path.key("match"), &policy, c));
        if route.strip_prefix && route.matcher.path_prefix.is_none() {
            c.fail(path.key("strip_prefix"), "needs `match.path_prefix`");
        }
        if route.timeout_ms == 0 {
            c.fail(path.key("timeout_ms"), "must be greater than 0");
        }
        if let Some(retry) = &route.retry {
            check_retry(retry, &path.key("retry"), c);
        }
        check_traffic(config, route, &path, c);
        match &route.upstream {
            _ if !route.upstreams.is_empty() => {}
            Some(upstream) if !config.upstreams.contains_key(upstream) => c.fail(
                path.key("upstream"),
                format!(
                    "upstream `{upstream}` is not defined (defined: {})",
                    names(config.upstreams.keys())
                ),
            ),
            None if route.plugins.is_empty() => c.fail(
                path.clone(),
                "a route needs an `upstream` or plugins that answer requests",
            ),
            _ => {}
        }
        if route.websocket {
            let names = route
                .upstream
                .iter()
                .chain(route.upstreams.iter().map(|a| &a.upstream));
            let mut protocols = names.filter_map(|name| config.upstreams.get(name));
            if protocols.any(|upstream| upstream.protocol != UpstreamProtocol::Http1) {
                c.fail(
                    path.key("websocket"),
                    "WebSocket upgrades need an upstream with protocol = \"http1\"",
                );
            }
            if route.websocket_idle_timeout_s == 0 {
                c.fail(
                    path.key("websocket_idle_timeout_s"),
                    "must be greater than 0",
                );
            }
        }
        for (j, use_) in route.plugins.iter().enumerate() {
            check_plugin_use(config, use_, path.key("plugins").index(j), c);
        }
    }
    matchers.into_iter().collect()
}

/// A cookie name (an RFC 6265 token: visible ASCII but separators).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A route's `upstreams`, `split`, `mirror` and timeout overrides.
fn check_traffic(
    config: &Config,
    route: &crate::config::RouteConfig,
    path: &KeyPath,
    c: &mut Checker<'_>,
) {
    let defined = |name: &str| config.upstreams.contains_key(name);
    let undefined = |name: &str| {
        format!(
            "upstream `{name}` is not defined (defined: {})",
            names(config.upstreams.keys())
        )
    };
    if !route.upstreams.is_empty() && route.upstream.is_some() {
        c.fail(
            path.key("upstreams"),
            "give `upstream` or `upstreams`, not both",
        );
    }
    let mut seen = HashSet::new();
    for (i, arm) in route.upstreams.iter().enumerate() {
        let at = path.key("upstreams").index(i);
        if !defined(&arm.upstream) {
            c.fail(at.key("upstream"), undefined(&arm.upstream));
        } else if !seen.insert(arm.upstream.as_str()) {
            c.fail(
                at.key("upstream"),
                format!("upstream `{}` is listed twice", arm.upstream),
            );
        }
        if arm.weight > 10_000 {
            c.fail(at.key("weight"), "must be from 0 to 10000");
        }
    }
    if !route.upstreams.is_empty() && route.upstreams.iter().all(|arm| arm.weight == 0) {
        c.fail(
            path.key("upstreams"),
            "at least one weight must be greater than 0",
        );
    }
    if let Some(split) = &route.split {
        let at = path.key("split");
        if route.upstreams.is_empty() {
            c.fail(
                at.clone(),
                "needs `upstreams` (several upstreams by weight)",
            );
        }
        if let Some(name) = &split.override_header
            && http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            c.fail(
                at.key("override_header"),
                format!("`{name}` is not a header name"),
            );
        }
        if split
            .override_cookie
            .as_ref()
            .is_some_and(|name| !is_cookie_name(name))
        {
            c.fail(at.key("override_cookie"), "is not a cookie name");
        }
        if let Some(on) = &split.sticky
            && let Err(why) = crate::upstream::HashOn::parse(on)
        {
            c.fail(at.key("sticky"), why);
        }
    }
    if let Some(mirror) = &route.mirror {
        let at = path.key("mirror");
        let own = route
            .upstream
            .iter()
            .chain(route.upstreams.iter().map(|a| &a.upstream));
        if !defined(&mirror.upstream) {
            c.fail(at.key("upstream"), undefined(&mirror.upstream));
        } else if own.into_iter().any(|name| *name == mirror.upstream) {
            c.fail(
                at.key("upstream"),
                "is the route's own upstream: every copy would double its load",
            );
        }
        if !(mirror.share > 0.0 && mirror.share <= 1.0) {
            c.fail(at.key("share"), "must be greater than 0 and at most 1");
        }
        if mirror.max_in_flight == 0 {
            c.fail(at.key("max_in_flight"), "must be greater than 0");
        }
        if mirror.max_body_bytes > route.max_body_bytes {
            c.fail(
                at.key("max_body_bytes"),
                format!(
                    "must be at most the route's max_body_bytes ({})",
                    route.max_body_bytes
                ),
            );
        }
    }
    for (key, value) in [
        ("connect_timeout_ms", route.connect_timeout_ms),
        ("response_timeout_ms", route.response_timeout_ms),
    ] {
        if value == Some(0) {
            c.fail(path.key(key), "must be greater than 0");
        }
    }
}

/// Check a route's `match` and build it; `None` if any condition is invalid (each problem
/// reported), never a matcher missing a condition.
/// How `[server.http]` has request paths normalized before routing.
pub fn path_policy(http: &HttpConfig) -> PathPolicy {
    PathPolicy {
        merge_slashes: http.merge_slashes,
        escaped: match http.escaped_path {
            EscapedPath::Reject => Escaped::Reject,
            EscapedPath::Keep => Escaped::KeepOpaque,
        },
    }
}

fn check_match(
    route: &crate::config::RouteConfig,
    path: &KeyPath,
    policy: &PathPolicy,
    c: &mut Checker<'_>,
) -> Option<Matcher> {
    let matcher: &MatchConfig = &route.matcher;
    let before = c.errors.len();
    if matcher.path.is_some() && matcher.path_prefix.is_some() {
        c.fail(path.clone(), "give `path` or `path_prefix`, not both");
    }
    for (key, value) in [
        ("path", &matcher.path),
        ("path_prefix", &matcher.path_prefix),
    ] {
        let Some(value) = value else { continue };
        if !value.starts_with('/') {
            c.fail(path.key(key), format!("`{value}` must start with `/`"));
            continue;
        }
        // Requests are routed on their normalized path: a condition in another spelling
        // would never match (or would match something the operator did not write).
        match normalize(value, policy) {
            Ok(normal) if normal == value.as_str() => {}
            Ok(normal) => c.fail(
                path.key(key),
                format!("`{value}` never matches: request paths are normalized to `{normal}` before routing"),
            ),
            Err(e) => c.fail(
                path.key(key),
                format!("`{value}` never matches: such request paths are refused ({})", e.reason()),
            ),
        }
    }
    let mut methods = Vec::with_capacity(matcher.methods.len());
    for (i, method) in matcher.methods.iter().enumerate() {
        match Method::from_bytes(method.as_bytes()) {
            Ok(parsed) if method.to_ascii_uppercase() == *method => methods.push(parsed),
            _ => c.fail(
                path.key("methods").index(i),
                format!("`{method}` is not an upper-case HTTP method"),
            ),
        }
    }
    for (i, host) in matcher.hosts.iter().enumerate() {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        if bare.is_empty() || bare.contains('*') || bare.contains('/') {
            c.fail(
                path.key("hosts").index(i),
                format!("`{host}` is not a host name or `*.domain` wildcard"),
            );
        }
    }
    let mut headers = Vec::with_capacity(matcher.headers.len());
    for (name, value) in &matcher.headers {
        let at = path.key("headers").key(name);
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => headers.push((name, value)),
            (Err(_), _) => c.fail(at, format!("`{name}` is not a header name")),
            (Ok(_), Err(_)) => c.fail(
                at,
                format!(
                    "{value:?} is not a valid header value (visible ASCII, spaces and tabs; no control characters)"
                ),
            ),
        }
    }
    if c.errors.len() > before {
        return None;
    }
    let path_match = match (&matcher.path, &matcher.path_prefix) {
        (Some(exact), _) => PathMatch::Exact(exact.clone()),
        (None, Some(prefix)) if prefix != "/" => PathMatch::Prefix(prefix.clone()),
        _ => PathMatch::Any,
    };
    Some(Matcher::new(
        path_match,
        methods,
        &matcher.hosts,
        headers,
        route.priority,
    ))
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
