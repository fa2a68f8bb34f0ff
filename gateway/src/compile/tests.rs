//! The static half of compiling: the example files pass, limits resolve per use. (Invalid
//! configs and their exact error text are the snapshot files of `tests/ui/`, checked through
//! the real binary by the e2e suite.)

use crate::config::{OnError, load, parse};
use std::path::{Path, PathBuf};

fn errors(text: &str) -> Vec<String> {
    let loaded = match parse("g.toml", text, PathBuf::from(".")) {
        Ok(loaded) => loaded,
        Err(errors) => return errors.0.iter().map(ToString::to_string).collect(),
    };
    match super::validate::check(&loaded.config, &loaded.source) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
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
            let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
            if let Err(errors) = super::validate::check(&loaded.config, &loaded.source) {
                panic!("{}", crate::config::ConfigErrors(errors));
            }
            seen += 1;
        }
    }
    assert!(seen > 0);
}

#[test]
fn limits_override_per_use() {
    let text = format!(
        "{HEAD}[plugins.p]\nmodule = \"x.wasm\"\ntimeout_ms = 5\nmemory_mb = 8\n[[routes]]\nname = \"r\"\nmatch = {{}}\nupstream = \"u\"\nplugins = [ {{ use = \"p\", timeout_ms = 50, on_error = \"allow\" }} ]\n"
    );
    assert_eq!(errors(&text), Vec::<String>::new());
    let loaded = parse("g.toml", &text, PathBuf::from(".")).unwrap_or_else(|e| panic!("{e}"));
    let plugin = loaded.config.plugins["p"].limits();
    let use_ = loaded.config.routes[0].plugins[0].limits();
    let effective = plugin.overridden_by(&use_);
    assert_eq!(effective.timeout_ms, Some(50));
    assert_eq!(effective.memory_mb, Some(8));
    assert_eq!(effective.on_error, Some(OnError::Allow));
}
