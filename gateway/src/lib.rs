//! `gateway` (library half): an API gateway whose policies run as sandboxed WebAssembly components.
//!
//! The native core (this crate) owns sockets, routing, upstream pools and limits; plugins own
//! decisions. See the README for the request lifecycle and the config reference.

pub mod body;
pub mod cli;
pub mod compile;
pub mod config;
pub mod error;
pub mod plugin;
pub mod proxy;
pub mod router;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod upstream;
pub mod worker;

#[cfg(test)]
mod architecture;
