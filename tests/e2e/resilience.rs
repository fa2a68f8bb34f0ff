//! Upstreams that fail: fault-injecting upstreams (switched between healthy, 500, hanging,
//! dropping connections and slow while the gateway runs) against outlier ejection, active
//! health checks, the no-healthy policy, both circuit breakers, and the balancing policies.

use crate::support::upstream::{Behaviour, Fault, Faults};
use crate::support::{Gateway, HttpClient, Upstream, scratch_dir, server_with_admin};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A gateway with `[admin]`, route `/` to upstream `up` whose section is `upstream` (its
/// `targets` line included).
fn gateway(upstream: &str) -> Gateway {
    Gateway::start(&format!(
        r#"{server}
[upstreams.up]
{upstream}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
"#,
        server = server_with_admin(),
    ))
}

/// A faulty upstream named `name`, and its switch.
pub(crate) async fn faulty(name: &str) -> (Upstream, Arc<Faults>) {
    let faults = Faults::new(Fault::Healthy);
    let upstream = Upstream::start(name, Behaviour::Faulty(faults.clone())).await;
    (upstream, faults)
}

/// The value of the `/metrics` sample of `name` with all of `labels` (in any order).
pub(crate) async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let admin = gw.listener("admin");
    let text = HttpClient::http1()
        .get(&format!("http://{admin}/metrics"), &[])
        .await
        .text();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// Wait until `gateway_upstream_target_healthy` of `series` is `value`, at most `limit`;
/// how long it took.
async fn target_health(
    gw: &Gateway,
    series: &[(&str, &str)],
    value: f64,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while metric(gw, "gateway_upstream_target_healthy", series).await != Some(value) {
        assert!(
            started.elapsed() < limit,
            "{series:?} not {value} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Requests of `up` other than health checks.
fn served(up: &Upstream) -> usize {
    up.seen().iter().filter(|s| s.uri != "/healthz").count()
}

/// Send `n` requests one after another; their statuses.
async fn send(gw: &Gateway, n: usize) -> Vec<u16> {
    let client = HttpClient::http1();
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(client.get(&gw.url("/x"), &[]).await.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_a_target_and_it_returns_after_the_ejection() {
    let (a, a_faults) = faulty("a").await;
    let b = Upstream::echo("b").await;
    let gw = gateway(&format!(
        "targets = [{}, {}]\noutlier = {{ consecutive_failures = 3, base_ejection_ms = 1500 }}",
        a.target(),
        b.target()
    ));
    a_faults.set(Fault::Error);
    let statuses = send(&gw, 40).await;
    // Round robin: every other request reaches `a` until its third 500 ejects it.
    assert_eq!(served(&a), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 3);
    let target = a.addr.to_string();
    let series = [("upstream", "up"), ("target", target.as_str())];
    assert_eq!(
        metric(&gw, "gateway_upstream_ejections_total", &series).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&gw, "gateway_upstream_target_healthy", &series).await,
        Some(0.0)
    );
    assert!(
        gw.log()
            .contains("target ejected after 3 consecutive failures")
    );

    // Recovered, and the ejection over: back in rotation.
    a_faults.set(Fault::Healthy);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let statuses = send(&gw, 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(served(&a) >= 3 + 9, "a serves again: {}", served(&a));
    assert_eq!(
        metric(&gw, "gateway_upstream_target_healthy", &series).await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_dead_target_out_within_two_intervals_and_bring_it_back() {
    let (a, a_faults) = faulty("a").await;
    let b = Upstream::echo("b").await;
    let gw = gateway(&format!(
        "targets = [{}, {}]\noutlier = {{ consecutive_failures = 0 }}\n\
         health_check = {{ path = \"/healthz\", interval_ms = 300, timeout_ms = 200, \
         healthy_threshold = 1, unhealthy_threshold = 1 }}",
        a.target(),
        b.target()
    ));
    let target = a.addr.to_string();
    let series = [("upstream", "up"), ("target", target.as_str())];
    send(&gw, 10).await;
    assert_eq!(served(&a), 5);
    a_faults.set(Fault::Close);
    // Two intervals, a check's timeout, and the scrape's own time.
    let in_time = Duration::from_millis(2 * 300 + 200 + 100);
    let took = target_health(&gw, &series, 0.0, in_time).await;
    eprintln!("unhealthy {took:?} after the target died");
    let before = served(&a);
    let statuses = send(&gw, 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(served(&a), before, "no request reaches an unhealthy target");
    let checks = a.seen().iter().filter(|s| s.uri == "/healthz").count();
    assert!(checks >= 2, "checked every interval: {checks}");

    a_faults.set(Fault::Healthy);
    target_health(&gw, &series, 1.0, in_time).await;
    send(&gw, 10).await;
    assert_eq!(served(&a), before + 5, "back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_healthy_target_an_upstream_uses_them_all_or_fails_fast_as_configured() {
    for (policy, expected) in [("panic", 502), ("fail", 503)] {
        let (a, a_faults) = faulty("a").await;
        let gw = gateway(&format!(
            "targets = [{}]\nno_healthy = \"{policy}\"\noutlier = {{ consecutive_failures = 0 }}\n\
             health_check = {{ path = \"/healthz\", interval_ms = 200, timeout_ms = 100, \
             unhealthy_threshold = 1 }}",
            a.target()
        ));
        a_faults.set(Fault::Close);
        let target = a.addr.to_string();
        let series = [("upstream", "up"), ("target", target.as_str())];
        target_health(&gw, &series, 0.0, Duration::from_secs(5)).await;
        let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
        assert_eq!(reply.status, expected, "{policy}: {}", reply.text());
        if policy == "fail" {
            assert_eq!(reply.json()["error"]["code"], "no_healthy_upstream");
            let rejected = [("upstream", "up"), ("reason", "no_healthy")];
            assert_eq!(
                metric(&gw, "gateway_upstream_rejected_total", &rejected).await,
                Some(1.0)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_breaker_refuses_fast_while_the_upstream_hangs() {
    let (a, a_faults) = faulty("a").await;
    a_faults.set(Fault::Hang);
    let gw = gateway(&format!(
        "targets = [{}]\nresponse_timeout_ms = 30000\nbreaker = {{ max_requests = 2, max_pending = 1, pending_timeout_ms = 200 }}",
        a.target()
    ));
    let url = gw.url("/x");
    let hanging: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while served(&a) < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A pending request waits its 200 ms for a slot, then is refused.
    let started = Instant::now();
    let reply = HttpClient::http1().get(&url, &[]).await;
    assert_eq!(reply.status, 503);
    assert!(started.elapsed() >= Duration::from_millis(190));
    // With the queue full, refusals are immediate.
    let queued = {
        let url = url.clone();
        tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = HttpClient::http1();
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = client.get(&url, &[]).await;
        took.push(started.elapsed());
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["error"]["code"], "upstream_overloaded");
    }
    took.sort();
    eprintln!("refusal while the upstream hangs: median {:?}", took[10]);
    assert!(took[10] < Duration::from_millis(5), "median {:?}", took[10]);
    assert_eq!(served(&a), 2, "nothing more reached the upstream");
    a_faults.set(Fault::Healthy);
    for request in hanging {
        assert_eq!(request.await.unwrap().status, 200);
    }
    let _ = queued.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_rate_breaker_opens_half_opens_with_exactly_its_probes_and_closes() {
    let (a, a_faults) = faulty("a").await;
    a_faults.set(Fault::Error);
    let gw = gateway(&format!(
        "targets = [{}]\noutlier = {{ consecutive_failures = 0 }}\n\
         breaker = {{ error_rate = 0.5, window_s = 30, min_requests = 10, open_ms = 500, probes = 3 }}",
        a.target()
    ));
    let state = "gateway_upstream_circuit_state";
    let up = [("upstream", "up")];
    assert_eq!(metric(&gw, state, &up).await, Some(0.0));
    let statuses = send(&gw, 10).await;
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    // Open: refused without reaching the upstream.
    let reply = HttpClient::http1().get(&gw.url("/x"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["code"], "circuit_open");
    assert_eq!(served(&a), 10);
    assert_eq!(metric(&gw, state, &up).await, Some(1.0));

    // Half-open after the cool-down: of 10 requests at once, exactly 3 reach the upstream.
    a_faults.set(Fault::Hang);
    tokio::time::sleep(Duration::from_millis(550)).await;
    let url = gw.url("/x");
    let burst: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { HttpClient::http1().get(&url, &[]).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served(&a), 13, "exactly the probes");
    assert_eq!(metric(&gw, state, &up).await, Some(2.0));
    a_faults.set(Fault::Healthy);
    let mut statuses = Vec::new();
    for request in burst {
        statuses.push(request.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503, 503, 503, 503, 503]);
    // Every probe succeeded: closed.
    assert_eq!(metric(&gw, state, &up).await, Some(0.0));
    let statuses = send(&gw, 5).await;
    assert_eq!(statuses, [200; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_hold_within_three_percent_over_ten_thousand_requests() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    for balance in ["round_robin", "random"] {
        let gw = gateway(&format!(
            "targets = [{}, {{ address = {}, weight = 3 }}]\nbalance = \"{balance}\"",
            a.target(),
            b.target()
        ));
        let (a0, b0) = (a.count(), b.count());
        let url = gw.url("/x");
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let client = HttpClient::http1();
                    for _ in 0..1250 {
                        assert_eq!(client.get(&url, &[]).await.status, 200);
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        let (to_a, to_b) = (a.count() - a0, b.count() - b0);
        assert_eq!(to_a + to_b, 10_000);
        let share = to_b as f64 / 10_000.0;
        assert!((share - 0.75).abs() <= 0.03, "{balance}: b got {share}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_fast_target() {
    let (slow, slow_faults) = faulty("slow").await;
    slow_faults.set(Fault::Slow);
    let fast = Upstream::echo("fast").await;
    let gw = gateway(&format!(
        "targets = [{}, {}]\nbalance = \"least_request\"",
        slow.target(),
        fast.target()
    ));
    let url = gw.url("/x");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = HttpClient::http1();
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    assert_eq!(client.get(&url, &[]).await.status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let (to_slow, to_fast) = (slow.count(), fast.count());
    eprintln!("least_request: slow {to_slow}, fast {to_fast}");
    assert!(to_fast > 4 * to_slow, "slow {to_slow}, fast {to_fast}");
}

/// The upstream of each of `keys` (by `x-user`), as a `balance = "consistent_hash"` gateway
/// on `targets` sends them.
async fn placement(gw: &Gateway, keys: usize) -> HashMap<usize, String> {
    let client = HttpClient::http1();
    let mut placed = HashMap::new();
    for key in 0..keys {
        let user = format!("user-{key}");
        let reply = client.get(&gw.url("/x"), &[("x-user", &user)]).await;
        placed.insert(key, reply.header("x-upstream").unwrap().to_string());
    }
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_keys_on_their_target_and_moves_few_when_one_goes() {
    let ups = [
        Upstream::echo("u0").await,
        Upstream::echo("u1").await,
        Upstream::echo("u2").await,
        Upstream::echo("u3").await,
    ];
    let dir = scratch_dir("consistent-hash");
    let path = dir.join("gateway.toml");
    let config = |targets: &[&Upstream]| {
        let list: Vec<String> = targets.iter().map(|u| u.target()).collect();
        format!(
            r#"{server}
[upstreams.up]
targets = [{list}]
balance = "consistent_hash"
hash_on = "header:x-user"

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
"#,
            server = server_with_admin(),
            list = list.join(", ")
        )
    };
    std::fs::write(&path, config(&ups.iter().collect::<Vec<_>>())).unwrap();
    let gw = Gateway::start_file(&path);
    let keys = 400;
    let first = placement(&gw, keys).await;
    assert_eq!(
        placement(&gw, keys).await,
        first,
        "the same key, the same target"
    );
    let per_target = |placed: &HashMap<usize, String>, name: &str| {
        placed.values().filter(|v| *v == name).count()
    };
    for u in ["u0", "u1", "u2", "u3"] {
        let share = per_target(&first, u) as f64 / keys as f64;
        assert!((share - 0.25).abs() < 0.1, "{u}: {share}");
    }

    // One of four targets removed (a reload): its keys move, about 1/4 of them all.
    std::fs::write(&path, config(&ups[..3].iter().collect::<Vec<_>>())).unwrap();
    let admin = gw.listener("admin");
    let reload = HttpClient::http1()
        .send("POST", &format!("http://{admin}/config/reload"), &[], "")
        .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let after = placement(&gw, keys).await;
    let moved = (0..keys).filter(|k| first[k] != after[k]).count() as f64 / keys as f64;
    eprintln!("consistent hash: {moved} of the keys moved");
    assert!(moved <= 0.25 + 0.05, "moved {moved}");
    let stayed = (0..keys)
        .filter(|k| first[k] != "u3" && first[k] == after[k])
        .count();
    let elsewhere = (0..keys).filter(|k| first[k] != "u3").count();
    assert!(
        stayed as f64 >= 0.95 * elsewhere as f64,
        "{stayed} of {elsewhere} stayed"
    );
}

/// A gateway whose route `/` to upstream `up` (`upstream`: its section) retries as `retry`.
fn retrying(upstream: &str, retry: &str) -> Gateway {
    Gateway::start(&format!(
        r#"{server}
[upstreams.up]
{upstream}
outlier = {{ consecutive_failures = 0 }}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
retry = {retry}
"#,
        server = server_with_admin(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_goes_to_another_target_and_every_attempt_is_counted() {
    let (a, a_faults) = faulty("a").await;
    a_faults.set(Fault::Error);
    let b = Upstream::echo("b").await;
    let gw = retrying(
        &format!("targets = [{}, {}]", a.target(), b.target()),
        "{ attempts = 2, on = [500, 503], backoff_ms = 1, max_backoff_ms = 2 }",
    );
    let statuses = send(&gw, 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (to_a, to_b) = (a.count(), b.count());
    assert_eq!(to_b, 20, "every request answered by b");
    assert!(to_a >= 5, "round robin sent some to a first: {to_a}");
    let retries = [("upstream", "up"), ("reason", "status")];
    assert_eq!(
        metric(&gw, "gateway_upstream_retries_total", &retries).await,
        Some(to_a as f64),
        "one retry for each of a's 500s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_requests_are_not_retried_nor_streamed_bodies_replayed() {
    let (a, a_faults) = faulty("a").await;
    a_faults.set(Fault::Error);
    let gw = retrying(
        &format!("targets = [{}]", a.target()),
        "{ attempts = 3, on = [500], backoff_ms = 1, max_backoff_ms = 2 }",
    );
    let client = HttpClient::http1();
    let reply = client.get(&gw.url("/x"), &[]).await;
    assert_eq!((reply.status, a.count()), (500, 3), "GET: three attempts");
    let reply = client.send("POST", &gw.url("/x"), &[], "order").await;
    assert_eq!((reply.status, a.count()), (500, 4), "POST: one attempt");
    // PUT is idempotent, but a streamed body went out once and cannot be sent again.
    let url = gw.url("/x");
    let status = streamed_put(&url).await;
    assert_eq!((status, a.count()), (500, 5), "streamed PUT: one attempt");
    let reply = client.send("PUT", &gw.url("/x"), &[], "known length").await;
    assert_eq!(
        (reply.status, a.count()),
        (500, 8),
        "PUT with its body buffered: three"
    );
}

/// A PUT whose body is streamed (chunked, sent in two parts): its status.
async fn streamed_put(url: &str) -> u16 {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let chunks = futures::stream::iter(
        ["part one, ", "part two"]
            .map(|c| Ok::<_, std::io::Error>(Frame::data(bytes::Bytes::from(c)))),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let request = http::Request::put(url)
        .body(StreamBody::new(chunks))
        .unwrap();
    client.request(request).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_holds_under_a_backend_that_always_fails() {
    let (a, a_faults) = faulty("a").await;
    a_faults.set(Fault::Error);
    let gw = retrying(
        &format!(
            "targets = [{}]\nretry_budget = {{ percent = 20, min_per_s = 1 }}",
            a.target()
        ),
        "{ attempts = 3, on = [500], backoff_ms = 1, max_backoff_ms = 2 }",
    );
    let requests = 200;
    let statuses = send(&gw, requests).await;
    assert!(statuses.iter().all(|s| *s == 500));
    // 20% of the requests, plus one a second over the budget's 10 s window.
    let bound = requests + requests / 5 + 10;
    let attempts = a.count();
    eprintln!(
        "retry budget: {attempts} attempts for {requests} requests (bound {bound}; without a budget {})",
        requests * 3
    );
    assert!(attempts <= bound, "{attempts} attempts");
    assert!(
        attempts > requests + 20,
        "the budget's share was used: {attempts}"
    );
    let exhausted = [("upstream", "up")];
    assert!(
        metric(
            &gw,
            "gateway_upstream_retry_budget_exhausted_total",
            &exhausted
        )
        .await
        .is_some_and(|n| n > 0.0)
    );
}
