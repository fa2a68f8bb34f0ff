//! End-to-end tests: the real `gateway` binary on loopback with real upstreams, real clients
//! and real WebAssembly plugins (Rust and Python). One test binary; see `support/`.

mod support;

mod capabilities;
mod chain;
mod config_errors;
mod isolation;
mod limits;
mod python;
mod routing;
mod transformers;
