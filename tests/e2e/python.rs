//! The same interface from another language: the Python tagger (componentize-py) passes the
//! same chain test as the Rust one, alone and mixed with Rust in one chain.

use crate::chain::{Tagger, check_chain};
use crate::support::wasm::python_tagger;

fn python() -> Tagger {
    // componentize-py's runtime imports filesystem/socket interfaces it never uses here: grant
    // an empty WASI; its interpreter needs more memory and time to start than a Rust plugin.
    Tagger {
        module: python_tagger(),
        extra: "capabilities = [\"log\", \"clock\", \"wasi\"]\nmemory_mb = 128\ntimeout_ms = 1000",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chain_runs_in_order_and_short_circuits() {
    check_chain(python(), python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_plugins_share_one_chain() {
    check_chain(python(), Tagger::rust()).await;
    check_chain(Tagger::rust(), python()).await;
}

/// A fresh CPython instance per request fits the pooling allocator's slots (several core
/// instances, large tables, a 128 MB memory cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugin_runs_with_request_isolation() {
    let fresh = Tagger {
        module: python_tagger(),
        extra: "capabilities = [\"log\", \"clock\", \"wasi\"]\nmemory_mb = 128\ntimeout_ms = 1000\nisolation = \"request\"",
    };
    check_chain(fresh, Tagger::rust()).await;
}
