//! HTTP/2 abuse on raw frames (the known attacks: rapid reset CVE-2023-44487, CONTINUATION
//! flood, HPACK bomb, SETTINGS/PING/empty-DATA floods CVE-2019-9512/9515/9518, stream
//! limits): each stays mitigated, the process's RSS stays bounded (read from `/proc`), and a
//! normal client is served while it runs.

use crate::support::{Gateway, HttpClient, Upstream, cache_dir};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend((stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `GET /abuse` (static-table indexes and literals without indexing).
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.extend([0x04, 6]); // :path, literal
    block.extend_from_slice(b"/abuse");
    block.extend([0x01, 1, b'a']); // :authority a
    block
}

/// A POST head, so the stream stays open for DATA.
fn post_block() -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend([0x04, 6]);
    block.extend_from_slice(b"/abuse");
    block.extend([0x01, 1, b'a']);
    block
}

/// The process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// What the gateway did to an attacking connection.
#[derive(Debug, Default)]
struct Outcome {
    /// It closed the connection.
    closed: bool,
    /// Streams it refused (RST_STREAM with REFUSED_STREAM).
    refused: usize,
}

/// Open a connection, send the preface and an empty SETTINGS, then `attack`'s bytes for up to
/// `limit` (a server that stops reading blocks the writer, which is the point); reads and
/// parses what comes back unless `read` is false.
async fn run_attack(gw: &Gateway, attack: Vec<u8>, read: bool, limit: Duration) -> Outcome {
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = refused.clone();
    let drain = tokio::spawn(async move {
        if !read {
            // Hold the socket without reading: the gateway's replies pile up on its side.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let mut received: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            // Whole frames: 9-byte header, then the payload.
            while received.len() >= 9 {
                let len = (usize::from(received[0]) << 16)
                    | (usize::from(received[1]) << 8)
                    | usize::from(received[2]);
                if received.len() < 9 + len {
                    break;
                }
                if received[3] == RST_STREAM && len == 4 && received[9..13] == [0, 0, 0, 7] {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                received.drain(..9 + len);
            }
        }
    });
    let write = async {
        writer.write_all(PREFACE).await?;
        writer.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        // Acknowledge the gateway's SETTINGS (sent as it accepts), so its limits apply.
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.write_all(&frame(SETTINGS, 0x1, 0, &[])).await?;
        for chunk in attack.chunks(16 << 10) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await
    };
    let _ = tokio::time::timeout(limit, write).await;
    let closed = if read {
        // Collect until the gateway closes, or a moment after the attack is sent.
        tokio::time::timeout(Duration::from_secs(3), drain)
            .await
            .is_ok_and(|closed| closed.unwrap_or(false))
    } else {
        drain.abort();
        false
    };
    Outcome {
        closed,
        refused: refused.load(Ordering::Relaxed),
    }
}

/// A normal client's request is answered within a second.
async fn served(gw: &Gateway) -> bool {
    let client = HttpClient::http1();
    matches!(
        tokio::time::timeout(Duration::from_secs(1), client.get(&gw.url("/normal"), &[])).await,
        Ok(reply) if reply.status == 200
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_abuse_stays_mitigated_with_bounded_memory() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nplugin_cache_dir = {:?}\nshutdown_grace_s = 1\n\n[server.http2]\nmax_concurrent_streams = 10\n\n[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
        cache_dir(),
        up.target()
    ));
    assert!(served(&gw).await);
    let baseline = rss_kib(gw.pid());

    let mut attacks: Vec<(&str, Vec<u8>, bool, bool)> = Vec::new();
    // Rapid reset: open and cancel streams as fast as the socket takes them.
    let mut rapid = Vec::new();
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        rapid.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &get_block()));
        rapid.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    attacks.push(("rapid reset", rapid, true, true));
    // CONTINUATION flood: one header block that never ends (64 MiB of literal fields).
    let mut continuation = frame(HEADERS, END_STREAM, 1, &get_block());
    let mut field = vec![0x00, 8];
    field.extend_from_slice(b"x-flood1");
    field.push(0x7f);
    field.push(0x81); // length 127 + 1 = 128 (7-bit prefix continuation)
    field.push(0x00);
    field.extend(std::iter::repeat_n(b'v', 128));
    let payload: Vec<u8> = field.iter().copied().cycle().take(16_000).collect();
    for _ in 0..4_000 {
        continuation.extend(frame(CONTINUATION, 0, 1, &payload));
    }
    attacks.push(("CONTINUATION flood", continuation, true, true));
    // HPACK bomb: one 4 KiB field in the dynamic table, then referenced 16,000 times by one
    // byte each (64 MiB decoded from a 16 KB block).
    let mut bomb_block = get_block();
    bomb_block.extend([0x40, 6]);
    bomb_block.extend_from_slice(b"x-bomb");
    bomb_block.extend([0x7f, 0x81, 0x1f]); // 127 + 0x1f + 0x80*1 = 4000
    bomb_block.extend(std::iter::repeat_n(b'b', 4000));
    bomb_block.extend(std::iter::repeat_n(0x80 | 62, 16_000));
    let bomb = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &bomb_block[..16_000.min(bomb_block.len())],
    );
    let mut bomb_all = frame(SETTINGS, 0, 0, &[]);
    bomb_all.extend(bomb);
    attacks.push(("HPACK bomb", bomb_all, true, false));
    // SETTINGS and PING floods, the replies never read.
    let mut settings = Vec::new();
    let mut pings = Vec::new();
    for i in 0..200_000u64 {
        settings.extend(frame(SETTINGS, 0, 0, &[]));
        pings.extend(frame(PING, 0, 0, &i.to_be_bytes()));
    }
    attacks.push(("SETTINGS flood", settings, false, false));
    attacks.push(("PING flood", pings, false, false));
    // Empty DATA frames on an open stream.
    let mut empty_data = frame(HEADERS, END_HEADERS, 1, &post_block());
    for _ in 0..200_000 {
        empty_data.extend(frame(DATA, 0, 1, &[]));
    }
    attacks.push(("empty DATA flood", empty_data, true, false));
    // More streams than `max_concurrent_streams`, each left open.
    let mut streams = Vec::new();
    for i in 0..100u32 {
        streams.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &post_block()));
    }
    attacks.push(("stream limit", streams, true, false));

    for (what, bytes, read, must_close) in attacks {
        let before = up.count();
        let attack = run_attack(&gw, bytes, read, Duration::from_secs(5));
        let normal = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            served(&gw).await
        };
        let (outcome, normal) = tokio::join!(attack, normal);
        let rss = rss_kib(gw.pid());
        let reached = up.count() - before;
        eprintln!(
            "{what}: {outcome:?}, RSS {rss} KiB (from {baseline}), {reached} reached the upstream"
        );
        assert!(normal, "{what}: a normal client was not served meanwhile");
        if must_close {
            assert!(outcome.closed, "{what}: the connection was not closed");
        }
        assert!(
            rss < baseline + 100 * 1024,
            "{what}: RSS grew from {baseline} KiB to {rss} KiB"
        );
        // The normal client's request, and at most a few of the attack's.
        assert!(
            reached <= 20,
            "{what}: {reached} requests reached the upstream"
        );
        if what == "stream limit" {
            assert!(
                outcome.refused >= 90,
                "{what}: only {} of 100 streams past the limit of 10 were refused",
                outcome.refused
            );
        }
        assert!(
            served(&gw).await,
            "{what}: a normal client was not served after"
        );
    }
}
