//! The compiled-plugin cache runs native code, so it only lives where only this user can
//! write: a new directory is made `0700`, one others may write is refused (the gateway runs,
//! compiling in memory), and without `HOME` or `XDG_CACHE_HOME` there is no cache at all,
//! never one under the shared temp directory.

use crate::support::scratch_dir;
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
