//! Binary upgrade: `SIGUSR2` starts the gateway's executable again, hands it the listening
//! sockets, and the old process drains once the new one serves. Under load no request fails
//! (HTTP/1.1 clients are told `Connection: close`, HTTP/2 clients get GOAWAY, and nothing
//! waiting in an accept queue is reset); a successor that cannot start leaves the old one
//! serving.

use crate::support::{Gateway, HttpClient, Upstream, scratch_dir, server_section};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn config(up: &Upstream, tag: &str) -> String {
    format!(
        r#"{server}
[admin]
listen = "127.0.0.1:0"

[upstreams.up]
targets = [{target}]

[plugins.tag]
module = "builtin:request-transformer"
# The successor starts (a debug build, two cores shared with this test's clients) while the
# old process serves the load: the default 20 ms is too tight for that here.
timeout_ms = 250

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "tag", config = {{ add = {{ headers = {{ "x-config" = "{tag}" }} }} }} }} ]
"#,
        server = server_section(),
        target = up.target(),
    )
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Kills the successor at the end of the test, whatever happened.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.split_whitespace()
            .nth(2)
            .is_none_or(|state| state != "Z")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_under_load_fails_no_request() {
    let up = Upstream::echo("up").await;
    let dir = scratch_dir("upgrade");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&up, "old")).unwrap();
    let mut gw = Gateway::start_file(&path);
    let admin = gw.listener("admin");
    let url = gw.url("/x");

    // A successor that cannot start (its config no longer compiles) changes nothing.
    std::fs::write(&path, "[server\n").unwrap();
    signal(gw.pid(), "USR2");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gw.log().contains("upgrade failed, this process serves on") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = HttpClient::http1().get(&url, &[]).await;
    assert_eq!(reply.json()["headers"]["x-config"], "old");

    // Under load: HTTP/1.1 keep-alive clients and HTTP/2 clients, each sending back to back.
    std::fs::write(&path, config(&up, "new")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let by_new = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for client in (0..16)
        .map(|_| HttpClient::http1())
        .chain((0..4).map(|_| HttpClient::http2()))
    {
        let (url, stop, answered, by_new) =
            (url.clone(), stop.clone(), answered.clone(), by_new.clone());
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = client.get(&url, &[]).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                answered.fetch_add(1, Ordering::Relaxed);
                if reply.json()["headers"]["x-config"] == "new" {
                    by_new.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(gw.pid(), "USR2");
    let handed = gw
        .printed("handed over to pid ", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no handover; log:\n{}", gw.log()));
    let pid: u32 = handed.rsplit(' ').next().unwrap().parse().unwrap();
    let successor = Successor(pid);
    // The old process drains and exits by itself.
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        gw.log()
    );
    let served_before = by_new.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let (answered, by_new) = (
        answered.load(Ordering::Relaxed),
        by_new.load(Ordering::Relaxed),
    );
    assert!(answered > 200, "too little load: {answered}");
    assert!(by_new > served_before, "the successor serves the load");

    // The successor serves both the proxy and the admin address, and stops as usual.
    let reply = HttpClient::http1().get(&url, &[]).await;
    assert_eq!(reply.json()["headers"]["x-config"], "new");
    let ready = HttpClient::http1()
        .get(&format!("http://{admin}/ready"), &[])
        .await;
    assert_eq!(ready.status, 200);
    signal(pid, "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while is_running(successor.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the successor did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_an_http2_client_gets_goaway_and_its_open_stream_finishes() {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let silent =
        crate::support::Upstream::start("silent", crate::support::upstream::Behaviour::Silent)
            .await;
    let config = format!(
        "{server}\n[upstreams.silent]\ntargets = [{target}]\nresponse_timeout_ms = 1500\n\n\
         [[routes]]\nname = \"slow\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"silent\"\n",
        server = server_section().replace("shutdown_grace_s = 1", "shutdown_grace_s = 5"),
        target = silent.target(),
    );
    let mut gw = Gateway::start(&config);
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(gw.url("/slow"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let in_flight = tokio::spawn(sender.send_request(request));
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    // The open stream finishes (the upstream's timeout: 504), not reset.
    let response = in_flight.await.unwrap().expect("the open stream finishes");
    assert_eq!(response.status(), 504);
    let _ = response.into_body().collect().await.unwrap();
    // The server said GOAWAY: the connection ends cleanly, and takes no new stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the connection ends after GOAWAY")
        .unwrap();
    assert!(ended.is_ok(), "closed cleanly: {ended:?}");
    assert!(sender.ready().await.is_err(), "no new stream after GOAWAY");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
}
