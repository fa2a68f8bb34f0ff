//! The one pass from config files to a runtime snapshot: `gateway check`, `gateway run` (and
//! the coming reload) all call [`compile`] (or [`compile_file`]), so what `check` accepts is
//! exactly what `run` serves.
//!
//! Two halves, one result: [`validate`] checks what needs only the file and builds the typed
//! values it checks (route matchers); [`compile`] then loads plugins, checks their imports
//! against their grants, calls every `init`, and builds upstreams and the route table. Every
//! problem of either half is a [`ConfigError`] at its key path (file:line:column). The result
//! is a fresh immutable [`Runtime`]; nothing shared is touched, so a failed compile leaves a
//! running snapshot as it was.

pub mod plan;
pub mod reuse;
#[cfg(test)]
mod tests;
pub mod validate;

pub use reuse::{Kept, Reuse};
pub use validate::{AdminSettings, Serves};

use crate::config::{
    self, Config, ConfigError, ConfigErrors, Http2Config, KeyPath, LoadedConfig, PluginUse,
    RouteConfig,
};
use crate::edge::Edge;
use crate::edge::admission::Admission;
use crate::edge::request::{self, RequestPolicy};
use crate::edge::trusted::TrustedProxies;
use crate::key_path;
use crate::plugin::cache::{self, Cache};
use crate::plugin::limits::{Limits, Violation};
use crate::plugin::loader::{self, LoadedPlugin};
use crate::plugin::pool::InstancePool;
use crate::plugin::{Engines, WasmFilter};
use crate::proxy::filter::Filter;
use crate::proxy::record::Observe;
use crate::proxy::{Route, Runtime};
use crate::router::Router;
use crate::services::Services;
use crate::telemetry::access_log::Destination;
use crate::telemetry::spans::ExportSettings;
use crate::tls::TlsListener;
use crate::upstream::Upstream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A compiled config: the runtime the pipeline serves, and what the server itself applies.
pub struct Compiled {
    /// Routes, filters, upstreams.
    pub runtime: Runtime,
    /// Listeners, workers, timeouts.
    pub server: ServerSettings,
    /// The config as the admin API shows it.
    pub view: ConfigView,
    /// What a reload of this config may keep.
    pub reuse: Reuse,
    /// What this compile kept of the one it replaces.
    pub kept: Kept,
}

/// The config as `GET /config` shows it: redacted, with the file's hash and load time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigView {
    /// The config file.
    pub file: String,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// When it was compiled (Unix seconds).
    pub loaded_at: f64,
    /// Its TOML as JSON, every secret redacted.
    pub config: serde_json::Value,
}

impl ConfigView {
    fn of(loaded: &LoadedConfig) -> Self {
        let text = loaded.source.text();
        ConfigView {
            file: loaded.source.file().to_string(),
            sha256: cache::sha256_hex(text.as_bytes()),
            loaded_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            config: config::redact::redacted_json(text),
        }
    }
}

/// `[access_log]`, typed.
#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    /// Where lines go.
    pub destination: Destination,
    /// Share of requests logged.
    pub sample: f64,
}

/// `[server]`, typed.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Addresses to listen on, with what each serves.
    pub listen: Vec<(SocketAddr, Serves)>,
    /// `[[server.tls]]` blocks, built (`Serves::Tls(i)` is `tls[i]`).
    pub tls: Vec<Arc<TlsListener>>,
    /// What is worth an operator's look but not an error (a certificate close to expiry).
    pub warnings: Vec<ConfigError>,
    /// Worker threads (resolved: never 0).
    pub workers: usize,
    /// Close a connection idle this long.
    pub idle_timeout: Duration,
    /// On SIGINT/SIGTERM, drain this long.
    pub shutdown_grace: Duration,
    /// On SIGINT/SIGTERM, answer `/ready` with 503 this long before the listeners stop.
    pub readiness_grace: Duration,
    /// A request head must arrive within this of its first byte.
    pub request_head_timeout: Duration,
    /// Connection caps.
    pub admission: Arc<Admission>,
    /// Whether trusted proxies open with a PROXY v2 header.
    pub proxy_protocol: bool,
    /// Who may send one.
    pub trusted: Arc<TrustedProxies>,
    /// Request header limits, which hyper applies while it reads a head.
    pub max_headers: usize,
    /// See `max_headers`.
    pub max_header_bytes: usize,
    /// See `max_headers`.
    pub max_uri_bytes: usize,
    /// `[server.http2]`.
    pub http2: Http2Config,
    /// `[admin]`.
    pub admin: Option<AdminSettings>,
    /// `[access_log]`, unless off.
    pub access_log: Option<AccessLogSettings>,
    /// `[tracing]` span export, when an endpoint is set.
    pub span_export: Option<ExportSettings>,
}

