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
//!
//! A private directory is not enough: the file *name* is all that ties an artifact to the
//! module it came from, so a file copied or renamed into place (another plugin's artifact
//! under a pinned plugin's name, a backup restored over the cache, a flipped bit) would run as
//! the pinned plugin, and the `sha256` pin would prove nothing. So every artifact carries an
//! HMAC-SHA256 over its key (module SHA-256 and engine hash) and its bytes, keyed by a
//! per-install secret kept *outside* the cache directory ([`key_file`]:
//! `$XDG_CONFIG_HOME/gateway/cache.key` or `~/.config/gateway/cache.key`, 32 random bytes,
//! `0600`, its directory held to the same rules as the cache's). The MAC is checked on the
//! bytes in memory, before anything is deserialized; a file that fails is logged by name,
//! recompiled and rewritten. Without a usable key there is no cache. The check reads the whole
//! artifact instead of mapping it: a 592 KiB artifact loads in 1.42 ms instead of 0.22 ms
//! (`cargo bench --bench micro -- cache_load`, AMD EPYC VM), once per plugin at load — still
//! far below compiling it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    owned_by_us(&meta)?;
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

/// File name of the per-install MAC key, in [`key_dir`].
const KEY_FILE: &str = "cache.key";

/// Bytes of the MAC key.
const KEY_LEN: usize = 32;

/// Bytes of the MAC that starts every artifact file.
const MAC_LEN: usize = 32;

/// Separates the MAC input's parts; bumped if the file format changes.
const MAC_DOMAIN: &[u8] = b"gateway plugin cache v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Where the cache key lives by default: `$XDG_CONFIG_HOME/gateway`, else
/// `~/.config/gateway`; `None` when neither variable is set.
pub fn key_dir() -> Option<PathBuf> {
    key_dir_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn key_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(xdg) = xdg.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("gateway"));
    }
    home.filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".config").join("gateway"))
}

/// The default key file, `cache.key` in [`key_dir`].
pub fn key_file() -> Option<PathBuf> {
    key_dir().map(|dir| dir.join(KEY_FILE))
}

/// A usable cache: a private directory and the secret that authenticates its artifacts.
pub struct Cache {
    dir: PathBuf,
    /// HMAC-SHA256 keyed with the install's secret, cloned for each artifact.
    keyed: HmacSha256,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Cache").field("dir", &self.dir).finish()
    }
}

impl Cache {
    /// The cache in `dir` (see [`prepare`]) with the key in `key_file` (created on first use).
    /// `None`, with one warning saying why, when either cannot be used: no cache then.
    pub fn open(dir: &Path, key_file: Option<&Path>) -> Option<Cache> {
        let dir = prepare(dir)?;
        let Some(key_file) = key_file else {
            tracing::warn!(
                dir = %dir.display(),
                "not caching compiled plugins: no place for the cache key \
                 (neither XDG_CONFIG_HOME nor HOME is set)"
            );
            return None;
        };
        let keyed = load_key(&dir, key_file).and_then(|key| {
            <HmacSha256 as Mac>::new_from_slice(&key).map_err(|e| format!("not a MAC key: {e}"))
        });
        match keyed {
            Ok(keyed) => Some(Cache { dir, keyed }),
            Err(reason) => {
                tracing::warn!(
                    key_file = %key_file.display(),
                    "not caching compiled plugins: cache key unusable: {reason}"
                );
                None
            }
        }
    }

    /// The directory artifacts are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact file for a module (its hex SHA-256) on an engine (its hash, hex).
    fn file(&self, module_sha: &str, engine_hash: &str) -> PathBuf {
        self.dir.join(format!("{module_sha}-{engine_hash}.cwasm"))
    }

