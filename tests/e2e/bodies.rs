//! Bodies are buffered only for plugins that ask, up to the route's cap: 413 for a request
//! past it, 502 for a response past it. Without such a plugin, bodies stream untouched, and
//! a request body is held to the same cap (see `edge::bodies_are_bounded_on_every_route`).

use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, server_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_ask_see_bodies_within_the_cap() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.up]
targets = [{}]

[plugins.body]
module = {:?}
capabilities = ["log", "clock", "kv", "counters"]

[[routes]]
name = "buffered"
match = {{ path_prefix = "/buffered" }}
upstream = "up"
max_body_bytes = 4096
plugins = [ {{ use = "body", config = {{ mode = "body" }} }} ]

[[routes]]
name = "streamed"
match = {{ path_prefix = "/streamed" }}
upstream = "up"
max_body_bytes = 200000

[[routes]]
name = "small"
match = {{ path_prefix = "/small" }}
upstream = "up"
max_body_bytes = 16
"#,
        server_section(),
        up.target(),
        test_plugin("test-misbehave"),
    ));
    let client = HttpClient::http1();

    // The plugin rewrote the body the upstream received, and saw the response body.
    let reply = client
        .send("POST", &gw.url("/buffered"), &[], "hello body")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &up.seen()[0];
    assert_eq!(&seen.body[..], b"HELLO BODY");
    assert_eq!(seen.headers["x-request-body-len"], "10");
    assert_eq!(seen.headers["content-length"], "10");
    assert_eq!(
        reply.header("x-response-body-len"),
        Some(reply.body.len().to_string().as_str())
    );

    // Past the cap: 413 before the upstream is called.
    let reply = client
        .send("POST", &gw.url("/buffered"), &[], vec![b'x'; 5000])
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "request_body_too_large");
    assert_eq!(up.count(), 1);

    // A response past the cap (the echo repeats the 3900-byte body, plus headers): 502.
    let reply = client
        .send("POST", &gw.url("/buffered"), &[], vec![b'y'; 3900])
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], "upstream_bad_response");

    // No plugin wants the body: it streams through whatever its size.
    let reply = client
        .send("POST", &gw.url("/streamed"), &[], vec![b'z'; 100_000])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.seen().last().unwrap().body.len(), 100_000);

    // Streamed or not, the route's cap holds: a declared length past it never reaches the
    // upstream.
    let before = up.count();
    let reply = client
        .send("POST", &gw.url("/small"), &[], vec![b'z'; 17])
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "request_body_too_large");
    assert_eq!(up.count(), before);
}
