//! The runtime snapshot: a config compiled into route tables, upstream pools and plugin
//! instance pools. Built whole and immutable; a reload builds a new one beside the old and
//! swaps the `Arc`, so a bad config never disturbs the running one.
//!
//! Building is where plugin problems surface: a missing module, a pin mismatch, an import the
//! grant does not cover, or an `init` that rejects its config. Each is reported at its key path
//! in the config file, like any other config error.

use crate::config::{
    Config, ConfigError, ConfigErrors, KeyPath, LoadedConfig, PluginUse, RouteConfig,
};
use crate::key_path;
use crate::plugin::cache;
use crate::plugin::limits::{Limits, Violation};
use crate::plugin::loader::{self, LoadedPlugin};
use crate::plugin::pool::InstancePool;
use crate::plugin::{Engines, WasmFilter};
use crate::proxy::filter::{Filter, FilterNeeds};
use crate::router::{Matcher, PathMatch, Router};
use crate::services::Services;
use crate::upstream::Upstream;
use http::{HeaderName, HeaderValue, Method};
use std::collections::HashMap;

use std::sync::Arc;

/// A compiled route.
pub struct Route {
    /// Route name.
    pub name: Arc<str>,
    /// Where requests go, unless a filter answers.
    pub upstream: Option<Arc<Upstream>>,
    /// Global filters, then the route's own.
    pub chain: Vec<Arc<dyn Filter>>,
    /// Prefix removed before proxying.
    pub strip_prefix: Option<String>,
    /// Forward the client's `Host`.
    pub preserve_host: bool,
    /// Body buffering cap.
    pub max_body_bytes: usize,
    /// Union of the chain's needs.
    pub needs: FilterNeeds,
}

/// Everything a request needs, compiled from one config.
pub struct Runtime {
    /// Route table.
    pub router: Router<Arc<Route>>,
}

