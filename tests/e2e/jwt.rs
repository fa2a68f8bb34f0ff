//! `jwt-auth` with the `crypto` capability, against tokens made by PyJWT: every supported
//! algorithm verifies, every classic attack is refused with 401 before the upstream, and JWKS
//! rotation refetches within its rate limit and survives the JWKS server going away.

use crate::support::jose::make_tokens;
use crate::support::{Gateway, HttpClient, Upstream, scratch_dir, server_section};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const ALGORITHMS: &str = r#"["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_and_every_attack_is_refused() {
    const ATTACKS: &[&str] = &[
        "attack-alg-none",
        "attack-hs256-with-rsa-public-key",
        "attack-hs256-with-rsa-public-key-kid",
        "attack-expired",
        "attack-exp-string",
        "attack-no-exp",
        "attack-future-nbf",
        "attack-wrong-aud",
        "attack-missing-aud",
        "attack-wrong-iss",
        "attack-unknown-kid",
        "attack-tampered-payload",
    ];
    let dir = scratch_dir("jwt");
    let tokens = make_tokens(&dir, 10);
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[keys.all]
pem = [ {{ path = "{dir}/rsa.pem", kid = "rsa" }}, {{ path = "{dir}/ec256.pem", kid = "ec256" }},
        {{ path = "{dir}/ed.pem", kid = "ed" }} ]
secrets = [ {{ kid = "hs", file = "{dir}/hs.secret" }} ]
jwks_file = "{dir}/jwks.json"

[plugins.jwt]
module = "builtin:jwt-auth"
capabilities = ["crypto", "clock", "log"]

[[routes]]
name = "api"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "jwt", config = {{ key_set = "all", algorithms = {ALGORITHMS},
  issuer = "https://issuer.test", audience = "api", leeway_s = 10, groups_claim = "groups",
  strip_token = true }} }} ]
"#,
        server = server_section(),
        target = up.target(),
        dir = dir.display(),
    ));
    let client = HttpClient::http1();
    let mut good = 0;
    for (name, token) in tokens.iter().filter(|(n, _)| n.starts_with("good-")) {
        let bearer = format!("Bearer {token}");
        let reply = client
            .get(
                &gw.url("/x"),
                &[("authorization", &bearer), ("x-consumer-id", "spoof")],
            )
            .await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        good += 1;
    }
    assert_eq!(good, 12);
    let seen = up.seen();
    assert_eq!(seen.len(), 12);
    let last = seen.last().unwrap();
    assert_eq!(last.headers.get_all("x-consumer-id").iter().count(), 1);
    assert_eq!(last.headers["x-consumer-id"], "alice");
    assert_eq!(last.headers["x-consumer-groups"], "admin");
    assert!(
        last.headers.get("authorization").is_none(),
        "token stripped"
    );

    let within = format!("Bearer {}", tokens["within-leeway"]);
    assert_eq!(
        client
            .get(&gw.url("/x"), &[("authorization", &within)])
            .await
            .status,
        200
    );
    let before = up.count();

    // The attacks are named here, so a token script that stops making one fails the test
    // instead of quietly testing less.
    let attacks: Vec<&String> = tokens.keys().filter(|n| n.starts_with("attack-")).collect();
    assert_eq!(
        attacks.len(),
        ATTACKS.len(),
        "the token script made {attacks:?}"
    );
    let mut refused = 0;
    for name in ATTACKS {
        let token = tokens
            .get(*name)
            .unwrap_or_else(|| panic!("the token script made no {name}"));
        let bearer = format!("Bearer {token}");
        let reply = client
            .get(&gw.url("/x"), &[("authorization", &bearer)])
            .await;
        assert_eq!(
            reply.status,
            401,
            "{name} was not refused: {}",
            reply.text()
        );
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        let body = reply.json();
        assert_eq!(body["error"]["code"], "invalid_token", "{name}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("signature"), "{name} leaks: {message}");
        refused += 1;
    }
    assert_eq!(refused, ATTACKS.len());
    let missing = client.get(&gw.url("/x"), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"gateway\"")
    );
    assert_eq!(
        up.count(),
        before,
        "no refused request reached the upstream"
    );
}

