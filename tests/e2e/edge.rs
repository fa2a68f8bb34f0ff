//! The gateway as a security boundary, tried as an attacker would, on raw sockets: path
//! confusion never walks around a route's plugins; heads, bodies and framing are read
//! strictly on both sides; slow and silent clients are closed within their timeouts;
//! connection caps hold while other clients are served; the real client is found behind
//! trusted proxies (PROXY v2 and `X-Forwarded-For`).

use crate::support::{Gateway, Upstream, cache_dir};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A `[server]` section with `extra` settings.
fn server(extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nplugin_cache_dir = {:?}\nshutdown_grace_s = 1\n{extra}\n",
        cache_dir()
    )
}

/// Read from `stream` until it closes or `limit` passes; what came, and whether it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), false),
        }
    }
}

/// Send `request` on a fresh connection and read until the gateway closes it: the status of
/// the first response and everything received.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (text, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A raw upstream that answers every request with `response`, then closes (`hold` false) or
/// keeps the connection open without another byte.
async fn raw_upstream(response: &'static [u8], hold: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_confusion_never_reaches_admin_without_its_plugins() {
    let up = Upstream::echo("up").await;
    let routes = |extra: &str| {
        format!(
            r#"{}
[upstreams.up]
targets = [{}]

[plugins.ip]
module = "builtin:ip-restriction"

[[routes]]
name = "public"
match = {{ path_prefix = "/public" }}
upstream = "up"

[[routes]]
name = "admin"
match = {{ path_prefix = "/admin" }}
upstream = "up"
plugins = [ {{ use = "ip", config = {{ deny = ["127.0.0.0/8"] }} }} ]
"#,
            server(extra),
            up.target()
        )
    };
    let gw = Gateway::start(&routes(""));
    // Each spelling either is refused (400), or routes to `/admin` and meets its plugin (403).
    let cases: &[(&str, u16)] = &[
        ("/admin", 403),
        ("/public/../admin", 403),
        ("/public/%2e%2e/admin", 403),
        ("/public/%2E%2E/admin", 403),
        ("/public/.%2e/admin", 403),
        ("/public/./../admin", 403),
        ("//admin", 403),
        ("/public//../admin", 403),
        ("/%61dmin", 403),
        ("/./admin", 403),
        ("/public/..%2fadmin", 400),
        ("/public/..%2Fadmin", 400),
        ("/public/..%5cadmin", 400),
        ("/public/..;/admin", 400),
        ("/public;x/../admin", 400),
        ("/public/%252e%252e/admin", 400),
        ("/public/%2e%2e%2fadmin", 400),
        ("/public/..\\admin", 400),
        ("/public/%zz", 400),
    ];
    for (path, expected) in cases {
        let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        let (status, text) = exchange(gw.addr, request.as_bytes()).await;
        assert_eq!(status, *expected, "{path}: {text}");
    }
    let reached: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert!(reached.is_empty(), "reached the upstream: {reached:?}");
    // The public route forwards what it routed on: the normalized path.
    let request =
        b"GET /public/a/./b/../c//d?q=%2e HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    let (status, _) = exchange(gw.addr, request).await;
    assert_eq!(status, 200);
    assert_eq!(up.seen().last().unwrap().uri, "/public/a/c/d?q=%2e");

    // `escaped_path = "keep"`: the escapes stay opaque, so the route is matched on the bytes
    // the upstream gets, and `..%2F` is no dot segment for either.
    let gw = Gateway::start(&routes("[server.http]\nescaped_path = \"keep\""));
    let request = b"GET /public/..%2fadmin HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    let (status, _) = exchange(gw.addr, request).await;
    assert_eq!(status, 200);
    assert_eq!(up.seen().last().unwrap().uri, "/public/..%2Fadmin");
    assert!(up.seen().iter().all(|s| !s.uri.starts_with("/admin")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_request_heads_get_their_status_and_never_reach_the_upstream() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
        server("via = \"edge-gw\""),
        up.target()
    ));
    let big_value = "v".repeat(70 << 10);
    let many: String = (0..101).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let long_uri = format!("/{}", "a".repeat(9 << 10));
    let close = "connection: close\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        ("no Host", format!("GET / HTTP/1.1\r\n{close}\r\n"), 400),
        (
            "two Hosts",
            format!("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n{close}\r\n"),
            400,
        ),
        (
            "Host against an absolute target",
            format!("GET http://a.test/ HTTP/1.1\r\nhost: b.test\r\n{close}\r\n"),
            400,
        ),
        (
            "a coding before chunked",
            format!(
                "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n{close}\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "an unknown coding",
            format!(
                "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: br, chunked\r\n{close}\r\n0\r\n\r\n"
            ),
            501,
        ),
        (
            "two lengths",
            format!(
                "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n{close}\r\nxx"
            ),
            400,
        ),
        (
            "a malformed chunk",
            format!(
                "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n{close}\r\nzz\r\nhello\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "70 KiB of headers",
            format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big_value}\r\n{close}\r\n"),
            431,
        ),
        (
            "101 header fields",
            format!("GET / HTTP/1.1\r\nhost: a\r\n{many}{close}\r\n"),
            431,
        ),
        (
            "a 9 KiB target",
            format!("GET {long_uri} HTTP/1.1\r\nhost: a\r\n{close}\r\n"),
            414,
        ),
        (
            "a loop through this gateway",
            format!("GET / HTTP/1.1\r\nhost: a\r\nvia: 1.1 other, 1.1 edge-gw\r\n{close}\r\n"),
            508,
        ),
    ];
    for (what, request, expected) in &cases {
        let (status, text) = exchange(gw.addr, request.as_bytes()).await;
        assert_eq!(
            status,
            *expected,
            "{what}: {}",
            &text[..text.len().min(300)]
        );
    }
    assert_eq!(up.count(), 0, "reached the upstream: {:?}", up.seen());

    // CL + TE: read by its Transfer-Encoding alone, its Content-Length removed, and the
    // connection closed after the response (RFC 9112 §6.1, hyper's parser), so what a
    // Content-Length reader would take for a second request is never read as one.
    let smuggle = b"POST /te HTTP/1.1\r\nhost: a\r\ncontent-length: 30\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    let (status, text) = exchange(gw.addr, smuggle).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one response, then close: {text}"
    );
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.uri, "/te");
    assert!(seen.body.is_empty() && !seen.headers.contains_key("content-length"));
    assert!(up.seen().iter().all(|s| s.uri != "/smuggled"));

    // Underscored names never reach the upstream; the dash spelling does.
    let request = b"GET /who HTTP/1.1\r\nhost: a\r\nx_consumer_id: admin\r\nx-consumer-id: alice\r\nconnection: close\r\n\r\n";
    let (status, _) = exchange(gw.addr, request).await;
    assert_eq!(status, 200);
    let seen = up.seen().pop().unwrap();
    assert!(
        !seen.headers.contains_key("x_consumer_id"),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.headers["x-consumer-id"], "alice");
    assert_eq!(seen.headers["via"], "1.1 edge-gw");
    // HTTP/1.0 may come without Host.
    let (status, _) = exchange(gw.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscores_can_be_refused() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
        server("[server.http]\nunderscores_in_headers = \"reject\""),
        up.target()
    ));
    let request = b"GET / HTTP/1.1\r\nhost: a\r\nx_consumer_id: admin\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(gw.addr, request).await.0, 400);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_on_every_route() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\nmax_body_bytes = 1000\n",
        server("request_body_timeout_ms = 1000"),
        up.target()
    ));
    // Declared past the cap: 413 before the upstream is called.
    let request = b"POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 1001\r\n\r\n";
    assert_eq!(exchange(gw.addr, request).await.0, 413);
    assert_eq!(up.count(), 0);
    // Chunked past the cap: counted while streaming, 413, the upstream request aborted.
    let mut request = b"POST /b HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"1f4\r\n");
        request.extend_from_slice(&[b'x'; 500]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = exchange(gw.addr, &request).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("request_body_too_large"));
    assert!(up.seen().iter().all(|s| s.body.len() <= 1000));
    // Within the cap it streams through.
    let mut request =
        b"POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    request.extend_from_slice(b"3e8\r\n");
    request.extend_from_slice(&[b'y'; 1000]);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(exchange(gw.addr, &request).await.0, 200);
    assert_eq!(up.seen().last().unwrap().body.len(), 1000);

    // A body that stalls: 408 within the body timeout + 1 s.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    let since = Instant::now();
    let (text, closed) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_body_timeout"), "{text}");
    assert!(closed);
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "{:?}",
        since.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_closed_within_their_timeouts() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
        server("request_head_timeout_ms = 1000\nidle_timeout_s = 3"),
        up.target()
    ));
    let limit = Duration::from_secs(2); // the timeout + 1 s
    // Slowloris: a byte of the head every 200 ms, the close seen by a reader meanwhile.
    let slow_head = async {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let since = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let head = b"GET / HTTP/1.1\r\nhost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in head {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "still open: {read:?}"
        );
        writing.abort();
        since.elapsed()
    };
    // HTTP/2: the preface alone, then the preface and an empty SETTINGS, then nothing.
    let preface_only = |settings: bool| async move {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let since = Instant::now();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        if settings {
            stream
                .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
                .await
                .unwrap();
        }
        let (_, closed) = read_to_close(&mut stream, Duration::from_secs(6)).await;
        assert!(closed, "still open");
        since.elapsed()
    };
    let (head, preface, settings) =
        tokio::join!(slow_head, preface_only(false), preface_only(true));
    for (what, took) in [
        ("slow head", head),
        ("preface only", preface),
        ("preface and SETTINGS", settings),
    ] {
        assert!(took < limit, "{what}: closed after {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_hold_and_other_clients_are_served() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
        server("max_connections = 8\nmax_connections_per_ip = 3"),
        up.target()
    ));
    let from = |ip: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(gw.addr).await.unwrap()
    };
    // Served: answers a request. Refused: closed without a byte.
    async fn served(stream: &mut TcpStream) -> bool {
        if stream
            .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 12];
        matches!(
            tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf[..9] == b"HTTP/1.1 "
        )
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = from("127.0.0.1").await;
        assert!(served(&mut stream).await);
        held.push(stream);
    }
    let mut fourth = from("127.0.0.1").await;
    assert!(
        !served(&mut fourth).await,
        "a fourth connection from one IP"
    );
    // Another client is served meanwhile, up to the total cap.
    for ip in [
        "127.0.0.2",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.4",
    ] {
        let mut stream = from(ip).await;
        assert!(served(&mut stream).await, "{ip}");
        held.push(stream);
    }
    let mut ninth = from("127.0.0.5").await;
    assert!(!served(&mut ninth).await, "past max_connections");
    // A connection that closes frees its place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = from("127.0.0.5").await;
    assert!(served(&mut again).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_framing_is_checked_and_responses_are_framed_by_the_gateway() {
    let cl_te = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    let gzip = raw_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nnot really gzip",
        false,
    )
    .await;
    let http10 = raw_upstream(b"HTTP/1.0 200 OK\r\nx-old: 1\r\n\r\nhello from 1.0", false).await;
    let stalls = raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab", true).await;
    let mut config = server("");
    for (name, addr) in [
        ("clte", cl_te),
        ("gzip", gzip),
        ("old", http10),
        ("stalls", stalls),
    ] {
        config.push_str(&format!(
            "\n[upstreams.{name}]\ntargets = [\"{addr}\"]\nbody_timeout_ms = 1000\n\n[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nupstream = \"{name}\"\n"
        ));
    }
    let gw = Gateway::start(&config);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    let (status, text) = exchange(gw.addr, get("/clte").as_bytes()).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("ambiguous response framing"), "{text}");
    let (status, text) = exchange(gw.addr, get("/gzip").as_bytes()).await;
    assert_eq!(status, 502, "{text}");
    // HTTP/1.0, close-delimited: the client gets HTTP/1.1, framed by the gateway.
    let (status, text) = exchange(gw.addr, get("/old").as_bytes()).await;
    assert_eq!(status, 200);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(
        head.contains("transfer-encoding: chunked") || head.contains("content-length: 14"),
        "{text}"
    );
    assert!(text.contains("hello from 1.0"));
    // A response body that stalls is cut off within the body timeout + 1 s.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(get("/stalls").as_bytes()).await.unwrap();
    let since = Instant::now();
    let (text, closed) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(closed && text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "{:?}",
        since.elapsed()
    );
}

