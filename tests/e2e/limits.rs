//! Misbehaving plugins are stopped by their limits, fail only their own request as their
//! `on_error` policy says, and never disturb other routes or the process — with warm pooled
//! instances and with a fresh instance per request (whose memory, tables and stacks come from
//! the pooling allocator), so neither allocation strategy loosens a limit.

use crate::ratelimit::rate_limited_config;
use crate::support::upstream::Behaviour;
use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, server_section};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The misbehaving routes; `server` is the `[server]` section.
fn config(up: &Upstream, isolation: &str, server: &str) -> String {
    let module = test_plugin("test-misbehave");
    let route = |name: &str, use_: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nmatch = {{ path = \"/{name}\" }}\nupstream = \"up\"\nplugins = [ {use_} ]\n\n"
        )
    };
    let mut text = format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

# Generous by default, so a loaded machine never turns a memory or trap case into a
# timeout; the loop routes set the short timeout they test.
[plugins.misbehave]
module = {module:?}
capabilities = ["log", "clock", "kv", "counters"]
timeout_ms = 2000
isolation = "{isolation}"

[plugins.metered]
module = {module:?}
capabilities = ["log", "clock", "kv", "counters"]
fuel = 5000000
timeout_ms = 10000
isolation = "{isolation}"

"#,
        target = up.target(),
    );
    for (name, use_) in [
        ("ok", r#"{ use = "misbehave", config = { mode = "ok" } }"#),
        (
            "loop",
            r#"{ use = "misbehave", config = { mode = "loop" }, timeout_ms = 50 }"#,
        ),
        ("fuel", r#"{ use = "metered", config = { mode = "loop" } }"#),
        (
            "memory",
            r#"{ use = "misbehave", config = { mode = "memory" }, memory_mb = 16 }"#,
        ),
        (
            "panic",
            r#"{ use = "misbehave", config = { mode = "panic" } }"#,
        ),
        (
            "headers",
            r#"{ use = "misbehave", config = { mode = "headers" }, memory_mb = 64, timeout_ms = 2000 }"#,
        ),
        (
            "response-panic",
            r#"{ use = "misbehave", config = { mode = "panic", phase = "response" } }"#,
        ),
        (
            "loop-allow",
            r#"{ use = "misbehave", config = { mode = "loop" }, on_error = "allow", timeout_ms = 50 }"#,
        ),
        (
            "loop-503",
            r#"{ use = "misbehave", config = { mode = "loop" }, error_status = 503, timeout_ms = 50 }"#,
        ),
    ] {
        text.push_str(&route(name, use_));
    }
    text
}

// Pooled instances on one worker, as the benchmark runs them: its numbers hold with every
// limit enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_violation_fails_only_its_own_request() {
    let server = format!("{}workers = 1\n", server_section());
    violations_fail_only_their_own_request("pooled", &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_violation_fails_only_its_own_request_with_request_isolation() {
    violations_fail_only_their_own_request("request", &server_section()).await;
}

async fn violations_fail_only_their_own_request(isolation: &str, server: &str) {
    let up = Upstream::echo("up").await;
    let mut gw = Gateway::start(&config(&up, isolation, server));
    let client = HttpClient::http1();
    assert_eq!(client.get(&gw.url("/ok"), &[]).await.status, 200);

    // Healthy traffic on another route the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let healthy_ok = Arc::new(AtomicUsize::new(0));
    let mut background = Vec::new();
    for _ in 0..2 {
        let (client, url, stop, healthy_ok) = (
            HttpClient::http1(),
            gw.url("/ok"),
            stop.clone(),
            healthy_ok.clone(),
        );
        background.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = client.get(&url, &[]).await;
                if reply.status == 200 {
                    healthy_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(reply.status);
                }
            }
            failures
        }));
    }

    let upstream_before = up.count();
    let cases: &[(&str, u16, &str)] = &[
        ("/loop", 500, "timeout"),
        ("/fuel", 500, "fuel"),
        ("/memory", 500, "memory"),
        ("/panic", 500, "trap"),
        ("/headers", 500, "output_cap"),
        ("/response-panic", 500, "trap"),
        ("/loop-503", 503, "timeout"),
    ];
    for round in 0..2 {
        for (path, status, label) in cases {
            let started = Instant::now();
            let reply = client.get(&gw.url(path), &[]).await;
            assert_eq!(
                reply.status,
                *status,
                "{path} (round {round}): {}",
                reply.text()
            );
            let error = &reply.json()["error"];
            assert_eq!(error["code"], "plugin_failed", "{path}");
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("({label})")),
                "{path}: {error}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} took {:?}",
                started.elapsed()
            );
        }
    }
    // Request-phase failures never reached the upstream; the response-phase one did (twice).
    assert_eq!(
        up.count() - upstream_before - count_healthy_upstream(&up, upstream_before),
        2
    );

    // Fail open: the looping plugin is skipped and the request goes through.
    let reply = client.get(&gw.url("/loop-allow"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("up"));

    stop.store(true, Ordering::Relaxed);
    for task in background {
        let failures = task.await.unwrap();
        assert!(failures.is_empty(), "healthy route failed: {failures:?}");
    }
    assert!(healthy_ok.load(Ordering::Relaxed) > 0);

    // Still serving, still the same process, and every violation is in the log with its label.
    assert!(gw.is_running());
    assert_eq!(client.get(&gw.url("/ok"), &[]).await.status, 200);
    let log = gw.log();
    for label in ["timeout", "fuel", "memory", "trap", "output_cap"] {
        assert!(
            log.contains(&format!("violation=\"{label}\""))
                || log.contains(&format!("violation={label}")),
            "no `{label}` violation in the log:\n{log}"
        );
    }
    assert!(
        log.contains("plugin=misbehave") || log.contains("plugin=\"misbehave\""),
        "{log}"
    );
    // Each failure is logged once, inside the request's span: route and request id on the line.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin failed"))
        .collect();
    assert!(!failures.is_empty());
    for line in failures {
        assert!(
            line.contains("request{route=") && line.contains("request_id="),
            "no request span on: {line}"
        );
    }
}

