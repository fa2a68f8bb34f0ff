//! Capability `kv`: small values with a TTL in the plugin's own namespace (its name in
//! `[plugins.NAME]`), on the backend `[state]` chose.

use crate::plugin::bindings::gateway::plugin::kv::{Host, KvError};
use crate::plugin::state::StoreState;
use crate::services::state::StateError;
use std::time::Instant;

super::gateway_unit!(Kv, "kv", crate::plugin::bindings::gateway::plugin::kv);

fn convert(e: StateError) -> KvError {
    match e {
        StateError::Unavailable => KvError::Unavailable,
        StateError::Invalid(message) => KvError::Invalid(message),
    }
}

impl Host for StoreState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let start = Instant::now();
        let done = self.services.state.get(&self.namespace, &key).await;
        self.note_host_time(start);
        done.map_err(convert)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), KvError> {
        let start = Instant::now();
        let done = self
            .services
            .state
            .set(&self.namespace, &key, value, ttl_ms)
            .await;
        self.note_host_time(start);
        done.map_err(convert)
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        let start = Instant::now();
        let done = self.services.state.delete(&self.namespace, &key).await;
        self.note_host_time(start);
        done.map_err(convert)
    }
}
