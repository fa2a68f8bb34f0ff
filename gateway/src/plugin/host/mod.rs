//! Host capabilities: one file per WIT interface. Each is added to a plugin's linker only when
//! the plugin is granted it. Host functions never panic; failures are values.

pub mod clock;
pub mod counters;
pub mod crypto;
pub mod kv;
pub mod log;
