//! Test harness: the real `gateway` binary on loopback, real upstreams, real clients.
//!
//! - [`Gateway::start`] writes a TOML config to a scratch dir, runs `gateway run` on it, and
//!   learns its ephemeral port from the `listening on ADDR` line; the process is killed on drop
//!   and its log (stderr) can be read back.
//! - [`Upstream`] is a recording HTTP server that answers with a JSON echo of what it received.
//! - [`wasm`] builds the test plugins under `tests/plugins/` (and the Python plugin) once.

#![allow(dead_code)]

pub mod jose;
pub mod redis;
pub mod tls;
pub mod upstream;
pub mod wasm;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use upstream::Upstream;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh scratch directory under `target/e2e`.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join("target").join("e2e").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Shared compiled-plugin cache for all tests (compiling once is the point of the cache).
pub fn cache_dir() -> String {
    root()
        .join("target")
        .join("e2e-plugin-cache")
        .display()
        .to_string()
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    /// Address of the first listener.
    pub addr: SocketAddr,
    /// Every listener, in the order the gateway printed them, with what it serves (`http`,
    /// `https` or `redirect`).
    pub listeners: Vec<(SocketAddr, String)>,
    log: PathBuf,
    /// The config file it runs.
    pub config_path: PathBuf,
    /// Its standard output after `ready`, line by line.
    printed: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Start `gateway run` on `config` (TOML). `listen` should be `127.0.0.1:0`.
    pub fn start(config: &str) -> Gateway {
        Gateway::start_logging(config, "info,plugin=debug")
    }

    /// [`Gateway::start`] with `rust_log` as the log filter (`RUST_LOG`).
    pub fn start_logging(config: &str, rust_log: &str) -> Gateway {
        Gateway::start_env(config, rust_log, &[])
    }

    /// [`Gateway::start_logging`] with extra environment variables.
    pub fn start_env(config: &str, rust_log: &str, env: &[(&str, &Path)]) -> Gateway {
        let dir = scratch_dir("gw");
        let config_path = dir.join("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        Gateway::spawn(config_path, rust_log, env)
    }

    /// Start `gateway run` on the config file at `path` (its relative paths its own).
    pub fn start_file(path: &Path) -> Gateway {
        Gateway::spawn(path.to_path_buf(), "info", &[])
    }

    /// [`Gateway::start_file`] with more arguments to `gateway run`.
    pub fn start_file_with(path: &Path, args: &[&str]) -> Gateway {
        Gateway::spawn_with(path.to_path_buf(), "info", &[], args)
    }

    fn spawn(config_path: PathBuf, rust_log: &str, env: &[(&str, &Path)]) -> Gateway {
        Gateway::spawn_with(config_path, rust_log, env, &[])
    }

    fn spawn_with(
        config_path: PathBuf,
        rust_log: &str,
        env: &[(&str, &Path)],
        args: &[&str],
    ) -> Gateway {
        let log = config_path.with_extension("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", rust_log)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start gateway");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut listeners = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line == "ready" => break,
                Some(Ok(line)) => {
                    if let Some(listening) = line.strip_prefix("listening on ") {
                        let (addr, serves) = listening.split_once(' ').unwrap();
                        let serves = serves.trim_matches(|c| c == '(' || c == ')');
                        listeners.push((addr.parse().unwrap(), serves.to_string()));
                    }
                }
                _ => {
                    let _ = child.wait();
                    panic!(
                        "gateway did not start; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        let addr = listeners[0].0;
        // Keep draining stdout so the process never blocks on a full pipe, and keep what it
        // says after `ready` (listeners a reload adds or closes, a handover).
        let printed = Arc::new(Mutex::new(Vec::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Gateway {
            child,
            addr,
            listeners,
            log,
            config_path,
            printed,
        }
    }

    /// `http://ADDR` of the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The first listener serving `serves` (`http`, `https`, `redirect`).
    pub fn listener(&self, serves: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(_, kind)| kind == serves)
            .map(|(addr, _)| *addr)
            .unwrap_or_else(|| panic!("no {serves} listener in {:?}", self.listeners))
    }

    /// Send SIGHUP (reload certificates).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The first line it printed after `ready` that starts with `prefix`, waiting up to
    /// `limit` for it.
    pub fn printed(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let found = self
                .printed
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.starts_with(prefix))
                .cloned();
            if found.is_some() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM, as an init system stopping the service does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait up to `limit` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's threads named `prefix…`, by name: how long each has run on a CPU (ns)
    /// and how many times it was scheduled, from `/proc/PID/task/TID/schedstat`.
    pub fn threads(&self, prefix: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
        let mut found = std::collections::BTreeMap::new();
        let tasks = format!("/proc/{}/task", self.pid());
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            let path = task.path();
            let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            let name = name.trim_end().to_string();
            if !name.starts_with(prefix) {
                continue;
            }
            let stats = std::fs::read_to_string(path.join("schedstat")).unwrap();
            let fields: Vec<u64> = stats
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            found.insert(name, (fields[0], fields[2]));
        }
        found
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Result of a `gateway` CLI command.
pub struct CliOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run the gateway CLI with `args`.
pub fn gateway_cli(args: &[&str]) -> CliOutput {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run gateway");
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `gateway check` on `config` written to `file_name` in a scratch dir; returns the output
/// with the scratch dir replaced by `DIR` so error text can be compared exactly.
pub fn check_config(file_name: &str, config: &str) -> CliOutput {
    let dir = scratch_dir("check");
    let path = dir.join(file_name);
    std::fs::write(&path, config).unwrap();
    let mut out = gateway_cli(&["check", "--config", path.to_str().unwrap()]);
    let dir = dir.display().to_string();
    out.stdout = out.stdout.replace(&dir, "DIR");
    out.stderr = out.stderr.replace(&dir, "DIR");
    out
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// An HTTP client (HTTP/1.1, or HTTP/2 with prior knowledge).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// HTTP/1.1 client with keep-alive.
    pub fn http1() -> Self {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 prior-knowledge (h2c) client.
    pub fn http2() -> Self {
        HttpClient {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// GET `url` with `headers`.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", url, headers, Bytes::new()).await
    }

    /// Send a request and read the whole response.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("response within 30 s")
            .expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

/// `[server]` section for a test gateway.
pub fn server_section() -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nplugin_cache_dir = {:?}\nshutdown_grace_s = 1\n",
        cache_dir()
    )
}

/// `[server]` and an `[admin]` listener on an ephemeral port, for a test that reads
/// `/metrics` or `/routes` or reloads through the admin API.
pub fn server_with_admin() -> String {
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", server_section())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
