//! Client connections: HTTP/1.1 keep-alive connections parked while idle and resumed, pipelined
//! requests across a park, the idle timeout, and shutdown with idle connections.

use crate::support::{Gateway, Upstream, server_section};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than two park checks (a connection idle through one whole 1 s check period parks).
const PARK_WAIT: Duration = Duration::from_millis(2_600);

/// A gateway proxying everything to `upstream`; `server` is the `[server]` section.
fn gateway(upstream: &Upstream, server: &str) -> Gateway {
    Gateway::start_logging(
        &format!(
            r#"{server}
[upstreams.echo]
targets = [{}]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "echo"
"#,
            upstream.target(),
        ),
        "info,gateway::server=debug",
    )
}

/// A raw HTTP/1.1 client connection that reads responses framed by `content-length`.
pub(crate) struct RawClient {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl RawClient {
    pub(crate) async fn connect(gw: &Gateway) -> RawClient {
        RawClient {
            stream: TcpStream::connect(gw.addr).await.unwrap(),
            buffered: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Read one response: its status and its body as JSON (the echo upstream's) or text.
    pub(crate) async fn response(&mut self) -> (u16, String) {
        let head_end = loop {
            if let Some(end) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buffered[..head_end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("content-length");
        while self.buffered.len() < head_end + length {
            self.fill().await;
        }
        let body = String::from_utf8(self.buffered[head_end..head_end + length].to_vec()).unwrap();
        self.buffered.drain(..head_end + length);
        (status, body)
    }

    /// The `uri` the upstream saw, from its echo.
    async fn echoed_uri(&mut self) -> String {
        let (status, body) = self.response().await;
        assert_eq!(status, 200, "{body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        echo["uri"].as_str().unwrap().to_string()
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("response within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed while a response was expected");
        self.buffered.extend_from_slice(&chunk[..n]);
    }

    /// Wait up to `limit` for the gateway to close the connection.
    async fn closed_within(&mut self, limit: Duration) {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

pub(crate) fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").into_bytes()
}

fn parked_count(gw: &Gateway) -> usize {
    gw.log()
        .matches("idle keep-alive connection parked")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_park_and_resume_without_losing_bytes() {
    let upstream = Upstream::echo("echo").await;
    let gw = gateway(&upstream, &server_section());
    let mut client = RawClient::connect(&gw).await;

    client.send(&get("/one")).await;
    assert_eq!(client.echoed_uri().await, "/one");
    tokio::time::sleep(PARK_WAIT).await;
    assert_eq!(
        parked_count(&gw),
        1,
        "idle connection parked; log:\n{}",
        gw.log()
    );
    // The same connection serves the next request.
    client.send(&get("/two")).await;
    assert_eq!(client.echoed_uri().await, "/two");

    // Two pipelined requests, the second cut mid-head for longer than parking takes: hyper
    // holds the partial head, so the connection must not park until the request completes.
    let mut pipelined = get("/three");
    let four = get("/four");
    pipelined.extend_from_slice(&four[..12]);
    client.send(&pipelined).await;
    assert_eq!(client.echoed_uri().await, "/three");
    tokio::time::sleep(PARK_WAIT).await;
    assert_eq!(
        parked_count(&gw),
        1,
        "parked with a partial request buffered"
    );
    client.send(&four[12..]).await;
    assert_eq!(client.echoed_uri().await, "/four");

    // After a request with a body the connection stays with hyper; after a bodyless one it
    // parks again.
    client
        .send(b"POST /five HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\n\r\nhello")
        .await;
    let (status, body) = client.response().await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["body"],
        "hello"
    );
    tokio::time::sleep(PARK_WAIT).await;
    assert_eq!(parked_count(&gw), 1);
    client.send(&get("/six")).await;
    assert_eq!(client.echoed_uri().await, "/six");
    tokio::time::sleep(PARK_WAIT).await;
    assert_eq!(parked_count(&gw), 2);

    // Bytes that arrive while parked are all read by the resumed connection: three pipelined
    // requests in one write.
    let mut three = get("/seven");
    three.extend_from_slice(&get("/eight"));
    three.extend_from_slice(&get("/nine"));
    client.send(&three).await;
    for uri in ["/seven", "/eight", "/nine"] {
        assert_eq!(client.echoed_uri().await, uri);
    }
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        seen,
        [
            "/one", "/two", "/three", "/four", "/five", "/six", "/seven", "/eight", "/nine"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() {
    let upstream = Upstream::echo("echo").await;
    let gw = gateway(
        &upstream,
        &format!("{}idle_timeout_s = 2\n", server_section()),
    );

    // Never sends a request.
    let silent = RawClient::connect(&gw).await;
    let silent_since = Instant::now();
    // Parked after one request (it parks 1-2 s in).
    let mut parked = RawClient::connect(&gw).await;
    parked.send(&get("/a")).await;
    parked.echoed_uri().await;
    let parked_since = Instant::now();
    // Its last request had a body, so it idles in hyper, not parked.
    let mut after_body = RawClient::connect(&gw).await;
    after_body
        .send(b"POST /b HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n\r\nhi")
        .await;
    after_body.response().await;
    let after_body_since = Instant::now();

    // In use every 0.7 s for 4 s: never idle for 2 s, so never closed.
    let mut busy = RawClient::connect(&gw).await;
    let busy_task = tokio::spawn(async move {
        for i in 0..6 {
            busy.send(&get(&format!("/busy/{i}"))).await;
            assert_eq!(busy.echoed_uri().await, format!("/busy/{i}"));
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });

    // Each closes 2 s after its last activity, give or take a park check (1 s).
    for (name, mut client, since) in [
        ("silent", silent, silent_since),
        ("parked", parked, parked_since),
        ("after a body", after_body, after_body_since),
    ] {
        client.closed_within(Duration::from_secs(8)).await;
        let idle = since.elapsed();
        assert!(
            idle >= Duration::from_millis(1_900) && idle <= Duration::from_millis(4_500),
            "{name} connection closed after {idle:?} idle"
        );
    }
    busy_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_parked_and_idle_connections_at_once() {
    let upstream = Upstream::echo("echo").await;
    let server = server_section().replace("shutdown_grace_s = 1", "shutdown_grace_s = 30");
    let mut gw = gateway(&upstream, &server);
    let mut parked = RawClient::connect(&gw).await;
    parked.send(&get("/p")).await;
    parked.echoed_uri().await;
    tokio::time::sleep(PARK_WAIT).await;
    assert_eq!(parked_count(&gw), 1);
    let mut idle = RawClient::connect(&gw).await;
    idle.send(&get("/i")).await;
    idle.echoed_uri().await;

    // Idle connections do not hold the 30 s grace period up.
    gw.terminate();
    parked.closed_within(Duration::from_secs(10)).await;
    idle.closed_within(Duration::from_secs(10)).await;
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}
