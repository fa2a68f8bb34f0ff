//! `rate-limit` on the `counters` capability: exact fixed-window limits across two gateway
//! processes sharing a real Redis, TTLs on every key, Redis outages, and the auth → acl →
//! rate-limit chain keyed by the consumer that auth set.

use crate::support::redis::RedisServer;
use crate::support::{Gateway, HttpClient, Upstream, scratch_dir, server_section};
use std::time::{Duration, Instant};

/// A gateway config with rate-limit (`timeout_ms = 200`) on every path, `state` as the
/// `[state]` section's body and `limit` as the plugin's limits.
pub(crate) fn rate_limited_config(upstream: &str, state: &str, limit: &str) -> String {
    format!(
        r#"{server}
[state]
{state}

[upstreams.up]
targets = [{upstream}]

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]
timeout_ms = 200

[[routes]]
name = "api"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "rl", config = {{ {limit}, limit_by = "route" }} }} ]
"#,
        server = server_section()
    )
}

/// Sleep past the end of the current UTC day if it ends within `margin`, so a test's
/// requests fall in one daily window.
async fn avoid_day_boundary(margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = Duration::from_secs(86_400 - now.as_secs() % 86_400);
    if left < margin {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_admit_exactly_the_limit() {
    const LIMIT: usize = 40;
    let redis = RedisServer::start();
    let up = Upstream::echo("up").await;
    let state = format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200",
        redis.url()
    );
    let config = rate_limited_config(&up.target(), &state, &format!("day = {LIMIT}"));
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    avoid_day_boundary(Duration::from_secs(30)).await;

    let client = HttpClient::http1();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let urls = [a.url("/hit"), b.url("/hit")];
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..15 {
                let reply = client.get(&urls[(worker + i) % 2], &[]).await;
                statuses.push(reply.status);
            }
            statuses
        }));
    }
    let mut admitted = 0;
    let mut limited = 0;
    for task in tasks {
        for status in task.await.unwrap() {
            match status {
                200 => admitted += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(admitted, LIMIT, "admitted across both gateways");
    assert_eq!(limited, 8 * 15 - LIMIT);
    assert_eq!(up.count(), LIMIT);

    let keys = redis.cli(&["--scan", "--pattern", "gateway:*"]);
    assert!(!keys.is_empty());
    for key in keys {
        let ttl: i64 = redis.cli(&["PTTL", &key])[0].parse().unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_policy_fast_and_recovers() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo("up").await;
    let state = format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 50\non_unavailable = \"deny\"",
        redis.url()
    );
    let gw = Gateway::start(&rate_limited_config(&up.target(), &state, "minute = 1000"));
    let client = HttpClient::http1();
    let reply = client.get(&gw.url("/a"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("ratelimit-limit"), Some("1000"));

    redis.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let started = Instant::now();
        let reply = client.get(&gw.url("/a"), &[]).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 503, "on_unavailable = deny: {}", reply.text());
    }
    assert!(slowest < Duration::from_millis(1000), "slowest {slowest:?}");
    let log = gw.log();
    assert_eq!(
        log.matches("state backend (redis) unavailable").count(),
        1,
        "logged once per outage:\n{log}"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = client.get(&gw.url("/a"), &[]).await;
        if reply.status == 200 {
            assert!(reply.header("ratelimit-remaining").is_some());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "limits never applied again after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.log().contains("state backend (redis) available again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_acl_and_rate_limit_by_consumer_in_one_chain() {
    let dir = scratch_dir("consumers");
    let sha = |key: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let consumers = dir.join("consumers.json");
    std::fs::write(
        &consumers,
        serde_json::json!({"consumers": [
            {"id": "alice", "key_sha256": sha("alice-key"), "groups": ["admin"]},
            {"id": "carol", "key_sha256": sha("carol-key"), "groups": ["admin", "ops"]},
            {"id": "bob", "key_sha256": sha("bob-key"), "groups": ["dev"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.keys]
module = "builtin:key-auth"

[plugins.acl]
module = "builtin:acl"

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]

[[routes]]
name = "admin"
match = {{ path_prefix = "/admin" }}
upstream = "up"
plugins = [
  {{ use = "keys", config_file = "{consumers}" }},
  {{ use = "acl", config = {{ allow = ["admin"] }} }},
  {{ use = "rl", config = {{ hour = 3, limit_by = "consumer" }} }},
]
"#,
        server = server_section(),
        target = up.target(),
        consumers = consumers.display(),
    ));
    let client = HttpClient::http1();
    let get = |key: &'static str| {
        let client = client.clone();
        let url = gw.url("/admin/report");
        async move { client.get(&url, &[("x-api-key", key)]).await }
    };
    for remaining in ["2", "1", "0"] {
        let reply = get("alice-key").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
        assert_eq!(reply.header("x-ratelimit-limit-hour"), Some("3"));
    }
    let limited = get("alice-key").await;
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        get("carol-key").await.status,
        200,
        "carol has her own counter"
    );
    assert_eq!(get("bob-key").await.status, 403, "acl refuses group dev");
    assert_eq!(get("wrong-key").await.status, 401);
    assert_eq!(client.get(&gw.url("/admin"), &[]).await.status, 401);

    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].headers["x-consumer-id"], "alice");
    assert_eq!(seen[3].headers["x-consumer-id"], "carol");
    assert!(seen[0].headers.get("x-api-key").is_none(), "key stripped");
}

/// Rate-limit sets its headers from the request phase (no response call); they reach the
/// client on upstream responses and on replies from plugins later in the chain alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_reach_upstream_and_local_replies() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]

[plugins.acl]
module = "builtin:acl"

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "up"
plugins = [ {{ use = "rl", config = {{ minute = 100, limit_by = "ip" }} }} ]

[[routes]]
name = "guarded"
match = {{ path_prefix = "/guarded" }}
upstream = "up"
plugins = [
  {{ use = "rl", config = {{ minute = 50, limit_by = "ip" }} }},
  {{ use = "acl", config = {{ allow = ["admin"] }} }},
]
"#,
        server = server_section(),
        target = up.target(),
    ));
    let client = HttpClient::http1();
    let open = client.get(&gw.url("/open"), &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.header("ratelimit-limit"), Some("100"));
    assert_eq!(open.header("x-ratelimit-remaining-minute"), Some("99"));

    // acl answers itself (no consumer); the rate-limit headers are on its reply too.
    let denied = client.get(&gw.url("/guarded"), &[]).await;
    assert!(
        denied.status == 401 || denied.status == 403,
        "{}",
        denied.text()
    );
    assert_eq!(denied.header("ratelimit-limit"), Some("50"));
    assert_eq!(denied.header("ratelimit-remaining"), Some("49"));
    assert_eq!(up.count(), 1, "only /open reached the upstream");
}
