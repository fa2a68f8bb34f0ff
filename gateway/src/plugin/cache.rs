//! Compiled components cached on disk.
//!
//! Compiling a component takes 20 ms to seconds; loading a compiled artifact takes 0.1–2 ms.
//! Artifacts are keyed by the module's SHA-256 and the engine's compatibility hash (wasmtime
//! version, target, settings such as fuel), so an upgrade or a setting change recompiles
//! instead of loading something stale. A broken or incompatible file is recompiled and replaced.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache directory: `$XDG_CACHE_HOME/gateway`, `~/.cache/gateway`, or the
/// system temp dir.
pub fn default_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("gateway");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("gateway");
    }
    std::env::temp_dir().join("gateway-cache")
}

/// Compile `bytes` for `engine`, or load the cached artifact. Cache failures are logged and
/// never fatal: the component is then compiled in memory.
pub fn load(engine: &Engine, bytes: &[u8], dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file = dir.join(format!(
        "{}-{:016x}.cwasm",
        sha256_hex(bytes),
        hasher.finish()
    ));
    if file.exists() {
        match deserialize(engine, &file) {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(file = %file.display(), "ignoring cached plugin: {e}"),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, dir, &file) {
        tracing::warn!(dir = %dir.display(), "cannot cache compiled plugin: {e}");
    }
    Ok(component)
}

fn store(component: &Component, dir: &Path, file: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// Loading native code is `unsafe` in wasmtime because a tampered file could run anything.
/// The file is one this gateway wrote into its own cache directory, named by the hash of the
/// module it was compiled from, and wasmtime itself rejects artifacts of another version or
/// configuration. Anyone able to write that directory can already replace the gateway binary.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see above; the artifact was produced by `Component::serialize` of this gateway.
    unsafe { Component::deserialize_file(engine, file) }
}
