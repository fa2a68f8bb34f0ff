//! The runtime snapshot being served, swappable: a reload compiles a new [`Runtime`] off to
//! the side and stores it here in one atomic step. Each request loads the current snapshot
//! when it starts and keeps it to its end, so a request in flight finishes on the config it
//! began with while the next one already sees the new config.

use super::Runtime;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The current snapshot.
pub struct Live(ArcSwap<Runtime>);

impl Live {
    /// Serve `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Arc<Live> {
        Arc::new(Live(ArcSwap::new(runtime)))
    }

    /// The snapshot a request starting now runs on.
    pub fn current(&self) -> Arc<Runtime> {
        self.0.load_full()
    }

    /// Serve `runtime` from the next request on; returns the snapshot it replaces.
    pub fn replace(&self, runtime: Arc<Runtime>) -> Arc<Runtime> {
        self.0.swap(runtime)
    }
}