    fn mac(&self, module_sha: &str, engine_hash: &str) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        for part in [
            MAC_DOMAIN,
            module_sha.as_bytes(),
            b"\0",
            engine_hash.as_bytes(),
            b"\0",
        ] {
            mac.update(part);
        }
        mac
    }

    /// `MAC || artifact`, what a cache file holds.
    fn seal(&self, module_sha: &str, engine_hash: &str, artifact: &[u8]) -> Vec<u8> {
        let mut mac = self.mac(module_sha, engine_hash);
        mac.update(artifact);
        let tag = mac.finalize().into_bytes();
        let mut file = Vec::with_capacity(MAC_LEN + artifact.len());
        file.extend_from_slice(&tag);
        file.extend_from_slice(artifact);
        file
    }

    /// The artifact in `file` (as [`Cache::seal`] made it) if its MAC holds for this key.
    fn open_sealed<'a>(
        &self,
        module_sha: &str,
        engine_hash: &str,
        file: &'a [u8],
    ) -> Result<&'a [u8], &'static str> {
        if file.len() < MAC_LEN {
            return Err("too short to hold its MAC");
        }
        let (tag, artifact) = file.split_at(MAC_LEN);
        let mut mac = self.mac(module_sha, engine_hash);
        mac.update(artifact);
        mac.verify_slice(tag).map_err(
            |_| "its MAC does not match (not written by this install for this module, or altered)",
        )?;
        Ok(artifact)
    }
}

/// Read the key in `key_file`, or create it: its directory held to [`prepare`]'s rules and
/// not the cache directory itself; the file a regular file of this user, `0600`, 32 bytes.
fn load_key(cache_dir: &Path, key_file: &Path) -> Result<[u8; KEY_LEN], String> {
    let key_dir = key_file
        .parent()
        .ok_or_else(|| "the key file has no directory".to_string())?;
    usable(key_dir).map_err(|reason| format!("its directory {}: {reason}", key_dir.display()))?;
    if same_dir(key_dir, cache_dir) {
        return Err("it would sit in the cache directory it authenticates".into());
    }
    if !key_file.exists() {
        create_key(key_file).map_err(|e| format!("cannot create it: {e}"))?;
    }
    read_key(key_file)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// 32 fresh random bytes, written to a private temporary file and linked into place, so two
/// gateways starting at once agree on one key and nobody reads a half-written one.
fn create_key(key_file: &Path) -> std::io::Result<()> {
    let mut key = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let tmp = key_file.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, key_file) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Whether a file or directory belongs to this process's user.
fn owned_by_us(meta: &std::fs::Metadata) -> Result<(), String> {
    let uid = effective_uid();
    if meta.uid() != uid {
        return Err(format!(
            "owned by uid {}, not by this process (uid {uid})",
            meta.uid()
        ));
    }
    Ok(())
}

fn read_key(key_file: &Path) -> Result<[u8; KEY_LEN], String> {
    // `symlink_metadata`: a link planted in place of the key is refused, not followed.
    let meta = std::fs::symlink_metadata(key_file).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    owned_by_us(&meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "readable or writable by group or others (mode {mode:o}; `chmod 600` it)"
        ));
    }
    let bytes = std::fs::read(key_file).map_err(|e| format!("cannot read it: {e}"))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{} bytes, not {KEY_LEN}", bytes.len()))
}

