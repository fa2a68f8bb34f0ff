//! `gateway` (library half): an API gateway whose policies run as sandboxed WebAssembly components.
//!
//! The native core (this crate) owns sockets, routing, upstream pools and limits; plugins own
//! decisions. See the README for the request lifecycle and the config reference.

// The library's only surface: the binary's entry point, and what the micro-benchmarks
// (`benches/micro.rs`: router lookups and plugin calls) and the fuzz targets (`fuzz/`) drive.
// Every module is private, so the dead-code lint sees whatever nothing uses.
mod admin;
mod body;
mod cli;
mod compile;
mod config;
mod edge;
mod error;
mod fuzzing;
mod plugin;
mod proxy;
mod router;
mod server;
mod services;
mod telemetry;
mod tls;
mod upstream;
mod worker;

pub use cli::main;

/// What `benches/micro.rs` measures; not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::config::{Isolation, PluginConfig};
    pub use crate::plugin::cache::{self, Cache};
    pub use crate::plugin::limits::Limits;
    pub use crate::plugin::loader;
    pub use crate::plugin::pool::InstancePool;
    pub use crate::plugin::{Engines, WasmFilter};
    pub use crate::proxy::filter::{Filter, RequestContext, RequestVerdict, Slot};
    pub use crate::router::{Matcher, PathMatch, RequestKey, Router};
    pub use crate::services::Services;
}

/// What the `cargo fuzz` targets in `fuzz/` run (implemented in `fuzzing.rs`); not an API.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::fuzzing::{
        ActionInput, HeaderChangesInput, HeaderInput, RequestActionInput, RequestChangesInput,
        Text, config_check, path_normalize, request_action,
    };
}

#[cfg(test)]
mod architecture;
