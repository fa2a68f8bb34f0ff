//! Traffic management against real upstreams: a weighted canary split (with its override
//! header and cookie, and sticky placement), request mirroring (copies arrive; a hanging
//! shadow never slows the real path), hostname targets re-resolved from a DNS server the
//! test runs, a brief queue under `max_connections`, and per-route timeout overrides.

use crate::resilience::{faulty, metric};
use crate::support::upstream::{Behaviour, Fault};
use crate::support::{Gateway, HttpClient, Upstream, server_section, server_with_admin};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Send `n` GETs of `path` with `headers` from 8 clients at once; how many each upstream
/// answered (by its `x-upstream`).
async fn spread(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> HashMap<String, usize> {
    let url = gw.url(path);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, headers) = (url.clone(), headers.clone());
            tokio::spawn(async move {
                let client = HttpClient::http1();
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut seen = Vec::new();
                for _ in 0..n / 8 {
                    let reply = client.get(&url, &headers).await;
                    assert_eq!(reply.status, 200);
                    seen.push(reply.header("x-upstream").unwrap_or("?").to_string());
                }
                seen
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for task in tasks {
        for name in task.await.unwrap() {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_split_follows_its_weights_and_an_override_forces_a_side() {
    let stable = Upstream::echo("stable").await;
    let canary = Upstream::echo("canary").await;
    let other = Upstream::echo("other").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.stable]
targets = [{stable}]
[upstreams.canary]
targets = [{canary}]
[upstreams.other]
targets = [{other}]

[[routes]]
name = "shop"
match = {{ path_prefix = "/shop" }}
upstreams = [
  {{ upstream = "stable", weight = 75 }},
  {{ upstream = "canary", weight = 25 }},
]
split = {{ override_header = "x-canary", override_cookie = "side" }}

[[routes]]
name = "sticky"
match = {{ path_prefix = "/sticky" }}
upstreams = [
  {{ upstream = "stable", weight = 50 }},
  {{ upstream = "canary", weight = 50 }},
]
split = {{ sticky = "header:x-user" }}

[[routes]]
name = "other"
match = {{ path_prefix = "/other" }}
upstream = "other"
"#,
        server = server_with_admin(),
        stable = stable.target(),
        canary = canary.target(),
        other = other.target(),
    ));

    // The admin API lists the split.
    let routes = HttpClient::http1()
        .get(&format!("http://{}/routes", gw.listener("admin")), &[])
        .await;
    let routes: serde_json::Value = serde_json::from_slice(&routes.body).unwrap();
    let shop = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "shop")
        .unwrap();
    assert_eq!(shop["upstreams"], serde_json::json!(["stable", "canary"]));

    // The split over 10,000 requests: 25 % ± 3 points.
    let counts = spread(&gw, "/shop/x", &[], 10_000).await;
    let to_canary = counts.get("canary").copied().unwrap_or(0) as f64 / 10_000.0;
    assert!((to_canary - 0.25).abs() <= 0.03, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(
        metric(
            &gw,
            "gateway_route_split_total",
            &[
                ("route", "shop"),
                ("upstream", "canary"),
                ("placed", "weight")
            ]
        )
        .await,
        Some(counts["canary"] as f64)
    );

    // Forced by the header, by the cookie; a name outside the route is no override.
    let forced = spread(&gw, "/shop/x", &[("x-canary", "canary")], 200).await;
    assert_eq!(forced, HashMap::from([("canary".to_string(), 200)]));
    let by_cookie = spread(&gw, "/shop/x", &[("cookie", "a=b; side=stable")], 200).await;
    assert_eq!(by_cookie, HashMap::from([("stable".to_string(), 200)]));
    let outside = spread(&gw, "/shop/x", &[("x-canary", "other")], 400).await;
    assert!(
        !outside.contains_key("other") && outside.len() == 2,
        "{outside:?}"
    );

    // Sticky: each user stays on one side, and the users spread over both.
    let client = HttpClient::http1();
    let mut sides = HashMap::new();
    for user in 0..100 {
        let user = format!("user-{user}");
        let mut seen = Vec::new();
        for _ in 0..5 {
            let reply = client.get(&gw.url("/sticky"), &[("x-user", &user)]).await;
            seen.push(reply.header("x-upstream").unwrap().to_string());
        }
        assert!(seen.iter().all(|s| *s == seen[0]), "{user}: {seen:?}");
        *sides.entry(seen[0].clone()).or_insert(0) += 1;
    }
    assert!(sides.values().all(|n| *n >= 25), "{sides:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_gets_copies_and_a_hanging_mirror_never_slows_the_real_path() {
    let primary = Upstream::echo("primary").await;
    let shadow = Upstream::echo("shadow").await;
    let (stuck, stuck_faults) = faulty("stuck").await;
    stuck_faults.set(Fault::Hang);
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.primary]
targets = [{primary}]
[upstreams.shadow]
targets = [{shadow}]
[upstreams.stuck]
targets = [{stuck}]
response_timeout_ms = 30000

[[routes]]
name = "copied"
match = {{ path_prefix = "/copied" }}
upstream = "primary"
mirror = {{ upstream = "shadow", max_body_bytes = 1024 }}

[[routes]]
name = "half"
match = {{ path_prefix = "/half" }}
upstream = "primary"
mirror = {{ upstream = "shadow", share = 0.5 }}

[[routes]]
name = "stuck"
match = {{ path_prefix = "/stuck" }}
upstream = "primary"
mirror = {{ upstream = "stuck", max_in_flight = 4 }}
"#,
        server = server_with_admin(),
        primary = primary.target(),
        shadow = shadow.target(),
        stuck = stuck.target(),
    ));
    let client = HttpClient::http1();

    // Every request copied, body and all; a body past the mirror's cap goes unmirrored.
    for i in 0..20 {
        let reply = client
            .send(
                "POST",
                &gw.url(&format!("/copied/{i}")),
                &[],
                format!("body {i}"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let big = client
        .send("POST", &gw.url("/copied/big"), &[], vec![b'x'; 4096])
        .await;
    assert_eq!(big.status, 200);
    let copies = wait_for(|| shadow.count() >= 20, Duration::from_secs(5)).await;
    assert!(copies, "{} copies of 20", shadow.count());
    let seen = shadow.seen();
    assert_eq!(seen.len(), 20, "the oversized body was not copied");
    for (i, copy) in seen.iter().enumerate() {
        assert_eq!(copy.method, "POST");
        assert_eq!(copy.uri, format!("/copied/{i}"));
        assert_eq!(copy.body, format!("body {i}").as_bytes());
    }
    assert_eq!(
        metric(
            &gw,
            "gateway_mirror_requests_total",
            &[("route", "copied"), ("outcome", "body")]
        )
        .await,
        Some(1.0)
    );

    // Half of the requests.
    for _ in 0..1000 {
        assert_eq!(client.get(&gw.url("/half"), &[]).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let halved = shadow.count() - 20;
    assert!(
        (420..=580).contains(&halved),
        "{halved} copies of 1000 at share 0.5"
    );

    // The shadow hangs: the real requests go on at full speed, and at most 4 copies wait.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let one = Instant::now();
        assert_eq!(client.get(&gw.url("/stuck"), &[]).await.status, 200);
        slowest = slowest.max(one.elapsed());
    }
    let took = started.elapsed();
    assert!(
        slowest < Duration::from_millis(500) && took < Duration::from_secs(5),
        "slowest {slowest:?}, all {took:?}"
    );
    assert_eq!(stuck.count(), 4, "copies in flight at once");
    assert_eq!(
        metric(
            &gw,
            "gateway_mirror_requests_total",
            &[("route", "stuck"), ("outcome", "busy")]
        )
        .await,
        Some(296.0)
    );
    assert_eq!(
        primary.seen().iter().filter(|s| s.uri == "/stuck").count(),
        300
    );
    stuck_faults.set(Fault::Healthy);
}

/// Wait until `done` holds, at most `limit`; whether it did.
async fn wait_for(done: impl Fn() -> bool, limit: Duration) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A DNS server for one name: it answers A queries with the address the test sets (TTL 1 s),
/// or SERVFAIL while none is set; anything else gets an empty answer.
struct Dns {
    addr: SocketAddr,
    answer: Arc<Mutex<Option<Ipv4Addr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    async fn start(answer: Ipv4Addr) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Some(answer)));
        let current = answer.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let now = *current.lock().unwrap();
                if let Some(reply) = dns_reply(&buf[..n], now) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Dns { addr, answer, task }
    }

    fn set(&self, answer: Option<Ipv4Addr>) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to one query (RFC 1035 §4.1): its question echoed, an A record when asked for
/// one and an address is set.
fn dns_reply(query: &[u8], answer: Option<Ipv4Addr>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let question = query.get(12..question_end)?;
    let mut reply = Vec::new();
    reply.extend_from_slice(&query[..2]);
    let records = match (answer, qtype) {
        (None, _) => {
            reply.extend_from_slice(&[0x81, 0x82]); // response, SERVFAIL
            None
        }
        (Some(ip), 1) => {
            reply.extend_from_slice(&[0x85, 0x80]);
            Some(ip)
        }
        (Some(_), _) => {
            reply.extend_from_slice(&[0x85, 0x80]);
            None
        }
    };
    let count = u16::from(records.is_some());
    reply.extend_from_slice(&[0, 1]);
    reply.extend_from_slice(&count.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if let Some(ip) = records {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// Two upstreams on the same port, one on 127.0.0.1 and one on 127.0.0.2.
async fn two_on_one_port() -> (Upstream, Upstream) {
    for _ in 0..20 {
        let first = Upstream::echo("first").await;
        let port = first.addr.port();
        let second = Upstream::start_on(
            SocketAddr::from(([127, 0, 0, 2], port)),
            "second",
            Behaviour::Echo,
        )
        .await;
        if let Some(second) = second {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_target_follows_its_dns_answer_and_keeps_it_when_dns_fails() {
    let (first, second) = two_on_one_port().await;
    let dns = Dns::start(Ipv4Addr::new(127, 0, 0, 1)).await;
    let port = first.addr.port();
    let gw = Gateway::start(&format!(
        r#"{server}
[resolver]
nameservers = ["{dns}"]
min_ttl_s = 1
timeout_ms = 300

[upstreams.svc]
targets = ["svc.gateway.test:{port}"]

[[routes]]
name = "svc"
match = {{ path_prefix = "/" }}
upstream = "svc"
"#,
        server = server_with_admin(),
        dns = dns.addr,
    ));
    let client = HttpClient::http1();
    let answered_by = |want: &'static str| {
        let (client, url) = (client.clone(), gw.url("/"));
        async move {
            let started = Instant::now();
            loop {
                let reply = client.get(&url, &[]).await;
                if reply.status == 200 && reply.header("x-upstream") == Some(want) {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never answered by {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    answered_by("first").await;

    // The name moves: within a TTL or two, requests follow it (kept connections too).
    dns.set(Some(Ipv4Addr::new(127, 0, 0, 2)));
    let moved = answered_by("second").await;
    assert!(moved < Duration::from_secs(4), "followed after {moved:?}");
    let after = spread(&gw, "/", &[], 80).await;
    assert_eq!(after, HashMap::from([("second".to_string(), 80)]));
    let target = format!("svc.gateway.test:{port}");
    let series = [("upstream", "svc"), ("target", target.as_str())];
    assert!(
        metric(
            &gw,
            "gateway_upstream_dns_resolutions_total",
            &[series[0], series[1], ("result", "changed")]
        )
        .await
            >= Some(2.0)
    );

    // DNS fails: the last good answer stands.
    dns.set(None);
    let failed = [series[0], series[1], ("result", "failed")];
    let started = Instant::now();
    while metric(&gw, "gateway_upstream_dns_resolutions_total", &failed)
        .await
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no failed resolution"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = spread(&gw, "/", &[], 40).await;
    assert_eq!(during, HashMap::from([("second".to_string(), 40)]));
    assert!(gw.log().contains("keeping the last answer"));
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_max_connections_wait_briefly_and_timeouts_follow_the_route() {
    let (slow, slow_faults) = faulty("slow").await;
    slow_faults.set(Fault::Slow);
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.queued]
targets = [{slow}]
max_connections = 1
max_pending = 8

[upstreams.refusing]
targets = [{slow}]
max_connections = 1

[[routes]]
name = "queued"
match = {{ path_prefix = "/queued" }}
upstream = "queued"

[[routes]]
name = "refusing"
match = {{ path_prefix = "/refusing" }}
upstream = "refusing"

[[routes]]
name = "impatient"
match = {{ path_prefix = "/impatient" }}
upstream = "queued"
response_timeout_ms = 10
"#,
        server = server_section(),
        slow = slow.target(),
    ));
    let burst = |path: &'static str| {
        let url = gw.url(path);
        async move {
            let tasks: Vec<_> = (0..6)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await.status })
                })
                .collect();
            let mut statuses = Vec::new();
            for task in tasks {
                statuses.push(task.await.unwrap());
            }
            statuses.sort();
            statuses
        }
    };
    // One at a time at 50 ms each: the waiting ones are served in turn.
    assert_eq!(burst("/queued").await, vec![200; 6]);
    // Without a queue, the ones past the cap are refused at once.
    let refused = burst("/refusing").await;
    assert!(
        refused.contains(&503) && refused.contains(&200),
        "{refused:?}"
    );
    // The route's own response timeout, shorter than the upstream's.
    let client = HttpClient::http1();
    let impatient = client.get(&gw.url("/impatient"), &[]).await;
    assert_eq!(
        impatient.status,
        504,
        "{}",
        String::from_utf8_lossy(&impatient.body)
    );
    assert_eq!(client.get(&gw.url("/queued"), &[]).await.status, 200);
}

/// An upstream that sends each response head at once and its 4-byte body `delay` later.
async fn slow_body_upstream(delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    request.clear();
                    let head =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-upstream: slow-body\r\n\r\n";
                    if stream.write_all(head).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    if stream.write_all(b"done").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_stays_busy_until_its_response_body_is_done() {
    let (addr, _upstream) = slow_body_upstream(Duration::from_millis(600)).await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.one]
targets = ["{addr}"]
max_connections = 1

[[routes]]
name = "one"
match = {{ path_prefix = "/" }}
upstream = "one"
"#,
        server = server_section(),
    ));
    let url = gw.url("/");
    let first = tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await });
    // The first response's head is out and its body still coming: the target is at its cap.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let client = HttpClient::http1();
    let second = client.get(&gw.url("/"), &[]).await;
    assert_eq!(
        second.status,
        503,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    let first = first.await.unwrap();
    assert_eq!((first.status, &first.body[..]), (200, &b"done"[..]));
    // Its body done, the target takes the next request.
    assert_eq!(client.get(&gw.url("/"), &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_keeps_a_client_on_its_target_until_it_is_out() {
    let (a, a_faults) = faulty("a").await;
    let (b, b_faults) = faulty("b").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.app]
targets = [{a}, {b}]
sticky_cookie = {{ name = "gw_target", max_age_s = 3600 }}
outlier = {{ consecutive_failures = 1, base_ejection_ms = 60000 }}

[[routes]]
name = "app"
match = {{ path_prefix = "/" }}
upstream = "app"
"#,
        server = server_section(),
        a = a.target(),
        b = b.target(),
    ));
    let client = HttpClient::http1();
    // A forged or stale token names no target: balanced as usual, and given a real cookie.
    for forged in [
        "gw_target=0123456789abcdef",
        "gw_target=",
        "gw_target=127.0.0.1",
    ] {
        let reply = client.get(&gw.url("/"), &[("cookie", forged)]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("set-cookie").is_some(), "{forged}");
    }
    let first = client.get(&gw.url("/"), &[]).await;
    let set = first
        .header("set-cookie")
        .expect("a cookie is set")
        .to_string();
    assert!(
        set.starts_with("gw_target=") && set.contains("Max-Age=3600"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let home = first.header("x-upstream").unwrap().to_string();
    for _ in 0..20 {
        let reply = client.get(&gw.url("/"), &[("cookie", &cookie)]).await;
        assert_eq!(reply.header("x-upstream"), Some(home.as_str()));
        assert_eq!(
            reply.header("set-cookie"),
            None,
            "a kept cookie is not set again"
        );
    }
    // Its target fails and is ejected: the client moves once, and gets the new cookie.
    let (home_faults, other) = if home == "a" {
        (&a_faults, "b")
    } else {
        (&b_faults, "a")
    };
    home_faults.set(Fault::Error);
    assert_eq!(
        client
            .get(&gw.url("/"), &[("cookie", &cookie)])
            .await
            .status,
        500
    );
    let moved = client.get(&gw.url("/"), &[("cookie", &cookie)]).await;
    assert_eq!(moved.header("x-upstream"), Some(other));
    let new_cookie = moved
        .header("set-cookie")
        .expect("a new cookie")
        .to_string();
    let new_cookie = new_cookie.split(';').next().unwrap().to_string();
    assert_ne!(new_cookie, cookie);
    for _ in 0..10 {
        let reply = client.get(&gw.url("/"), &[("cookie", &new_cookie)]).await;
        assert_eq!(reply.header("x-upstream"), Some(other));
    }
}