/// Requests the healthy `/ok` route sent upstream after `from`.
fn count_healthy_upstream(up: &Upstream, from: usize) -> usize {
    up.seen()[from..].iter().filter(|s| s.uri == "/ok").count()
}

/// A call parked in an async host function (here a counters call on a Redis that accepts and
/// never answers, with the state timeout far above the plugin's) is stopped by the plugin's
/// wall-clock `timeout_ms` (200 ms), not by the epoch deadline, which only stops running guest code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_parked_in_a_host_function_times_out() {
    let up = Upstream::echo("up").await;
    let silent_redis = Upstream::start("redis", Behaviour::Silent).await;
    let state = format!(
        "backend = \"redis\"\nurl = \"redis://{}\"\ntimeout_ms = 5000",
        silent_redis.addr
    );
    let gw = Gateway::start(&rate_limited_config(&up.target(), &state, "second = 100"));
    let client = HttpClient::http1();
    let started = Instant::now();
    let reply = client.get(&gw.url("/x"), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 500, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "plugin_failed");
    assert!(
        error["message"].as_str().unwrap().contains("(timeout)"),
        "{error}"
    );
    // Far below the 5 s the state backend would have waited.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(up.count(), 0);
    // Only that request failed: the store now reports the backend unavailable at once, and
    // `on_unavailable` (allow by default) lets the next one through.
    assert_eq!(client.get(&gw.url("/x"), &[]).await.status, 200);
}

/// `max_instances` bounds live instances, not only calls: while the use's one instance is
/// parked in a host call (a counters call on a Redis that never answers), other requests
/// neither build instances of their own nor queue behind it without bound; each waits a
/// short bounded time and fails fast as `busy` (503). Before, each built its own instance and
/// queued for the call permit until the parked call timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_instances_bounds_instances_and_a_busy_plugin_fails_fast() {
    let up = Upstream::echo("up").await;
    let silent_redis = Upstream::start("redis", Behaviour::Silent).await;
    let state = format!(
        "backend = \"redis\"\nurl = \"redis://{}\"\ntimeout_ms = 5000",
        silent_redis.addr
    );
    let config = rate_limited_config(&up.target(), &state, "second = 100").replace(
        "timeout_ms = 200\n",
        "timeout_ms = 1500\nmax_instances = 1\n",
    );
    assert!(config.contains("max_instances = 1"));
    let gw = Gateway::start(&config);
    let client = HttpClient::http1();
    let url = gw.url("/x");
    let parked = async {
        let started = Instant::now();
        let reply = client.get(&url, &[]).await;
        (reply, started.elapsed())
    };
    let others = async {
        // Let the first request take the one instance and park in Redis.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let one = || async {
            let started = Instant::now();
            let reply = client.get(&url, &[]).await;
            (reply, started.elapsed())
        };
        let (a, b, c) = tokio::join!(one(), one(), one());
        vec![a, b, c]
    };
    let ((first, first_took), others) = tokio::join!(parked, others);
    assert_eq!(first.status, 500, "{}", first.text());
    assert!(first.text().contains("(timeout)"), "{}", first.text());
    assert!(first_took >= Duration::from_millis(1400), "{first_took:?}");
    for (reply, took) in &others {
        assert_eq!(reply.status, 503, "{}", reply.text());
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "plugin_failed");
        assert!(
            error["message"].as_str().unwrap().contains("(busy)"),
            "{error}"
        );
        // Answered within the short wait, long before the parked call ended.
        assert!(*took < Duration::from_millis(700), "took {took:?}");
    }
    assert_eq!(up.count(), 0);
}

