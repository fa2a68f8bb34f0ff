//! What a plugin may import, and the linker that holds exactly that.
//!
//! Deny by default: a plugin's linker holds only
//! - the *baseline*: the WASI pieces any ordinary std-built guest imports without using them
//!   to reach anything (`wasi:cli` stdio/environment/exit/terminal, `wasi:io`, `wasi:clocks`,
//!   `wasi:random`) — backed by an empty context: no environment, stdin empty, output discarded;
//! - the capabilities its config grants, each a [`CapabilityUnit`] (one module of
//!   [`super::host`] per capability: its name, its interfaces, its config checks, its host
//!   functions and its linker registration).
//!
//! Before linking, [`check_imports`] compares the component's imports with the grant and
//! names the first offending import, so the operator reads "imports `wasi:filesystem/types`,
//! which needs capability `wasi`" instead of a linker error. A `gateway:plugin` import at a
//! version this gateway does not provide is refused the same way, naming both versions.

use super::host::UNITS;
use super::state::StoreState;
use crate::config::{Config, KeyPath};
use std::fmt;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;

/// The version of the `gateway:plugin` package this gateway provides (`wit/plugin.wit`).
pub const WIT_VERSION: &str = "0.2.1";

/// One host capability, whole: everything about it lives in its module of [`super::host`].
pub trait CapabilityUnit: Sync {
    /// The name operators grant (`capabilities = ["log"]`).
    fn name(&self) -> &'static str;

    /// The interfaces it provides, without version (`gateway:plugin/log`).
    fn interfaces(&self) -> &'static [&'static str];

    /// Problems in the config this capability alone knows about, at their key paths (for
    /// example unreadable key files for `crypto`). Run for every config, granted or not.
    fn check_config(&self, _config: &Config) -> Vec<(KeyPath, String)> {
        Vec::new()
    }

    /// Add its interfaces to a plugin's linker (only when granted).
    fn add_to_linker(&self, linker: &mut Linker<StoreState>) -> wasmtime::Result<()>;
}

/// A grantable host capability: a handle on its unit.
#[derive(Clone, Copy)]
pub struct Capability(&'static dyn CapabilityUnit);

impl Capability {
    /// The capability named `name`, if this gateway has it.
    pub fn find(name: &str) -> Option<Self> {
        find_in(UNITS, name)
    }

    /// All capability names, in the order they are listed to operators.
    pub fn names() -> Vec<&'static str> {
        UNITS.iter().map(|unit| unit.name()).collect()
    }

    /// The name used in config.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Its unit.
    pub fn unit(self) -> &'static dyn CapabilityUnit {
        self.0
    }
}

