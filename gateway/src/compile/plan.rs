//! `gateway plan`: what replacing one config with another would change, for a reviewer —
//! routes added, removed and changed (match, upstream, chain, timeouts), chains reordered,
//! plugin modules changed (old and new SHA-256), capability grants widened or narrowed
//! (flagged `!`: what a security review must see), effective limits and `on_error` of each
//! use, upstream targets and settings. Read from the two parsed configs and the module files
//! they name; nothing is compiled or instantiated, so it runs offline in CI.

use crate::config::{Config, LoadedConfig, PluginUse, RouteConfig};
use crate::plugin::cache;
use crate::plugin::limits::Limits;
use crate::plugin::loader;
use std::collections::BTreeSet;
use std::fmt;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `+` added, `-` removed, `~` changed, `!` a capability grant widened (review it).
    pub sign: char,
    /// What changed, in words.
    pub text: String,
}

/// Every change, routes first, then plugins, uses, upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The changes, in that order.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether anything would change.
    pub fn changes_anything(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Whether a capability grant widens.
    pub fn widens_grants(&self) -> bool {
        self.changes.iter().any(|c| c.sign == '!')
    }

    fn push(&mut self, sign: char, text: String) {
        self.changes.push(Change { sign, text });
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        for change in &self.changes {
            writeln!(f, "{} {}", change.sign, change.text)?;
        }
        Ok(())
    }
}

/// What replacing `old` with `new` would change.
pub fn plan(old: &LoadedConfig, new: &LoadedConfig) -> Plan {
    let mut plan = Plan::default();
    routes(&old.config, &new.config, &mut plan);
    plugins(old, new, &mut plan);
    uses(&old.config, &new.config, &mut plan);
    upstreams(&old.config, &new.config, &mut plan);
    plan
}

fn chain_names(uses: &[PluginUse]) -> Vec<&str> {
    uses.iter().map(|u| u.plugin.as_str()).collect()
}

fn describe_route(route: &RouteConfig) -> String {
    format!(
        "match {}, upstream {}, chain [{}]",
        describe_match(route),
        describe_upstreams(route),
        chain_names(&route.plugins).join(", ")
    )
}

/// `name`, or each of `upstreams` with its weight (`stable 95, canary 5`), then the mirror.
fn describe_upstreams(route: &RouteConfig) -> String {
    let mut text = match &route.upstream {
        _ if !route.upstreams.is_empty() => route
            .upstreams
            .iter()
            .map(|arm| format!("{} {}", arm.upstream, arm.weight))
            .collect::<Vec<_>>()
            .join(", "),
        Some(name) => name.clone(),
        None => "(none)".into(),
    };
    if let Some(mirror) = &route.mirror {
        text.push_str(&format!(
            " (mirrored to {} at {}%)",
            mirror.upstream,
            mirror.share * 100.0
        ));
    }
    text
}

