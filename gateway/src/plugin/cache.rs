//! Compiled components cached on disk.
//!
//! Compiling a component takes 20 ms to seconds; loading a compiled artifact takes 0.1–2 ms.
//! Artifacts are keyed by the module's SHA-256 and the engine's compatibility hash (wasmtime
//! version, target, settings such as fuel), so an upgrade or a setting change recompiles
//! instead of loading something stale. A broken or incompatible file is recompiled and replaced.
//!
//! Loading an artifact runs native code, so the directory must be one only this process's user
//! can write: [`prepare`] creates it `0700`, and refuses (logging why) a directory owned by
//! another user or writable by group or others. There is no shared fallback (such as the
//! system temp dir, where another local user could plant code first): no usable directory means
//! no cache, and every component is compiled in memory.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache directory: `$XDG_CACHE_HOME/gateway`, else `~/.cache/gateway`; `None`
/// when neither variable is set (never a shared directory).
pub fn default_dir() -> Option<PathBuf> {
    dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(xdg) = xdg.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("gateway"));
    }
    home.filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("gateway"))
}

/// Make `dir` ready as the cache: create it (`0700`) if missing, then check it is a directory
/// owned by this process's user and not writable by group or others. `None`, with one warning
/// saying why, if it cannot be used.
pub fn prepare(dir: &Path) -> Option<PathBuf> {
    match usable(dir) {
        Ok(()) => Some(dir.to_path_buf()),
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), "not caching compiled plugins: {reason}");
            None
        }
    }
}

fn usable(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    // `symlink_metadata`: a link planted in place of the directory is refused, not followed.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    let uid = effective_uid();
    if meta.uid() != uid {
        return Err(format!(
            "owned by uid {}, not by this process (uid {uid})",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {mode:o}; `chmod 700` it)"
        ));
    }
    Ok(())
}

/// The process's effective user id.
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: `geteuid` takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
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
    if let Err(e) = store(&component, &file) {
        tracing::warn!(dir = %dir.display(), "cannot cache compiled plugin: {e}");
    }
    Ok(component)
}

fn store(component: &Component, file: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// Loading native code is `unsafe` in wasmtime because a tampered file could run anything.
/// The file is one this gateway wrote into its own cache directory — which [`prepare`] made
/// sure only this user can write — named by the hash of the module it was compiled from, and
/// wasmtime itself rejects artifacts of another version or configuration.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see above; the artifact was produced by `Component::serialize` of this gateway.
    unsafe { Component::deserialize_file(engine, file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gateway-cache-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_cache_dir_is_private() {
        let dir = scratch("new").join("nested");
        assert_eq!(prepare(&dir), Some(dir.clone()));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_dir_others_may_write_is_refused() {
        let dir = scratch("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            usable(&dir).unwrap_err(),
            "writable by group or others (mode 777; `chmod 700` it)"
        );
        assert_eq!(prepare(&dir), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(prepare(&dir), Some(dir.clone()));
    }

    #[test]
    fn a_symlink_or_file_is_refused() {
        let dir = scratch("link");
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("cache");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(usable(&link).unwrap_err(), "not a directory");
    }

    #[test]
    fn no_home_means_no_cache_not_a_shared_dir() {
        assert_eq!(dir_from(None, None), None);
        assert_eq!(dir_from(Some("".into()), Some("".into())), None);
        assert_eq!(
            dir_from(None, Some("/home/op".into())),
            Some(PathBuf::from("/home/op/.cache/gateway"))
        );
        assert_eq!(
            dir_from(Some("/xdg".into()), Some("/home/op".into())),
            Some(PathBuf::from("/xdg/gateway"))
        );
    }
}
