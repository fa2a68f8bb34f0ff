//! The admin listener, metrics, access log and trace context, seen from outside: `/metrics`
//! parsed by the reference Python Prometheus parser and checked against exactly the requests
//! sent (misbehaving plugins included), the admin token, a `/config` without secrets,
//! `/ready` turning 503 at shutdown, access log lines as JSON with nothing lost to a rotation,
//! an inbound `traceparent` continued upstream, spans of request, plugins and upstream decoded
//! by a real OTLP receiver (flushed at shutdown), and a Redis outage on the gauges.

use crate::ratelimit::rate_limited_config;
use crate::support::redis::RedisServer;
use crate::support::upstream::Behaviour;
use crate::support::wasm::misbehave_config;
use crate::support::{
    Gateway, HttpClient, Reply, Upstream, check_config, gateway_cli, root, scratch_dir,
    server_section, sha256_hex,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One sample of `/metrics`, as `prometheus_client` parsed it.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics` of the admin listener at `admin`, parsed by `prometheus_client`.
async fn scrape(admin: SocketAddr, token: Option<&str>) -> (String, Vec<Sample>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let reply = HttpClient::http1()
        .get(&format!("http://{admin}/metrics"), &headers)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = reply.text();
    let mut parser = Command::new("python3")
        .arg(root().join("tests/observability/metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let samples = parsed
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect();
    (text, samples)
}

/// The value of the one sample named `name` whose labels include `labels` (0 if none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().map_or(0.0, |s| s.value)
}

/// The sum over every sample named `name` whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn admin_get(admin: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    HttpClient::http1()
        .get(&format!("http://{admin}{path}"), &headers)
        .await
}

/// Routes with a plain upstream, a pooled plugin that continues, one that loops past its
/// timeout, one that traps, and key-auth answering 401 without a key.
fn counted_config(up: &Upstream) -> String {
    let head = misbehave_config(up, &[("misbehave", "timeout_ms = 2000")]);
    format!(
        r#"{head}
[admin]
listen = "127.0.0.1:0"

[plugins.keys]
module = "builtin:key-auth"

# Never used: its fetch counters are exported (at 0) all the same.
[keys.idp]
jwks_url = "http://127.0.0.1:9/jwks.json"

[[routes]]
name = "plain"
match = {{ path = "/plain" }}
upstream = "up"

[[routes]]
name = "ok"
match = {{ path = "/ok" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "ok" }} }} ]

[[routes]]
name = "loop"
match = {{ path = "/loop" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "loop" }}, timeout_ms = 50 }} ]

[[routes]]
name = "panic"
match = {{ path_prefix = "/panic" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "panic" }} }} ]

[[routes]]
name = "auth"
match = {{ path = "/auth" }}
upstream = "up"
plugins = [ {{ use = "keys", config = {{ consumers = [] }} }} ]

[[routes]]
name = "metered"
match = {{ path = "/metered" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "ok" }}, fuel = 100000000 }} ]

[[routes]]
name = "burn"
match = {{ path = "/burn" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "loop" }}, fuel = 1000000 }} ]

[[routes]]
name = "counting"
match = {{ path = "/counting" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "counter-flood" }} }} ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_requests_sent_and_every_plugin_violation() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&counted_config(&up));
    let admin = gw.listener("admin");
    let client = HttpClient::http1();
    let get = |path: &str| {
        let url = gw.url(path);
        let client = client.clone();
        async move { client.get(&url, &[]).await }
    };
    for _ in 0..7 {
        assert_eq!(get("/plain").await.status, 200);
    }
    for _ in 0..3 {
        let reply = client
            .send("POST", &gw.url("/plain"), &[], "0123456789")
            .await;
        assert_eq!(reply.status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get("/ok").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get("/loop").await.status, 500);
    }
    for _ in 0..3 {
        assert_eq!(get("/panic").await.status, 500);
    }
    for _ in 0..4 {
        assert_eq!(get("/auth").await.status, 401);
    }
    for _ in 0..2 {
        assert_eq!(get("/nowhere").await.status, 404);
    }
    for _ in 0..3 {
        assert_eq!(get("/metered").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get("/burn").await.status, 500);
    }
    for _ in 0..2 {
        assert_eq!(get("/counting").await.status, 200);
    }
    let (text, m) = scrape(admin, None).await;
    let requests = "gateway_requests_total";
    let at = |route, method, status| [("route", route), ("method", method), ("status", status)];
    assert_eq!(
        value(&m, requests, &at("plain", "GET", "200")),
        7.0,
        "{text}"
    );
    assert_eq!(value(&m, requests, &at("plain", "POST", "200")), 3.0);
    assert_eq!(value(&m, requests, &at("ok", "GET", "200")), 5.0);
    assert_eq!(value(&m, requests, &at("loop", "GET", "500")), 2.0);
    assert_eq!(value(&m, requests, &at("panic", "GET", "500")), 3.0);
    assert_eq!(value(&m, requests, &at("auth", "GET", "401")), 4.0);
    assert_eq!(value(&m, requests, &at("-", "GET", "404")), 2.0);
    assert_eq!(sum(&m, requests, &[]), 33.0, "nothing else counted");
    let errors = "gateway_errors_total";
    assert_eq!(
        value(&m, errors, &[("route", "-"), ("code", "no_route")]),
        2.0
    );
    assert_eq!(sum(&m, errors, &[("route", "loop")]), 2.0);
    assert_eq!(
        value(&m, "gateway_request_bytes_total", &[("route", "plain")]),
        30.0
    );

    // Every call's outcome, exactly: continue, respond, and the violation labels.
    let calls = "gateway_plugin_calls_total";
    let call = |plugin, route, outcome| {
        [
            ("plugin", plugin),
            ("route", route),
            ("phase", "request"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(value(&m, calls, &call("misbehave", "ok", "continue")), 5.0);
    assert_eq!(value(&m, calls, &call("misbehave", "loop", "timeout")), 2.0);
    assert_eq!(value(&m, calls, &call("misbehave", "panic", "trap")), 3.0);
    assert_eq!(value(&m, calls, &call("keys", "auth", "respond")), 4.0);
    assert_eq!(
        value(&m, calls, &call("misbehave", "loop", "continue")),
        0.0
    );
    let durations = "gateway_plugin_call_duration_seconds_count";
    let looping = [
        ("plugin", "misbehave"),
        ("route", "loop"),
        ("phase", "request"),
    ];
    assert_eq!(value(&m, durations, &looping), 2.0);
    let looped = value(&m, "gateway_plugin_call_duration_seconds_sum", &looping);
    assert!(looped >= 0.1, "two 50 ms timeouts took {looped} s");
    // Fuel: only uses with a budget have the histogram; a call that ran out burnt all of it.
    let fuel = |route| {
        [
            ("plugin", "misbehave"),
            ("route", route),
            ("phase", "request"),
        ]
    };
    let fuel_count = "gateway_plugin_fuel_consumed_count";
    let fuel_sum = "gateway_plugin_fuel_consumed_sum";
    assert_eq!(value(&m, fuel_count, &fuel("metered")), 3.0, "{text}");
    let metered = value(&m, fuel_sum, &fuel("metered"));
    assert!(metered > 0.0 && metered < 3e8, "{metered}");
    assert_eq!(value(&m, fuel_count, &fuel("burn")), 2.0);
    assert_eq!(value(&m, fuel_sum, &fuel("burn")), 2e6);
    assert_eq!(value(&m, calls, &call("misbehave", "burn", "fuel")), 2.0);
    assert!(
        !m.iter()
            .any(|s| s.name == fuel_count && s.labels["route"] == "ok"),
        "no fuel series for a use without a budget"
    );
    // Host-call time: the counters calls of `counting` waited in the host, `ok` never did.
    let host = "gateway_plugin_host_call_duration_seconds";
    assert_eq!(value(&m, &format!("{host}_count"), &fuel("counting")), 2.0);
    assert!(value(&m, &format!("{host}_sum"), &fuel("counting")) > 0.0);
    assert_eq!(value(&m, &format!("{host}_count"), &fuel("ok")), 5.0);
    assert_eq!(value(&m, &format!("{host}_sum"), &fuel("ok")), 0.0);

    // Trapped instances are discarded (and new ones made).
    assert!(
        value(
            &m,
            "gateway_plugin_instances_total",
            &[("plugin", "misbehave"), ("event", "discarded")]
        ) >= 3.0
    );

    // Histograms agree with their counters; buckets only grow.
    let histogram = "gateway_request_duration_seconds";
    assert_eq!(
        value(&m, &format!("{histogram}_count"), &[("route", "plain")]),
        10.0
    );
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter(|s| {
            s.name == format!("{histogram}_bucket")
                && s.labels.get("route").map(String::as_str) == Some("plain")
        })
        .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 10.0));

    // Upstream attempts: every request that got past its chain.
    let target = up.target().trim_matches('"').to_string();
    let attempts = value(
        &m,
        "gateway_upstream_attempts_total",
        &[("upstream", "up"), ("target", &target), ("outcome", "ok")],
    );
    assert_eq!(attempts, 20.0, "{text}");
    assert_eq!(
        value(
            &m,
            "gateway_upstream_response_duration_seconds_count",
            &[("upstream", "up")]
        ),
        20.0
    );
    // One request at a time, each response read before the next: the upstream connections
    // (one per worker that served) are back in the pool, idle, and none is active.
    let pooled = |state| {
        [
            ("upstream", "up"),
            ("target", target.as_str()),
            ("state", state),
        ]
    };
    let idle = value(&m, "gateway_upstream_connections", &pooled("idle"));
    assert!((1.0..=2.0).contains(&idle), "{text}");
    assert_eq!(
        value(&m, "gateway_upstream_connections", &pooled("active")),
        0.0
    );
    let listener = gw.addr.to_string();
    assert!(
        value(
            &m,
            "gateway_connections_accepted_total",
            &[("listener", &listener), ("protocol", "h1")]
        ) >= 1.0
    );
    assert_eq!(value(&m, "gateway_ready", &[]), 1.0);

    // The dashboard only asks for metrics that exist.
    let dashboard = std::fs::read_to_string(root().join("deploy/grafana/gateway.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let names = dashboard_metrics(&dashboard);
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        assert!(
            m.iter().any(|s| s.name == *name),
            "the dashboard queries {name}, which /metrics lacks"
        );
    }

    // The route table in match order (exact paths first, then prefixes), and the plugins.
    let routes = admin_get(admin, "/routes", None).await.json();
    let order: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // Exact paths by length (ties in config order), then prefixes.
    assert_eq!(
        order,
        [
            "counting", "metered", "plain", "loop", "auth", "burn", "ok", "panic"
        ]
    );
    assert_eq!(routes[7]["match"]["path"]["prefix"], "/panic");
    assert_eq!(routes[6]["plugins"], serde_json::json!(["misbehave"]));
    let plugins = admin_get(admin, "/plugins", None).await.json();
    let looping = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["routes"] == serde_json::json!(["loop"]))
        .unwrap();
    assert_eq!(looping["violations"]["timeout"], 2);
    assert_eq!(looping["limits"]["timeout_ms"], 50);
    assert_eq!(
        looping["granted"],
        serde_json::json!(["log", "clock", "kv", "counters"])
    );
    assert_eq!(looping["sha256"].as_str().unwrap().len(), 64);
    assert!(
        looping["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["grant"] == "capability:kv"),
        "{looping}"
    );

    // `gateway status` prints the same as tables.
    let status = gateway_cli(&["status", "--admin", &admin.to_string()]);
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    assert!(
        status.stdout.contains("status:  ready"),
        "{}",
        status.stdout
    );
    for needle in [
        "plain",
        "= /plain",
        "/panic*",
        "misbehave",
        "timeout=2",
        "trap=3",
    ] {
        assert!(
            status.stdout.contains(needle),
            "{needle}:\n{}",
            status.stdout
        );
    }
}

/// Every `gateway_…` metric name the dashboard's queries mention (histogram queries name
/// their `_bucket`, `_sum` or `_count` series).
fn dashboard_metrics(dashboard: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("gateway_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

const TOKEN: &str = "s3cret-admin-token-0123";

/// `[server]`, the `extra` tables, upstream `up`, plugin `keys` (key-auth) and `routes`, in
/// which `ALICE` stands for a use of `keys` that knows consumer `alice` by key `alice-key`.
fn key_auth_config(up: &Upstream, extra: &str, routes: &str) -> String {
    let alice = format!(
        r#"{{ use = "keys", config = {{ consumers = [{{ id = "alice", key_sha256 = "{}" }}] }} }}"#,
        sha256_hex(b"alice-key")
    );
    format!(
        "{server}\n{extra}\n[upstreams.up]\ntargets = [{target}]\n\n[plugins.keys]\nmodule = \"builtin:key-auth\"\n\n{routes}",
        server = server_section(),
        target = up.target(),
        routes = routes.replace("ALICE", &alice),
    )
}

/// A route `name` for `prefix` to upstream `up` behind `ALICE` (see [`key_auth_config`]).
fn alice_route(name: &str, prefix: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\nupstream = \"up\"\nplugins = [ ALICE ]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_health_and_config_shows_no_secret() {
    let up = Upstream::echo("up").await;
    let key_hash = sha256_hex(b"alice-key");
    let extra = format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[keys.hs]
secrets = [{{ kid = "k1", value = "hmac-secret-do-not-show-0123456789" }}]
"#
    );
    let config = key_auth_config(&up, &extra, &alice_route("r", "/"));
    let gw = Gateway::start(&config);
    let admin = gw.listener("admin");
    assert_eq!(admin_get(admin, "/health", None).await.status, 200);
    assert_eq!(admin_get(admin, "/ready", None).await.status, 200);
    for path in ["/metrics", "/config", "/routes", "/plugins"] {
        let reply = admin_get(admin, path, None).await;
        assert_eq!(reply.status, 401, "{path} without a token");
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
        let wrong = admin_get(admin, path, Some("s3cret-admin-token-0124")).await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert_eq!(
            admin_get(admin, path, Some(TOKEN)).await.status,
            200,
            "{path}"
        );
    }
    let post = HttpClient::http1()
        .send("POST", &format!("http://{admin}/config"), &[], "")
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(admin_get(admin, "/nothing", Some(TOKEN)).await.status, 404);

    let view = admin_get(admin, "/config", Some(TOKEN)).await;
    let text = view.text();
    for secret in [TOKEN, "hmac-secret-do-not-show", key_hash.as_str()] {
        assert!(!text.contains(secret), "/config shows {secret}:\n{text}");
    }
    let view = view.json();
    let file = std::fs::read(&gw.config_path).unwrap();
    assert_eq!(view["sha256"], sha256_hex(&file));
    assert!(view["loaded_at"].as_f64().unwrap() > 1.7e9);
    assert_eq!(view["config"]["keys"]["hs"]["secrets"][0]["kid"], "k1");
    assert_eq!(
        view["config"]["routes"][0]["plugins"][0]["config"]["consumers"][0]["id"],
        "alice"
    );

    // `gateway status` takes the token from the environment.
    let status = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["status", "--admin", &admin.to_string(), "--json"])
        .env("GATEWAY_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let json: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["ready"], true);
    let refused = gateway_cli(&["status", "--admin", &admin.to_string()]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("GATEWAY_ADMIN_TOKEN"),
        "{}",
        refused.stderr
    );
}

#[test]
fn check_refuses_an_admin_listener_on_a_proxy_address_a_short_token_and_bad_tracing() {
    let out = check_config(
        "admin.toml",
        r#"[server]
listen = ["127.0.0.1:18443"]

[admin]
listen = "127.0.0.1:18443"
token = "short"

[access_log]
sample = 0

[tracing]
sample = 1.5
otlp_endpoint = "https://collector:4318/v1/traces"
queue = 0

[[routes]]
name = "r"
match = { path_prefix = "/" }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for expected in [
        "DIR/admin.toml:5:10: admin.listen: `127.0.0.1:18443` is also a proxy listener",
        "DIR/admin.toml:6:9: admin.token: the admin token must have at least 16 characters",
        "DIR/admin.toml:9:10: access_log.sample: must be greater than 0 and at most 1",
        "DIR/admin.toml:12:10: tracing.sample: must be between 0 and 1",
        "DIR/admin.toml:13:17: tracing.otlp_endpoint: must be an http:// URL",
        "DIR/admin.toml:14:9: tracing.queue: must be at least 1",
    ] {
        assert!(out.stderr.contains(expected), "{expected}\n{}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_at_shutdown_while_a_slow_request_drains() {
    let silent = Upstream::start("silent", Behaviour::Silent).await;
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shutdown_grace_s = 5

[admin]
listen = "127.0.0.1:0"

[upstreams.up]
targets = [{target}]
response_timeout_ms = 2500

[[routes]]
name = "slow"
match = {{ path_prefix = "/" }}
upstream = "up"
"#,
        target = silent.target(),
    );
    let mut gw = Gateway::start(&config);
    let admin = gw.listener("admin");
    assert_eq!(admin_get(admin, "/ready", None).await.status, 200);
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reply = admin_get(admin, "/ready", None).await;
        if reply.status == 503 {
            assert_eq!(reply.text(), "draining\n");
            break;
        }
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin_get(admin, "/health", None).await.status, 200);
    // The listener stops taking connections (each worker closes its socket as it sees the
    // stop), while the slow request is still in flight.
    let deadline = Instant::now() + Duration::from_secs(1);
    while tokio::net::TcpStream::connect(gw.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the proxy listener still accepts while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!in_flight.is_finished());
    // The in-flight request ends (504 from the upstream's timeout), then the process exits.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_a_rotation_loses_none_and_traces_continue() {
    let up = Upstream::echo("up").await;
    let dir = scratch_dir("access-log");
    let log_path = dir.join("access.log");
    let extra = format!("[access_log]\nto = \"{}\"\n", log_path.display());
    let routes = r#"[[routes]]
name = "open"
match = { path_prefix = "/open" }
upstream = "up"

[[routes]]
name = "keyed"
match = { path_prefix = "/keyed" }
upstream = "up"
plugins = [ ALICE ]
"#;
    let config = key_auth_config(&up, &extra, routes);
    let mut gw = Gateway::start(&config);
    let client = HttpClient::http1();
    let inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = client
        .get(
            &gw.url("/keyed/x?token=hidden"),
            &[("x-api-key", "alice-key"), ("traceparent", inbound)],
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = up.seen().pop().unwrap();
    let outbound = seen.headers["traceparent"].to_str().unwrap().to_string();
    assert!(
        outbound.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{outbound}"
    );
    assert!(outbound.ends_with("-01"));
    assert!(
        !outbound.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent"
    );
    assert_eq!(client.get(&gw.url("/keyed/x"), &[]).await.status, 401);

    // Requests keep coming while the file is rotated: every one is in one file or the other.
    let sender = {
        let client = client.clone();
        let url = gw.url("/open/load");
        tokio::spawn(async move {
            let mut sent = 0;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(1500) {
                assert_eq!(client.get(&url, &[]).await.status, 200);
                sent += 1;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    let status = Command::new("kill")
        .args(["-USR1", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent: usize = sender.await.unwrap();
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));

    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log_path).unwrap();
    assert!(new.lines().count() > 0, "nothing written after the reopen");
    let lines: Vec<Value> = old
        .lines()
        .chain(new.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2 + sent, "every request is logged once");
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len(), "request ids are unique");

    let first = &lines[0];
    assert_eq!(first["route"], "keyed");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/keyed/x");
    assert!(
        first.get("query").is_none(),
        "the query is off by default: {first}"
    );
    assert_eq!(first["status"], 200);
    assert_eq!(first["consumer"], "alice");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["upstream"], up.target().trim_matches('"'));
    assert!(first["bytes_out"].as_u64().unwrap() > 0);
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["upstream_ms"].as_f64().unwrap() > 0.0);
    assert!(first["plugin_ms"].as_f64().unwrap() > 0.0);
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let denied = &lines[1];
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["answered_by"], "keys");
    assert_eq!(denied["upstream"], Value::Null);
    assert_eq!(lines[2]["route"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_shows_as_a_counter_and_a_gauge() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo("up").await;
    let state = format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 50",
        redis.url()
    );
    let config = rate_limited_config(&up.target(), &state, "minute = 1000")
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gateway::start(&config);
    let admin = gw.listener("admin");
    let client = HttpClient::http1();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/a"), &[]).await.status, 200);
    }
    let (_, m) = scrape(admin, None).await;
    assert_eq!(value(&m, "gateway_state_backend_up", &[]), 1.0);
    assert_eq!(value(&m, "gateway_state_backend_outages_total", &[]), 0.0);
    assert!(
        value(
            &m,
            "gateway_state_backend_calls_total",
            &[("outcome", "ok")]
        ) >= 3.0
    );
    assert!(value(&m, "gateway_state_backend_call_duration_seconds_count", &[]) >= 3.0);

    redis.kill();
    for _ in 0..5 {
        // on_unavailable = allow (the default): requests pass while Redis is down.
        assert_eq!(client.get(&gw.url("/a"), &[]).await.status, 200);
    }
    let (_, m) = scrape(admin, None).await;
    assert_eq!(value(&m, "gateway_state_backend_up", &[]), 0.0);
    assert_eq!(value(&m, "gateway_state_backend_outages_total", &[]), 1.0);
    assert!(
        value(
            &m,
            "gateway_state_backend_calls_total",
            &[("outcome", "error")]
        ) >= 1.0
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(client.get(&gw.url("/a"), &[]).await.status, 200);
        let (_, m) = scrape(admin, None).await;
        if value(&m, "gateway_state_backend_up", &[]) == 1.0 {
            assert_eq!(value(&m, "gateway_state_backend_outages_total", &[]), 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "the gauge never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An OTLP/HTTP collector: `tests/observability/otlp_receiver.py`, which decodes what it is
/// sent with OpenTelemetry's own protobuf classes and writes each span as a JSON line.
struct Collector {
    child: std::process::Child,
    port: u16,
    spans: std::path::PathBuf,
}

impl Collector {
    fn start(name: &str) -> Collector {
        let spans = scratch_dir(name).join("spans.jsonl");
        let mut child = Command::new("python3")
            .arg(root().join("tests/observability/otlp_receiver.py"))
            .arg(&spans)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the OTLP receiver did not start (is opentelemetry-proto installed?): {line:?}")
        });
        Collector { child, port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// Every span received so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The spans of `trace_id`, once `count` of them arrived (within 10 seconds).
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Value> = self
                .received()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            if spans.len() >= count {
                assert_eq!(spans.len(), count, "{spans:#?}");
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{count} spans of {trace_id} never arrived: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one span of `spans` whose name starts with `prefix`.
fn span<'a>(spans: &'a [Value], prefix: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one span named {prefix}…: {spans:#?}");
    found[0]
}

/// OTLP span kinds.
const INTERNAL: i64 = 1;
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_the_request_its_plugins_and_its_upstream_reach_an_otlp_collector() {
    let collector = Collector::start("otlp");
    let up = Upstream::echo("up").await;
    let routes = &alice_route("keyed", "/keyed");
    let tracing = |delay_ms: u64| {
        format!(
            "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"edge-gw\"\nbatch_delay_ms = {delay_ms}\n",
            collector.endpoint()
        )
    };
    let mut gw = Gateway::start(&key_auth_config(&up, &tracing(50), routes));
    let client = HttpClient::http1();
    let key = ("x-api-key", "alice-key");

    // A sampled trace, continued: the request span is the caller's child, the plugin and
    // upstream spans are the request span's, and the upstream's parent is the client span.
    let passed = "4bf92f3577b34da6a3ce929d0e0e4736";
    let inbound = format!("00-{passed}-00f067aa0ba902b7-01");
    let reply = client
        .get(&gw.url("/keyed/x"), &[key, ("traceparent", &inbound)])
        .await;
    assert_eq!(reply.status, 200);
    let outbound = up.seen().pop().unwrap().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    // The caller decided not to sample: nothing is exported.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let reply = client
        .get(
            &gw.url("/keyed/x"),
            &[
                key,
                (
                    "traceparent",
                    &format!("00-{unsampled}-b7ad6b7169203331-00"),
                ),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    // Denied by the plugin: no upstream span.
    let denied = "5bf92f3577b34da6a3ce929d0e0e4737";
    let reply = client
        .get(
            &gw.url("/keyed/x"),
            &[("traceparent", &format!("00-{denied}-00f067aa0ba902b8-01"))],
        )
        .await;
    assert_eq!(reply.status, 401);

    let spans = collector.trace(passed, 3).await;
    for s in &spans {
        assert_eq!(s["service"], "edge-gw");
        assert_eq!(s["scope"], "gateway");
    }
    let server = span(&spans, "GET keyed");
    let plugin = span(&spans, "plugin keys ");
    let upstream = span(&spans, "upstream up");
    assert_eq!(server["kind"], SERVER);
    assert_eq!(server["parent_id"], "00f067aa0ba902b7");
    assert_eq!(server["attributes"]["http.route"], "keyed");
    assert_eq!(server["attributes"]["http.request.method"], "GET");
    assert_eq!(server["attributes"]["url.path"], "/keyed/x");
    assert_eq!(server["attributes"]["http.response.status_code"], 200);
    assert!(
        server["attributes"]["gateway.request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let server_id = server["span_id"].as_str().unwrap();
    assert_eq!(plugin["kind"], INTERNAL);
    assert_eq!(plugin["parent_id"], server_id);
    assert_eq!(plugin["attributes"]["gateway.plugin"], "keys");
    assert_eq!(plugin["attributes"]["gateway.outcome"], "continue");
    assert_eq!(upstream["kind"], CLIENT);
    assert_eq!(upstream["parent_id"], server_id);
    assert_eq!(upstream["attributes"]["http.response.status_code"], 200);
    assert_eq!(
        outbound,
        format!("00-{passed}-{}-01", upstream["span_id"].as_str().unwrap()),
        "the upstream's parent is the gateway's client span"
    );
    for child in [plugin, upstream] {
        assert!(
            child["start"].as_u64() >= server["start"].as_u64(),
            "{spans:#?}"
        );
        assert!(
            child["end"].as_u64() <= server["end"].as_u64(),
            "{spans:#?}"
        );
        assert!(child["end"].as_u64() >= child["start"].as_u64());
    }
    assert!(
        plugin["end"].as_u64() <= upstream["start"].as_u64(),
        "the plugin ran before the upstream call"
    );

    let spans = collector.trace(denied, 2).await;
    let server = span(&spans, "GET keyed");
    assert_eq!(server["attributes"]["http.response.status_code"], 401);
    assert_eq!(
        span(&spans, "plugin keys ")["attributes"]["gateway.outcome"],
        "respond"
    );

    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        collector
            .received()
            .iter()
            .all(|s| s["trace_id"] != unsampled),
        "an unsampled trace was exported"
    );

    // Spans still queued at shutdown are sent before the gateway exits.
    let mut gw = Gateway::start(&key_auth_config(&up, &tracing(600_000), routes));
    let last = "6bf92f3577b34da6a3ce929d0e0e4738";
    let reply = client
        .get(
            &gw.url("/keyed/x"),
            &[
                key,
                ("traceparent", &format!("00-{last}-00f067aa0ba902b9-01")),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.received().iter().all(|s| s["trace_id"] != last),
        "sent before the batch delay"
    );
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        collector
            .received()
            .iter()
            .filter(|s| s["trace_id"] == last)
            .count(),
        3,
        "the queue is flushed at shutdown"
    );
}

/// A route to `target` (quoted) through a use of the metrics probe
/// (`tests/plugins/metrics-probe`) configured with `probe_config`; `grant` lists its
/// capabilities.
fn metrics_probe_config(target: &str, grant: &str, probe_config: &str) -> String {
    let module = crate::support::wasm::test_plugin("test-metrics-probe");
    format!(
        r#"{server}
[admin]
listen = "127.0.0.1:0"

[upstreams.up]
targets = [{target}]

[plugins.probe]
module = {module:?}
capabilities = [{grant}]

[[routes]]
name = "probed"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "probe", config = {probe_config} }} ]
"#,
        server = server_section(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exports_the_metrics_it_declared_and_nothing_it_did_not() {
    let up = Upstream::echo("up").await;
    let config = r#"{ results = ["hit", "miss"] }"#;
    let gw = Gateway::start(&metrics_probe_config(&up.target(), r#""metrics""#, config));
    let admin = gw.listener("admin");
    let client = HttpClient::http1();
    for (result, size) in [("hit", "5"), ("hit", "50"), ("miss", "500")] {
        let reply = client
            .get(&gw.url("/x"), &[("x-result", result), ("x-size", size)])
            .await;
        assert_eq!(reply.status, 200);
        assert!(
            !up.seen()
                .pop()
                .unwrap()
                .headers
                .contains_key("x-metrics-error")
        );
    }
    // An undeclared label value and a declaration during a call are refused to the plugin.
    let refused = |headers: &[(&str, &str)]| {
        let url = gw.url("/x");
        let client = client.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let up = &up;
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert_eq!(client.get(&url, &headers).await.status, 200);
            up.seen().pop().unwrap().headers["x-metrics-error"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    let error = refused(&[("x-result", "hot")]).await;
    assert!(error.contains("\"hot\" is not a declared value"), "{error}");
    let error = refused(&[("x-declare", "late")]).await;
    assert!(error.contains("declared in init"), "{error}");
    let error = refused(&[("x-size", "NaN")]).await;
    assert!(error.contains("must be finite"), "{error}");

    let (text, m) = scrape(admin, None).await;
    let lookups = "gateway_plugin_probe_lookups_total";
    assert_eq!(
        value(&m, lookups, &[("plugin", "probe"), ("result", "hit")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(&m, lookups, &[("plugin", "probe"), ("result", "miss")]),
        1.0
    );
    assert!(
        !text.contains("\"hot\""),
        "no series for an undeclared value"
    );
    assert!(!text.contains("late_total"));
    let sizes = "gateway_plugin_probe_size_bytes";
    assert_eq!(
        value(&m, &format!("{sizes}_count"), &[("plugin", "probe")]),
        3.0
    );
    assert_eq!(
        value(&m, &format!("{sizes}_sum"), &[("plugin", "probe")]),
        555.0
    );
    let buckets: Vec<(f64, f64)> = m
        .iter()
        .filter(|s| s.name == format!("{sizes}_bucket"))
        .map(|s| (s.labels["le"].parse().unwrap(), s.value))
        .collect();
    assert!(buckets.contains(&(10.0, 1.0)), "{buckets:?}");
    assert!(buckets.contains(&(100.0, 2.0)), "{buckets:?}");
    assert!(buckets.contains(&(1000.0, 3.0)), "{buckets:?}");
}

#[test]
fn check_names_a_bad_metric_declaration_an_unbounded_label_and_a_missing_grant() {
    // `gateway check` never connects to the upstream.
    let target = "\"127.0.0.1:9\"";
    for (grant, probe_config, expected) in [
        (
            r#""metrics""#,
            r#"{ results = ["a"], declare = "bad" }"#,
            "plugin `probe` rejected its config for route `probed`: metric name \"Probe-Lookups\" must match",
        ),
        (
            r#""metrics""#,
            &format!(
                "{{ results = [{}] }}",
                (0..65)
                    .map(|i| format!("\"v{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "label \"result\" of \"probe_lookups_total\" must list 1 to 64 values, not 65",
        ),
        (
            "",
            r#"{ results = ["a"] }"#,
            "component imports `gateway:plugin/metrics@0.2.1`, which needs capability `metrics`",
        ),
    ] {
        let out = check_config(
            "probe.toml",
            &metrics_probe_config(target, grant, probe_config),
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(expected), "{expected}\n{}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_loses_spans_never_requests() {
    // A port nothing listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let up = Upstream::echo("up").await;
    let tracing = format!(
        "[tracing]\ntraceparent = \"always\"\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\nbatch_delay_ms = 20\n"
    );
    let mut gw = Gateway::start(&key_auth_config(&up, &tracing, &alice_route("keyed", "/")));
    let client = HttpClient::http1();
    for _ in 0..50 {
        let reply = client
            .get(&gw.url("/x"), &[("x-api-key", "alice-key")])
            .await;
        assert_eq!(reply.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the final flush to a dead collector held the exit for {:?}",
        stopping.elapsed()
    );
}
