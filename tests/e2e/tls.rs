//! TLS end to end, with certificates made in the test (rcgen) and real clients (a rustls
//! client, curl, openssl s_client): HTTPS with HTTP/2 and HTTP/1.1 by ALPN, SNI certificate
//! choice, protocol and suite policy, session resumption, certificate reload on SIGHUP,
//! client certificates with `mtls-auth` + `acl`, cleartext redirects with HSTS, and TLS to
//! upstreams (a second gateway as the HTTPS backend).

use crate::support::tls::{Ca, Issued, TlsClient};
use crate::support::{Gateway, HttpClient, Upstream, cache_dir, check_config, scratch_dir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn base_server() -> String {
    format!(
        "[server]\nplugin_cache_dir = {:?}\nshutdown_grace_s = 1\n",
        cache_dir()
    )
}

/// A `[[server.tls]]` block on an ephemeral port with `certificates` and `extra` settings.
fn tls_block(certificates: &[&Issued], extra: &str) -> String {
    let mut block = format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n");
    for issued in certificates {
        block.push_str(&format!(
            "[[server.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
            issued.cert.display().to_string(),
            issued.key.display().to_string()
        ));
    }
    block
}

fn route_to(upstream: &Upstream, plugins: &str) -> String {
    format!(
        "[upstreams.up]\ntargets = [{}]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\nplugins = [{plugins}]\n",
        upstream.target()
    )
}

/// `openssl s_client` against `addr` with `args`; its stdout and stderr together.
fn s_client(addr: std::net::SocketAddr, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin.as_bytes());
        // Give TLS 1.3 session tickets time to arrive before stdin closes the session.
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_h2_and_http1_by_alpn_and_picks_the_certificate_by_sni() {
    let dir = scratch_dir("tls-alpn");
    let ca = Ca::new(&dir, "test");
    let a = ca.server("a", &["a.test", "localhost"], 30);
    let b = ca.server("b", &["*.b.test"], 30);
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}{}{}",
        base_server(),
        tls_block(
            &[&a, &b],
            "hsts_max_age_s = 600\nhsts_include_subdomains = true"
        ),
        route_to(&up, "")
    ));
    let addr = gw.listener("https");

    for (alpn, expected) in [
        (&["h2", "http/1.1"][..], Some("h2")),
        (&["http/1.1"][..], Some("http/1.1")),
        (&[][..], None),
    ] {
        let client = TlsClient::new(&ca.cert, "a.test", alpn, None);
        let (negotiated, reply) = client.get(addr, "/hello?x=1").await.unwrap();
        assert_eq!(negotiated.alpn.as_deref(), expected, "offered {alpn:?}");
        assert_eq!(negotiated.serial, a.serial);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=600; includeSubDomains")
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.uri, "/hello?x=1");
        assert_eq!(request.headers["x-forwarded-proto"], "https");
    }

    // SNI: the wildcard's certificate for one label under b.test; the default (the first)
    // for a name no certificate has, and for no SNI at all.
    let client = TlsClient::new(&ca.cert, "api.b.test", &["h2"], None);
    let (negotiated, _) = client.get(addr, "/").await.unwrap();
    assert_eq!(negotiated.serial, b.serial);
    for args in [&["-servername", "nobody.test"][..], &["-noservername"][..]] {
        let out = s_client(addr, args, "");
        assert!(
            out.contains("CN=a.test") || out.contains("CN = a.test"),
            "{out}"
        );
    }

    // curl: HTTP/2 over TLS, verified against the CA.
    let resolve = format!("a.test:{}:127.0.0.1", addr.port());
    let url = format!("https://a.test:{}/curl", addr.port());
    let out = curl(&[
        "--http2",
        "--cacert",
        ca.cert.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{response_code}",
        &url,
    ]);
    assert_eq!(out, "2 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_with_forward_secret_aead_suites() {
    let dir = scratch_dir("tls-policy");
    let ca = Ca::new(&dir, "test");
    let a = ca.server("a", &["localhost"], 30);
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}{}{}",
        base_server(),
        tls_block(&[&a], ""),
        route_to(&up, "")
    ));
    let addr = gw.listener("https");
    let sni = ["-servername", "localhost"];

    let tls13 = s_client(addr, &[&sni[..], &["-tls1_3"]].concat(), "");
    assert!(tls13.contains("TLSv1.3"), "{tls13}");
    let tls12 = s_client(addr, &[&sni[..], &["-tls1_2"]].concat(), "");
    assert!(tls12.contains("ECDHE-ECDSA-"), "{tls12}");
    assert!(tls12.contains("Compression: NONE"), "{tls12}");
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(
            addr,
            &[&sni[..], &[old, "-cipher", "DEFAULT:@SECLEVEL=0"]].concat(),
            "",
        );
        assert!(
            !out.contains("Cipher is ECDHE"),
            "{old} was accepted: {out}"
        );
    }
    // Suites without forward secrecy or without AEAD are not offered by the gateway.
    for weak in ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA"] {
        let out = s_client(
            addr,
            &[&sni[..], &["-tls1_2", "-cipher", weak]].concat(),
            "",
        );
        assert!(
            out.contains("handshake failure") || out.contains("no cipher"),
            "{weak} was accepted: {out}"
        );
    }
    // No 0-RTT: the server does not offer early data in its tickets.
    let session = dir.join("session.pem");
    let first = s_client(
        addr,
        &[
            &sni[..],
            &["-tls1_3", "-sess_out", session.to_str().unwrap()],
        ]
        .concat(),
        "",
    );
    assert!(first.contains("TLSv1.3"), "{first}");
    let resumed = s_client(
        addr,
        &[
            &sni[..],
            &["-tls1_3", "-sess_in", session.to_str().unwrap()],
        ]
        .concat(),
        "",
    );
    assert!(
        resumed.contains("Reused, TLSv1.3"),
        "no resumption: {resumed}"
    );
    assert!(resumed.contains("Max Early Data: 0"), "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_a_broken_pair_keeps_the_old_one() {
    let dir = scratch_dir("tls-reload");
    let ca = Ca::new(&dir, "test");
    let first = ca.server("live", &["localhost"], 30);
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}{}{}",
        base_server(),
        tls_block(&[&first], ""),
        route_to(&up, "")
    ));
    let addr = gw.listener("https");
    let client = TlsClient::new(&ca.cert, "localhost", &["http/1.1"], None);

    // One connection open across the reload: its second request is served as well.
    let second = std::cell::RefCell::new(None);
    let (negotiated, replies) = client
        .requests(
            addr,
            &[("GET", "/before", &[]), ("GET", "/after", &[])],
            async |_| {
                let issued = ca.server("live", &["localhost"], 30);
                gw.hangup();
                wait_for_log(&gw, "config reloaded", 1);
                *second.borrow_mut() = Some(issued);
            },
        )
        .await
        .unwrap();
    let second = second.into_inner().unwrap();
    assert_eq!(negotiated.serial, first.serial);
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200]
    );
    let (negotiated, _) = client.get(addr, "/").await.unwrap();
    assert_eq!(
        negotiated.serial, second.serial,
        "new handshakes get the new pair"
    );

    // A key that is not the certificate's: refused, named, and the current pair serves on.
    let other = ca.server("other", &["localhost"], 30);
    std::fs::copy(&other.key, &second.key).unwrap();
    gw.hangup();
    wait_for_log(&gw, "not reloaded", 1);
    let log = gw.log();
    assert!(
        log.contains("live.key: this private key does not belong to the certificate"),
        "{log}"
    );
    let (negotiated, reply) = client.get(addr, "/").await.unwrap();
    assert_eq!((negotiated.serial, reply.status), (second.serial, 200));
}

