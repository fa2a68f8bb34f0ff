//! Workers: each is a thread with its own runtime and its own socket on every listening
//! address, and the kernel spreads connections over them; the epoch ticker thread stays
//! asleep while no plugin runs.

use crate::connections::{RawClient, get};
use crate::support::{Gateway, HttpClient, Upstream, server_section};
use std::time::{Duration, Instant};

/// A gateway with `workers` workers proxying `/plain` to `upstream`, and `/plugin` through a
/// pooled request-transformer.
fn gateway(upstream: &Upstream, workers: usize) -> Gateway {
    Gateway::start(&format!(
        r#"{server}workers = {workers}

[upstreams.echo]
targets = [{target}]

[plugins.rt]
module = "builtin:request-transformer"

[[routes]]
name = "plain"
match = {{ path_prefix = "/plain" }}
upstream = "echo"

[[routes]]
name = "plugin"
match = {{ path_prefix = "/plugin" }}
upstream = "echo"
plugins = [ {{ use = "rt", config = {{}} }} ]
"#,
        server = server_section(),
        target = upstream.target(),
    ))
}

/// Five keep-alive requests on one new connection; each must be answered 200.
async fn five_requests(gw: &Gateway) {
    let mut client = RawClient::connect(gw).await;
    for _ in 0..5 {
        client.send(&get("/plain")).await;
        let (status, body) = client.response().await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn every_worker_accepts_connections_on_the_shared_port() {
    let upstream = Upstream::echo("echo").await;
    let gw = gateway(&upstream, 2);
    // The sockets listen before the worker threads start.
    let start = Instant::now();
    let mut started = gw.threads("http-worker");
    while started.len() < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        started = gw.threads("http-worker");
    }
    // Let each finish starting (its accept loops) before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = gw.threads("http-worker");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["http-worker-0", "http-worker-1"],
        "one thread per worker"
    );

    // 64 connections: the kernel hashes each to one of the two sockets, so both get some.
    let clients: Vec<_> = (0..64).map(|_| five_requests(&gw)).collect();
    futures::future::join_all(clients).await;
    assert_eq!(upstream.count(), 64 * 5);

    // A worker only runs when one of its connections needs it.
    let after = gw.threads("http-worker");
    for (name, (ran_ns, _)) in &after {
        let ran_before = before[name].0;
        assert!(
            *ran_ns > ran_before,
            "{name} never ran: it accepted no connection ({ran_before} ns before, {ran_ns} after)"
        );
    }
}

#[tokio::test]
async fn the_epoch_ticker_sleeps_while_no_plugin_runs() {
    let upstream = Upstream::echo("echo").await;
    let gw = gateway(&upstream, 1);
    let client = HttpClient::http1();
    let ticker = || gw.threads("wasm-epoch")["wasm-epoch"].1;
    // A new thread takes its name a moment after it exists (it names itself as it starts).
    let named = Instant::now();
    while !gw.threads("wasm-epoch").contains_key("wasm-epoch") {
        assert!(
            named.elapsed() < Duration::from_secs(5),
            "no wasm-epoch thread"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Loading ran `init` in the plugin; the ticker sleeps ~100 ms after the last call. Wait
    // until it has been scheduled no more for a while.
    let start = Instant::now();
    let mut last = ticker();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = ticker();
        if now == last {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the epoch ticker never went to sleep"
        );
        last = now;
    }

    for _ in 0..100 {
        assert_eq!(client.get(&gw.url("/plain"), &[]).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ticker(),
        last,
        "the ticker woke while only plugin-free routes served requests"
    );

    // The check can see a wake-up: one plugin call starts it ticking.
    assert_eq!(client.get(&gw.url("/plugin"), &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(ticker() > last, "a plugin call did not wake the ticker");
}