/// Compile `bytes` for `engine`, or load the cached artifact. Cache failures are logged and
/// never fatal: the component is then compiled in memory.
pub fn load(engine: &Engine, bytes: &[u8], cache: Option<&Cache>) -> wasmtime::Result<Component> {
    let Some(cache) = cache else {
        return Component::new(engine, bytes);
    };
    let module_sha = sha256_hex(bytes);
    let engine_hash = engine_hash(engine);
    let file = cache.file(&module_sha, &engine_hash);
    if file.exists() {
        match read_verified(cache, &module_sha, &engine_hash, &file, engine) {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(
                file = %file.display(),
                "ignoring cached plugin {}: {e}; recompiling",
                file.display()
            ),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(cache, &module_sha, &engine_hash, &component, &file) {
        tracing::warn!(dir = %cache.dir.display(), "cannot cache compiled plugin: {e}");
    }
    Ok(component)
}

fn engine_hash(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn store(
    cache: &Cache,
    module_sha: &str,
    engine_hash: &str,
    component: &Component,
    file: &Path,
) -> std::io::Result<()> {
    let artifact = component.serialize().map_err(std::io::Error::other)?;
    let sealed = cache.seal(module_sha, engine_hash, &artifact);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, sealed)?;
    std::fs::rename(&tmp, file)
}

/// Read `file` into memory, check its MAC, and only then deserialize the bytes.
fn read_verified(
    cache: &Cache,
    module_sha: &str,
    engine_hash: &str,
    file: &Path,
    engine: &Engine,
) -> wasmtime::Result<Component> {
    let sealed = std::fs::read(file)?;
    let artifact = cache
        .open_sealed(module_sha, engine_hash, &sealed)
        .map_err(|reason| wasmtime::format_err!("failed its integrity check: {reason}"))?;
    deserialize(engine, artifact)
}

/// Loading native code is `unsafe` in wasmtime because a tampered artifact could run
/// anything. These bytes carry a valid MAC under this install's secret key, over the module
/// hash and engine hash they were compiled for: only this gateway's [`store`] made them, for
/// exactly this module; and wasmtime itself rejects artifacts of another version or
/// configuration.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see above; the artifact was produced by `Component::serialize` of this gateway.
    unsafe { Component::deserialize(engine, artifact) }
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

    fn cache(name: &str) -> (Cache, PathBuf) {
        let root = scratch(name);
        let key = root.join("config").join(KEY_FILE);
        let cache = Cache::open(&root.join("cache"), Some(&key)).unwrap();
        (cache, key)
    }

    #[test]
    fn a_new_key_is_private_and_reused() {
        let (first, key) = cache("key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&key).unwrap().len(), KEY_LEN);
        let sealed = first.seal("aa", "bb", b"artifact");
        let again = Cache::open(first.dir(), Some(&key)).unwrap();
        assert_eq!(again.open_sealed("aa", "bb", &sealed), Ok(&b"artifact"[..]));
    }

    #[test]
    fn an_artifact_is_bound_to_its_bytes_its_module_and_its_engine() {
        let (cache, _) = cache("mac");
        let sealed = cache.seal("aa", "bb", b"artifact");
        assert!(cache.open_sealed("aa", "bb", &sealed).is_ok());
        assert!(
            cache.open_sealed("ab", "bb", &sealed).is_err(),
            "another module"
        );
        assert!(
            cache.open_sealed("aa", "bc", &sealed).is_err(),
            "another engine"
        );
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(
            cache.open_sealed("aa", "bb", &flipped).is_err(),
            "a flipped bit"
        );
        assert!(cache.open_sealed("aa", "bb", b"short").is_err());
        let (other_install, _) = self::cache("mac-other");
        assert!(
            other_install.open_sealed("aa", "bb", &sealed).is_err(),
            "another key"
        );
    }

    #[test]
    fn a_key_others_may_read_or_inside_the_cache_is_refused() {
        let (_, key) = cache("key-mode");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir = key.parent().unwrap().to_path_buf();
        assert!(
            load_key(&scratch("key-mode-cache"), &key)
                .unwrap_err()
                .starts_with("readable or writable by group or others")
        );
        assert_eq!(
            load_key(&dir, &dir.join("other.key")).unwrap_err(),
            "it would sit in the cache directory it authenticates"
        );
        std::fs::write(dir.join("short.key"), b"x").unwrap();
        std::fs::set_permissions(
            dir.join("short.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(
            read_key(&dir.join("short.key")).unwrap_err(),
            "1 bytes, not 32"
        );
    }

    #[test]
    fn the_key_lives_in_the_config_dir_not_the_cache_dir() {
        assert_eq!(key_dir_from(None, None), None);
        assert_eq!(
            key_dir_from(None, Some("/home/op".into())),
            Some(PathBuf::from("/home/op/.config/gateway"))
        );
        assert_eq!(
            key_dir_from(Some("/xdg".into()), Some("/home/op".into())),
            Some(PathBuf::from("/xdg/gateway"))
        );
    }
}
