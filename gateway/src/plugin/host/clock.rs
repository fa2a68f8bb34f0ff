//! Capability `clock`: wall-clock and monotonic time.

use crate::plugin::bindings::gateway::plugin::clock::Host;
use crate::plugin::state::StoreState;
use crate::services::state::now_ms as unix_ms;
use std::sync::OnceLock;
use std::time::Instant;

super::gateway_unit!(
    Clock,
    "clock",
    crate::plugin::bindings::gateway::plugin::clock
);

/// The fixed point monotonic time is measured from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Host for StoreState {
    async fn now_ms(&mut self) -> u64 {
        unix_ms()
    }

    async fn monotonic_ns(&mut self) -> u64 {
        u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
