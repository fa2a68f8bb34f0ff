//! gRPC through the gateway with a real gRPC server and client (Python `grpcio`,
//! `tests/grpc/echo.py`): all four call kinds stream through an HTTP/2 upstream, trailers
//! reach the client, and calls the gateway refuses itself arrive as gRPC statuses — over
//! h2c and over TLS.

use crate::support::tls::Ca;
use crate::support::{Gateway, cache_dir, root, scratch_dir};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The echo server, killed on drop.
struct EchoServer {
    child: Child,
    port: u16,
}

impl EchoServer {
    fn start() -> EchoServer {
        let mut child = Command::new("python3")
            .arg(root().join("tests/grpc/echo.py"))
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with grpcio (make test-deps installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("echo server said {line:?}"));
        EchoServer { child, port }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every call kind through `target`; the client's JSON report.
fn calls(target: &str, ca: Option<&std::path::Path>) -> serde_json::Value {
    let mut command = Command::new("python3");
    command
        .arg(root().join("tests/grpc/echo.py"))
        .args(["call", target]);
    if let Some(ca) = ca {
        command.arg(ca);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn all_call_kinds_trailers_and_gateway_errors_as_grpc_statuses() {
    let dir = scratch_dir("grpc");
    let ca = Ca::new(&dir, "grpc");
    let cert = ca.server("server", &["localhost"], 30);
    let echo = EchoServer::start();
    let gw = Gateway::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]
plugin_cache_dir = {cache:?}
shutdown_grace_s = 1

[[server.tls]]
listen = ["127.0.0.1:0"]
[[server.tls.certificates]]
cert = {cert:?}
key = {key:?}

[upstreams.echo]
targets = ["127.0.0.1:{port}"]
protocol = "http2"

[plugins.keys]
module = "builtin:key-auth"

[[routes]]
name = "echo"
match = {{ path_prefix = "/echo.Echo" }}
upstream = "echo"

[[routes]]
name = "secure"
match = {{ path_prefix = "/secure.Echo" }}
upstream = "echo"
plugins = [ {{ use = "keys", config = {{ consumers = [] }} }} ]
"#,
        cache = cache_dir(),
        cert = cert.cert.display().to_string(),
        key = cert.key.display().to_string(),
        port = echo.port,
    ));
    let cleartext = gw.listener("http").to_string();
    let tls = format!("localhost:{}", gw.listener("https").port());
    for report in [calls(&cleartext, None), calls(&tls, Some(&ca.cert))] {
        assert_eq!(report["unary"]["response"], "echo:hi", "{report}");
        assert_eq!(report["unary"]["trailers"]["x-trailer"], "unary-done");
        assert_eq!(
            report["server_stream"],
            serde_json::json!(["item-0", "item-1", "item-2"])
        );
        assert_eq!(report["client_stream"], "a+b+c");
        assert_eq!(report["bidi"], serde_json::json!(["X", "Y"]));
        // The upstream's own status and message, through trailers.
        assert_eq!(report["upstream_error"]["code"], "INVALID_ARGUMENT");
        assert_eq!(report["upstream_error"]["details"], "bad input: z");
        // The gateway's answers, as gRPC.
        assert_eq!(report["no_route"]["code"], "UNIMPLEMENTED", "{report}");
        assert_eq!(report["denied"]["code"], "UNAUTHENTICATED", "{report}");
        assert_eq!(report["denied"]["details"], "missing API key");
    }
}
