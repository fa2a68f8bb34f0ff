//! Reload under load: the config file rewritten between two versions that differ in route,
//! plugin chain and upstream, reloaded by `POST /config/reload` and SIGHUP while HTTP/1.1 and
//! HTTP/2 clients keep sending; no request fails and each one is answered wholly by one
//! version, the one serving when it began. Broken configs reloaded in the middle change
//! nothing and are reported by the admin call, `/config`, the log and the metrics.

use crate::support::upstream::Behaviour;
use crate::support::{
    Gateway, HttpClient, Upstream, scratch_dir, server_section, server_with_admin, sha256_hex,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Version `v` (`a` or `b`) of the config: everything under `/` goes to upstream `v` through
/// a request-transformer that adds `x-config: v` (version `b` also has a second route).
fn version(v: &str, a: &Upstream, b: &Upstream, extra: &str) -> String {
    let second = if v == "b" {
        "[[routes]]\nname = \"only-b\"\nmatch = { path_prefix = \"/only-b\" }\nupstream = \"b\"\n"
    } else {
        ""
    };
    format!(
        r#"{server}
[admin]
listen = "127.0.0.1:0"

[upstreams.a]
targets = [{a}]

[upstreams.b]
targets = [{b}]

[plugins.tag]
module = "builtin:request-transformer"
# Calls that overlap a reload share the CPU with its compile (two cores, a debug build, the
# clients and upstreams of this test, and whichever load test runs beside it): the default
# 20 ms is too tight for that here; what this test checks is that no request fails.
timeout_ms = 1000

{extra}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "{v}"
plugins = [ {{ use = "tag", config = {{ add = {{ headers = {{ "x-config" = "{v}" }} }} }} }} ]

{second}"#,
        server = server_section(),
        a = a.target(),
        b = b.target(),
    )
}

/// POST `/config/reload` on `admin`: the status and the JSON answer.
async fn reload(admin: std::net::SocketAddr) -> (u16, Value) {
    let reply = HttpClient::http1()
        .send("POST", &format!("http://{admin}/config/reload"), &[], "")
        .await;
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

/// One answered request: when it was sent and answered, and the version that answered it
/// (its upstream, and the tag the upstream saw, which must agree).
struct Answer {
    sent: Instant,
    answered: Instant,
    version: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_and_each_request_sees_one_version() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let dir = scratch_dir("reload-load");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, version("a", &a, &b, "")).unwrap();
    let gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");

    let answers = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    // 64 HTTP/1.1 keep-alive connections and 4 HTTP/2 clients, each paced (a debug build on
    // two cores shares them with the other tests).
    for client in (0..64)
        .map(|_| HttpClient::http1())
        .chain((0..4).map(|_| HttpClient::http2()))
    {
        let url = gw.url("/x");
        let answers = answers.clone();
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let reply = client.get(&url, &[]).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let upstream = reply.header("x-upstream").unwrap().to_string();
                let tag = reply.json()["headers"]["x-config"]
                    .as_str()
                    .map(str::to_string);
                assert_eq!(
                    tag.as_deref(),
                    Some(upstream.as_str()),
                    "one version per request"
                );
                answers.lock().unwrap().push(Answer {
                    sent,
                    answered: Instant::now(),
                    version: upstream,
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    // Each reload's completion time and the version serving from then on.
    let mut switches = vec![(Instant::now(), "a".to_string())];
    // A reload a second for a minute (RELOAD_SOAK_ROUNDS to change the count).
    let rounds: usize = std::env::var("RELOAD_SOAK_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let next = if round % 2 == 0 { "b" } else { "a" };
        std::fs::write(&path, version(next, &a, &b, "")).unwrap();
        let started = Instant::now();
        if round % 4 == 3 {
            gw.hangup();
            let deadline = Instant::now() + Duration::from_secs(10);
            while gw.log().matches("config reloaded").count() < round + 1 {
                assert!(Instant::now() < deadline, "SIGHUP reload not logged");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            let (status, answer) = reload(admin).await;
            assert_eq!(
                (status, &answer["result"]),
                (200, &Value::from("ok")),
                "{answer}"
            );
        }
        // A request in flight while the reload ran may see either version; one sent after it
        // finished and answered before the next one started sees only the new one.
        switches.push((started, String::new()));
        switches.push((Instant::now(), next.to_string()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }

    let answers = answers.lock().unwrap();
    assert!(answers.len() > 200, "too little load: {}", answers.len());
    let mut checked = 0;
    for answer in answers.iter() {
        // The last switch point at or before the request was sent, and the next one.
        let Some(last) = switches.iter().rposition(|(at, _)| *at <= answer.sent) else {
            continue;
        };
        let expected = &switches[last].1;
        let next_reload = switches.get(last + 1).map(|(at, _)| *at);
        if expected.is_empty() || next_reload.is_some_and(|next| answer.answered > next) {
            continue; // in flight while a reload ran
        }
        let origin = switches[0].0;
        assert_eq!(
            &answer.version,
            expected,
            "a request sent at {:?} after a reload saw the old config; switches {:?}",
            answer.sent - origin,
            switches
                .iter()
                .map(|(at, v)| (at.duration_since(origin), v.clone()))
                .collect::<Vec<_>>()
        );
        checked += 1;
    }
    assert!(
        checked > answers.len() / 2,
        "{checked} of {}",
        answers.len()
    );
    assert!(answers.iter().any(|a| a.version == "a") && answers.iter().any(|a| a.version == "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_changes_nothing_and_is_reported_everywhere() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let dir = scratch_dir("reload-broken");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, version("a", &a, &b, "")).unwrap();
    let gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let client = HttpClient::http1();
    let fs_reader = crate::support::wasm::test_plugin("test-fs-reader");
    let broken = [
        ("bad TOML", "[[routes]\n".to_string(), "expected"),
        (
            "a plugin whose init rejects",
            version("b", &a, &b, "").replace(r#"{ "x-config" = "b" }"#, r#"{ "x-config" = 5 }"#),
            "plugin `tag` rejected its config for route `all`",
        ),
        (
            "a missing key file",
            version(
                "b",
                &a,
                &b,
                "[keys.k]\nsecrets = [ { file = \"missing-secret.txt\" } ]\n",
            ),
            "missing-secret.txt",
        ),
        (
            "an ungranted import",
            version(
                "b",
                &a,
                &b,
                &format!("[plugins.reader]\nmodule = {fs_reader:?}\ncapabilities = [\"log\"]\n"),
            ),
            "plugins.reader",
        ),
    ];
    for (i, (what, text, expected)) in broken.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let (status, answer) = reload(admin).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let errors = answer["errors"].as_str().unwrap();
        assert!(errors.contains(expected), "{what}: {errors}");
        assert!(
            errors.contains("gateway.toml:"),
            "{what}: file and line: {errors}"
        );
        // The old config serves on.
        let reply = client.get(&gw.url("/x"), &[]).await;
        assert_eq!(reply.header("x-upstream"), Some("a"), "{what}");
        let config = client
            .get(&format!("http://{admin}/config"), &[])
            .await
            .json();
        assert!(
            config["last_reload_error"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{what}: {config}"
        );
        let metrics = client
            .get(&format!("http://{admin}/metrics"), &[])
            .await
            .text();
        assert!(
            metrics.contains(&format!(
                "gateway_config_reloads_total{{result=\"error\"}} {}",
                i + 1
            )),
            "{what}: {metrics}"
        );
        assert!(gw.log().contains("config not reloaded"), "{what}");
    }

    // A good config after the broken ones: served, and the error is cleared.
    std::fs::write(&path, version("b", &a, &b, "")).unwrap();
    let (status, answer) = reload(admin).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        client
            .get(&gw.url("/only-b/x"), &[])
            .await
            .header("x-upstream"),
        Some("b")
    );
    let config = client
        .get(&format!("http://{admin}/config"), &[])
        .await
        .json();
    assert_eq!(config["last_reload_error"], Value::Null);
    assert_eq!(config["sha256"].as_str(), answer["sha256"].as_str());

    // Reloaded unchanged, everything is kept: the plugin is not loaded again, its use keeps its
    // warm instances (no instance is created), the upstreams their connections.
    let created = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("gateway_plugin_instances_total{") && l.contains("created"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let before = created(
        &client
            .get(&format!("http://{admin}/metrics"), &[])
            .await
            .text(),
    );
    let (status, _) = reload(admin).await;
    assert_eq!(status, 200);
    assert!(
        gw.log().contains(
            "kept 1 of 1 plugins, 1 of 1 plugin uses (warm), 2 of 2 upstreams (pooled connections), and the state backend and key sets"
        ),
        "{}",
        gw.log()
    );
    for _ in 0..3 {
        assert_eq!(
            client.get(&gw.url("/x"), &[]).await.header("x-upstream"),
            Some("b")
        );
    }
    let after = created(
        &client
            .get(&format!("http://{admin}/metrics"), &[])
            .await
            .text(),
    );
    assert_eq!(before, after, "no instance was created for the kept use");
}

/// A route `/slow` to an upstream that never answers (504 after 1.5 s): a request that is
/// still in flight when something changes.
fn slow_route(silent: &Upstream) -> String {
    format!(
        "[upstreams.silent]\ntargets = [{}]\nresponse_timeout_ms = 1500\n\n\
         [[routes]]\nname = \"slow\"\nmatch = {{ path_prefix = \"/slow\" }}\nupstream = \"silent\"\n",
        silent.target()
    )
}

/// The address in a `listening on ADDR (…)` / `closed ADDR (…)` line.
fn address_in(line: &str) -> std::net::SocketAddr {
    line.split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_the_config_new_ones_bound_removed_ones_drained() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let silent = Upstream::start("silent", Behaviour::Silent).await;
    let dir = scratch_dir("reload-listen");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, version("a", &a, &b, &slow_route(&silent))).unwrap();
    let gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let old = gw.addr;
    let slow_url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { HttpClient::http1().get(&slow_url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Moved to another address: bound, then the old one closed.
    let moved = version("b", &a, &b, &slow_route(&silent)).replacen(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.2:0\"]",
        1,
    );
    std::fs::write(&path, &moved).unwrap();
    let (status, answer) = reload(admin).await;
    assert_eq!(status, 200, "{answer}");
    let limit = Duration::from_secs(5);
    let added = gw
        .printed("listening on 127.0.0.2:", limit)
        .expect("new listener");
    let closed = gw.printed("closed ", limit).expect("old listener closed");
    assert_eq!(address_in(&closed), old, "{closed}");
    let new = address_in(&added);
    let reply = HttpClient::http1()
        .get(&format!("http://{new}/x"), &[])
        .await;
    assert_eq!(reply.header("x-upstream"), Some("b"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(old).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the removed listener still accepts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The request on the removed listener finished as it would have (not reset).
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());

    // An address that cannot be bound (taken by a socket that does not share) fails the
    // reload, and nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let clash = version("a", &a, &b, &slow_route(&silent)).replacen(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.2:0\", \"127.0.0.1:{port}\"]"),
        1,
    );
    std::fs::write(&path, clash).unwrap();
    let (status, answer) = reload(admin).await;
    assert_eq!(status, 400, "{answer}");
    let errors = answer["errors"].as_str().unwrap();
    assert!(
        errors.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{errors}"
    );
    let reply = HttpClient::http1()
        .get(&format!("http://{new}/x"), &[])
        .await;
    assert_eq!(
        reply.header("x-upstream"),
        Some("b"),
        "the old config serves on"
    );
    drop(taken);
}

/// What a process holds: RSS (kB), open file descriptors other than TCP connections to or
/// from some ports, those connections, and threads.
struct Footprint {
    rss: u64,
    fds: usize,
    connections: usize,
    threads: usize,
}

/// The inodes of TCP connections with a local or remote port in `ports`.
fn connection_inodes(ports: &[u16]) -> std::collections::HashSet<String> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |field: &str| {
                let hex = field.rsplit(':').next().unwrap_or("");
                u16::from_str_radix(hex, 16).unwrap_or(0)
            };
            // Listening sockets (state 0A) are the process's own, not connections.
            if fields.len() > 9
                && fields[3] != "0A"
                && (ports.contains(&port(fields[1])) || ports.contains(&port(fields[2])))
            {
                inodes.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    inodes
}

/// The footprint of process `pid`, with connections to or from `ports` counted apart.
fn footprint(pid: u32, ports: &[u16]) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    let connections = connection_inodes(ports);
    let (mut fds, mut open) = (0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        if connections.contains(&*target.to_string_lossy()) {
            open += 1;
        } else {
            fds += 1;
        }
    }
    Footprint {
        rss: field("VmRSS:"),
        fds,
        connections: open,
        threads: field("Threads:") as usize,
    }
}

/// The sum of every `gateway_plugin_instances` series (warm and busy instances of all uses).
async fn plugin_instances(admin: std::net::SocketAddr) -> f64 {
    let reply = HttpClient::http1()
        .get(&format!("http://{admin}/metrics"), &[])
        .await;
    reply
        .text()
        .lines()
        .filter(|line| line.starts_with("gateway_plugin_instances{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_leave_memory_descriptors_threads_and_instances_where_they_were() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let dir = scratch_dir("reload-leak");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, version("a", &a, &b, "")).unwrap();
    let gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let client = HttpClient::http1();
    let url = gw.url("/x");
    let mut round = 0;
    let mut cycle = async |reloads: usize| {
        for _ in 0..reloads {
            round += 1;
            let next = if round % 2 == 1 { "b" } else { "a" };
            std::fs::write(&path, version(next, &a, &b, "")).unwrap();
            let (status, answer) = reload(admin).await;
            assert_eq!(status, 200, "{answer}");
            for _ in 0..3 {
                let reply = client.get(&url, &[]).await;
                assert_eq!(reply.header("x-upstream"), Some(next));
            }
        }
    };
    // Warm up: every allocator arena and pool at its working size.
    cycle(20).await;
    // Client and pooled upstream connections come and go with the workers that serve the
    // test's requests (up to one per worker and upstream): counted apart, and bounded.
    let ports = [gw.addr.port(), admin.port(), a.addr.port(), b.addr.port()];
    let before = footprint(gw.pid(), &ports);
    let instances = plugin_instances(admin).await;
    cycle(100).await;
    let after = footprint(gw.pid(), &ports);
    let instances_after = plugin_instances(admin).await;
    eprintln!(
        "100 reloads: RSS {} → {} kB, fds {} → {} (and connections {} → {}), threads {} → {}, \
         plugin instances {instances} → {instances_after}",
        before.rss,
        after.rss,
        before.fds,
        after.fds,
        before.connections,
        after.connections,
        before.threads,
        after.threads
    );
    let within = |before: usize, after: usize| after as f64 <= before as f64 * 1.05 + 1.0;
    assert!(within(before.rss as usize, after.rss as usize), "RSS");
    assert!(
        within(before.fds, after.fds),
        "fds {} → {}",
        before.fds,
        after.fds
    );
    assert!(after.connections <= 16, "{} connections", after.connections);
    assert!(within(before.threads, after.threads), "threads");
    assert!(instances > 0.0);
    assert_eq!(instances_after, instances, "plugin instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_what_a_reload_would_change_offline_and_against_the_running_gateway() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let dir = scratch_dir("reload-plan");
    let old = dir.join("gateway.toml");
    let new = dir.join("next.toml");
    std::fs::write(&old, version("a", &a, &b, "")).unwrap();
    let widened = version("b", &a, &b, "").replace(
        "module = \"builtin:request-transformer\"",
        "module = \"builtin:request-transformer\"\ncapabilities = [\"log\", \"kv\"]",
    );
    std::fs::write(&new, &widened).unwrap();
    let (old_s, new_s) = (old.to_str().unwrap(), new.to_str().unwrap());

    let same = crate::support::gateway_cli(&["plan", "--config", old_s, "--against", old_s]);
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, "no changes\n"),
        "{}",
        same.stderr
    );
    let offline = crate::support::gateway_cli(&["plan", "--config", new_s, "--against", old_s]);
    assert_eq!(offline.code, 2, "{}{}", offline.stdout, offline.stderr);
    for line in [
        "+ route `only-b`: match { path_prefix = /only-b }, upstream b, chain []",
        "~ route `all`: upstream a → b",
        "! plugin `tag`: capabilities widened: +kv, +log",
        "~ use of `tag` at route `all` plugins[0]: config",
    ] {
        assert!(offline.stdout.contains(line), "{line}\n{}", offline.stdout);
    }

    let gw = Gateway::start_file(&old);
    let admin = gw.listener("admin").to_string();
    let online = crate::support::gateway_cli(&["plan", "--config", new_s, "--admin", &admin]);
    assert_eq!(online.code, 2, "{}{}", online.stdout, online.stderr);
    assert_eq!(online.stdout, offline.stdout, "the same plan either way");
    std::fs::write(&new, "[[routes]\n").unwrap();
    let broken = crate::support::gateway_cli(&["plan", "--config", new_s, "--admin", &admin]);
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    assert!(broken.stderr.contains("(planned):1:"), "{}", broken.stderr);
    // Planning changes nothing.
    let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
    assert_eq!(reply.header("x-upstream"), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_ready_turns_503_while_new_requests_are_still_served_for_the_readiness_grace() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let dir = scratch_dir("reload-grace");
    let path = dir.join("gateway.toml");
    let text =
        version("a", &a, &b, "").replacen("[server]\n", "[server]\nreadiness_grace_ms = 1500\n", 1);
    std::fs::write(&path, text).unwrap();
    let mut gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let ready = |admin| async move {
        HttpClient::http1()
            .get(&format!("http://{admin}/ready"), &[])
            .await
            .status
    };
    assert_eq!(ready(admin).await, 200);
    let signalled = Instant::now();
    gw.terminate();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready(admin).await != 503 {
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Within the grace, a new connection is still accepted and served.
    let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
    assert_eq!(reply.status, 200);
    assert!(signalled.elapsed() < Duration::from_millis(1500));
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "exited before the readiness grace ended"
    );
}

/// Replace `path` as deploy tools do: write a new file beside it, rename it over the old one.
fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, bytes).unwrap();
    std::fs::rename(&fresh, path).unwrap();
}

/// The config of the watch test: one tagger use, its module pinned to `sha256`.
fn tagged(up: &Upstream, sha256: &str) -> String {
    format!(
        r#"{server}
[admin]
listen = "127.0.0.1:0"

[upstreams.up]
targets = [{target}]

[plugins.tagger]
module = "tagger.wasm"
sha256 = "{sha256}"
capabilities = ["log"]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "tagger", config = {{ name = "A" }} }} ]
"#,
        server = server_section(),
        target = up.target(),
    )
}

/// Poll `GET /plugins` until the tagger's SHA-256 is `expected`.
async fn wait_for_module(admin: std::net::SocketAddr, expected: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let reply = HttpClient::http1()
            .get(&format!("http://{admin}/plugins"), &[])
            .await;
        if reply.text().contains(expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_a_changed_config_and_a_changed_plugin_file_its_pin_checked() {
    let up = Upstream::echo("up").await;
    let dir = scratch_dir("reload-watch");
    let old_module =
        std::fs::read(crate::support::root().join("tests/fixtures/tagger-wit-0.2.0.wasm")).unwrap();
    let new_module = std::fs::read(crate::support::wasm::test_plugin("test-tagger")).unwrap();
    let (old_sha, new_sha) = (sha256_hex(&old_module), sha256_hex(&new_module));
    assert_ne!(old_sha, new_sha);
    std::fs::write(dir.join("tagger.wasm"), &old_module).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, tagged(&up, &old_sha)).unwrap();
    let gw = Gateway::start_file_with(&path, &["--watch"]);
    let admin = gw.listener("admin");
    assert!(wait_for_module(admin, &old_sha).await);

    // The module changes on disk but its pin does not: the reload is refused.
    replace_file(&dir.join("tagger.wasm"), &new_module);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.log().contains("config not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload after the module changed\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = HttpClient::http1()
        .get(&format!("http://{admin}/config"), &[])
        .await
        .json();
    let error = config["last_reload_error"].as_str().unwrap_or_default();
    assert!(error.contains(&new_sha), "{error}");
    let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
    assert_eq!(reply.status, 200);
    assert!(
        wait_for_module(admin, &old_sha).await,
        "the old module serves on"
    );

    // The config's pin follows (rewritten in place, as an editor saving does): reloaded, the
    // new module runs.
    std::fs::write(&path, tagged(&up, &new_sha)).unwrap();
    assert!(wait_for_module(admin, &new_sha).await, "{}", gw.log());
    assert!(gw.log().contains("kept 0 of 1 plugins"), "{}", gw.log());
    let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.seen().last().unwrap().headers["x-chain"], "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_upstream_no_longer_writes_the_health_it_shares_with_its_successor() {
    use crate::resilience::{faulty, metric};
    use crate::support::upstream::Fault;
    let (target, faults) = faulty("t").await;
    faults.set(Fault::Error);
    // `expected` decides whether the failing target passes its checks.
    let config = |expected: &str, listen: &str| {
        format!(
            r#"{server}
[upstreams.up]
targets = [{target}]
health_check = {{ path = "/healthz", interval_ms = 100, timeout_ms = 100, healthy_threshold = 1, unhealthy_threshold = 1, expected_statuses = [{expected}] }}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
"#,
            server = server_with_admin().replacen("listen = [\"127.0.0.1:0\"]", listen, 1),
            target = target.target(),
        )
    };
    let dir = scratch_dir("reload-health");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config("200", "listen = [\"127.0.0.1:0\"]")).unwrap();
    let gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let label = target.addr.to_string();
    let series = [("upstream", "up"), ("target", label.as_str())];
    let healthy = || metric(&gw, "gateway_upstream_target_healthy", &series);
    let started = Instant::now();
    while healthy().await != Some(0.0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A reload that compiles (a new upstream: 500 now passes) but cannot bind: nothing of it
    // shows, not even its new upstream's starting health.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = format!(
        "listen = [\"127.0.0.1:0\", \"127.0.0.1:{}\"]",
        taken.local_addr().unwrap().port()
    );
    std::fs::write(&path, config("500", &clash)).unwrap();
    let (status, answer) = reload(admin).await;
    assert_eq!(status, 400, "{answer}");
    for _ in 0..5 {
        assert_eq!(healthy().await, Some(0.0));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    // Applied: the new upstream's health shows, and the old one's checks write it no more.
    std::fs::write(&path, config("500", "listen = [\"127.0.0.1:0\"]")).unwrap();
    let (status, answer) = reload(admin).await;
    assert_eq!(status, 200, "{answer}");
    let started = Instant::now();
    while healthy().await != Some(1.0) {
        assert!(started.elapsed() < Duration::from_secs(5), "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        assert_eq!(
            healthy().await,
            Some(1.0),
            "the old checker wrote its health"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(taken);
}
