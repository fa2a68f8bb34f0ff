//! `ip-restriction` and `cors` as built into the binary.

use crate::support::{Gateway, HttpClient, Upstream, server_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_and_cors() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.ip]
module = "builtin:ip-restriction"

[plugins.cors]
module = "builtin:cors"

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "up"
plugins = [
  {{ use = "ip", config = {{ allow = ["127.0.0.0/8", "::1/128"] }} }},
  {{ use = "cors", config = {{ origins = ["https://app.example"], credentials = true, max_age_s = 600 }} }},
]

[[routes]]
name = "closed"
match = {{ path_prefix = "/closed" }}
upstream = "up"
plugins = [ {{ use = "ip", config = {{ deny = ["127.0.0.0/8"] }} }} ]
"#,
        server = server_section(),
        target = up.target(),
    ));
    let client = HttpClient::http1();
    assert_eq!(client.get(&gw.url("/closed"), &[]).await.status, 403);
    assert_eq!(up.count(), 0);

    let preflight = client
        .send(
            "OPTIONS",
            &gw.url("/open/items"),
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            "",
        )
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(up.count(), 0, "preflight answered by the plugin");

    let actual = client
        .get(&gw.url("/open/items"), &[("origin", "https://app.example")])
        .await;
    assert_eq!(actual.status, 200);
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        actual.header("access-control-allow-credentials"),
        Some("true")
    );
    let other = client
        .get(
            &gw.url("/open/items"),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// One error shape for clients, whoever refused them: the gateway's own errors
/// (`GatewayError::into_response`) and a plugin's `Reply::error` (here ip-restriction's 403)
/// have the same keys, types and meaning, checked on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_plugin_errors_have_one_json_shape() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.ip]
module = "builtin:ip-restriction"

[[routes]]
name = "closed"
match = {{ path_prefix = "/closed" }}
upstream = "up"
plugins = [ {{ use = "ip", config = {{ deny = ["127.0.0.0/8", "::1/128"] }} }} ]
"#,
        server = server_section(),
        target = up.target(),
    ));
    let client = HttpClient::http1();
    let shape = |reply: &crate::support::Reply| {
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        let outer: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(outer, ["error"]);
        let error = body["error"].as_object().unwrap();
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "request_id", "status"]);
        assert_eq!(error["status"].as_u64(), Some(u64::from(reply.status)));
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(error["message"].as_str().is_some());
        assert_eq!(error["request_id"].as_str(), reply.header("x-request-id"));
    };
    let gateway_error = client.get(&gw.url("/nowhere"), &[]).await;
    assert_eq!(gateway_error.status, 404);
    shape(&gateway_error);
    let plugin_error = client.get(&gw.url("/closed"), &[]).await;
    assert_eq!(plugin_error.status, 403);
    shape(&plugin_error);
    assert_eq!(up.count(), 0);
}