fn describe_match(route: &RouteConfig) -> String {
    let m = &route.matcher;
    let mut parts = Vec::new();
    if let Some(path) = &m.path {
        parts.push(format!("path = {path}"));
    }
    if let Some(prefix) = &m.path_prefix {
        parts.push(format!("path_prefix = {prefix}"));
    }
    if !m.methods.is_empty() {
        parts.push(format!("methods = {:?}", m.methods));
    }
    if !m.hosts.is_empty() {
        parts.push(format!("hosts = {:?}", m.hosts));
    }
    if !m.headers.is_empty() {
        parts.push(format!("headers = {:?}", m.headers));
    }
    if parts.is_empty() {
        "{}".to_string()
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

fn routes(old: &Config, new: &Config, plan: &mut Plan) {
    for route in &new.routes {
        if !old.routes.iter().any(|r| r.name == route.name) {
            plan.push(
                '+',
                format!("route `{}`: {}", route.name, describe_route(route)),
            );
        }
    }
    for route in &old.routes {
        if !new.routes.iter().any(|r| r.name == route.name) {
            plan.push('-', format!("route `{}`", route.name));
        }
    }
    for before in &old.routes {
        let Some(after) = new.routes.iter().find(|r| r.name == before.name) else {
            continue;
        };
        let mut what = Vec::new();
        let (m0, m1) = (describe_match(before), describe_match(after));
        if m0 != m1 || before.priority != after.priority {
            what.push(format!("match {m0} → {m1}"));
        }
        let (u0, u1) = (describe_upstreams(before), describe_upstreams(after));
        if u0 != u1 || before.split != after.split {
            what.push(format!("upstream {u0} → {u1}"));
        }
        let (c0, c1) = (chain_names(&before.plugins), chain_names(&after.plugins));
        if c0 != c1 {
            let same_set = c0.iter().collect::<BTreeSet<_>>() == c1.iter().collect::<BTreeSet<_>>();
            let kind = if same_set { "chain reordered" } else { "chain" };
            what.push(format!("{kind} [{}] → [{}]", c0.join(", "), c1.join(", ")));
        }
        for (key, a, b) in [
            ("timeout_ms", before.timeout_ms, after.timeout_ms),
            (
                "max_body_bytes",
                before.max_body_bytes as u64,
                after.max_body_bytes as u64,
            ),
        ] {
            if a != b {
                what.push(format!("{key} {a} → {b}"));
            }
        }
        for (key, a, b) in [
            ("strip_prefix", before.strip_prefix, after.strip_prefix),
            ("preserve_host", before.preserve_host, after.preserve_host),
            ("websocket", before.websocket, after.websocket),
        ] {
            if a != b {
                what.push(format!("{key} {a} → {b}"));
            }
        }
        if !what.is_empty() {
            plan.push('~', format!("route `{}`: {}", before.name, what.join("; ")));
        }
    }
}

/// `builtin:NAME`'s or the file's SHA-256, or why it cannot be read.
fn module_sha256(module: &str, loaded: &LoadedConfig) -> String {
    match loader::read_module(module, &loaded.base_dir) {
        Ok(bytes) => cache::sha256_hex(&bytes),
        Err(e) => format!("(unreadable: {e})"),
    }
}

fn plugins(old: &LoadedConfig, new: &LoadedConfig, plan: &mut Plan) {
    let (o, n) = (&old.config.plugins, &new.config.plugins);
    for (name, plugin) in n {
        if !o.contains_key(name) {
            plan.push(
                '+',
                format!(
                    "plugin `{name}`: module {} (sha256 {}), capabilities [{}]",
                    plugin.module,
                    module_sha256(&plugin.module, new),
                    plugin.capabilities.join(", ")
                ),
            );
            if !plugin.capabilities.is_empty() {
                plan.push(
                    '!',
                    format!(
                        "plugin `{name}`: granted [{}] (new plugin)",
                        plugin.capabilities.join(", ")
                    ),
                );
            }
        }
    }
    for name in o.keys() {
        if !n.contains_key(name) {
            plan.push('-', format!("plugin `{name}`"));
        }
    }
    for (name, before) in o {
        let Some(after) = n.get(name) else { continue };
        let (s0, s1) = (
            module_sha256(&before.module, old),
            module_sha256(&after.module, new),
        );
        if before.module != after.module || s0 != s1 {
            plan.push(
                '~',
                format!(
                    "plugin `{name}`: module {} (sha256 {s0}) → {} (sha256 {s1})",
                    before.module, after.module
                ),
            );
        }
        let g0: BTreeSet<&String> = before.capabilities.iter().collect();
        let g1: BTreeSet<&String> = after.capabilities.iter().collect();
        let widened: Vec<&str> = g1.difference(&g0).map(|c| c.as_str()).collect();
        let narrowed: Vec<&str> = g0.difference(&g1).map(|c| c.as_str()).collect();
        if !widened.is_empty() {
            plan.push(
                '!',
                format!(
                    "plugin `{name}`: capabilities widened: +{}",
                    widened.join(", +")
                ),
            );
        }
        if !narrowed.is_empty() {
            plan.push(
                '~',
                format!(
                    "plugin `{name}`: capabilities narrowed: -{}",
                    narrowed.join(", -")
                ),
            );
        }
        let mut what = Vec::new();
        if format!("{:?}", before.isolation) != format!("{:?}", after.isolation) {
            what.push(format!(
                "isolation {:?} → {:?}",
                before.isolation, after.isolation
            ));
        }
        if before.sha256 != after.sha256 {
            what.push(format!(
                "sha256 pin {} → {}",
                before.sha256.as_deref().unwrap_or("(none)"),
                after.sha256.as_deref().unwrap_or("(none)")
            ));
        }
        if before.max_instances != after.max_instances {
            what.push(format!(
                "max_instances {} → {}",
                before.max_instances, after.max_instances
            ));
        }
        if !what.is_empty() {
            plan.push('~', format!("plugin `{name}`: {}", what.join("; ")));
        }
    }
}

/// Every chain entry with its place: `global_plugins[i]` or `route NAME, plugins[i]`.
fn all_uses(config: &Config) -> Vec<(String, &PluginUse)> {
    let global = config
        .global_plugins
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("global_plugins[{i}]"), u));
    let routed = config.routes.iter().flat_map(|r| {
        r.plugins
            .iter()
            .enumerate()
            .map(move |(i, u)| (format!("route `{}` plugins[{i}]", r.name), u))
    });
    global.chain(routed).collect()
}