fn find_in(units: &[&'static dyn CapabilityUnit], name: &str) -> Option<Capability> {
    units
        .iter()
        .find(|unit| unit.name() == name)
        .map(|unit| Capability(*unit))
}

impl PartialEq for Capability {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Capability {}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an import needs to be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportClass {
    /// Always provided (harmless std runtime support, or plain types).
    Baseline,
    /// Provided only with this capability.
    Needs(Capability),
    /// A `gateway:plugin` interface at a version this gateway does not provide.
    WrongVersion,
    /// Not provided by this gateway at all.
    Unknown,
}

const BASELINE: &[&str] = &[
    "gateway:plugin/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Whether a component built against `theirs` can use what this gateway provides as `ours`,
/// by the component model's semver rule (wasmtime's linker matches the same way): the same
/// `0.minor` before 1.0, the same major after.
pub fn compatible(theirs: &str, ours: &str) -> bool {
    let key = |version: &str| -> Vec<String> {
        let parts: Vec<String> = version.split('.').map(str::to_string).collect();
        let keep = if parts.first().is_some_and(|major| major == "0") {
            2
        } else {
            1
        };
        parts.into_iter().take(keep).collect()
    };
    key(theirs) == key(ours)
}

/// Classify an import by its name (`ns:pkg/iface@version`). WASI versions are left to the
/// linker (wasmtime matches semver-compatible ones); `gateway:plugin` must be ours.
pub fn classify(import: &str) -> ImportClass {
    classify_in(UNITS, import)
}

fn classify_in(units: &[&'static dyn CapabilityUnit], import: &str) -> ImportClass {
    let (unversioned, version) = import.split_once('@').unwrap_or((import, ""));
    if unversioned.starts_with("gateway:plugin/")
        && !version.is_empty()
        && !compatible(version, WIT_VERSION)
    {
        return ImportClass::WrongVersion;
    }
    if BASELINE.contains(&unversioned) {
        return ImportClass::Baseline;
    }
    units
        .iter()
        .find(|unit| unit.interfaces().contains(&unversioned))
        .map_or(ImportClass::Unknown, |unit| {
            ImportClass::Needs(Capability(*unit))
        })
}

/// The import names of a component.
pub fn imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The export names of a component.
pub fn exports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// `0.2.x` for `0.2.0`, `1.x` for `1.4.0`: what "compatible" means, for messages.
pub fn compat_label() -> String {
    let mut parts = WIT_VERSION.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}.x"),
        (Some(major), _) => format!("{major}.x"),
        _ => WIT_VERSION.to_string(),
    }
}

/// Every import the grant does not cover, each as a readable reason.
pub fn check_imports(imports: &[String], granted: &[Capability]) -> Vec<String> {
    let granted_names: Vec<&str> = granted.iter().map(|c| c.name()).collect();
    imports
        .iter()
        .filter_map(|import| match classify(import) {
            ImportClass::Baseline => None,
            ImportClass::Needs(cap) if granted.contains(&cap) => None,
            ImportClass::Needs(cap) => Some(format!(
                "component imports `{import}`, which needs capability `{cap}` (granted: [{}])",
                granted_names.join(", ")
            )),
            ImportClass::WrongVersion => Some(format!(
                "component imports `{import}`, but this gateway provides gateway:plugin@{WIT_VERSION} (compatible: the same {}); rebuild the plugin against this gateway's wit/",
                compat_label()
            )),
            ImportClass::Unknown => Some(format!(
                "component imports `{import}`, which this gateway does not provide to plugins"
            )),
        })
        .collect()
}

/// Resource-table access for the `wasi:io` bindings.
struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// A linker holding the baseline plus exactly the granted capabilities.
pub fn linker(engine: &Engine, granted: &[Capability]) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    add_baseline(&mut linker)?;
    for capability in granted {
        capability.unit().add_to_linker(&mut linker)?;
    }
    Ok(linker)
}

type L = Linker<StoreState>;

fn add_baseline(l: &mut L) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCliView;
    use wasmtime_wasi::clocks::WasiClocksView;
    use wasmtime_wasi::random::WasiRandomView;
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<_, HasTable>(l, |s| s.table_mut())?;
    io::poll::add_to_linker::<_, HasTable>(l, |s| s.table_mut())?;
    io::streams::add_to_linker::<_, HasTable>(l, |s| s.table_mut())?;
    wasi::clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, StoreState::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, StoreState::clocks)?;
    wasi::random::random::add_to_linker::<_, WasiRandom>(l, StoreState::random)?;
    wasi::random::insecure::add_to_linker::<_, WasiRandom>(l, StoreState::random)?;
    wasi::random::insecure_seed::add_to_linker::<_, WasiRandom>(l, StoreState::random)?;
    wasi::cli::exit::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::environment::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stdin::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stdout::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stderr::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::host::{clock, log, wasi};

    #[test]
    fn classifies_imports() {
        assert_eq!(classify("wasi:cli/stdout@0.2.6"), ImportClass::Baseline);
        assert_eq!(
            classify("gateway:plugin/log@0.2.0"),
            ImportClass::Needs(Capability(&log::UNIT))
        );
        assert_eq!(
            classify("wasi:filesystem/preopens@0.2.0"),
            ImportClass::Needs(Capability(&wasi::UNIT))
        );
        assert_eq!(
            classify("wasi:http/outgoing-handler@0.2.0"),
            ImportClass::Unknown
        );
    }

    #[test]
    fn reports_ungranted_imports() {
        let imports = vec![
            "wasi:io/streams@0.2.6".to_string(),
            "gateway:plugin/log@0.2.0".to_string(),
            "wasi:filesystem/types@0.2.6".to_string(),
        ];
        let problems = check_imports(&imports, &[Capability(&clock::UNIT)]);
        assert_eq!(
            problems,
            vec![
                "component imports `gateway:plugin/log@0.2.0`, which needs capability `log` (granted: [clock])",
                "component imports `wasi:filesystem/types@0.2.6`, which needs capability `wasi` (granted: [clock])",
            ]
        );
        let granted = [Capability(&log::UNIT), Capability(&wasi::UNIT)];
        assert!(check_imports(&imports, &granted).is_empty());
    }

    #[test]
    fn a_gateway_import_at_another_version_is_refused_by_name() {
        assert_eq!(
            classify("gateway:plugin/log@0.1.0"),
            ImportClass::WrongVersion
        );
        assert!(compatible("0.2.0", "0.2.3") && compatible("0.2.9", "0.2.0"));
        assert!(!compatible("0.1.0", "0.2.0") && !compatible("1.0.0", "2.0.0"));
        assert!(compatible("1.2.0", "1.0.0"));
        let problems = check_imports(&["gateway:plugin/log@9.0.0".to_string()], &[]);
        assert_eq!(
            problems,
            [format!(
                "component imports `gateway:plugin/log@9.0.0`, but this gateway provides gateway:plugin@{WIT_VERSION} (compatible: the same {}); rebuild the plugin against this gateway's wit/",
                compat_label()
            )]
        );
    }

    #[test]
    fn wit_version_matches_the_wit_package() {
        let wit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit"))
                .unwrap();
        assert!(
            wit.contains(&format!("package gateway:plugin@{WIT_VERSION};")),
            "WIT_VERSION is not the version of wit/plugin.wit"
        );
    }

    /// Adding a capability is one unit: here a dummy one, never registered with the gateway,
    /// is found by name, classifies its interface, and would be linked by its own code.
    #[test]
    fn a_new_capability_is_one_unit() {
        struct Dummy;
        impl CapabilityUnit for Dummy {
            fn name(&self) -> &'static str {
                "dummy"
            }
            fn interfaces(&self) -> &'static [&'static str] {
                &["gateway:plugin/dummy"]
            }
            fn check_config(&self, config: &Config) -> Vec<(KeyPath, String)> {
                if config.routes.is_empty() {
                    vec![(KeyPath::root(), "dummy wants a route".into())]
                } else {
                    Vec::new()
                }
            }
            fn add_to_linker(&self, _linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
                Ok(())
            }
        }
        static DUMMY: Dummy = Dummy;
        let units: &[&'static dyn CapabilityUnit] = &[&log::UNIT, &DUMMY];
        let dummy = find_in(units, "dummy").unwrap();
        assert_eq!(
            classify_in(units, &format!("gateway:plugin/dummy@{WIT_VERSION}")),
            ImportClass::Needs(dummy)
        );
        assert_eq!(
            classify_in(&[&log::UNIT], "gateway:plugin/dummy"),
            ImportClass::Unknown
        );
        let config: Config = toml::from_str("[server]\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
        assert_eq!(dummy.unit().check_config(&config).len(), 1);
    }
}
