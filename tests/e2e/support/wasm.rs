//! Builds the test plugins (`tests/plugins/*`, for wasm32-wasip2) and the Python plugin once
//! per test run, and says where they are.

use super::root;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const TEST_PLUGINS: &[&str] = &[
    "test-misbehave",
    "test-fs-reader",
    "test-tagger",
    "test-kv-probe",
    "test-metrics-probe",
];

/// Path of the compiled test plugin `package` (e.g. `test-misbehave`).
pub fn test_plugin(package: &str) -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target_dir = root().join("target").join("wasm");
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(root())
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "wasm",
                "--target-dir",
            ])
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS");
        for package in TEST_PLUGINS {
            command.args(["-p", package]);
        }
        let status = command.status().expect("run cargo");
        assert!(status.success(), "building test plugins failed");
        target_dir.join("wasm32-wasip2").join("wasm")
    });
    dir.join(format!("{}.wasm", package.replace('-', "_")))
        .display()
        .to_string()
}

/// Path of the Python tagger component, built with componentize-py.
pub fn python_tagger() -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = root()
                .join("target")
                .join("wasm")
                .join("python-tagger.wasm");
            let status = Command::new("bash")
                .arg(
                    root()
                        .join("plugins")
                        .join("python-tagger")
                        .join("build.sh"),
                )
                .arg(&out)
                .status()
                .expect("run build.sh");
            assert!(status.success(), "building the Python plugin failed");
            out
        })
        .display()
        .to_string()
}

/// The head of a config for tests with misbehaving plugins: `[server]`, the upstream `up` on
/// `up`, and one `[plugins.NAME]` table per `(NAME, extra keys)` with the `test-misbehave`
/// module and every capability it imports. Routes follow.
pub fn misbehave_config(up: &super::Upstream, plugins: &[(&str, &str)]) -> String {
    let module = test_plugin("test-misbehave");
    let mut config = format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n",
        super::server_section(),
        up.target()
    );
    for (name, extra) in plugins {
        config.push_str(&format!(
            "\n[plugins.{name}]\nmodule = {module:?}\n\
             capabilities = [\"log\", \"clock\", \"kv\", \"counters\"]\n{extra}\n"
        ));
    }
    config
}
