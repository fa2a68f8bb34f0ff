//! Capability `clock`: wall-clock and monotonic time.

use crate::plugin::bindings::gateway::plugin::clock::Host;
use crate::plugin::state::StoreState;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The fixed point monotonic time is measured from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the Unix epoch on this host (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Host for StoreState {
    async fn now_ms(&mut self) -> u64 {
        unix_ms()
    }

    async fn monotonic_ns(&mut self) -> u64 {
        u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
