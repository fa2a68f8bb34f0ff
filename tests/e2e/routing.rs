//! Routing, balancing, upstream keep-alive and failures, and header hygiene.

use crate::support::upstream::{Behaviour, unreachable_addr};
use crate::support::{Gateway, HttpClient, Upstream, server_section};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_method() {
    let users = Upstream::echo("users").await;
    let orders = Upstream::echo("orders").await;
    let admin = Upstream::echo("admin").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.users]
targets = [{users}]
[upstreams.orders]
targets = [{orders}]
[upstreams.admin]
targets = [{admin}]

[[routes]]
name = "users"
match = {{ path_prefix = "/v1/users", methods = ["GET", "POST"] }}
upstream = "users"

[[routes]]
name = "orders-exact"
match = {{ path = "/v1/orders" }}
upstream = "orders"

[[routes]]
name = "admin-host"
match = {{ path_prefix = "/v1", hosts = ["admin.example.com"] }}
upstream = "admin"
"#,
        server = server_section(),
        users = users.target(),
        orders = orders.target(),
        admin = admin.target(),
    ));
    let client = HttpClient::http1();

    let reply = client.get(&gw.url("/v1/users/42?x=1"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("users"));
    assert_eq!(reply.json()["uri"], "/v1/users/42?x=1");

    let reply = client.get(&gw.url("/v1/orders"), &[]).await;
    assert_eq!(reply.header("x-upstream"), Some("orders"));

    // Exact match only: /v1/orders/1 falls to nothing (admin needs its host).
    let reply = client.get(&gw.url("/v1/orders/1"), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "no_route");
    assert!(
        reply.json()["error"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    // Method not allowed on the users route: no other route takes it.
    let reply = client
        .send("DELETE", &gw.url("/v1/users/42"), &[], "")
        .await;
    assert_eq!(reply.status, 404);

    // Host-restricted route.
    let reply = client
        .get(&gw.url("/v1/anything"), &[("host", "admin.example.com")])
        .await;
    assert_eq!(reply.header("x-upstream"), Some("admin"));

    // Segment-aware prefix: /v1/usersx is not under /v1/users.
    let reply = client.get(&gw.url("/v1/usersx"), &[]).await;
    assert_eq!(reply.status, 404);

    // HTTP/2 with prior knowledge reaches the same routes.
    let h2 = HttpClient::http2();
    let reply = h2.get(&gw.url("/v1/users/7"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("users"));

    assert_eq!(users.count(), 2);
    assert_eq!(orders.count(), 1);
    assert_eq!(admin.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_over_targets() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let c = Upstream::echo("c").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.pool]\ntargets = [{}, {}, {}]\n\n[[routes]]\nname = \"all\"\nmatch = {{}}\nupstream = \"pool\"\n",
        server_section(),
        a.target(),
        b.target(),
        c.target()
    ));
    let client = HttpClient::http1();
    for _ in 0..30 {
        assert_eq!(client.get(&gw.url("/"), &[]).await.status, 200);
    }
    assert_eq!((a.count(), b.count(), c.count()), (10, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_gives_502_silent_gives_504_in_time() {
    let dead = unreachable_addr().await;
    let silent = Upstream::start("silent", Behaviour::Silent).await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.dead]
targets = ["{dead}"]
connect_timeout_ms = 500
[upstreams.silent]
targets = [{silent}]
response_timeout_ms = 300

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
upstream = "dead"
[[routes]]
name = "silent"
match = {{ path_prefix = "/silent" }}
upstream = "silent"
"#,
        server_section(),
        silent = silent.target()
    ));
    let client = HttpClient::http1();

    let reply = client.get(&gw.url("/dead"), &[]).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"]["code"], "upstream_unreachable");

    let started = Instant::now();
    let reply = client.get(&gw.url("/silent"), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"]["code"], "upstream_timeout");
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "timeout not enforced: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_hygiene_and_request_ids() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/api\" }}\nstrip_prefix = true\nupstream = \"up\"\n",
        server_section(),
        up.target()
    ));
    let client = HttpClient::http1();
    let reply = client
        .get(
            &gw.url("/api/items?q=1"),
            &[
                ("connection", "x-private"),
                ("x-private", "secret"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-real-ip", "203.0.113.9"),
                ("x-request-id", "req-from-client"),
                ("host", "shop.example.com"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = &up.seen()[0];
    assert_eq!(seen.uri, "/items?q=1", "prefix stripped, query kept");
    assert!(
        !seen.headers.contains_key("x-private"),
        "connection-named header forwarded"
    );
    // The client is no trusted proxy: its own `X-Forwarded-For` is not believed or passed on.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    // Only a gateway with trusted proxies says `X-Real-IP`; the client's own never passes.
    assert!(!seen.headers.contains_key("x-real-ip"));
    assert_eq!(seen.headers["via"], "1.1 gateway");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "shop.example.com");
    assert_eq!(seen.headers["x-request-id"], "req-from-client");
    assert_eq!(seen.headers["host"], up.addr.to_string().as_str());
    // Response side: the request id comes back, hop-by-hop headers do not.
    assert_eq!(reply.header("x-request-id"), Some("req-from-client"));
    assert!(reply.header("x-hop").is_none());

    // Without a client id, one is generated and sent both ways.
    let reply = client.get(&gw.url("/api/x"), &[]).await;
    let generated = reply.header("x-request-id").unwrap().to_string();
    assert_eq!(generated.len(), 32);
    assert_eq!(up.seen()[1].headers["x-request-id"], generated.as_str());
}

/// A raw HTTP/1.1 upstream answering `ok` to every request; with `close_after_response` it
/// closes each connection right after answering, without announcing it (as an upstream whose
/// keep-alive timeout just ran out does). Returns its address and its count of accepted
/// connections.
async fn raw_upstream(close_after_response: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() || close_after_response {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("\"{addr}\""), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused_and_closed_ones_replaced() {
    let (reusing, reusing_accepted) = raw_upstream(false).await;
    let (closing, closing_accepted) = raw_upstream(true).await;
    // One worker: each worker keeps its own upstream connections.
    let gw = Gateway::start(&format!(
        r#"{}workers = 1
[upstreams.reusing]
targets = [{reusing}]
[upstreams.closing]
targets = [{closing}]

[[routes]]
name = "reusing"
match = {{ path_prefix = "/reusing" }}
upstream = "reusing"
[[routes]]
name = "closing"
match = {{ path_prefix = "/closing" }}
upstream = "closing"
"#,
        server_section(),
    ));
    let client = HttpClient::http1();
    for _ in 0..20 {
        let reply = client.get(&gw.url("/reusing"), &[]).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    }
    // Sequential requests share one upstream connection.
    assert_eq!(reusing_accepted.load(Ordering::SeqCst), 1);

    for i in 0..10 {
        let reply = client.get(&gw.url("/closing"), &[]).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        // Give the closed connection's end time to arrive, as between real requests.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every request found its pooled connection closed and opened a new one.
    assert_eq!(closing_accepted.load(Ordering::SeqCst), 10);
}
