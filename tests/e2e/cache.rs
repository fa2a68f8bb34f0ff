//! The compiled-plugin cache runs native code, so it only lives where only this user can
//! write: a new directory is made `0700`, one others may write is refused (the gateway runs,
//! compiling in memory), and without `HOME` or `XDG_CACHE_HOME` there is no cache at all,
//! never one under the shared temp directory. An artifact is authenticated by a MAC under a
//! per-install key kept outside the cache: another plugin's artifact swapped in, or a flipped
//! byte, is refused by name and recompiled, and the pinned route runs its own plugin.

use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, scratch_dir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// `gateway check` on a one-plugin config, its cache dir line given; (exit code, stderr).
fn check(dir: &Path, cache_line: &str, env: &[(&str, Option<&Path>)]) -> (i32, String) {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{cache_line}\n[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n\n[plugins.rt]\nmodule = \"builtin:request-transformer\"\n\n[[routes]]\nname = \"r\"\nmatch = {{}}\nupstream = \"up\"\nplugins = [ {{ use = \"rt\" }} ]\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .args(["check", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn artifacts(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_cache_dir_others_may_write_is_refused_and_a_new_one_is_private() {
    let dir = scratch_dir("cache");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stderr) = check(&dir, &format!("plugin_cache_dir = {:?}", shared), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("not caching compiled plugins: writable by group or others"),
        "{stderr}"
    );
    assert_eq!(artifacts(&shared), 0, "nothing is written to a shared dir");

    let private = dir.join("new").join("cache");
    let (code, stderr) = check(&dir, &format!("plugin_cache_dir = {:?}", private), &[]);
    assert_eq!(code, 0, "{stderr}");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(artifacts(&private), 1, "the compiled plugin is cached");
}

#[test]
fn without_home_there_is_no_cache_and_nothing_in_the_temp_dir() {
    let dir = scratch_dir("cache-nohome");
    let temp = dir.join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    let (code, stderr) = check(
        &dir,
        "",
        &[
            ("HOME", None),
            ("XDG_CACHE_HOME", None),
            ("TMPDIR", Some(temp.as_path())),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
    assert!(left.is_empty(), "the temp dir holds {left:?}");
}

fn file_sha256(path: &str) -> String {
    crate::support::sha256_hex(&std::fs::read(path).unwrap())
}

/// The cache file compiled from the module with hex SHA-256 `sha`.
fn artifact(cache: &Path, sha: &str) -> std::path::PathBuf {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(sha) && n.ends_with(".cwasm"))
        })
        .unwrap_or_else(|| panic!("no artifact for {sha} in {}", cache.display()))
}

/// Start the gateway on the tagger (pinned) and misbehave plugins, with its own cache and key
/// location; check the tagger route runs the tagger; return the gateway's log.
async fn run_pinned(dir: &Path, tagger: &str, misbehave: &str) -> String {
    let up = Upstream::echo("up").await;
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
plugin_cache_dir = {cache:?}
shutdown_grace_s = 1

[upstreams.up]
targets = [{target}]

[plugins.tagger]
module = {tagger:?}
sha256 = "{pin}"
capabilities = ["log"]

[plugins.misbehave]
module = {misbehave:?}
capabilities = ["log", "clock", "counters", "kv"]

[[routes]]
name = "tagged"
match = {{ path = "/tagged" }}
upstream = "up"
plugins = [ {{ use = "tagger", config = {{ name = "T" }} }} ]

[[routes]]
name = "other"
match = {{ path = "/other" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "ok" }} }} ]
"#,
        cache = dir.join("cache"),
        target = up.target(),
        pin = file_sha256(tagger),
    );
    let config_home = dir.join("config");
    let started = std::time::Instant::now();
    let gw = Gateway::start_env(&config, "info", &[("XDG_CONFIG_HOME", &config_home)]);
    eprintln!("gateway up in {:?}", started.elapsed());
    let reply = HttpClient::http1().get(&gw.url("/tagged"), &[]).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), gw.log());
    assert_eq!(
        reply.header("x-chain-response"),
        Some("T"),
        "the pinned route runs the tagger; log:\n{}",
        gw.log()
    );
    let mode = std::fs::metadata(config_home.join("gateway").join("cache.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    gw.log()
}

#[tokio::test]
async fn a_swapped_or_altered_artifact_is_refused_by_name_and_the_pin_holds() {
    let dir = scratch_dir("cache-mac");
    let cache = dir.join("cache");
    let (tagger, misbehave) = (test_plugin("test-tagger"), test_plugin("test-misbehave"));
    let log = run_pinned(&dir, &tagger, &misbehave).await;
    assert!(!log.contains("ignoring cached plugin"), "{log}");
    assert_eq!(artifacts(&cache), 2, "both plugins are cached");
    let tagger_file = artifact(&cache, &file_sha256(&tagger));
    let misbehave_file = artifact(&cache, &file_sha256(&misbehave));

    // Warm: both load from the cache, nothing is refused.
    let log = run_pinned(&dir, &tagger, &misbehave).await;
    assert!(!log.contains("ignoring cached plugin"), "{log}");

    // Another plugin's (validly made) artifact under the pinned plugin's name.
    std::fs::copy(&misbehave_file, &tagger_file).unwrap();
    let log = run_pinned(&dir, &tagger, &misbehave).await;
    let refused = format!("ignoring cached plugin {}", tagger_file.display());
    assert!(log.contains(&refused), "{log}");
    assert!(log.contains("failed its integrity check"), "{log}");
    assert!(
        !log.contains(&format!(
            "ignoring cached plugin {}",
            misbehave_file.display()
        )),
        "{log}"
    );

    // It was rewritten: the next start loads it again; then a flipped byte is refused too.
    let log = run_pinned(&dir, &tagger, &misbehave).await;
    assert!(!log.contains("ignoring cached plugin"), "{log}");
    let mut bytes = std::fs::read(&tagger_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&tagger_file, bytes).unwrap();
    let log = run_pinned(&dir, &tagger, &misbehave).await;
    assert!(log.contains(&refused), "{log}");
}
