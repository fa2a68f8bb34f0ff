//! Capability `counters`: windowed counters in the plugin's own namespace (its name in
//! `[plugins.NAME]`), on the backend `[state]` chose.

use crate::config::UnavailablePolicy as Policy;
use crate::plugin::bindings::gateway::plugin::counters::{
    Bump, Count, CounterError, Host, UnavailablePolicy,
};
use crate::plugin::state::StoreState;
use crate::services::state::{self, StateError};
use std::time::Instant;

super::gateway_unit!(
    Counters,
    "counters",
    crate::plugin::bindings::gateway::plugin::counters
);

impl Host for StoreState {
    async fn increment(&mut self, counters: Vec<Bump>) -> Result<Vec<Count>, CounterError> {
        let requests: Vec<state::Increment> = counters
            .into_iter()
            .map(|c| state::Increment {
                key: c.key,
                window_ms: c.window_ms,
                delta: c.delta,
            })
            .collect();
        let start = Instant::now();
        let services = self.services.clone();
        let store = &services.state;
        let counted = store.increment(&self.namespace, &requests).await;
        self.note_host_time(start);
        match counted {
            Ok(counts) => Ok(counts
                .into_iter()
                .map(|c| Count {
                    current: c.current,
                    previous: c.previous,
                    elapsed_ms: c.elapsed_ms,
                })
                .collect()),
            Err(StateError::Unavailable) => {
                Err(CounterError::Unavailable(match store.on_unavailable {
                    Policy::Allow => UnavailablePolicy::Allow,
                    Policy::Deny => UnavailablePolicy::Deny,
                }))
            }
            Err(StateError::Invalid(message)) => Err(CounterError::Invalid(message)),
        }
    }
}
