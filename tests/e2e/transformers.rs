//! The first-party transformers, as built into the binary (`builtin:`).

use crate::support::upstream::Behaviour;
use crate::support::{Gateway, HttpClient, Upstream, server_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_transformer_rewrites_what_the_upstream_sees() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.up]
targets = [{}]

[plugins.rt]
module = "builtin:request-transformer"

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
upstream = "up"
plugins = [ {{ use = "rt", config = {{
  remove = {{ headers = ["x-internal"], querystring = ["debug"] }},
  rename = {{ headers = {{ "x-old" = "x-new" }} }},
  set = {{ headers = {{ "x-set" = "1" }} }},
  add = {{ headers = {{ "x-added" = "yes" }}, querystring = {{ "src" = "gw gateway" }} }},
  rewrite_path_prefix = {{ from = "/api", to = "/v2" }},
}} }} ]
"#,
        server_section(),
        up.target()
    ));
    let reply = HttpClient::http1()
        .get(
            &gw.url("/api/items?debug=1&keep=2"),
            &[("x-internal", "secret"), ("x-old", "value"), ("x-set", "0")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &up.seen()[0];
    assert!(seen.uri.starts_with("/v2/items?"), "{}", seen.uri);
    assert!(
        seen.uri.contains("keep=2") && !seen.uri.contains("debug"),
        "{}",
        seen.uri
    );
    assert!(
        seen.uri.contains("src=gw%20gateway") || seen.uri.contains("src=gw+gateway"),
        "{}",
        seen.uri
    );
    assert!(!seen.headers.contains_key("x-internal"));
    assert!(!seen.headers.contains_key("x-old"));
    assert_eq!(seen.headers["x-new"], "value");
    assert_eq!(seen.headers["x-set"], "1");
    assert_eq!(seen.headers["x-added"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_transformer_removes_json_fields_and_fixes_length() {
    let up = Upstream::start(
        "up",
        Behaviour::Fixed(
            "application/json",
            r#"{"id":1,"password":"hunter2","user":{"name":"ann","ssn":"123"},"items":[{"ssn":"1","k":1}]}"#,
        ),
    )
    .await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.up]
targets = [{}]

[plugins.resp]
module = "builtin:response-transformer"

[[routes]]
name = "api"
match = {{}}
upstream = "up"
plugins = [ {{ use = "resp", config = {{
  remove = {{ headers = ["x-upstream"], json = ["password", "user.ssn", "items.ssn"] }},
  add = {{ headers = {{ "x-filtered" = "true" }} }},
}} }} ]
"#,
        server_section(),
        up.target()
    ));
    let reply = HttpClient::http1().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"id": 1, "user": {"name": "ann"}, "items": [{"k": 1}]})
    );
    assert_eq!(
        reply.header("content-length").unwrap(),
        reply.body.len().to_string()
    );
    assert_eq!(reply.header("x-filtered"), Some("true"));
    assert_eq!(reply.header("x-upstream"), None);
}
