//! First-party plugins embedded in the binary, referenced in config as `builtin:NAME`.
//!
//! `build.rs` compiles every crate under `plugins/` for `wasm32-wasip2` and generates the table
//! included here, so the binary carries exactly the plugins of its own source tree.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of built-in plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of all built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(name, _)| *name).collect()
}
