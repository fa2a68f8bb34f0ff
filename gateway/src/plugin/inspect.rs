//! `gateway plugin inspect FILE`: what a component imports and exports, which imports are
//! gateway capabilities or WASI and what grant they need, its size and SHA-256 — what a
//! security review needs before granting anything.

use super::capabilities::{self, ImportClass};
use super::{Engines, cache, loader};
use serde::Serialize;
use std::path::Path;

/// The inspection report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// File inspected (or `builtin:NAME`).
    pub module: String,
    /// Size in bytes.
    pub size_bytes: usize,
    /// Hex SHA-256, suitable for the `sha256` pin.
    pub sha256: String,
    /// Each import with what it needs.
    pub imports: Vec<ImportReport>,
    /// Export names.
    pub exports: Vec<String>,
    /// Capabilities to grant for this component to load.
    pub required_capabilities: Vec<String>,
    /// Whether it exports the gateway filter interface.
    pub is_gateway_filter: bool,
}

/// One import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Full import name with version.
    pub name: String,
    /// `gateway`, `wasi` or `other`.
    pub kind: &'static str,
    /// `baseline` (always provided), `capability:NAME`, or `unavailable`.
    pub grant: String,
}

impl ImportReport {
    /// Import `name`, classified.
    pub fn of(name: String) -> Self {
        let grant = match capabilities::classify(&name) {
            ImportClass::Baseline => "baseline".to_string(),
            ImportClass::Needs(cap) => format!("capability:{cap}"),
            ImportClass::WrongVersion => "wrong-version".to_string(),
            ImportClass::Unknown => "unavailable".to_string(),
        };
        let kind = if name.starts_with("gateway:") {
            "gateway"
        } else if name.starts_with("wasi:") {
            "wasi"
        } else {
            "other"
        };
        ImportReport { name, kind, grant }
    }
}

/// Inspect a module reference (`builtin:NAME` or a path).
pub fn inspect(module: &str, engines: &Engines) -> Result<Report, String> {
    let bytes = loader::read_module(module, Path::new("."))?;
    loader::check_preamble(&bytes, module)?;
    let engine = engines.engine(false, crate::config::Isolation::Pooled);
    let component = wasmtime::component::Component::new(engine, &bytes)
        .map_err(|e| format!("`{module}` is not a valid component: {e:#}"))?;
    let imports: Vec<ImportReport> = capabilities::imports(&component, engine)
        .into_iter()
        .map(ImportReport::of)
        .collect();
    let mut required: Vec<String> = Vec::new();
    for import in &imports {
        if let Some(cap) = import.grant.strip_prefix("capability:")
            && !required.iter().any(|r| r == cap)
        {
            required.push(cap.to_string());
        }
    }
    let exports = capabilities::exports(&component, engine);
    let is_gateway_filter = exports
        .iter()
        .any(|e| e.split('@').next() == Some("gateway:plugin/filter"));
    Ok(Report {
        module: module.to_string(),
        size_bytes: bytes.len(),
        sha256: cache::sha256_hex(&bytes),
        imports,
        exports,
        required_capabilities: required,
        is_gateway_filter,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "module:   {}", self.module)?;
        writeln!(f, "size:     {} bytes", self.size_bytes)?;
        writeln!(f, "sha256:   {}", self.sha256)?;
        writeln!(
            f,
            "filter:   {}",
            if self.is_gateway_filter {
                "yes (exports gateway:plugin/filter)"
            } else {
                "NO: does not export gateway:plugin/filter"
            }
        )?;
        writeln!(
            f,
            "grant:    capabilities = [{}]",
            self.required_capabilities
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(f, "imports:")?;
        for import in &self.imports {
            writeln!(
                f,
                "  {:<45} {:<8} {}",
                import.name, import.kind, import.grant
            )?;
        }
        writeln!(f, "exports:")?;
        for export in &self.exports {
            writeln!(f, "  {export}")?;
        }
        Ok(())
    }
}
