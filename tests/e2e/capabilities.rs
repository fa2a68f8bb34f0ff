//! Deny by default: a component importing an interface it was not granted is refused at load,
//! by `gateway check` and `gateway run`, with the import named; granted WASI reaches nothing.

use crate::support::wasm::test_plugin;
use crate::support::{
    Gateway, HttpClient, Upstream, check_config, gateway_cli, scratch_dir, server_section,
};

fn config(module: &str, capabilities: &str) -> String {
    format!(
        r#"{}
[upstreams.up]
targets = ["127.0.0.1:9"]

[plugins.p]
module = {module:?}
capabilities = {capabilities}

[[routes]]
name = "r"
match = {{}}
upstream = "up"
plugins = [ {{ use = "p" }} ]
"#,
        server_section()
    )
}

#[test]
fn ungranted_filesystem_import_is_refused_by_check_and_run() {
    let text = config(&test_plugin("test-fs-reader"), "[]");
    let out = check_config("fs.toml", &text);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("DIR/fs.toml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("plugins.p.capabilities"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("component imports `wasi:filesystem/"),
        "import not named: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("needs capability `wasi`"),
        "{}",
        out.stderr
    );

    let dir = scratch_dir("fs-run");
    let path = dir.join("fs.toml");
    std::fs::write(&path, &text).unwrap();
    let run = gateway_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("component imports `wasi:filesystem/"),
        "{}",
        run.stderr
    );
}

#[test]
fn ungranted_log_import_is_refused() {
    let out = check_config(
        "log.toml",
        &config(
            &test_plugin("test-misbehave"),
            "[\"clock\", \"kv\", \"counters\"]",
        ),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("component imports `gateway:plugin/log@0.2.1`, which needs capability `log` (granted: [clock, kv, counters])"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_wasi_still_reaches_no_files() {
    let up = Upstream::echo("up").await;
    let text = config(&test_plugin("test-fs-reader"), "[\"wasi\"]")
        .replace("\"127.0.0.1:9\"", &up.target());
    let gw = Gateway::start(&text);
    let reply = HttpClient::http1().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.text().starts_with("fs error"), "{}", reply.text());
    assert_eq!(up.count(), 0);
}

#[test]
fn inspect_reports_imports_grants_and_hash() {
    let module = test_plugin("test-fs-reader");
    let out = gateway_cli(&["plugin", "inspect", &module, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let bytes = std::fs::read(&module).unwrap();
    assert_eq!(report["size_bytes"], bytes.len());
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(report["is_gateway_filter"], true);
    assert_eq!(report["required_capabilities"], serde_json::json!(["wasi"]));
    let imports = report["imports"].as_array().unwrap();
    let fs = imports
        .iter()
        .find(|i| {
            i["name"]
                .as_str()
                .unwrap()
                .starts_with("wasi:filesystem/types")
        })
        .expect("filesystem import listed");
    assert_eq!(fs["grant"], "capability:wasi");
    assert_eq!(fs["kind"], "wasi");
    assert!(imports.iter().any(|i| i["grant"] == "baseline"));

    let text = gateway_cli(&["plugin", "inspect", "builtin:request-transformer"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("exports gateway:plugin/filter"),
        "{}",
        text.stdout
    );
}

#[test]
fn sha256_pin_mismatch_refuses_to_load() {
    let module = test_plugin("test-tagger");
    let text = config(&module, "[\"log\"]").replace(
        "capabilities = [\"log\"]",
        &format!("capabilities = [\"log\"]\nsha256 = \"{}\"", "0".repeat(64)),
    );
    let out = check_config("pin.toml", &text);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("plugins.p.sha256"), "{}", out.stderr);
    assert!(out.stderr.contains("refusing to load"), "{}", out.stderr);
}
