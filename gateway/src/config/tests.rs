//! Config parsing and static validation: the example files parse, and invalid configs give
//! exactly the error text operators will read.

use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse("g.toml", text, PathBuf::from(".")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const HEAD: &str =
    "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.u]\ntargets = [\"127.0.0.1:1\"]\n";

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen > 0);
}

#[test]
fn invalid_configs_snapshot() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[server]\nlisten = [\"nope\"]\n",
            &[
                "g.toml:2:11: server.listen[0]: `nope` is not an IP:port address (e.g. 127.0.0.1:8080)",
            ],
        ),
        (
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkerz = 2\n",
            &[
                "g.toml:3:1: server.workerz: unknown field `workerz`, expected one of `listen`, `workers`, `plugin_cache_dir`, `shutdown_grace_s`, `idle_timeout_s`",
            ],
        ),
        (
            "[server]\nlisten = 8080\n",
            &["g.toml:2:10: server.listen: invalid type: integer `8080`, expected a sequence"],
        ),
        (
            &format!("{HEAD}[upstreams.v]\ntargets = []\nconnect_timeout_ms = 0\n"),
            &[
                "g.toml:6:11: upstreams.v.targets: at least one target is required",
                "g.toml:7:22: upstreams.v.connect_timeout_ms: must be greater than 0",
            ],
        ),
        (
            &format!(
                "{HEAD}[plugins.p]\nmodule = \"x.wasm\"\nsha256 = \"abc\"\nmemory_mb = 0\nisolation = \"thread\"\n"
            ),
            &[
                "g.toml:9:13: plugins.p.isolation: unknown variant `thread`, expected `pooled` or `request`",
            ],
        ),
        (
            &format!(
                "{HEAD}[plugins.p]\nmodule = \"x.wasm\"\nsha256 = \"abc\"\nmemory_mb = 0\nerror_status = 200\n"
            ),
            &[
                "g.toml:7:10: plugins.p.sha256: must be 64 hex digits (a SHA-256)",
                "g.toml:8:13: plugins.p.memory_mb: must be between 1 and 4096",
                "g.toml:9:16: plugins.p.error_status: must be an error status, 400 to 599",
            ],
        ),
        (
            &format!(
                "{HEAD}[[routes]]\nname = \"r\"\nmatch = {{ path = \"/a\", path_prefix = \"/b\" }}\nstrip_prefix = true\n"
            ),
            &[
                "g.toml:7:9: routes[0].match: give `path` or `path_prefix`, not both",
                "g.toml:5:1: routes[0]: a route needs an `upstream` or plugins that answer requests",
            ],
        ),
        (
            &format!(
                "{HEAD}[[routes]]\nname = \"r\"\nmatch = {{ hosts = [\"a.*.com\"], headers = {{ \"bad header\" = \"1\" }} }}\nupstream = \"u\"\n"
            ),
            &[
                "g.toml:7:20: routes[0].match.hosts[0]: `a.*.com` is not a host name or `*.domain` wildcard",
                "g.toml:7:59: routes[0].match.headers.bad header: `bad header` is not a header name",
            ],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(errors(text), *expected, "config:\n{text}");
    }
}

#[test]
fn limits_override_per_use() {
    let text = format!(
        "{HEAD}[plugins.p]\nmodule = \"x.wasm\"\ntimeout_ms = 5\nmemory_mb = 8\n[[routes]]\nname = \"r\"\nmatch = {{}}\nupstream = \"u\"\nplugins = [ {{ use = \"p\", timeout_ms = 50, on_error = \"allow\" }} ]\n"
    );
    let loaded = parse("g.toml", &text, PathBuf::from(".")).unwrap_or_else(|e| panic!("{e}"));
    let plugin = loaded.config.plugins["p"].limits();
    let use_ = loaded.config.routes[0].plugins[0].limits();
    let effective = plugin.overridden_by(&use_);
    assert_eq!(effective.timeout_ms, Some(50));
    assert_eq!(effective.memory_mb, Some(8));
    assert_eq!(effective.on_error, Some(OnError::Allow));
}
