//! Loading a `[plugins.NAME]` entry: find the module, check its pin, compile (or load from the
//! cache), check its imports against its grant, and pre-instantiate it against a linker that
//! holds only what was granted.

use super::bindings::PluginPre;
use super::builtin;
use super::cache::{self, Cache};
use super::capabilities::{self, Capability};
use super::engine::Engines;
use super::state::StoreState;
use super::ticker::Ticker;
use crate::config::{Isolation, LimitsConfig, PluginConfig};
use crate::services::Services;
use crate::services::state::{Namespace, Quota};
use std::path::Path;
use std::sync::Arc;
use wasmtime::Engine;

/// A plugin ready to be instantiated.
pub struct LoadedPlugin {
    /// Name from config.
    pub name: Arc<str>,
    /// Engine it was compiled for (fuel-metered or not).
    pub engine: Engine,
    /// Pre-instantiated component.
    pub pre: PluginPre<StoreState>,
    /// Whether calls meter fuel.
    pub metered: bool,
    /// `pooled` or `request`.
    pub isolation: Isolation,
    /// Most live instances (warm or busy) per use.
    pub max_instances: usize,
    /// Longest a call waits for an instance when all `max_instances` are busy.
    pub queue_timeout: std::time::Duration,
    /// Recycle after this many uses (0 = never).
    pub max_uses: u64,
    /// The plugin-level limits, overridden per use.
    pub limits: LimitsConfig,
    /// Host services its capabilities call.
    pub services: Arc<Services>,
    /// Its namespace in the shared state (`kv`, `counters`), with its quotas.
    pub namespace: Arc<Namespace>,
    /// Kept awake by every call, for the epoch deadline.
    pub ticker: Ticker,
    /// What a security review needs: module, hash, imports, grants.
    pub audit: Audit,
}

/// A loaded plugin as the admin API's `/plugins` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Audit {
    /// The module (`builtin:NAME` or its path).
    pub module: String,
    /// Hex SHA-256 of the module's bytes.
    pub sha256: String,
    /// Capabilities granted in the config.
    pub granted: Vec<String>,
    /// Each import and what grants it (`baseline` or `capability:NAME`).
    pub imports: Vec<super::inspect::ImportReport>,
}

/// Where a load problem sits in the plugin's table, with the reason.
#[derive(Debug)]
pub struct LoadError {
    /// Key under `[plugins.NAME]` the problem is about.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn fail(key: &'static str, message: impl Into<String>) -> LoadError {
    LoadError {
        key,
        message: message.into(),
    }
}

/// The bytes of a module reference: `builtin:NAME` or a path relative to `base_dir`.
pub fn read_module(module: &str, base_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(name) = module.strip_prefix("builtin:") {
        return builtin::get(name).map(<[u8]>::to_vec).ok_or_else(|| {
            format!(
                "no built-in plugin `{name}` (built-in: {})",
                builtin::names().join(", ")
            )
        });
    }
    let path = base_dir.join(module);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// How a module is named in errors: `builtin:NAME`, or the file's path.
fn module_label(module: &str, base_dir: &Path) -> String {
    if module.starts_with("builtin:") {
        return module.to_string();
    }
    base_dir.join(module).display().to_string()
}

/// What kind of file `bytes` is, from its 8-byte preamble: a component is compiled; a core
/// module or something else is refused by name before wasmtime reports a parse error.
pub fn check_preamble(bytes: &[u8], label: &str) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    const CORE_MODULE: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    if !bytes.starts_with(MAGIC) {
        return Err(format!(
            "`{label}` is not WebAssembly (it does not start with `\\0asm`)"
        ));
    }
    match bytes.get(4..8) {
        Some(COMPONENT) => Ok(()),
        Some(CORE_MODULE) => Err(format!(
            "`{label}` is a core WebAssembly module, not a component; build the plugin for \
             wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
        )),
        Some(_) => Err(format!(
            "`{label}` is WebAssembly of an unknown version or layer, not a component"
        )),
        None => Err(format!("`{label}` is truncated: {} bytes", bytes.len())),
    }
}

/// Load plugin `name`. `metered` selects the fuel engine (some use sets `fuel`); request
/// isolation selects the engine whose instances come from a pre-reserved pool.
pub fn load(
    name: &str,
    config: &PluginConfig,
    base_dir: &Path,
    engines: &Engines,
    cache: Option<&Cache>,
    metered: bool,
    services: Arc<Services>,
) -> Result<LoadedPlugin, LoadError> {
    let bytes = read_module(&config.module, base_dir).map_err(|e| fail("module", e))?;
    let label = module_label(&config.module, base_dir);
    check_preamble(&bytes, &label).map_err(|e| fail("module", e))?;
    let hash = cache::sha256_hex(&bytes);
    if let Some(pin) = &config.sha256
        && !pin.eq_ignore_ascii_case(&hash)
    {
        return Err(fail(
            "sha256",
            format!("module hash is {hash}, but the config pins {pin}; refusing to load"),
        ));
    }
    let engine = engines.engine(metered, config.isolation).clone();
    let component = cache::load(&engine, &bytes, cache).map_err(|e| {
        fail(
            "module",
            format!("`{label}` is not a valid component: {e:#}"),
        )
    })?;

    let granted: Vec<Capability> = config
        .capabilities
        .iter()
        .filter_map(|c| Capability::find(c))
        .collect();
    let imports = capabilities::imports(&component, &engine);
    if let Some(problem) = capabilities::check_imports(&imports, &granted)
        .into_iter()
        .next()
    {
        return Err(fail("capabilities", problem));
    }
    let filter_exports = capabilities::exports(&component, &engine);
    if let Some(other) = filter_exports.iter().find(|name| {
        name.strip_prefix("gateway:plugin/filter@")
            .is_some_and(|version| !capabilities::compatible(version, capabilities::WIT_VERSION))
    }) {
        return Err(fail(
            "module",
            format!(
                "`{label}` exports `{other}`, but this gateway calls gateway:plugin/filter@{} (compatible: the same {}); rebuild the plugin against this gateway's wit/",
                capabilities::WIT_VERSION,
                capabilities::compat_label()
            ),
        ));
    }
    let linker = capabilities::linker(&engine, &granted)
        .map_err(|e| fail("module", format!("`{label}`: cannot link: {e:#}")))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| fail("module", format!("`{label}`: cannot link: {e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| {
        fail(
            "module",
            format!("`{label}` does not export the gateway:plugin/filter interface: {e:#}"),
        )
    })?;
    tracing::debug!(plugin = name, sha256 = %hash, ?imports, "plugin loaded");
    let audit = Audit {
        module: label,
        sha256: hash,
        granted: granted.iter().map(|c| c.name().to_string()).collect(),
        imports: imports
            .into_iter()
            .map(super::inspect::ImportReport::of)
            .collect(),
    };
    Ok(LoadedPlugin {
        name: Arc::from(name),
        engine,
        pre,
        metered,
        isolation: config.isolation,
        max_instances: config.max_instances,
        queue_timeout: std::time::Duration::from_millis(config.queue_timeout_ms),
        max_uses: config.max_uses,
        limits: config.limits(),
        services,
        namespace: Namespace::new(
            Arc::from(name),
            Quota {
                kv_max_keys: config.kv_max_keys,
                kv_max_bytes: config.kv_max_bytes,
                counters_max_keys: config.counters_max_keys,
            },
        ),
        ticker: engines.ticker().clone(),
        audit,
    })
}
