//! What a plugin may import, and the linker that holds exactly that.
//!
//! Deny by default: a plugin's linker holds only
//! - the *baseline*: the WASI pieces any ordinary std-built guest imports without using them
//!   to reach anything (`wasi:cli` stdio/environment/exit/terminal, `wasi:io`, `wasi:clocks`,
//!   `wasi:random`) — backed by an empty context: no environment, stdin empty, output discarded;
//! - the capabilities its config grants: `log`, `clock`, and `wasi` (filesystem and sockets
//!   interfaces so runtimes such as componentize-py load — with no preopened directory and every
//!   socket address refused).
//!
//! Before linking, [`check_imports`] compares the component's imports with the grant and
//! names the first offending import, so the operator reads "imports `wasi:filesystem/types`,
//! which needs capability `wasi`" instead of a linker error.

use super::bindings::gateway::plugin::{clock, counters, crypto, kv, log};
use super::state::StoreState;
use std::fmt;
use std::str::FromStr;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::filesystem::WasiFilesystem;
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::WasiSockets;

/// A grantable host capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `gateway:plugin/log`.
    Log,
    /// `gateway:plugin/clock`.
    Clock,
    /// `gateway:plugin/crypto`: verify JWS tokens against configured key sets.
    Crypto,
    /// `gateway:plugin/counters`: shared windowed counters.
    Counters,
    /// `gateway:plugin/kv`: shared key-value state with TTL.
    Kv,
    /// `wasi:filesystem` and `wasi:sockets`, backed by nothing (no dirs, no addresses).
    Wasi,
}

/// Every capability, in the order they are listed to operators.
const ALL: [Capability; 6] = [
    Capability::Log,
    Capability::Clock,
    Capability::Crypto,
    Capability::Counters,
    Capability::Kv,
    Capability::Wasi,
];

impl Capability {
    /// All capability names, for error messages.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|c| c.name()).collect()
    }

    /// The name used in config.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Crypto => "crypto",
            Capability::Counters => "counters",
            Capability::Kv => "kv",
            Capability::Wasi => "wasi",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        ALL.into_iter().find(|c| c.name() == s).ok_or(())
    }
}

/// What an import needs to be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportClass {
    /// Always provided (harmless std runtime support, or plain types).
    Baseline,
    /// Provided only with this capability.
    Needs(Capability),
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

const WASI_GRANTED: &[&str] = &[
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Classify an import by its name (`ns:pkg/iface@version`; the version is ignored).
pub fn classify(import: &str) -> ImportClass {
    let unversioned = import.split('@').next().unwrap_or(import);
    if BASELINE.contains(&unversioned) {
        ImportClass::Baseline
    } else if let Some(cap) = unversioned
        .strip_prefix("gateway:plugin/")
        .and_then(|iface| iface.parse::<Capability>().ok())
        .filter(|cap| *cap != Capability::Wasi)
    {
        ImportClass::Needs(cap)
    } else if WASI_GRANTED.contains(&unversioned) {
        ImportClass::Needs(Capability::Wasi)
    } else {
        ImportClass::Unknown
    }
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
        match capability {
            Capability::Log => log::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?,
            Capability::Clock => {
                clock::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
            }
            Capability::Crypto => {
                crypto::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
            }
            Capability::Counters => {
                counters::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
            }
            Capability::Kv => kv::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?,
            Capability::Wasi => add_empty_wasi(&mut linker)?,
        }
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

fn add_empty_wasi(l: &mut L) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::WasiFilesystemView;
    use wasmtime_wasi::sockets::WasiSocketsView;
    wasi::filesystem::types::add_to_linker::<_, WasiFilesystem>(l, StoreState::filesystem)?;
    wasi::filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, StoreState::filesystem)?;
    wasi::sockets::tcp::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    wasi::sockets::udp::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    wasi::sockets::udp_create_socket::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    wasi::sockets::tcp_create_socket::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    wasi::sockets::instance_network::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    wasi::sockets::network::add_to_linker::<_, WasiSockets>(
        l,
        &Default::default(),
        StoreState::sockets,
    )?;
    wasi::sockets::ip_name_lookup::add_to_linker::<_, WasiSockets>(l, StoreState::sockets)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_imports() {
        assert_eq!(classify("wasi:cli/stdout@0.2.6"), ImportClass::Baseline);
        assert_eq!(
            classify("gateway:plugin/log@0.1.0"),
            ImportClass::Needs(Capability::Log)
        );
        assert_eq!(
            classify("wasi:filesystem/preopens@0.2.0"),
            ImportClass::Needs(Capability::Wasi)
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
            "gateway:plugin/log@0.1.0".to_string(),
            "wasi:filesystem/types@0.2.6".to_string(),
        ];
        let problems = check_imports(&imports, &[Capability::Clock]);
        assert_eq!(
            problems,
            vec![
                "component imports `gateway:plugin/log@0.1.0`, which needs capability `log` (granted: [clock])",
                "component imports `wasi:filesystem/types@0.2.6`, which needs capability `wasi` (granted: [clock])",
            ]
        );
        assert!(check_imports(&imports, &[Capability::Log, Capability::Wasi]).is_empty());
    }
}
