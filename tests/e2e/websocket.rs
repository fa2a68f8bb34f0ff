//! WebSocket through the gateway with a real server and client (Python `websockets`,
//! `tests/websocket/echo.py`): the handshake runs the route's request chain (key-auth), the
//! tunnel carries messages both ways, a route without `websocket = true` never upgrades, and
//! tunnels close when idle and when the gateway shuts down.

use crate::support::{Gateway, cache_dir, root};
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn script() -> std::path::PathBuf {
    root().join("tests/websocket/echo.py")
}

/// A `python3 echo.py MODE …` process whose stdout is read line by line; killed on drop.
struct Python {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Python {
    fn spawn(args: &[&str]) -> Python {
        let mut child = Command::new("python3")
            .arg(script())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with websockets (make test-deps installs it)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Python { child, lines }
    }

    fn line(&mut self) -> String {
        self.lines.next().unwrap().unwrap()
    }

    fn json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.line()).unwrap()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn upgrades_run_the_chain_tunnel_both_ways_and_close_when_idle_or_stopped() {
    let mut server = Python::spawn(&["serve"]);
    let port: u16 = server
        .line()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap();
    let sha = |key: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut gw = Gateway::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]
plugin_cache_dir = {cache:?}
shutdown_grace_s = 1

[upstreams.ws]
targets = ["127.0.0.1:{port}"]

[plugins.keys]
module = "builtin:key-auth"

[[routes]]
name = "ws"
match = {{ path_prefix = "/ws" }}
upstream = "ws"
websocket = true
plugins = [ {{ use = "keys", config = {{ consumers = [ {{ id = "alice", key_sha256 = "{alice}" }} ] }} }} ]

[[routes]]
name = "idle"
match = {{ path_prefix = "/idle" }}
upstream = "ws"
websocket = true
websocket_idle_timeout_s = 1

[[routes]]
name = "plain"
match = {{ path_prefix = "/plain" }}
upstream = "ws"
"#,
        cache = cache_dir(),
        alice = sha("alice-key"),
    ));
    let url = |path: &str| format!("ws://{}{path}", gw.addr);
    let talk = |path: &str, key: Option<&str>| {
        let mut args = vec!["talk".to_string(), url(path)];
        args.extend(key.map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Python::spawn(&args).json()
    };

    let echoed = talk("/ws", Some("alice-key"));
    assert_eq!(
        echoed["replies"],
        serde_json::json!(["echo:hello", "alice"])
    );
    assert_eq!(
        talk("/ws", None)["status"],
        401,
        "the handshake went through key-auth"
    );
    assert_eq!(talk("/ws", Some("wrong"))["status"], 401);
    let plain = talk("/plain", None);
    assert!(
        plain["status"].as_u64().is_some_and(|s| s != 101),
        "a route without websocket must not upgrade: {plain}"
    );

    // Idle for the route's 1 s: closed.
    let mut idle = Python::spawn(&["hold", &url("/idle")]);
    assert_eq!(idle.line(), "open");
    let ended = idle.json();
    assert_eq!(ended["end"], "closed");
    let after = ended["after_s"].as_f64().unwrap();
    assert!((0.9..3.0).contains(&after), "closed after {after} s");

    // Shutdown: an open tunnel gets the grace period (1 s), then is closed.
    let mut held = Python::spawn(&["hold", &url("/ws"), "alice-key"]);
    assert_eq!(held.line(), "open");
    let stopped = Instant::now();
    gw.terminate();
    assert_eq!(held.json()["end"], "closed");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(
        gw.wait_exit(Duration::from_secs(5)).is_some(),
        "the gateway exits"
    );
}