/// A PROXY protocol v2 header for a TCP/IPv4 connection from `source`.
fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 only");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(s.ip().octets());
    header.extend(d.ip().octets());
    header.extend(s.port().to_be_bytes());
    header.extend(d.port().to_be_bytes());
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_client_behind_two_trusted_proxies() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{}
[upstreams.up]
targets = [{}]

[plugins.ip]
module = "builtin:ip-restriction"

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]

[[routes]]
name = "members"
match = {{ path_prefix = "/members" }}
upstream = "up"
plugins = [ {{ use = "ip", config = {{ allow = ["203.0.113.0/24"] }} }} ]

[[routes]]
name = "limited"
match = {{ path_prefix = "/limited" }}
upstream = "up"
plugins = [ {{ use = "rl", config = {{ minute = 2, limit_by = "ip" }} }} ]
"#,
        server("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nproxy_protocol = true"),
        up.target()
    ));
    // The load balancer (127.0.0.1, trusted) speaks PROXY v2 for proxy A (10.1.1.1, trusted),
    // which put the real client in X-Forwarded-For; a spoofed entry before it is ignored.
    let send = |source: &'static str, xff: &'static str, path: &'static str| async move {
        let mut request = proxy_v2(source.parse().unwrap(), gw.addr);
        request.extend(
            format!("GET {path} HTTP/1.1\r\nhost: a\r\nx-forwarded-for: {xff}\r\nconnection: close\r\n\r\n")
                .into_bytes(),
        );
        exchange(gw.addr, &request).await.0
    };
    assert_eq!(
        send("10.1.1.1:4000", "198.51.100.1, 203.0.113.7", "/members").await,
        200
    );
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-real-ip"], "203.0.113.7");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 10.1.1.1");
    // A client outside the allow list, and one that claims to be inside it but connects
    // through an untrusted hop: both refused.
    assert_eq!(send("10.1.1.1:4000", "198.51.100.1", "/members").await, 403);
    assert_eq!(
        send("198.51.100.9:4000", "203.0.113.7", "/members").await,
        403
    );
    // Rate limits by IP count the real client, not the proxies.
    for _ in 0..2 {
        assert_eq!(send("10.1.1.1:4000", "203.0.113.7", "/limited").await, 200);
    }
    assert_eq!(send("10.1.1.1:4000", "203.0.113.7", "/limited").await, 429);
    assert_eq!(send("10.1.1.1:4000", "203.0.113.8", "/limited").await, 200);
    // A trusted peer that skips the PROXY header is closed without an answer.
    let (status, text) = exchange(gw.addr, b"GET /members HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!((status, text.as_str()), (0, ""));
    // An untrusted peer never sends one: from 127.0.0.2 the request is read as it is, and
    // that client is who it is (not in the allow list).
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /members HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 203.0.113.7\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
}
