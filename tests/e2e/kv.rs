//! The `kv` capability on Redis: values are shared by every gateway on the same Redis, carry a
//! TTL, and are namespaced per plugin — a second plugin cannot read the first one's keys.

use crate::support::redis::RedisServer;
use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, server_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_shared_across_gateways_and_namespaced_per_plugin() {
    let redis = RedisServer::start();
    let module = test_plugin("test-kv-probe");
    let config = format!(
        r#"{server}
[state]
backend = "redis"
url = "{url}"
timeout_ms = 200

[plugins.a]
module = "{module}"
capabilities = ["kv"]

[plugins.b]
module = "{module}"
capabilities = ["kv"]

[[routes]]
name = "a"
match = {{ path_prefix = "/a" }}
plugins = [ {{ use = "a" }} ]

[[routes]]
name = "b"
match = {{ path_prefix = "/b" }}
plugins = [ {{ use = "b" }} ]
"#,
        server = server_section(),
        url = redis.url(),
    );
    let (first, second) = (Gateway::start(&config), Gateway::start(&config));
    let client = HttpClient::http1();

    let set = client
        .get(&first.url("/a?op=set&key=session&value=alice"), &[])
        .await;
    assert_eq!(set.status, 204, "{}", set.text());
    let shared = client.get(&second.url("/a?op=get&key=session"), &[]).await;
    assert_eq!(shared.status, 200, "{}", shared.text());
    assert_eq!(
        shared.text(),
        "alice",
        "the other gateway reads plugin a's value"
    );
    let other_plugin = client.get(&second.url("/b?op=get&key=session"), &[]).await;
    assert_eq!(
        other_plugin.status, 404,
        "plugin b must not see plugin a's key"
    );

    let keys = redis.cli(&["--scan", "--pattern", "gateway:kv:*"]);
    assert_eq!(keys, vec!["gateway:kv:a:session".to_string()]);
    let ttl: i64 = redis.cli(&["PTTL", &keys[0]])[0].parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "TTL {ttl}");
}
