//! Host capabilities, one unit each: a module per capability holds its host functions (on the
//! instance's store state), its [`CapabilityUnit`] — name, WIT interfaces, config checks,
//! linker registration — and its tests. Each unit is added to a plugin's linker only when the
//! plugin is granted it. Host functions never panic; failures are values.
//!
//! Adding a capability `NAME`:
//! 1. WIT: an `interface NAME` in `wit/plugin.wit`, imported by the `plugin` world (an
//!    additive change, see `wit/README.md`).
//! 2. Here: a module `NAME.rs` implementing the generated `Host` trait on `StoreState` and
//!    declaring its unit (`gateway_unit!` for the common case), listed in [`UNITS`]. Config
//!    checks of its own go in the unit's `check_config`; services it needs beyond the store
//!    belong in `crate::services`.
//! 3. SDK: a wrapper in `plugin-sdk/src/host.rs`, so plugin authors never see the bindings.
//!
//! Nothing else changes: grants, import checks, `gateway plugin inspect` and the error text
//! listing known capabilities all read [`UNITS`].

pub mod clock;
pub mod counters;
pub mod crypto;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod wasi;

use super::capabilities::CapabilityUnit;

/// Every capability, in the order they are listed to operators.
pub static UNITS: &[&dyn CapabilityUnit] = &[
    &log::UNIT,
    &clock::UNIT,
    &crypto::UNIT,
    &counters::UNIT,
    &kv::UNIT,
    &metrics::UNIT,
    &wasi::UNIT,
];

/// Declare the unit of a capability that is one `gateway:plugin/NAME` interface implemented
/// on `StoreState`: `gateway_unit!(Type, "name", bindings::module)`, optionally followed by
/// `check = function` for its config checks.
macro_rules! gateway_unit {
    ($unit:ident, $name:literal, $bindings:path $(, check = $check:path)?) => {
        #[doc = concat!("The `", $name, "` capability.")]
        pub struct $unit;

        #[doc = concat!("The `", $name, "` unit, listed in [`super::UNITS`].")]
        pub static UNIT: $unit = $unit;

        impl $crate::plugin::capabilities::CapabilityUnit for $unit {
            fn name(&self) -> &'static str {
                $name
            }

            fn interfaces(&self) -> &'static [&'static str] {
                &[concat!("gateway:plugin/", $name)]
            }

            $(
            fn check_config(
                &self,
                config: &$crate::config::Config,
            ) -> Vec<($crate::config::KeyPath, String)> {
                $check(config)
            }
            )?

            fn add_to_linker(
                &self,
                linker: &mut wasmtime::component::Linker<$crate::plugin::state::StoreState>,
            ) -> wasmtime::Result<()> {
                use $bindings as bindings;
                bindings::add_to_linker::<
                    _,
                    wasmtime::component::HasSelf<$crate::plugin::state::StoreState>,
                >(linker, |state| state)
            }
        }
    };
}
use gateway_unit;
