//! Host-side bindings generated from `wit/` — the same WIT the SDK and every plugin build against.
//!
//! Imports are async so capabilities that wait on I/O (Redis-backed counters, outbound HTTP) fit
//! without changing the interface; exports are async so guest calls can be bounded by
//! epoch-based timeouts while the tokio worker stays free between host awaits.

// The macro generates undocumented items.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::gateway::plugin::types;
