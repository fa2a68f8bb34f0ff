//! Plugin chains: order on request, reverse order on response, context passing, and a
//! respond action that short-circuits the chain without calling the upstream.

use crate::support::wasm::test_plugin;
use crate::support::{Gateway, HttpClient, Upstream, server_section};

/// A tagger plugin definition: module path and the extra TOML lines it needs.
pub struct Tagger {
    pub module: String,
    pub extra: &'static str,
}

impl Tagger {
    pub fn rust() -> Tagger {
        Tagger {
            module: test_plugin("test-tagger"),
            extra: "capabilities = [\"log\"]",
        }
    }
}

/// The chain test, run against any pair of tagger implementations (Rust, Python).
pub async fn check_chain(first: Tagger, second: Tagger) {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&format!(
        r#"{server}
[upstreams.up]
targets = [{target}]

[plugins.first]
module = {first:?}
{first_extra}

[plugins.second]
module = {second:?}
{second_extra}

[[routes]]
name = "chain"
match = {{ path_prefix = "/" }}
upstream = "up"
plugins = [
  {{ use = "first", config = {{ name = "A" }} }},
  {{ use = "second", config = {{ name = "B" }} }},
]
"#,
        server = server_section(),
        target = up.target(),
        first = first.module,
        first_extra = first.extra,
        second = second.module,
        second_extra = second.extra,
    ));
    let client = HttpClient::http1();

    // In order on the request, in reverse on the response; context flows A → B.
    let reply = client.get(&gw.url("/hello"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &up.seen()[0];
    assert_eq!(seen.headers["x-chain"], "A,B");
    assert_eq!(seen.headers["x-seen-a"], "-");
    assert_eq!(seen.headers["x-seen-b"], "A");
    assert_eq!(reply.header("x-chain-response"), Some("B,A"));
    assert_eq!(reply.header("x-context-a"), Some("AB"));
    assert_eq!(reply.header("x-context-b"), Some("AB"));

    // B answers: the upstream is not called; only A (before B) sees the response.
    let reply = client.get(&gw.url("/hello"), &[("x-respond", "B")]).await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("x-responded-by"), Some("B"));
    assert_eq!(reply.text(), "short-circuit by B");
    assert_eq!(reply.header("x-chain-response"), Some("A"));
    assert_eq!(up.count(), 1, "upstream called despite the short-circuit");

    // A answers: nothing else runs.
    let reply = client.get(&gw.url("/hello"), &[("x-respond", "A")]).await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("x-responded-by"), Some("A"));
    assert_eq!(reply.header("x-chain-response"), None);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_chain_runs_in_order_and_short_circuits() {
    check_chain(Tagger::rust(), Tagger::rust()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_plugins_run_before_every_route_chain() {
    let up = Upstream::echo("up").await;
    let tagger = test_plugin("test-tagger");
    let gw = Gateway::start(&format!(
        r#"global_plugins = [ {{ use = "tagger", config = {{ name = "G" }} }} ]
{server}
[upstreams.up]
targets = [{target}]

[plugins.tagger]
module = {tagger:?}
capabilities = ["log"]

[[routes]]
name = "with-chain"
match = {{ path_prefix = "/a" }}
upstream = "up"
plugins = [ {{ use = "tagger", config = {{ name = "A" }} }} ]

[[routes]]
name = "bare"
match = {{ path_prefix = "/b" }}
upstream = "up"
"#,
        server = server_section(),
        target = up.target(),
    ));
    let client = HttpClient::http1();
    let reply = client.get(&gw.url("/a"), &[]).await;
    assert_eq!(reply.header("x-chain-response"), Some("A,G"));
    let reply = client.get(&gw.url("/b"), &[]).await;
    assert_eq!(reply.header("x-chain-response"), Some("G"));
    let seen = up.seen();
    assert_eq!(seen[0].headers["x-chain"], "G,A");
    assert_eq!(seen[1].headers["x-chain"], "G");
}

/// A plugin built against the previous patch of the interface (`gateway:plugin@0.2.0`, before
/// capability `metrics`: `tests/fixtures/tagger-wit-0.2.0.wasm`) loads and runs in a chain
/// with one built now: a patch bump of `wit/` breaks no plugin.
#[tokio::test]
async fn a_plugin_built_against_an_older_patch_of_the_interface_still_runs() {
    let old = Tagger {
        module: crate::support::root()
            .join("tests/fixtures/tagger-wit-0.2.0.wasm")
            .display()
            .to_string(),
        extra: "capabilities = [\"log\"]",
    };
    check_chain(old, Tagger::rust()).await;
}
