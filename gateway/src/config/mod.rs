//! The config file: schema ([`schema`]) and error placement ([`diagnostics`]).
//!
//! This module only parses: [`load`] and [`parse`] turn TOML into the serde schema (unknown
//! keys and wrong types are errors here, with their span). Everything else — references,
//! ranges, typed values, plugins — is the one pass of `crate::compile`, which reports through
//! the same [`SourceMap`], so every error names file, line, column and key path.

pub mod diagnostics;
pub mod observe;
pub mod redact;
pub mod resilience;
pub mod schema;
pub mod tls;
pub mod traffic;

pub use diagnostics::{ConfigError, ConfigErrors, KeyPath, SourceMap};
pub use observe::*;
pub use resilience::*;
pub use schema::*;
pub use tls::*;
pub use traffic::{MirrorConfig, SplitArmConfig, SplitConfig};

use std::path::{Path, PathBuf};

/// A parsed config with what is needed to report later errors against it.
pub struct LoadedConfig {
    /// The config.
    pub config: Config,
    /// The file text, for placing errors.
    pub source: SourceMap,
    /// Directory relative paths (plugin modules) are resolved against.
    pub base_dir: PathBuf,
}

/// Read and parse the config file at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            path: KeyPath::root(),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&file, &text, base_dir)
}

/// Parse config `text` (named `file` in errors).
pub fn parse(file: &str, text: &str, base_dir: PathBuf) -> Result<LoadedConfig, ConfigErrors> {
    let source = SourceMap::new(file, text);
    let config: Config = toml::from_str(text)
        .map_err(|e| ConfigErrors(vec![source.error_at_span(e.span(), e.message())]))?;
    Ok(LoadedConfig {
        config,
        source,
        base_dir,
    })
}
