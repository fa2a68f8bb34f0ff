//! A plugin cannot desync a client connection: framing and hop-by-hop headers set by a plugin
//! (in either phase, as a response header from the request phase, or in a reply) are refused
//! as `bad_output`, so the gateway frames every response itself and a pipelined second request
//! on the same connection gets its own response.

use crate::connections::{RawClient, get};
use crate::support::wasm::misbehave_config;
use crate::support::{Gateway, Upstream};

const NAMES: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "host",
];
const PLACES: [&str; 4] = ["request", "response-headers", "response", "reply"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_framing_headers_never_desync_a_pipelined_connection() {
    let upstream = Upstream::echo("echo").await;
    let mut config = misbehave_config(&upstream, &[("misbehave", "timeout_ms = 2000")]);
    config.push_str("\n[[routes]]\nname = \"ok\"\nmatch = { path = \"/ok\" }\nupstream = \"up\"\n");
    let mut cases = Vec::new();
    for name in NAMES {
        for place in PLACES {
            let route = format!("{name}-{place}");
            config.push_str(&format!(
                r#"
[[routes]]
name = "{route}"
match = {{ path = "/{route}" }}
upstream = "up"
plugins = [{{ use = "misbehave", config = {{ mode = "frame", header = "{name}", place = "{place}" }} }}]
"#
            ));
            // `host` may be set on a request (it replaces the one `Host`); everywhere else a
            // framing name is the plugin's bad output, answered with the default 500.
            let expected = if (name, place) == ("host", "request") {
                200
            } else {
                500
            };
            cases.push((route, expected));
        }
    }
    let gw = Gateway::start(&config);
    let mut client = RawClient::connect(&gw).await;
    for (route, expected) in &cases {
        let mut pipelined = get(&format!("/{route}"));
        pipelined.extend(get("/ok"));
        client.send(&pipelined).await;
        let (status, body) = client.response().await;
        assert_eq!(status, *expected, "{route}: {body}");
        if *expected == 500 {
            assert!(body.contains("plugin_failed"), "{route}: {body}");
        }
        let (status, body) = client.response().await;
        assert_eq!(status, 200, "after {route}: {body}");
        let echo: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("after {route}: not the echo ({e}): {body:?}"));
        assert_eq!(echo["uri"], "/ok", "after {route}");
    }
    let log = gw.log();
    assert!(
        log.contains("header `content-length` frames the message"),
        "the refusal names the header: {log}"
    );
}