/// A use's effective limits, as text per key.
fn limits_of(config: &Config, use_: &PluginUse) -> Option<Vec<(&'static str, String)>> {
    let plugin = config.plugins.get(&use_.plugin)?;
    let limits = Limits::resolve(&plugin.limits().overridden_by(&use_.limits()));
    Some(vec![
        ("timeout_ms", limits.timeout.as_millis().to_string()),
        ("fuel", format!("{:?}", limits.fuel)),
        ("memory_bytes", limits.memory_bytes.to_string()),
        ("max_headers", limits.output.max_headers.to_string()),
        (
            "max_header_bytes",
            limits.output.max_header_bytes.to_string(),
        ),
        ("max_body_bytes", limits.output.max_body_bytes.to_string()),
        ("on_error", format!("{:?}", limits.on_error).to_lowercase()),
        ("error_status", limits.error_status.as_u16().to_string()),
    ])
}

fn uses(old: &Config, new: &Config, plan: &mut Plan) {
    let before = all_uses(old);
    for (place, after) in all_uses(new) {
        let Some((_, was)) = before.iter().find(|(p, _)| *p == place) else {
            continue;
        };
        if was.plugin != after.plugin {
            continue; // shown as a chain change of the route
        }
        let mut what = Vec::new();
        if format!("{:?}", was.config) != format!("{:?}", after.config)
            || was.config_file != after.config_file
        {
            what.push("config".to_string());
        }
        if let (Some(l0), Some(l1)) = (limits_of(old, was), limits_of(new, after)) {
            for ((key, a), (_, b)) in l0.iter().zip(&l1) {
                if a != b {
                    what.push(format!("{key} {a} → {b}"));
                }
            }
        }
        if !what.is_empty() {
            plan.push(
                '~',
                format!("use of `{}` at {place}: {}", after.plugin, what.join("; ")),
            );
        }
    }
}

/// `["10.0.0.1:80", "10.0.0.2:80" (weight 3)]`.
fn targets(list: &[crate::config::TargetSpec]) -> String {
    let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
    format!("[{}]", shown.join(", "))
}

