//! `gateway run --watch`: reload when the config file, or a file it names (plugin modules,
//! key sets, certificates, plugin config files), changes on disk.
//!
//! Directories are watched rather than files, because editors and deploy tools replace a file
//! by writing a new one and renaming it over the old (a watch on the old file would see
//! nothing more). Events are gathered for [`SETTLE`] before the reload, so a tool writing
//! several files (a certificate and its key) causes one reload, and a half-written file is
//! not read. The watched set is recomputed from the config after every reload.

use crate::admin::ReloadRequest;
use notify::{RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long changes are gathered before one reload.
const SETTLE: Duration = Duration::from_millis(300);

/// Watch `config` and the files it names; ask `reload` for a reload after each change.
/// Returns only if no watcher can be made (logged).
pub async fn watch(config: PathBuf, reload: mpsc::Sender<ReloadRequest>) {
    let (changed, mut changes) = mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            for path in event.paths {
                let _ = changed.send(path);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => return tracing::error!("--watch: cannot watch files: {e}"),
    };
    let mut files = watched_files(&config);
    let mut directories = BTreeSet::new();
    loop {
        let wanted: BTreeSet<PathBuf> = files.iter().filter_map(|f| parent(f)).collect();
        for gone in directories.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        for added in wanted.difference(&directories) {
            if let Err(e) = watcher.watch(added, RecursiveMode::NonRecursive) {
                tracing::warn!("--watch: cannot watch {}: {e}", added.display());
            }
        }
        directories = wanted;
        tracing::debug!(files = files.len(), "--watch: watching");
        // The next change to a watched file, then whatever else changes while it settles.
        loop {
            let Some(path) = changes.recv().await else {
                return;
            };
            if files.contains(&normalize(&path)) {
                break;
            }
        }
        tokio::time::sleep(SETTLE).await;
        while changes.try_recv().is_ok() {}
        tracing::info!("--watch: a watched file changed; reloading");
        let (reply, outcome) = oneshot::channel();
        if reload.send(ReloadRequest { reply }).await.is_err() {
            return;
        }
        // The reloader logs the outcome.
        let _ = outcome.await;
        files = watched_files(&config);
    }
}

/// The config file and every existing file one of its string values names (relative to the
/// config's directory), normalized.
fn watched_files(config: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::from([normalize(config)]);
    let base = config.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(config).unwrap_or_default();
    if let Ok(table) = text.parse::<toml::Table>() {
        strings(&toml::Value::Table(table), &mut |value| {
            let path = base.join(value);
            if !value.is_empty() && path.is_file() {
                files.insert(normalize(&path));
            }
        });
    }
    files
}

fn strings(value: &toml::Value, found: &mut impl FnMut(&str)) {
    match value {
        toml::Value::String(text) => found(text),
        toml::Value::Array(items) => items.iter().for_each(|item| strings(item, found)),
        toml::Value::Table(table) => table.values().for_each(|item| strings(item, found)),
        _ => {}
    }
}

/// `path` absolute, its directory resolved (the file itself may be replaced at any moment).
fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (parent(&absolute), absolute.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().unwrap_or(dir).join(name),
        _ => absolute,
    }
}

fn parent(path: &Path) -> Option<PathBuf> {
    path.parent()
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }
        })
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_and_the_files_it_names_are_watched() {
        let dir = std::env::temp_dir().join(format!("watch-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("keys/jwks.json"), "{}").unwrap();
        std::fs::write(dir.join("plugin.wasm"), "").unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            "[keys.k]\njwks_file = \"keys/jwks.json\"\n[plugins.p]\nmodule = \"plugin.wasm\"\n\
             [plugins.q]\nmodule = \"builtin:cors\"\nname = \"missing.wasm\"\n",
        )
        .unwrap();
        let files = watched_files(&config);
        let dir = dir.canonicalize().unwrap();
        assert_eq!(
            files,
            BTreeSet::from([
                dir.join("gateway.toml"),
                dir.join("keys/jwks.json"),
                dir.join("plugin.wasm"),
            ])
        );
    }
}