fn wait_for_log(gw: &Gateway, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches(text).count() < count {
        assert!(Instant::now() < deadline, "no `{text}` in:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_with_mtls_auth_and_acl() {
    let dir = scratch_dir("tls-mtls");
    let ca = Ca::new(&dir, "test");
    let stranger_ca = Ca::new(&dir, "stranger");
    let server = ca.server("server", &["localhost"], 30);
    let alice = ca.client("alice", "alice");
    let bob = ca.client("bob", "bob");
    let carol = ca.client("carol", "carol");
    let mallory = stranger_ca.client("mallory", "alice");
    let up = Upstream::echo("up").await;
    let plugins = format!(
        r#"
  {{ use = "mtls", config = {{ consumers = [
      {{ id = "alice", sha256 = "{}", groups = ["admin"] }},
      {{ id = "bob", subject = "CN=bob, O=Test", groups = ["dev"] }},
  ] }} }},
  {{ use = "acl", config = {{ allow = ["admin"] }} }},
"#,
        alice.sha256
    );
    let config = |auth: &str| {
        format!(
            "{}{}{}\n[plugins.mtls]\nmodule = \"builtin:mtls-auth\"\n[plugins.acl]\nmodule = \"builtin:acl\"\n",
            base_server(),
            tls_block(
                &[&server],
                &format!(
                    "client_auth = \"{auth}\"\nclient_ca = {:?}",
                    ca.cert.display().to_string()
                )
            ),
            route_to(&up, &plugins)
        )
    };
    let required = Gateway::start(&config("required"));
    let addr = required.listener("https");
    let get = async |identity: Option<&Issued>| {
        let client = TlsClient::new(&ca.cert, "localhost", &["h2"], identity);
        client
            .get(addr, "/admin")
            .await
            .map(|(_, reply)| reply.status)
    };
    assert_eq!(get(Some(&alice)).await, Ok(200));
    // curl presents the same certificate with --cert/--key.
    let url = format!("https://localhost:{}/admin", addr.port());
    let with_cert = curl(&[
        "--cacert",
        ca.cert.to_str().unwrap(),
        "--cert",
        alice.cert.to_str().unwrap(),
        "--key",
        alice.key.to_str().unwrap(),
        "-o",
        "/dev/null",
        "-w",
        "%{response_code}",
        &url,
    ]);
    assert_eq!(with_cert, "200");
    let seen = up.seen();
    assert_eq!(seen.last().unwrap().headers["x-consumer-id"], "alice");
    assert_eq!(get(Some(&bob)).await, Ok(403), "bob is no admin (acl)");
    assert_eq!(
        get(Some(&carol)).await,
        Ok(403),
        "carol is no consumer (mtls-auth)"
    );
    assert!(
        get(None).await.is_err(),
        "no certificate: handshake refused"
    );
    assert!(get(Some(&mallory)).await.is_err(), "another CA: refused");
    assert_eq!(up.count(), 2);

    let optional = Gateway::start(&config("optional"));
    let addr = optional.listener("https");
    let client = TlsClient::new(&ca.cert, "localhost", &["http/1.1"], None);
    let (_, reply) = client.get(addr, "/admin").await.unwrap();
    assert_eq!(reply.status, 401, "seen without identity: {}", reply.text());
    let client = TlsClient::new(&ca.cert, "localhost", &["http/1.1"], Some(&alice));
    let (_, reply) = client.get(addr, "/admin").await.unwrap();
    assert_eq!(reply.status, 200);
    let client = TlsClient::new(&ca.cert, "localhost", &["http/1.1"], Some(&mallory));
    assert!(
        client.get(addr, "/admin").await.is_err(),
        "another CA: refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_redirects_to_https_without_proxying() {
    let dir = scratch_dir("tls-redirect");
    let ca = Ca::new(&dir, "test");
    let server = ca.server("server", &["localhost"], 30);
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        "{}{}{}",
        base_server(),
        tls_block(&[&server], "redirect_from = [\"127.0.0.1:0\"]"),
        route_to(&up, "")
    ));
    let https = gw.listener("https");
    let redirect = gw.listener("redirect");
    let client = HttpClient::http1();
    for method in ["GET", "POST"] {
        let reply = client
            .send(
                method,
                &format!("http://{redirect}/a/b?c=d"),
                &[("host", "localhost:8080")],
                "body",
            )
            .await;
        assert_eq!(reply.status, 308);
        assert_eq!(
            reply.header("location").unwrap(),
            format!("https://localhost:{}/a/b?c=d", https.port())
        );
    }
    assert_eq!(up.count(), 0, "nothing is proxied in the clear");
    let out = curl(&[
        "-L",
        "--cacert",
        ca.cert.to_str().unwrap(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{response_code} %{num_redirects}",
        &format!("http://localhost:{}/followed", redirect.port()),
    ]);
    assert_eq!(out, "2 200 1");
    assert_eq!(up.seen()[0].uri, "/followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_the_backend_and_presents_a_client_certificate() {
    let dir = scratch_dir("tls-upstream");
    let ca = Ca::new(&dir, "backend");
    let other_ca = Ca::new(&dir, "other");
    let backend_cert = ca.server("backend", &["localhost"], 30);
    let gateway_identity = ca.client("edge", "edge-gateway");
    let up = Upstream::echo("up").await;
    // The HTTPS backend: a second gateway that wants a client certificate from our CA.
    let backend = Gateway::start(&format!(
        "{}via = \"backend\"\n{}{}",
        base_server(),
        tls_block(
            &[&backend_cert],
            &format!(
                "client_auth = \"required\"\nclient_ca = {:?}",
                ca.cert.display().to_string()
            )
        ),
        route_to(&up, "")
    ));
    let port = backend.listener("https").port();
    let front = |tls: &str| {
        Gateway::start(&format!(
            "{}listen = [\"127.0.0.1:0\"]\n[upstreams.up]\ntargets = [\"https://localhost:{port}\"]\n[upstreams.up.tls]\n{tls}\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"up\"\n",
            base_server()
        ))
    };
    let identity = format!(
        "cert = {:?}\nkey = {:?}\n",
        gateway_identity.cert.display().to_string(),
        gateway_identity.key.display().to_string()
    );
    let client = HttpClient::http1();

    let good = front(&format!(
        "ca = {:?}\n{identity}",
        ca.cert.display().to_string()
    ));
    let reply = client.get(&good.url("/through"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.seen()[0].uri, "/through");
    assert_eq!(up.seen()[0].headers["x-forwarded-proto"], "https");

    let wrong_ca = front(&format!(
        "ca = {:?}\n{identity}",
        other_ca.cert.display().to_string()
    ));
    let reply = wrong_ca.get_reply(&client, "/x").await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.json()["error"]["code"],
        "upstream_tls",
        "{}",
        reply.text()
    );

    let no_identity = front(&format!("ca = {:?}\n", ca.cert.display().to_string()));
    let reply = no_identity.get_reply(&client, "/x").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(up.count(), 1);
}

trait GetReply {
    async fn get_reply(&self, client: &HttpClient, path: &str) -> crate::support::Reply;
}

impl GetReply for Gateway {
    async fn get_reply(&self, client: &HttpClient, path: &str) -> crate::support::Reply {
        client.get(&self.url(path), &[]).await
    }
}

#[test]
fn check_names_the_file_and_line_of_each_certificate_problem() {
    let dir = scratch_dir("tls-check");
    let ca = Ca::new(&dir, "test");
    let good = ca.server("good", &["localhost"], 30);
    let expiring = ca.server("expiring", &["localhost"], 5);
    let other = ca.server("other", &["localhost"], 30);
    std::fs::copy(&other.key, dir.join("mismatch.key")).unwrap();
    std::fs::copy(&good.cert, dir.join("mismatch.pem")).unwrap();
    let path = |p: &Path| p.display().to_string();
    let config = format!(
        r#"[server]
[[server.tls]]
listen = ["127.0.0.1:0"]
client_auth = "required"

[[server.tls.certificates]]
cert = "missing.pem"
key = "missing.key"

[[server.tls.certificates]]
cert = "mismatch.pem"
key = "mismatch.key"

[[server.tls]]
listen = ["127.0.0.1:0"]
[[server.tls.certificates]]
cert = {expiring_cert:?}
key = {expiring_key:?}
"#,
        expiring_cert = path(&expiring.cert),
        expiring_key = path(&expiring.key),
    );
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, &config).unwrap();
    let out = crate::support::gateway_cli(&["check", "--config", config_path.to_str().unwrap()]);
    let text = out.stderr.replace(&dir.display().to_string(), "DIR");
    assert_eq!(out.code, 1, "{text}");
    for expected in [
        "gateway.toml:7:8: server.tls[0].certificates[0].cert: cannot read missing.pem",
        "gateway.toml:11:8: server.tls[0].certificates[1].cert: mismatch.key: this private key \
         does not belong to the certificate in mismatch.pem",
        "server.tls[0].client_ca: client_auth needs `client_ca`",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
    assert!(!text.contains("tls[1]"), "{text}");

    // Valid, but close to expiry: accepted with a warning naming the file.
    let warning_only = format!(
        "{}\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
        base_server(),
        path(&expiring.cert),
        path(&expiring.key)
    );
    let out = check_config("gateway.toml", &warning_only);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning:")
            && out
                .stderr
                .contains("expiring.pem: the certificate expires in ")
            && out.stderr.contains(" day(s)"),
        "{}",
        out.stderr
    );

    // Expired: an error.
    let expired = ca.server("expired", &["localhost"], -1);
    let out = check_config(
        "gateway.toml",
        &format!(
            "{}\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
            base_server(),
            path(&expired.cert),
            path(&expired.key)
        ),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("expired.pem: the certificate expired on"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_tls_config_is_accepted_and_serves_https() {
    let root = crate::support::root();
    let out = crate::support::gateway_cli(&["check", "--config", "config/tls.toml"]);
    // `gateway_cli` runs in the package directory; the config's paths are its own.
    let out = if out.code == 0 {
        out
    } else {
        crate::support::gateway_cli(&[
            "check",
            "--config",
            root.join("config/tls.toml").to_str().unwrap(),
        ])
    };
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The same file on ephemeral ports, in front of a real upstream.
    let up = Upstream::echo("up").await;
    let dir = scratch_dir("tls-example");
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    for file in ["example-only.pem", "example-only.key"] {
        std::fs::copy(
            root.join("config/tls").join(file),
            dir.join("tls").join(file),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(root.join("config/tls.toml"))
        .unwrap()
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("\"127.0.0.1:9001\"", &up.target())
        .replace("[server]\n", &base_server());
    let config = dir.join("tls.toml");
    std::fs::write(&config, text).unwrap();
    let gw = Gateway::start_file(&config);
    let client = TlsClient::new(
        &root.join("config/tls/example-only.pem"),
        "localhost",
        &["h2", "http/1.1"],
        None,
    );
    let (negotiated, reply) = client.get(gw.listener("https"), "/api/x").await.unwrap();
    assert_eq!(negotiated.alpn.as_deref(), Some("h2"));
    assert_eq!(reply.status, 200);
    assert!(reply.header("strict-transport-security").is_some());
    let redirect = HttpClient::http1()
        .get(&format!("http://{}/api/x", gw.listener("redirect")), &[])
        .await;
    assert_eq!(redirect.status, 308);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsp_response_in_the_certificate_set_is_stapled() {
    let dir = scratch_dir("tls-ocsp");
    let ca = Ca::new(&dir, "test");
    let server = ca.server("server", &["localhost"], 30);
    let response = ca.ocsp_response(&server);
    let up = Upstream::echo("up").await;
    let block =
        tls_block(&[&server], "") + &format!("ocsp = {:?}\n", response.display().to_string());
    let gw = Gateway::start(&format!("{}{block}{}", base_server(), route_to(&up, "")));
    let out = s_client(
        gw.listener("https"),
        &["-servername", "localhost", "-status"],
        "",
    );
    assert!(out.contains("OCSP Response Status: successful"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
}
