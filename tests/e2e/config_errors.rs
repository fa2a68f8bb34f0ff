//! `gateway check`: every error with file:line:column, key path and a readable reason.
//! Snapshot tests of the exact text operators see: one invalid config per file in `tests/ui/`,
//! its expected output beside it (`NAME.toml` → `NAME.stderr`); `BLESS=1` rewrites the
//! expected files after an intended change (then read the diff).

use crate::support::check_config;
use crate::support::wasm::test_plugin;
use std::process::Command;

#[test]
fn ui_snapshots() {
    let root = crate::support::root();
    let mut names: Vec<String> = std::fs::read_dir(root.join("tests/ui"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    names.sort();
    let bless = std::env::var_os("BLESS").is_some();
    let mut wrong = Vec::new();
    for name in &names {
        let config = format!("tests/ui/{name}.toml");
        let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--config", &config])
            .current_dir(&root)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let expected_file = root.join(format!("tests/ui/{name}.stderr"));
        if bless {
            std::fs::write(&expected_file, &stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if output.status.code() != Some(1) || stderr != expected {
            wrong.push(format!(
                "{config}: exit {:?}\n--- expected\n{expected}--- got\n{stderr}",
                output.status.code()
            ));
        }
    }
    assert!(names.len() >= 13, "ui cases: {names:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const HEAD: &str =
    "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.users]\ntargets = [\"127.0.0.1:9001\"]\n";

#[test]
fn plugin_init_rejects_its_config() {
    let text = format!(
        "{HEAD}\n[plugins.misbehave]\nmodule = {:?}\ncapabilities = [\"log\", \"clock\", \"kv\", \"counters\"]\n\n[[routes]]\nname = \"users\"\nmatch = {{}}\nupstream = \"users\"\nplugins = [\n  {{ use = \"misbehave\", config = {{ mode = \"init-fail\" }} }},\n]\n",
        test_plugin("test-misbehave")
    );
    let out = check_config("init.toml", &text);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "DIR/init.toml:16:33: routes[0].plugins[0].config: plugin `misbehave` rejected its config for route `users`: misbehave: config rejected on purpose"
    );
}

/// A plugin built against an incompatible version of the interface (here `gateway:plugin@0.1.0`)
/// is refused at load with both versions named, not with a raw linker error.
#[test]
fn a_plugin_built_for_another_wit_version_is_refused_by_name() {
    let module = crate::support::root().join("tests/fixtures/tagger-wit-0.1.0.wasm");
    let text = format!(
        "{HEAD}\n[plugins.old]\nmodule = {:?}\ncapabilities = [\"log\"]\n\n[[routes]]\nname = \"users\"\nmatch = {{}}\nupstream = \"users\"\nplugins = [ {{ use = \"old\" }} ]\n",
        module.display().to_string()
    );
    let out = check_config("old.toml", &text);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let first = out.stderr.lines().next().unwrap();
    assert!(
        first.starts_with("DIR/old.toml:")
            && first.contains("plugin `old`: component imports `gateway:plugin/")
            && first.contains("@0.1.0`, but this gateway provides gateway:plugin@0.2.1 (compatible: the same 0.2.x); rebuild the plugin against this gateway's wit/"),
        "{}",
        out.stderr
    );
}

#[test]
fn example_configs_pass_check() {
    let root = crate::support::root();
    for entry in std::fs::read_dir(root.join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = crate::support::gateway_cli(&["check", "--config", path.to_str().unwrap()]);
            assert_eq!(out.code, 0, "{}: {}", path.display(), out.stderr);
        }
    }
}
