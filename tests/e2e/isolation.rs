//! `isolation = "request"` gives a fresh instance per request; `pooled` reuses warm ones.

use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, server_section};

async fn counts(isolation: &str) -> Vec<String> {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.up]
targets = [{}]

[plugins.counter]
module = {:?}
capabilities = ["log", "clock", "kv", "counters"]
isolation = "{isolation}"

[[routes]]
name = "count"
match = {{}}
upstream = "up"
plugins = [ {{ use = "counter", config = {{ mode = "count" }} }} ]
"#,
        server_section(),
        up.target(),
        test_plugin("test-misbehave"),
    ));
    let client = HttpClient::http1();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let reply = client.get(&gw.url("/"), &[]).await;
        assert_eq!(reply.status, 200);
        // What the plugin set on the request (seen upstream) and on the response agree.
        let upstream_count = reply.json()["headers"]["x-call-count"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(reply.header("x-call-count"), Some(upstream_count.as_str()));
        counts.push(upstream_count);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_isolation_sees_a_fresh_instance_every_time() {
    assert_eq!(counts("request").await, ["1", "1", "1", "1", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_isolation_reuses_the_warm_instance() {
    // Sequential requests get the one warm instance back each time.
    assert_eq!(counts("pooled").await, ["1", "2", "3", "4", "5"]);
}