/// A plugin answer with one bad part is refused whole: with `on_error = "allow"` the request
/// goes upstream exactly as it was before that plugin (before, the method and path changes
/// were already applied when the bad header name was found, and the half-rewritten request
/// went upstream); with `deny` it fails closed and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_bad_plugin_answer_applies_nothing() {
    let up = Upstream::echo("up").await;
    let module = test_plugin("test-misbehave");
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.misbehave]
module = {module:?}
capabilities = ["log", "clock", "kv", "counters"]
timeout_ms = 2000

[[routes]]
name = "allow"
match = {{ path = "/half-bad" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "half-bad" }}, on_error = "allow" }} ]

[[routes]]
name = "deny"
match = {{ path = "/half-bad-deny" }}
upstream = "up"
plugins = [ {{ use = "misbehave", config = {{ mode = "half-bad" }} }} ]
"#,
        server = server_section(),
        target = up.target(),
    ));
    let client = HttpClient::http1();
    let reply = client.get(&gw.url("/half-bad?q=1"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/half-bad?q=1");
    assert!(!seen[0].headers.contains_key("x-fine"));
    let denied = client.get(&gw.url("/half-bad-deny"), &[]).await;
    assert_eq!(denied.status, 500);
    assert!(denied.text().contains("(bad_output)"), "{}", denied.text());
    assert_eq!(up.count(), 1);
}

/// A plugin that answers `fail(reason)` (the SDK's `Flow::Fail`) is a failure of that plugin:
/// `on_error` decides, in either phase, and the reason is in the log under `failed`. The
/// instance is not discarded (it did not trap), so the next request still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fails_goes_through_its_on_error() {
    let up = Upstream::echo("up").await;
    let module = test_plugin("test-misbehave");
    let route = |name: &str, use_: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nmatch = {{ path = \"/{name}\" }}\nupstream = \"up\"\nplugins = [ {use_} ]\n\n"
        )
    };
    let mut config = format!(
        "{server}\n[upstreams.up]\ntargets = [{target}]\n\n[plugins.misbehave]\nmodule = {module:?}\ncapabilities = [\"log\", \"clock\", \"kv\", \"counters\"]\ntimeout_ms = 2000\nmax_instances = 1\n\n",
        server = server_section(),
        target = up.target(),
    );
    for (name, use_) in [
        (
            "deny",
            r#"{ use = "misbehave", config = { mode = "fail" }, error_status = 503 }"#,
        ),
        (
            "allow",
            r#"{ use = "misbehave", config = { mode = "fail" }, on_error = "allow" }"#,
        ),
        (
            "response",
            r#"{ use = "misbehave", config = { mode = "fail", phase = "response" } }"#,
        ),
    ] {
        config.push_str(&route(name, use_));
    }
    let gw = Gateway::start(&config);
    let client = HttpClient::http1();
    for _ in 0..2 {
        let denied = client.get(&gw.url("/deny"), &[]).await;
        assert_eq!(denied.status, 503, "{}", denied.text());
        assert!(denied.text().contains("(failed)"), "{}", denied.text());
    }
    assert_eq!(up.count(), 0);
    assert_eq!(client.get(&gw.url("/allow"), &[]).await.status, 200);
    assert_eq!(up.count(), 1);
    let response = client.get(&gw.url("/response"), &[]).await;
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(response.text().contains("(failed)"));
    let log = gw.log();
    assert!(
        log.contains("failed: misbehave: cannot decide on purpose"),
        "{log}"
    );
    // Each use's one instance is never discarded: init ran once per use (deny, allow).
    assert_eq!(
        log.matches("misbehave init: Fail in Request").count(),
        2,
        "{log}"
    );
}