fn upstreams(old: &Config, new: &Config, plan: &mut Plan) {
    let (o, n) = (&old.upstreams, &new.upstreams);
    for (name, upstream) in n {
        if !o.contains_key(name) {
            plan.push(
                '+',
                format!("upstream `{name}`: targets {}", targets(&upstream.targets)),
            );
        }
    }
    for name in o.keys() {
        if !n.contains_key(name) {
            plan.push('-', format!("upstream `{name}`"));
        }
    }
    for (name, before) in o {
        let Some(after) = n.get(name) else { continue };
        if before.targets != after.targets {
            plan.push(
                '~',
                format!(
                    "upstream `{name}`: targets {} → {}",
                    targets(&before.targets),
                    targets(&after.targets)
                ),
            );
        } else if format!("{before:?}") != format!("{after:?}") {
            plan.push('~', format!("upstream `{name}`: settings"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parsed(text: &str) -> LoadedConfig {
        crate::config::parse("t.toml", text, PathBuf::from(".")).unwrap()
    }

    const OLD: &str = r#"
[server]
listen = ["127.0.0.1:8080"]

[upstreams.users]
targets = ["127.0.0.1:9001"]

[plugins.keys]
module = "builtin:key-auth"
capabilities = ["log"]

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]

[[routes]]
name = "users"
match = { path_prefix = "/users" }
upstream = "users"
plugins = [ { use = "keys", config = { consumers = [] } }, { use = "rl", config = { minute = 10 } } ]

[[routes]]
name = "legacy"
match = { path_prefix = "/old" }
upstream = "users"
"#;

    #[test]
    fn the_same_config_plans_nothing() {
        let plan = plan(&parsed(OLD), &parsed(OLD));
        assert!(!plan.changes_anything(), "{plan}");
        assert_eq!(plan.to_string(), "no changes\n");
    }

    #[test]
    fn routes_chains_grants_limits_and_targets_are_named() {
        let new = OLD
            .replace(r#"targets = ["127.0.0.1:9001"]"#, r#"targets = ["127.0.0.1:9001", "127.0.0.1:9002"]"#)
            .replace(r#"capabilities = ["log"]"#, r#"capabilities = ["log", "kv"]"#)
            .replace(
                r#"plugins = [ { use = "keys", config = { consumers = [] } }, { use = "rl", config = { minute = 10 } } ]"#,
                r#"plugins = [ { use = "rl", config = { minute = 10 }, timeout_ms = 50 }, { use = "keys", config = { consumers = [] } } ]"#,
            )
            .replace("name = \"legacy\"\nmatch = { path_prefix = \"/old\" }", "name = \"orders\"\nmatch = { path_prefix = \"/orders\" }");
        let plan = plan(&parsed(OLD), &parsed(&new));
        let text = plan.to_string();
        for line in [
            "+ route `orders`: match { path_prefix = /orders }, upstream users, chain []",
            "- route `legacy`",
            "~ route `users`: chain reordered [keys, rl] → [rl, keys]",
            "! plugin `keys`: capabilities widened: +kv",
            "~ upstream `users`: targets [\"127.0.0.1:9001\"] → [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(plan.widens_grants());
    }

    #[test]
    fn a_canary_ramp_and_a_mirror_show_as_route_changes() {
        let split = |canary: u32, mirror: &str| {
            OLD.replace(
                "[plugins.keys]",
                "[upstreams.users-v2]\ntargets = [\"127.0.0.1:9002\"]\n\n[plugins.keys]",
            )
            .replace(
                "name = \"legacy\"\nmatch = { path_prefix = \"/old\" }\nupstream = \"users\"",
                &format!(
                    "name = \"legacy\"\nmatch = {{ path_prefix = \"/old\" }}\nupstreams = [{{ upstream = \"users\", weight = {} }}, {{ upstream = \"users-v2\", weight = {canary} }}]\n{mirror}",
                    100 - canary
                ),
            )
        };
        let (five, twenty_five) = (
            split(5, ""),
            split(25, "mirror = { upstream = \"users-v2\", share = 0.1 }"),
        );
        let text = plan(&parsed(&five), &parsed(&twenty_five)).to_string();
        assert!(
            text.contains("~ route `legacy`: upstream users 95, users-v2 5 → users 75, users-v2 25 (mirrored to users-v2 at 10%)"),
            "{text}"
        );
        assert!(!plan(&parsed(&five), &parsed(&five)).changes_anything());
    }

    #[test]
    fn a_use_s_limits_and_on_error_show_as_changed() {
        let new = OLD.replace(
            r#"{ use = "rl", config = { minute = 10 } }"#,
            r#"{ use = "rl", config = { minute = 20 }, timeout_ms = 50, on_error = "allow" }"#,
        );
        let text = plan(&parsed(OLD), &parsed(&new)).to_string();
        assert!(
            text.contains("~ use of `rl` at route `users` plugins[1]: config; timeout_ms 20 → 50; on_error deny → allow"),
            "{text}"
        );
    }
}
