//! Routing, balancing, upstream failures and header hygiene.

use crate::support::upstream::{Behaviour, unreachable_addr};
use crate::support::{Gateway, HttpClient, Upstream, server_section};
use std::time::{Duration, Instant};

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
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
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