/// Read, parse and compile the config file at `path`.
pub async fn compile_file(path: &Path, engines: &Engines) -> Result<Compiled, ConfigErrors> {
    let loaded = config::load(path)?;
    compile(&loaded, engines).await
}

/// Compile `loaded` into a runtime, loading every plugin and calling every `init`.
pub async fn compile(loaded: &LoadedConfig, engines: &Engines) -> Result<Compiled, ConfigErrors> {
    compile_reusing(loaded, engines, None).await
}

/// [`compile`], keeping from `previous` (the serving config's [`Reuse`]) every part whose
/// inputs did not change ([`reuse`]).
pub async fn compile_reusing(
    loaded: &LoadedConfig,
    engines: &Engines,
    previous: Option<&Reuse>,
) -> Result<Compiled, ConfigErrors> {
    let config = &loaded.config;
    let sections = reuse::Sections::of(loaded.source.text());
    let mut next = Reuse::default();
    let mut kept = Kept::default();
    let source = &loaded.source;
    let checked = validate::check(config, source).map_err(ConfigErrors)?;
    let mut errors: Vec<ConfigError> = Vec::new();

    let workers = crate::worker::count(config.server.workers);
    let mut warnings = Vec::new();
    let mut tls = Vec::with_capacity(config.server.tls.len());
    for (i, block) in config.server.tls.iter().enumerate() {
        match TlsListener::build(i, block, &loaded.base_dir) {
            Ok((listener, warned)) => {
                tls.push(Arc::new(listener));
                for (path, message) in warned {
                    warnings.push(source.error_at_path(path, message));
                }
            }
            Err(problems) => {
                for (path, message) in problems {
                    errors.push(source.error_at_path(path, message));
                }
            }
        }
    }
    let server = ServerSettings {
        listen: checked.listen,
        tls,
        warnings,
        workers,
        idle_timeout: Duration::from_secs(config.server.idle_timeout_s),
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_s),
        readiness_grace: Duration::from_millis(config.server.readiness_grace_ms),
        request_head_timeout: Duration::from_millis(config.server.request_head_timeout_ms),
        admission: Admission::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
            checked.trusted.clone(),
        ),
        proxy_protocol: config.server.proxy_protocol,
        trusted: checked.trusted.clone(),
        max_headers: config.server.http.max_headers,
        max_header_bytes: config.server.http.max_header_bytes,
        max_uri_bytes: config.server.http.max_uri_bytes,
        http2: config.server.http2.clone(),
        admin: checked.admin.clone(),
        access_log: config.access_log.as_ref().and_then(|log| {
            let destination = match log.to.as_str() {
                "off" => return None,
                "stdout" => Destination::Stdout,
                path => Destination::File(loaded.base_dir.join(path)),
            };
            Some(AccessLogSettings {
                destination,
                sample: log.sample,
            })
        }),
        span_export: config
            .tracing
            .otlp_endpoint
            .as_ref()
            .map(|endpoint| ExportSettings {
                endpoint: endpoint.clone(),
                service_name: config.tracing.service_name.clone(),
                queue: config.tracing.queue,
                batch_delay: Duration::from_millis(config.tracing.batch_delay_ms),
            }),
    };
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let print = sections.upstream(name, workers, &loaded.base_dir);
        kept.upstreams.1 += 1;
        if let Some(same) = previous.and_then(|p| p.upstreams.get(&print)) {
            kept.upstreams.0 += 1;
            next.upstreams.insert(print, same.clone());
            upstreams.insert(name.clone(), same.clone());
            continue;
        }
        match Upstream::new(
            name,
            upstream,
            (workers, &config.resolver),
            &loaded.base_dir,
        ) {
            Ok(built) => {
                let built = Arc::new(built);
                next.upstreams.insert(print, built.clone());
                upstreams.insert(name.clone(), built);
            }
            Err((path, message)) => errors.push(source.error_at_path(path, message)),
        }
    }

    let cache = config
        .server
        .plugin_cache_dir
        .as_ref()
        .map(|dir| loaded.base_dir.join(dir))
        .or_else(cache::default_dir)
        .and_then(|dir| Cache::open(&dir, cache::key_file().as_deref()));
    let services_print = sections.services(&loaded.base_dir);
    let kept_services = previous
        .and_then(|p| p.services.as_ref())
        .filter(|(print, _)| *print == services_print)
        .map(|(_, services)| services.clone());
    kept.services = kept_services.is_some();
    let services = match kept_services {
        Some(services) => services,
        None => {
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
            services
        }
    };
    next.services = Some((services_print, services.clone()));
    let mut reusing = Reusing {
        sections: &sections,
        previous,
        next: &mut next,
        kept: &mut kept,
    };
    let plugins = load_plugins(
        loaded,
        engines,
        cache.as_ref(),
        &services,
        &mut reusing,
        &mut errors,
    );

    let mut global_chain = Vec::new();
    for (i, use_) in config.global_plugins.iter().enumerate() {
        let path = key_path!["global_plugins", i];
        if let Some(filter) =
            build_filter(loaded, &plugins, use_, "*", path, &mut reusing, &mut errors).await
        {
            global_chain.push(filter);
        }
    }

    let mut routes = Vec::new();
    for ((i, route), matcher) in config.routes.iter().enumerate().zip(checked.matchers) {
        let mut chain = global_chain.clone();
        for (j, use_) in route.plugins.iter().enumerate() {
            let path = key_path!["routes", i, "plugins", j];
            if let Some(filter) = build_filter(
                loaded,
                &plugins,
                use_,
                &route.name,
                path,
                &mut reusing,
                &mut errors,
            )
            .await
            {
                chain.push(filter);
            }
        }
        routes.push((matcher, Arc::new(compile_route(route, &upstreams, chain))));
    }

    if errors.is_empty() {
        Ok(Compiled {
            runtime: Runtime {
                router: Router::new(routes),
                edge: compile_edge(config, checked.trusted.clone()),
                observe: Observe {
                    log_query: config.access_log.as_ref().is_some_and(|log| log.query),
                    trace: config.tracing.traceparent,
                    sample: config.tracing.sample,
                    ..Observe::default()
                },
            },
            server,
            view: ConfigView::of(loaded),
            reuse: next,
            kept,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn compile_route(
    route: &RouteConfig,
    upstreams: &HashMap<String, Arc<Upstream>>,
    chain: Vec<Arc<dyn Filter>>,
) -> Route {
    let named = |name: &String| upstreams.get(name).cloned();
    let arms: Vec<(Arc<Upstream>, u32)> = route
        .upstreams
        .iter()
        .filter_map(|arm| Some((named(&arm.upstream)?, arm.weight)))
        .collect();
    let upstream = match arms.first() {
        Some((first, _)) => Some(first.clone()),
        None => route.upstream.as_ref().and_then(named),
    };
    let mut compiled = Route::new(&route.name, upstream, chain, route.max_body_bytes);
    if !arms.is_empty() {
        let split = route.split.clone().unwrap_or_default();
        let header = split
            .override_header
            .and_then(|name| http::HeaderName::from_bytes(name.as_bytes()).ok());
        let sticky = split
            .sticky
            .and_then(|on| crate::upstream::HashOn::parse(&on).ok());
        compiled.split = Some(crate::upstream::Split::new(
            &route.name,
            arms,
            header,
            split.override_cookie,
            sticky,
        ));
    }
    compiled.mirror = route.mirror.as_ref().and_then(|mirror| {
        let shadow = named(&mirror.upstream)?;
        Some(crate::upstream::Mirror::new(&route.name, shadow, mirror))
    });
    compiled.connect_timeout = route.connect_timeout_ms.map(Duration::from_millis);
    compiled.response_timeout = route.response_timeout_ms.map(Duration::from_millis);
    compiled.strip_prefix = route
        .strip_prefix
        .then(|| route.matcher.path_prefix.clone())
        .flatten();
    compiled.preserve_host = route.preserve_host;
    compiled.websocket = route
        .websocket
        .then(|| Duration::from_secs(route.websocket_idle_timeout_s));
    compiled.timeout = Duration::from_millis(route.timeout_ms);
    compiled.retry = route
        .retry
        .as_ref()
        .map(|retry| Arc::new(crate::upstream::RetryPolicy::new(retry)));
    compiled
}

/// `[server]`'s request rules, for the pipeline.
fn compile_edge(config: &Config, trusted: Arc<TrustedProxies>) -> Edge {
    let server = &config.server;
    let http = &server.http;
    let request = RequestPolicy {
        path: validate::path_policy(http),
        max_headers: http.max_headers,
        max_header_bytes: http.max_header_bytes,
        max_uri_bytes: http.max_uri_bytes,
        underscores: http.underscores_in_headers,
        via_name: server.via.clone(),
        max_loops: server.max_loops,
    };
    Edge {
        via_http11: request::via_entry(http::Version::HTTP_11, &server.via),
        via_http2: request::via_entry(http::Version::HTTP_2, &server.via),
        request,
        trusted,
        body_idle: Duration::from_millis(server.request_body_timeout_ms),
    }
}

/// Load each `[plugins.NAME]` once (or keep the previous config's, unchanged); uses of a
/// plugin share its compiled component.
fn load_plugins(
    loaded: &LoadedConfig,
    engines: &Engines,
    cache: Option<&Cache>,
    services: &Arc<Services>,
    reusing: &mut Reusing<'_>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, Arc<LoadedPlugin>> {
    let config = &loaded.config;
    let mut plugins = HashMap::new();
    for (name, plugin) in &config.plugins {
        let metered = plugin.fuel.is_some()
            || all_uses(config).any(|u| u.plugin == *name && u.fuel.is_some());
        reusing.kept.plugins.1 += 1;
        // The module is read again either way: a changed file is a changed plugin (and its
        // `sha256` pin is checked by the load).
        let print = loader::read_module(&plugin.module, &loaded.base_dir)
            .ok()
            .map(|bytes| {
                let sha256 = cache::sha256_hex(&bytes);
                reusing.sections.plugin(name, &sha256, metered, services)
            });
        if let Some((print, same)) = print.as_ref().and_then(|print| {
            let same = reusing.previous.and_then(|p| p.plugins.get(print))?;
            Some((print.clone(), same.clone()))
        }) {
            reusing.kept.plugins.0 += 1;
            reusing.next.plugins.insert(print, same.clone());
            plugins.insert(name.clone(), same);
            continue;
        }
        match loader::load(
            name,
            plugin,
            &loaded.base_dir,
            engines,
            cache,
            metered,
            services.clone(),
        ) {
            Ok(loaded_plugin) => {
                let loaded_plugin = Arc::new(loaded_plugin);
                if let Some(print) = print {
                    reusing.next.plugins.insert(print, loaded_plugin.clone());
                }
                plugins.insert(name.clone(), loaded_plugin);
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

/// What a compile may keep ([`Reuse`]) and what it kept, threaded through its steps.
struct Reusing<'a> {
    sections: &'a reuse::Sections,
    previous: Option<&'a Reuse>,
    next: &'a mut Reuse,
    kept: &'a mut Kept,
}

/// Instantiate one plugin use and call its `init` (or keep the same use of the previous
/// config, warm); a rejection is a config error at the use's `config` key.
async fn build_filter(
    loaded: &LoadedConfig,
    plugins: &HashMap<String, Arc<LoadedPlugin>>,
    use_: &PluginUse,
    route: &str,
    path: KeyPath,
    reusing: &mut Reusing<'_>,
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
    let place = format!("{route}\n{path}");
    let print = reuse::plugin_use(&plugin, &place, &config_json, &limits);
    reusing.kept.uses.1 += 1;
    if let Some(same) = reusing.previous.and_then(|p| p.filters.get(&print)) {
        reusing.kept.uses.0 += 1;
        reusing.next.filters.insert(print, same.clone());
        reusing.next.places.insert(place, same.clone());
        return Some(same.clone());
    }
    match InstancePool::new(plugin, config_json, limits).await {
        Ok(pool) => {
            let filter = WasmFilter::new(pool, route);
            // The use it replaces had this many instances busy or warm: so will this one.
            if let Some(replaced) = reusing.previous.and_then(|p| p.places.get(&place)) {
                filter.prewarm(replaced.alive_instances()).await;
            }
            let filter: Arc<dyn Filter> = Arc::new(filter);
            reusing.next.filters.insert(print, filter.clone());
            reusing.next.places.insert(place, filter.clone());
            Some(filter)
        }
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
