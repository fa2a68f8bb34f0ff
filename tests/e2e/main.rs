//! End-to-end tests: the real `gateway` binary on loopback with real upstreams, real clients
//! and real WebAssembly plugins (Rust and Python). One test binary; see `support/`.

// Test code: a failed unwrap is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod bodies;
mod cache;
mod capabilities;
mod chain;
mod config_errors;
mod connections;
mod edge;
mod fairness;
mod framing;
mod grpc;
mod h2_abuse;
mod isolation;
mod jwt;
mod kv;
mod limits;
mod observability;
mod policies;
mod python;
mod quotas;
mod ratelimit;
mod reload;
mod reports;
mod resilience;
mod routing;
mod tls;
mod traffic;
mod transformers;
mod upgrade;
mod websocket;
mod workers;
