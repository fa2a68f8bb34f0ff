//! Capability `wasi`: the `wasi:filesystem` and `wasi:sockets` interfaces that runtimes such as
//! componentize-py import, backed by nothing — no preopened directory, every socket address
//! refused, no DNS (see `StoreState`'s empty WASI context) — so such plugins load without
//! reaching anything outside their sandbox.

use super::super::capabilities::CapabilityUnit;
use crate::plugin::state::StoreState;
use wasmtime::component::Linker;
use wasmtime_wasi::filesystem::WasiFilesystem;
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::sockets::WasiSockets;

/// The `wasi` capability.
pub struct Wasi;

/// The `wasi` unit, listed in [`super::UNITS`].
pub static UNIT: Wasi = Wasi;

impl CapabilityUnit for Wasi {
    fn name(&self) -> &'static str {
        "wasi"
    }

    fn interfaces(&self) -> &'static [&'static str] {
        &[
            "wasi:filesystem/types",
            "wasi:filesystem/preopens",
            "wasi:sockets/network",
            "wasi:sockets/instance-network",
            "wasi:sockets/tcp",
            "wasi:sockets/tcp-create-socket",
            "wasi:sockets/udp",
            "wasi:sockets/udp-create-socket",
            "wasi:sockets/ip-name-lookup",
        ]
    }

    fn add_to_linker(&self, l: &mut Linker<StoreState>) -> wasmtime::Result<()> {
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
}
