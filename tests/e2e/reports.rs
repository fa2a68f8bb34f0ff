//! A plugin's failures and its log lines reach the operator honestly and in proportion: each
//! trap's one failure record names its kind (stack overflow, out-of-bounds access,
//! `unreachable`, `exit` with its status) and the plugin's innermost frames, and a plugin
//! flooding the log writes at most its per-call budget plus one summary record, while its
//! request still succeeds.

use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, server_section};

/// One route per misbehave `mode`, each at `/MODE`.
fn config(up: &Upstream, modes: &[&str]) -> String {
    let mut text = format!(
        "{server}\n[upstreams.up]\ntargets = [{target}]\n\n[plugins.misbehave]\nmodule = {module:?}\ncapabilities = [\"log\", \"clock\", \"counters\", \"kv\"]\ntimeout_ms = 5000\n\n",
        server = server_section(),
        target = up.target(),
        module = test_plugin("test-misbehave"),
    );
    for mode in modes {
        text.push_str(&format!(
            "[[routes]]\nname = \"{mode}\"\nmatch = {{ path = \"/{mode}\" }}\nupstream = \"up\"\nplugins = [ {{ use = \"misbehave\", config = {{ mode = \"{mode}\" }} }} ]\n\n"
        ));
    }
    text
}

/// Every distinct kind a trap record may name.
const KINDS: &[&str] = &[
    "StackOverflow",
    "MemoryOutOfBounds",
    "UnreachableCodeReached",
    "exit with status",
];

#[tokio::test]
async fn each_trap_names_its_kind_and_frames_in_one_record() {
    // `panic` is `unreachable` too: the plugin is built with `panic = "abort"`.
    let cases = [
        ("stack-overflow", "StackOverflow"),
        ("out-of-bounds", "MemoryOutOfBounds"),
        ("unreachable", "UnreachableCodeReached"),
        ("panic", "UnreachableCodeReached"),
        // `exit(3)` reaches the host as `wasi:cli/exit.exit(err)`: WASI 0.2 carries only
        // success or failure (its `exit-with-code` is unstable), so the status is 1.
        ("exit", "exit with status 1"),
    ];
    let up = Upstream::echo("up").await;
    let modes: Vec<&str> = cases.iter().map(|(mode, _)| *mode).collect();
    let gw = Gateway::start(&config(&up, &modes));
    let client = HttpClient::http1();
    for (mode, _) in &cases {
        let reply = client.get(&gw.url(&format!("/{mode}")), &[]).await;
        assert_eq!(reply.status, 500, "{mode}: {}", reply.text());
    }
    let log = gw.log();
    for (mode, kind) in &cases {
        let records: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("plugin failed") && l.contains(&format!("route={mode} ")))
            .collect();
        assert_eq!(records.len(), 1, "{mode}: one record per failure\n{log}");
        let record = records[0];
        eprintln!("{mode}: {record}");
        assert!(
            record.contains(&format!("trap: {kind}")),
            "{mode}: {record}"
        );
        if *mode == "stack-overflow" {
            assert!(record.contains(" more"), "a deep recursion: {record}");
            assert!(
                record.contains("test_misbehave::recurse < test_misbehave::recurse"),
                "frames by demangled name: {record}"
            );
        }
        for other in KINDS.iter().filter(|k| !kind.starts_with(**k)) {
            assert!(!record.contains(other), "{mode} names {other}: {record}");
        }
        assert!(
            !record.contains("error while executing"),
            "wasmtime's generic first line is replaced: {record}"
        );
        assert!(record.contains(" in "), "{mode}: frames named: {record}");
    }
    assert_eq!(up.count(), 0, "every trap failed its request closed");
}

#[tokio::test]
async fn a_log_flood_writes_its_budget_and_one_summary_and_the_request_succeeds() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&config(&up, &["log-flood"]));
    let client = HttpClient::http1();
    let started = std::time::Instant::now();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = client
        .get(&gw.url("/log-flood"), &[("traceparent", trace)])
        .await;
    eprintln!("a flooding call took {:?}", started.elapsed());
    assert_eq!(reply.status, 200, "{}", reply.text());
    let log = gw.log();
    let flood_line = "f".repeat(100);
    let written = log.lines().filter(|l| l.contains(&flood_line)).count();
    // Each of the plugin's lines names its request and trace.
    let request_id = reply.header("x-request-id").unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains(&flood_line))
            .all(|l| l.contains(request_id) && l.contains("4bf92f3577b34da6a3ce929d0e0e4736")),
        "{log}"
    );
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("over its log budget"))
        .collect();
    assert_eq!(written, 100, "the per-call budget of lines, no more");
    assert_eq!(summaries.len(), 1, "one summary per call\n{summaries:?}");
    assert!(
        summaries[0].contains("plugin misbehave")
            && summaries[0].contains("100 lines / 16 KiB per call"),
        "{}",
        summaries[0]
    );
    assert!(
        log.len() < 64 << 10,
        "the log stays small: {} bytes",
        log.len()
    );
}
