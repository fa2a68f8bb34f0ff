//! Shared state for the `counters` and `kv` capabilities: in this process (`memory`, the
//! default) or in Redis (`redis`), chosen by `[state]`.
//!
//! Keys are namespaced by plugin name here, on the host side, so a plugin can only ever name
//! keys inside its own namespace.
//!
//! Exactness: counters are fixed windows aligned to multiples of the window length on the
//! backend's clock (Redis `TIME`, so gateways with skewed clocks agree). A fixed window admits
//! exactly its limit per window, but up to twice the limit across a window boundary. Plugins
//! wanting smoother limits use the previous window's count for a sliding-window estimate
//! (`previous * (1 - elapsed/window) + current`), which assumes requests were spread evenly
//! over the previous window.

mod memory;
mod quota;
mod redis_store;

pub use quota::{Namespace, Quota};

use crate::config::{StateBackend, StateConfig, UnavailablePolicy};
use memory::MemoryStore;
use redis_store::RedisStore;
use std::sync::Arc;

/// Milliseconds since the Unix epoch on this host (0 if the clock is before 1970): the clock
/// of in-memory windows and TTLs, and of the `clock` capability.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Longest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest kv value.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Longest window or TTL.
pub const MAX_WINDOW_MS: u64 = 31 * 24 * 3600 * 1000;
/// Most counters per `increment` call.
pub const MAX_COUNTERS_PER_CALL: usize = 16;

/// One counter bump.
#[derive(Debug, Clone)]
pub struct Increment {
    /// Plugin-chosen key (namespaced by the caller).
    pub key: String,
    /// Window length.
    pub window_ms: u64,
    /// Amount to add.
    pub delta: u64,
}

/// A counter after a bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Current window total.
    pub current: u64,
    /// Previous window total.
    pub previous: u64,
    /// Time into the current window.
    pub elapsed_ms: u64,
}

/// Why a state call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The backend did not answer in time.
    Unavailable,
    /// The request was out of bounds.
    Invalid(String),
}

/// The configured backend.
pub struct StateStore {
    backend: Backend,
    /// What rate limiters should do while the backend is down.
    pub on_unavailable: UnavailablePolicy,
}

enum Backend {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

impl StateStore {
    /// The backend `[state]` asks for. Redis is connected lazily, so a gateway starts (and
    /// applies `on_unavailable`) even while Redis is down.
    pub fn new(config: &StateConfig) -> Result<Self, String> {
        let backend = match config.backend {
            StateBackend::Memory => Backend::Memory(MemoryStore::new()),
            StateBackend::Redis => Backend::Redis(Box::new(RedisStore::new(config)?)),
        };
        Ok(StateStore {
            backend,
            on_unavailable: config.on_unavailable,
        })
    }

    /// An in-memory store with the default policy.
    pub fn memory() -> Self {
        StateStore {
            backend: Backend::Memory(MemoryStore::new()),
            on_unavailable: UnavailablePolicy::default(),
        }
    }

    /// Connect to a remote backend ahead of the first request (never fails).
    pub async fn warm_up(&self) {
        if let Backend::Redis(r) = &self.backend {
            r.warm_up().await;
        }
    }

    /// Bump counters of namespace `ns` atomically.
    pub async fn increment(
        &self,
        ns: &Arc<Namespace>,
        counters: &[Increment],
    ) -> Result<Vec<Count>, StateError> {
        if counters.len() > MAX_COUNTERS_PER_CALL {
            return Err(StateError::Invalid(format!(
                "at most {MAX_COUNTERS_PER_CALL} counters per call"
            )));
        }
        for c in counters {
            check_key(&c.key)?;
            if c.window_ms == 0 || c.window_ms > MAX_WINDOW_MS {
                return Err(StateError::Invalid(format!(
                    "window_ms must be 1..={MAX_WINDOW_MS}"
                )));
            }
        }
        match &self.backend {
            Backend::Memory(m) => m.increment(ns, counters),
            Backend::Redis(r) => r.increment(ns.name(), counters).await,
        }
    }

    /// Read a kv value of namespace `ns`.
    pub async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(ns, key)),
            Backend::Redis(r) => r.get(ns.name(), key).await,
        }
    }

    /// Write a kv value of namespace `ns`.
    pub async fn set(
        &self,
        ns: &Arc<Namespace>,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), StateError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::Invalid(format!(
                "value is {} bytes; at most {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        if ttl_ms == 0 || ttl_ms > MAX_WINDOW_MS {
            return Err(StateError::Invalid(format!(
                "ttl_ms must be 1..={MAX_WINDOW_MS}"
            )));
        }
        match &self.backend {
            Backend::Memory(m) => m.set(ns, key, value, ttl_ms),
            Backend::Redis(r) => r.set(ns.name(), key, value, ttl_ms).await,
        }
    }

    /// Delete a kv value of namespace `ns`.
    pub async fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, StateError> {
        check_key(key)?;
        match &self.backend {
            Backend::Memory(m) => Ok(m.delete(ns, key)),
            Backend::Redis(r) => r.delete(ns.name(), key).await,
        }
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::Invalid(format!(
            "key must be 1..={MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}