/// A JWKS endpoint whose document can be swapped, that counts fetches and can be stopped.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(document: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (doc, count, stop) = (document.clone(), fetches.clone(), stopped.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (doc, count, stop) = (doc.clone(), count.clone(), stop.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let stopped = stop.load(Ordering::SeqCst);
                        if !stopped {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        let body = doc.lock().unwrap().clone();
                        async move {
                            if stopped {
                                // Closes kept-alive connections too: the server is "down".
                                return Err(std::io::Error::other("stopped"));
                            }
                            Ok::<_, std::io::Error>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer {
            url,
            document,
            fetches,
            stopped,
            task,
        }
    }

    /// Refuse new connections and drop kept-alive ones.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.task.abort();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_refetch_limit_and_outage() {
    let dir = scratch_dir("jwks");
    let tokens = make_tokens(&dir, 10);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let jwks = JwksServer::start(read("jwks-a.json")).await;
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[keys.idp]
jwks_url = "{url}"
refresh_s = 1
min_refetch_ms = 1500

[plugins.jwt]
module = "builtin:jwt-auth"
capabilities = ["crypto", "clock", "log"]
# The call that refetches waits for the JWKS server: on a loaded test machine that can take
# longer than the default 20 ms, which would fail it as a timeout instead of a 401.
timeout_ms = 2000

[[routes]]
name = "api"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "jwt", config = {{ key_set = "idp", algorithms = ["RS256"] }} }} ]
"#,
        server = server_section(),
        target = up.target(),
        url = jwks.url,
    ));
    let client = HttpClient::http1();
    let call = |token: String| {
        let client = client.clone();
        let url = gw.url("/x");
        async move {
            let bearer = format!("Bearer {token}");
            client.get(&url, &[("authorization", &bearer)]).await.status
        }
    };
    assert_eq!(call(tokens["rotation-a"].clone()).await, 200);
    assert_eq!(jwks.fetches(), 1);

    // The IdP rotates in key "b": accepted after one refetch.
    *jwks.document.lock().unwrap() = read("jwks-ab.json");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(call(tokens["rotation-b"].clone()).await, 200);
    let after_rotation = jwks.fetches();
    assert_eq!(after_rotation, 2);

    // A burst of unknown kids: all refused, at most one refetch in the interval.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let burst: Vec<_> = (0..20)
        .map(|i| tokio::spawn(call(tokens[&format!("rotation-unknown-{i}")].clone())))
        .collect();
    for task in burst {
        assert_eq!(task.await.unwrap(), 401);
    }
    assert!(
        jwks.fetches() <= after_rotation + 1,
        "{} fetches for one burst",
        jwks.fetches() - after_rotation
    );

    // The JWKS server goes away: cached keys keep verifying, even past refresh_s.
    jwks.stop();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(call(tokens["rotation-a"].clone()).await, 200);
    assert_eq!(call(tokens["rotation-b"].clone()).await, 200);
    assert!(
        gw.log().contains("JWKS fetch failed, using cached keys"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_is_verified_and_plain_http_only_from_loopback() {
    use crate::support::tls::Ca;
    let dir = scratch_dir("jwks-https");
    let tokens = make_tokens(&dir, 1);
    let jwks = JwksServer::start(std::fs::read_to_string(dir.join("jwks-a.json")).unwrap()).await;
    // The identity provider's HTTPS: a TLS gateway in front of the JWKS server.
    let ca = Ca::new(&dir, "idp");
    let other_ca = Ca::new(&dir, "other");
    let idp_cert = ca.server("idp", &["localhost"], 30);
    let jwks_addr = jwks
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let idp = Gateway::start(&format!(
        "{}via = \"idp\"\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\ncert = {:?}\nkey = {:?}\n[upstreams.jwks]\ntargets = [\"{jwks_addr}\"]\n[[routes]]\nname = \"jwks\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"jwks\"\n",
        server_section(),
        idp_cert.cert.display().to_string(),
        idp_cert.key.display().to_string(),
    ));
    let url = format!(
        "https://localhost:{}/jwks.json",
        idp.listener("https").port()
    );
    let up = Upstream::echo("up").await;
    let gateway = |ca: &std::path::Path| {
        Gateway::start(&format!(
            r#"{server}
[upstreams.up]
targets = [{target}]
[keys.idp]
jwks_url = "{url}"
jwks_ca = {ca:?}
[plugins.jwt]
module = "builtin:jwt-auth"
capabilities = ["crypto", "clock", "log"]
timeout_ms = 2000
[[routes]]
name = "api"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [ {{ use = "jwt", config = {{ key_set = "idp", algorithms = ["RS256"] }} }} ]
"#,
            server = server_section(),
            target = up.target(),
            ca = ca.display().to_string(),
        ))
    };
    let bearer = format!("Bearer {}", tokens["rotation-a"]);
    let client = HttpClient::http1();

    let trusting = gateway(&ca.cert);
    let reply = client
        .get(&trusting.url("/x"), &[("authorization", &bearer)])
        .await;
    assert_eq!(reply.status, 200, "{}", trusting.log());
    assert_eq!(jwks.fetches(), 1);

    // A server whose certificate does not chain to `jwks_ca`: no keys could be had, so the
    // key set is unavailable (503) and no token gets through.
    let distrusting = gateway(&other_ca.cert);
    let reply = client
        .get(&distrusting.url("/x"), &[("authorization", &bearer)])
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        jwks.fetches(),
        1,
        "nothing fetched over an unverified connection"
    );
    assert!(
        distrusting.log().contains("JWKS fetch failed"),
        "{}",
        distrusting.log()
    );

    let out = crate::support::check_config(
        "gateway.toml",
        &format!(
            "{}[keys.idp]\njwks_url = \"http://idp.example.com/jwks.json\"\n",
            server_section()
        ),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "keys.idp.jwks_url: `http://idp.example.com/jwks.json`: keys are fetched over https://"
        ),
        "{}",
        out.stderr
    );
}
