//! The plugin host: WebAssembly components behind the WIT interface in `wit/`, run under
//! per-plugin limits with only the capabilities they were granted.
//!
//! - [`engine`]: wasmtime engines narrowed to safe defaults.
//! - [`ticker`]: the epoch ticker behind wall-clock timeouts, awake only while guests run.
//! - [`cache`]: compiled components cached on disk.
//! - [`builtin`]: first-party plugins embedded in the binary.
//! - [`capabilities`]: import checking and per-plugin linkers (deny by default).
//! - [`loader`]: from a `[plugins.NAME]` table to a pre-instantiated component.
//! - [`pool`]: warm or per-request instances and the call discipline that enforces limits.
//! - [`offload`]: guest threads, where CPU-bound calls finish off the event loops.
//! - [`limits`]: limits and violations.
//! - [`filter`]: a plugin use as a pipeline filter.
//! - [`host`]: the host side of each capability.
//! - [`inspect`]: what `gateway plugin inspect` reports.

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod capabilities;
pub mod engine;
pub mod filter;
pub mod host;
pub mod inspect;
pub mod limits;
pub mod loader;
pub mod offload;
pub mod pool;
pub mod state;
pub mod ticker;

pub use engine::Engines;
pub use filter::WasmFilter;
