//! `gateway check`: every error with file:line:column, key path and a readable reason.
//! Snapshot tests of the exact text operators see.

use crate::support::check_config;
use crate::support::wasm::test_plugin;

const HEAD: &str =
    "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.users]\ntargets = [\"127.0.0.1:9001\"]\n";

#[test]
fn typo_in_a_key() {
    let text = format!(
        "{HEAD}\n[[routes]]\nname = \"users\"\nmatch = {{ path_prefix = \"/\" }}\nupstreem = \"users\"\n"
    );
    let out = check_config("typo.toml", &text);
    assert_eq!(out.code, 1);
    let first = out.stderr.lines().next().unwrap();
    assert!(
        first.starts_with(
            "DIR/typo.toml:10:1: routes[0].upstreem: unknown field `upstreem`, expected one of"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_upstream() {
    let text = format!(
        "{HEAD}\n[[routes]]\nname = \"users\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"userz\"\n"
    );
    let out = check_config("missing.toml", &text);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "DIR/missing.toml:10:12: routes[0].upstream: upstream `userz` is not defined (defined: users)"
    );
}

#[test]
fn several_errors_reported_at_once() {
    let text = format!(
        "{HEAD}\n[[routes]]\nname = \"a\"\nmatch = {{ path_prefix = \"nope\", methods = [\"get\"] }}\nupstream = \"users\"\n\n[[routes]]\nname = \"a\"\nmatch = {{}}\nupstream = \"users\"\nplugins = [ {{ use = \"ghost\" }} ]\n"
    );
    let out = check_config("many.toml", &text);
    assert_eq!(out.code, 1);
    let expected = [
        "DIR/many.toml:9:25: routes[0].match.path_prefix: `nope` must start with `/`",
        "DIR/many.toml:9:44: routes[0].match.methods[0]: `get` is not an upper-case HTTP method",
        "DIR/many.toml:13:8: routes[1].name: duplicate route name `a`",
        "DIR/many.toml:16:21: routes[1].plugins[0].use: plugin `ghost` is not defined (defined: none)",
        "DIR/many.toml: 4 error(s)",
    ];
    assert_eq!(
        out.stderr.lines().collect::<Vec<_>>(),
        expected,
        "{}",
        out.stderr
    );
}

#[test]
fn plugin_init_rejects_its_config() {
    let text = format!(
        "{HEAD}\n[plugins.misbehave]\nmodule = {:?}\ncapabilities = [\"log\"]\n\n[[routes]]\nname = \"users\"\nmatch = {{}}\nupstream = \"users\"\nplugins = [\n  {{ use = \"misbehave\", config = {{ mode = \"init-fail\" }} }},\n]\n",
        test_plugin("test-misbehave")
    );
    let out = check_config("init.toml", &text);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "DIR/init.toml:16:33: routes[0].plugins[0].config: plugin `misbehave` rejected its config for route `users`: misbehave: config rejected on purpose"
    );
}

#[test]
fn unknown_builtin_and_bad_capability() {
    let text =
        format!("{HEAD}\n[plugins.x]\nmodule = \"builtin:nope\"\ncapabilities = [\"network\"]\n");
    let out = check_config("builtin.toml", &text);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "DIR/builtin.toml:9:17: plugins.x.capabilities[0]: unknown capability `network` (known: log, clock, crypto, counters, kv, wasi)"
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
