//! Checks that need only the file: references resolve, values are in range, names are unique.
//!
//! Every problem is collected (not just the first), each placed at its key path, so one
//! `gateway check` run shows the operator everything to fix.

use super::diagnostics::{ConfigError, KeyPath, SourceMap};
use super::schema::{Config, LimitsConfig, MatchConfig, PluginUse, StateBackend};
use crate::key_path;
use crate::plugin::capabilities::Capability;
use std::collections::HashSet;
use std::net::SocketAddr;

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

/// All static problems in `config`.
pub fn validate(config: &Config, source: &SourceMap) -> Vec<ConfigError> {
    let mut c = Checker {
        source,
        errors: Vec::new(),
    };
    check_server(config, &mut c);
    check_upstreams(config, &mut c);
    check_plugins(config, &mut c);
    for (i, use_) in config.global_plugins.iter().enumerate() {
        check_plugin_use(config, use_, key_path!["global_plugins", i], &mut c);
    }
    check_routes(config, &mut c);
    check_state(config, &mut c);
    check_keys(config, &mut c);
    c.errors
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

fn check_keys(config: &Config, c: &mut Checker<'_>) {
    for (name, set) in &config.keys {
        let path = key_path!["keys", name];
        if set.jwks_file.is_none()
            && set.jwks_url.is_none()
            && set.pem.is_empty()
            && set.secrets.is_empty()
        {
            c.fail(
                path.clone(),
                "a key set needs at least one of `jwks_file`, `jwks_url`, `pem`, `secrets`",
            );
        }
        if let Some(url) = &set.jwks_url
            && (!url.starts_with("http://") || url.parse::<http::Uri>().is_err())
        {
            c.fail(
                path.key("jwks_url"),
                format!("`{url}` must be a valid http:// URL (https comes with TLS support)"),
            );
        }
        for (i, secret) in set.secrets.iter().enumerate() {
            let given = [&secret.env, &secret.file, &secret.value]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if given != 1 {
                c.fail(
                    path.key("secrets").index(i),
                    "give exactly one of `env`, `file`, `value`",
                );
            }
        }
        if set.min_refetch_ms == 0 {
            c.fail(path.key("min_refetch_ms"), "must be greater than 0");
        }
    }
}

fn check_server(config: &Config, c: &mut Checker<'_>) {
    if config.server.listen.is_empty() {
        c.fail(
            key_path!["server", "listen"],
            "at least one listen address is required",
        );
    }
    for (i, addr) in config.server.listen.iter().enumerate() {
        if addr.parse::<SocketAddr>().is_err() {
            c.fail(
                key_path!["server", "listen", i],
                format!("`{addr}` is not an IP:port address (e.g. 127.0.0.1:8080)"),
            );
        }
    }
    if config.server.idle_timeout_s == 0 {
        c.fail(
            key_path!["server", "idle_timeout_s"],
            "must be greater than 0",
        );
    }
}

fn check_upstreams(config: &Config, c: &mut Checker<'_>) {
    for (name, upstream) in &config.upstreams {
        let path = key_path!["upstreams", name];
        if upstream.targets.is_empty() {
            c.fail(path.key("targets"), "at least one target is required");
        }
        for (i, target) in upstream.targets.iter().enumerate() {
            if !is_host_port(target) {
                c.fail(
                    path.key("targets").index(i),
                    format!("`{target}` is not host:port (e.g. 127.0.0.1:9001)"),
                );
            }
        }
        for (key, value) in [
            ("connect_timeout_ms", upstream.connect_timeout_ms),
            ("response_timeout_ms", upstream.response_timeout_ms),
        ] {
            if value == 0 {
                c.fail(path.key(key), "must be greater than 0");
            }
        }
    }
}

fn is_host_port(target: &str) -> bool {
    if target.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match target.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && host
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
        }
        None => false,
    }
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
            if capability.parse::<Capability>().is_err() {
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

fn check_routes(config: &Config, c: &mut Checker<'_>) {
    let mut seen = HashSet::new();
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
        check_match(&route.matcher, &path.key("match"), c);
        if route.strip_prefix && route.matcher.path_prefix.is_none() {
            c.fail(path.key("strip_prefix"), "needs `match.path_prefix`");
        }
        match &route.upstream {
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
        for (j, use_) in route.plugins.iter().enumerate() {
            check_plugin_use(config, use_, path.key("plugins").index(j), c);
        }
    }
}

fn check_match(matcher: &MatchConfig, path: &KeyPath, c: &mut Checker<'_>) {
    if matcher.path.is_some() && matcher.path_prefix.is_some() {
        c.fail(path.clone(), "give `path` or `path_prefix`, not both");
    }
    for (key, value) in [
        ("path", &matcher.path),
        ("path_prefix", &matcher.path_prefix),
    ] {
        if let Some(value) = value
            && !value.starts_with('/')
        {
            c.fail(path.key(key), format!("`{value}` must start with `/`"));
        }
    }
    for (i, method) in matcher.methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err()
            || method.to_ascii_uppercase() != *method
        {
            c.fail(
                path.key("methods").index(i),
                format!("`{method}` is not an upper-case HTTP method"),
            );
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
    for name in matcher.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.fail(
                path.key("headers").key(name),
                format!("`{name}` is not a header name"),
            );
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
