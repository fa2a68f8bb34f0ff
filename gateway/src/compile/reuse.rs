//! What a reload keeps from the config it replaces: the parts whose inputs did not change.
//!
//! Each reusable part is known by a fingerprint of everything it is built from — its TOML
//! section (as parsed, so formatting and comments do not count), the bytes of the files it
//! reads, and the fingerprints of the parts it holds:
//!
//! - the services (`[state]` and `[keys]` with their key files): kept, the state backend keeps
//!   its counters, kv values and its Redis connection;
//! - a plugin (`[plugins.NAME]`, its module's SHA-256, whether it is metered, the services it
//!   holds): kept, its compiled component is not compiled or loaded again;
//! - a plugin use (its plugin, route, config and limits): kept, with its warm instances
//!   (no new `init`);
//! - an upstream (`[upstreams.NAME]`, its TLS files, the worker count): kept, with its pooled
//!   connections.
//!
//! A compile only reads what it is given; what it keeps is shared with the running snapshot,
//! never changed, so a failed reload leaves that snapshot as it was.

use crate::plugin::loader::LoadedPlugin;
use crate::proxy::filter::Filter;
use crate::services::Services;
use crate::upstream::Upstream;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The reusable parts of a compiled config, by fingerprint.
#[derive(Default)]
pub struct Reuse {
    pub(super) services: Option<(String, Arc<Services>)>,
    pub(super) plugins: HashMap<String, Arc<LoadedPlugin>>,
    pub(super) filters: HashMap<String, Arc<dyn Filter>>,
    /// Each use by its place (route and chain position), to warm the use that replaces it.
    pub(super) places: HashMap<String, Arc<dyn Filter>>,
    pub(super) upstreams: HashMap<String, Arc<Upstream>>,
}

impl Reuse {
    /// Every upstream of the config (to start their health checks once it serves).
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }
}

/// How much of the previous config a compile kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Whether the services (state backend, key sets) were kept.
    pub services: bool,
    /// Plugins kept, of all plugins.
    pub plugins: (usize, usize),
    /// Plugin uses kept with their warm instances, of all uses.
    pub uses: (usize, usize),
    /// Upstreams kept with their connections, of all upstreams.
    pub upstreams: (usize, usize),
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kept {} of {} plugins, {} of {} plugin uses (warm), {} of {} upstreams (pooled \
             connections), {} the state backend and key sets",
            self.plugins.0,
            self.plugins.1,
            self.uses.0,
            self.uses.1,
            self.upstreams.0,
            self.upstreams.1,
            if self.services { "and" } else { "but not" },
        )
    }
}

/// The config's TOML as parsed, the source of the fingerprints.
pub(super) struct Sections {
    table: toml::Table,
}

impl Sections {
    pub(super) fn of(text: &str) -> Sections {
        Sections {
            table: toml::from_str(text).unwrap_or_default(),
        }
    }

    /// The value at `path` (table keys), as TOML text; empty when absent.
    fn text(&self, path: &[&str]) -> String {
        let mut value: Option<&toml::Value> = None;
        for (i, key) in path.iter().enumerate() {
            value = if i == 0 {
                self.table.get(*key)
            } else {
                value.and_then(|v| v.get(*key))
            };
        }
        value.map(|v| v.to_string()).unwrap_or_default()
    }

    /// The services' fingerprint: `[state]`, `[keys]` and every file `[keys]` names.
    pub(super) fn services(&self, base_dir: &Path) -> String {
        let mut print = format!("{}\n{}", self.text(&["state"]), self.text(&["keys"]));
        if let Some(keys) = self.table.get("keys") {
            files_of(keys, base_dir, &mut print);
        }
        digest(&print)
    }

    /// A plugin's fingerprint.
    pub(super) fn plugin(
        &self,
        name: &str,
        module_sha256: &str,
        metered: bool,
        services: &Arc<Services>,
    ) -> String {
        digest(&format!(
            "{name}\n{}\n{module_sha256}\n{metered}\n{:p}",
            self.text(&["plugins", name]),
            Arc::as_ptr(services)
        ))
    }

    /// An upstream's fingerprint.
    pub(super) fn upstream(&self, name: &str, workers: usize, base_dir: &Path) -> String {
        let mut print = format!(
            "{name}\n{}\n{workers}\n{}",
            self.text(&["upstreams", name]),
            self.text(&["resolver"])
        );
        if let Some(tls) = self
            .table
            .get("upstreams")
            .and_then(|u| u.get(name))
            .and_then(|u| u.get("tls"))
        {
            files_of(tls, base_dir, &mut print);
        }
        digest(&print)
    }
}

/// A plugin use's fingerprint: its plugin (by identity: kept plugins keep theirs), route,
/// config and limits.
pub(super) fn plugin_use(
    plugin: &Arc<LoadedPlugin>,
    route: &str,
    config_json: &str,
    limits: &impl std::fmt::Debug,
) -> String {
    digest(&format!(
        "{:p}\n{route}\n{config_json}\n{limits:?}",
        Arc::as_ptr(plugin)
    ))
}

/// Append the contents' hash of every file named by a string under a key that names a file
/// (`file`, `cert`, `key`, `jwks_file`, `ca`, … — anything ending in `file`, `cert`, `key`,
/// `ca` or `pem`) anywhere in `value`.
fn files_of(value: &toml::Value, base_dir: &Path, print: &mut String) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let names_file = ["file", "cert", "key", "ca", "pem"]
                    .iter()
                    .any(|suffix| key.ends_with(suffix));
                match value {
                    toml::Value::String(path) if names_file => {
                        let bytes = std::fs::read(base_dir.join(path)).unwrap_or_default();
                        print.push_str(&format!("\n{path}:{}", hex(&Sha256::digest(&bytes))));
                    }
                    other => files_of(other, base_dir, print),
                }
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                files_of(item, base_dir, print);
            }
        }
        _ => {}
    }
}

fn digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_does_not_count_and_key_files_do() {
        let dir = std::env::temp_dir().join(format!("reuse-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.txt"), "secret-one").unwrap();
        let a = Sections::of("[keys.k]\nsecrets = [{ file = \"s.txt\" }]\n");
        let b = Sections::of("# same\n[keys.k]\nsecrets = [ { file = \"s.txt\" } ]\n");
        assert_eq!(a.services(&dir), b.services(&dir));
        let before = a.services(&dir);
        std::fs::write(dir.join("s.txt"), "secret-two").unwrap();
        assert_ne!(a.services(&dir), before, "a rotated key file is a change");
        let c = Sections::of("[state]\nbackend = \"memory\"\n");
        assert_ne!(c.services(&dir), Sections::of("").services(&dir));
        let _ = std::fs::remove_dir_all(dir);
    }
}