/// Compile `loaded` into a runtime, loading every plugin and calling every `init`.
pub async fn build(loaded: &LoadedConfig, engines: &Engines) -> Result<Runtime, ConfigErrors> {
    let config = &loaded.config;
    let source = &loaded.source;
    let mut errors: Vec<ConfigError> = Vec::new();

    let workers = crate::worker::count(config.server.workers);
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        match Upstream::new(name, upstream, workers) {
            Ok(built) => {
                upstreams.insert(name.clone(), Arc::new(built));
            }
            Err(e) => errors.push(source.error_at_path(key_path!["upstreams", name], e)),
        }
    }

    let cache_dir = config
        .server
        .plugin_cache_dir
        .as_ref()
        .map(|dir| loaded.base_dir.join(dir))
        .unwrap_or_else(cache::default_dir);
    let services = match Services::build(loaded) {
        Ok(services) => services,
        Err(problems) => {
            for (path, message) in problems {
                errors.push(source.error_at_path(path, message));
            }
            Services::empty()
        }
    };
    services.state.warm_up().await;
    let plugins = load_plugins(loaded, engines, &cache_dir, &services, &mut errors);

    let mut global_chain = Vec::new();
    for (i, use_) in config.global_plugins.iter().enumerate() {
        let path = key_path!["global_plugins", i];
        if let Some(filter) = build_filter(loaded, &plugins, use_, "*", path, &mut errors).await {
            global_chain.push(filter);
        }
    }

    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let mut chain = global_chain.clone();
        for (j, use_) in route.plugins.iter().enumerate() {
            let path = key_path!["routes", i, "plugins", j];
            if let Some(filter) =
                build_filter(loaded, &plugins, use_, &route.name, path, &mut errors).await
            {
                chain.push(filter);
            }
        }
        let upstream = route
            .upstream
            .as_ref()
            .and_then(|u| upstreams.get(u))
            .cloned();
        routes.push((
            matcher(route),
            Arc::new(compile_route(route, upstream, chain)),
        ));
    }

    if errors.is_empty() {
        Ok(Runtime {
            router: Router::new(routes),
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn compile_route(
    route: &RouteConfig,
    upstream: Option<Arc<Upstream>>,
    chain: Vec<Arc<dyn Filter>>,
) -> Route {
    let needs = chain.iter().fold(FilterNeeds::default(), |acc, f| {
        let n = f.needs();
        FilterNeeds {
            request_body: acc.request_body || n.request_body,
            response_body: acc.response_body || (n.response_body && n.response_phase),
            response_phase: acc.response_phase || n.response_phase,
        }
    });
    Route {
        name: Arc::from(route.name.as_str()),
        upstream,
        chain,
        strip_prefix: route
            .strip_prefix
            .then(|| route.matcher.path_prefix.clone())
            .flatten(),
        preserve_host: route.preserve_host,
        max_body_bytes: route.max_body_bytes,
        needs,
    }
}

fn matcher(route: &RouteConfig) -> Matcher {
    let m = &route.matcher;
    let path = match (&m.path, &m.path_prefix) {
        (Some(exact), _) => PathMatch::Exact(exact.clone()),
        (None, Some(prefix)) if prefix != "/" => PathMatch::Prefix(prefix.clone()),
        _ => PathMatch::Any,
    };
    let methods = m
        .methods
        .iter()
        .filter_map(|method| Method::from_bytes(method.as_bytes()).ok())
        .collect();
    let headers = m
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
    Matcher::new(path, methods, &m.hosts, headers, route.priority)
}

/// Load each `[plugins.NAME]` once; uses of a plugin share its compiled component.
fn load_plugins(
    loaded: &LoadedConfig,
    engines: &Engines,
    cache_dir: &std::path::Path,
    services: &Arc<Services>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, Arc<LoadedPlugin>> {
    let config = &loaded.config;
    let mut plugins = HashMap::new();
    for (name, plugin) in &config.plugins {
        let metered = plugin.fuel.is_some()
            || all_uses(config).any(|u| u.plugin == *name && u.fuel.is_some());
        match loader::load(
            name,
            plugin,
            &loaded.base_dir,
            engines,
            Some(cache_dir),
            metered,
            services.clone(),
        ) {
            Ok(loaded_plugin) => {
                plugins.insert(name.clone(), Arc::new(loaded_plugin));
            }
            Err(e) => errors.push(loaded.source.error_at_path(
                key_path!["plugins", name, e.key],
                format!("plugin `{name}`: {}", e.message),
            )),
        }
    }
    plugins
}

fn all_uses(config: &Config) -> impl Iterator<Item = &PluginUse> {
    config
        .global_plugins
        .iter()
        .chain(config.routes.iter().flat_map(|r| r.plugins.iter()))
}

/// The top-level table of a plugin's `config_file` (`.json`, else TOML).
fn read_config_file(
    path: &std::path::Path,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::to_value(table).map_err(|e| format!("{}: {e}", path.display()))?
    };
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(format!("{}: must hold a table/object", path.display())),
    }
}

/// Instantiate one plugin use and call its `init`; a rejection is a config error at the
/// use's `config` key.
async fn build_filter(
    loaded: &LoadedConfig,
    plugins: &HashMap<String, Arc<LoadedPlugin>>,
    use_: &PluginUse,
    route: &str,
    path: KeyPath,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn Filter>> {
    let plugin = plugins.get(&use_.plugin)?.clone();
    let limits = Limits::resolve(&plugin.limits.overridden_by(&use_.limits()));
    let mut table = match &use_.config_file {
        Some(file) => match read_config_file(&loaded.base_dir.join(file)) {
            Ok(table) => table,
            Err(message) => {
                errors.push(
                    loaded
                        .source
                        .error_at_path(path.key("config_file"), message),
                );
                return None;
            }
        },
        None => serde_json::Map::new(),
    };
    if let Some(inline) = &use_.config
        && let Ok(serde_json::Value::Object(inline)) = serde_json::to_value(inline)
    {
        table.extend(inline);
    }
    let config_json = serde_json::Value::Object(table).to_string();
    match InstancePool::new(plugin, config_json, limits).await {
        Ok(pool) => Some(Arc::new(WasmFilter::new(pool))),
        Err(violation) => {
            let message = match violation {
                Violation::Init(message) => message,
                other => other.to_string(),
            };
            let at = if use_.config.is_some() {
                path.key("config")
            } else {
                path
            };
            errors.push(loaded.source.error_at_path(
                at,
                format!(
                    "plugin `{}` rejected its config for route `{route}`: {message}",
                    use_.plugin
                ),
            ));
            None
        }
    }
}
