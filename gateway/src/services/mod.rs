//! Host services behind the plugin capabilities that need more than the store: key sets for
//! `crypto`, shared state for `counters` and `kv`. Built once per runtime snapshot from the
//! `[keys]` and `[state]` tables and shared by every plugin instance.

pub mod keys;
pub mod logs;
pub mod state;

use crate::config::LoadedConfig;
use std::sync::Arc;

/// Everything a plugin's host imports may call.
pub struct Services {
    /// Named key sets (`[keys.NAME]`).
    pub keys: keys::KeySets,
    /// Counters and kv (`[state]`).
    pub state: state::StateStore,
    /// Each plugin's `log` budget and dropped-line count.
    pub logs: logs::PluginLogs,
}

impl Services {
    /// Build from a loaded config; a problem is reported at its key path.
    pub fn build(
        loaded: &LoadedConfig,
    ) -> Result<Arc<Self>, Vec<(crate::config::KeyPath, String)>> {
        let keys = keys::KeySets::load(&loaded.config.keys, &loaded.base_dir)?;
        let state = state::StateStore::new(&loaded.config.state)
            .map_err(|e| vec![(crate::key_path!["state", "url"], e)])?;
        Ok(Arc::new(Services {
            keys,
            state,
            logs: logs::PluginLogs::default(),
        }))
    }

    /// Services with nothing configured: no key sets, in-memory state.
    pub fn empty() -> Arc<Self> {
        Arc::new(Services {
            keys: keys::KeySets::default(),
            state: state::StateStore::memory(),
            logs: logs::PluginLogs::default(),
        })
    }
}
