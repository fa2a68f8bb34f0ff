//! Host memory a plugin reaches through `kv` and `counters` (memory backend) is bounded by its
//! namespace's quotas, with a clear error to the plugin past them; context values are capped
//! like headers.

use crate::support::wasm::misbehave_config;
use crate::support::{Gateway, HttpClient, Upstream};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 1,000 writes of 64 KiB under fresh keys (64 MiB unbounded; the gateway grew to 1.27 GiB
/// before quotas) against a 4 MiB `kv_max_bytes`: the writes past it are refused with the
/// quota named, and the gateway's RSS grows by far less than what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_counters_quotas_hold_and_the_plugin_is_told() {
    let up = Upstream::echo("up").await;
    let head = misbehave_config(
        &up,
        &[(
            "flood",
            "timeout_ms = 2000\nkv_max_bytes = 4194304\ncounters_max_keys = 1000",
        )],
    );
    let gw = Gateway::start(&format!(
        r#"{head}
[[routes]]
name = "kv"
match = {{ path = "/kv" }}
upstream = "up"
plugins = [ {{ use = "flood", config = {{ mode = "kv-flood" }} }} ]

[[routes]]
name = "counters"
match = {{ path = "/counters" }}
upstream = "up"
plugins = [ {{ use = "flood", config = {{ mode = "counter-flood" }} }} ]

[[routes]]
name = "context"
match = {{ path = "/context" }}
upstream = "up"
plugins = [ {{ use = "flood", config = {{ mode = "context-flood" }} }} ]
"#
    ));
    let client = HttpClient::http1();
    for _ in 0..20 {
        assert_eq!(client.get(&gw.url("/counters"), &[]).await.status, 200);
    }
    let before = rss_kib(gw.pid());
    for _ in 0..1000 {
        assert_eq!(client.get(&gw.url("/kv"), &[]).await.status, 200);
    }
    let grown_mib = rss_kib(gw.pid()).saturating_sub(before) / 1024;
    let errors: Vec<String> = up
        .seen()
        .iter()
        .filter_map(|s| Some(s.headers.get("x-kv-error")?.to_str().ok()?.to_string()))
        .collect();
    println!(
        "1,000 writes of 64 KiB: RSS +{grown_mib} MiB, {} refused ({:?})",
        errors.len(),
        errors.first()
    );
    // 4 MiB holds 63 values of 64 KiB (plus their keys); every later write is refused.
    assert!(
        (930..=940).contains(&errors.len()),
        "{} refused",
        errors.len()
    );
    assert!(
        errors[0].contains("kv quota of plugin `flood` reached")
            && errors[0].contains("kv_max_bytes"),
        "{}",
        errors[0]
    );
    assert!(grown_mib < 32, "RSS grew {grown_mib} MiB for a 4 MiB quota");

    // Counters: 16 fresh keys per call, 1,000 allowed; 20 calls are in, the 63rd is refused.
    let mut refused = None;
    for call in 21..=70 {
        client.get(&gw.url("/counters"), &[]).await;
        let last = up.seen().pop().unwrap();
        if let Some(error) = last.headers.get("x-counters-error") {
            refused.get_or_insert((call, error.to_str().unwrap().to_string()));
        }
    }
    let (call, error) = refused.expect("counters quota reached");
    assert_eq!(call, 63, "{error}");
    assert!(error.contains("counters_max_keys"), "{error}");

    // A 1 MiB context value is over the header-bytes cap: the plugin's output, refused.
    let reply = client.get(&gw.url("/context"), &[]).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(reply.text().contains("(output_cap)"), "{}", reply.text());
    assert!(
        gw.log().contains("context bytes, limit 65536"),
        "{}",
        gw.log()
    );
}
