//! Host capabilities, as safe functions. Each must be granted to the plugin in the gateway
//! config (`capabilities = ["log", "clock"]`); a plugin that uses one it was not granted is
//! refused at load, so at run time these calls cannot fail.
//!
//! Compiled for anything but wasm32 (native unit tests), they do not call the host: log lines
//! are captured for [`crate::testing::logs`] and the clock is the system clock.

/// Capability `log`: lines land in the gateway's log tagged with plugin, route and request id.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::gateway::plugin::log::{Level, write};

    #[cfg(not(target_arch = "wasm32"))]
    #[derive(Debug, Clone, Copy)]
    #[allow(missing_docs)]
    pub(crate) enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn write(level: Level, message: &str) {
        crate::testing::capture_log(format!("{level:?}: {message}"));
    }

    /// Log at trace level.
    pub fn trace(message: &str) {
        write(Level::Trace, message)
    }
    /// Log at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message)
    }
    /// Log at info level.
    pub fn info(message: &str) {
        write(Level::Info, message)
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message)
    }
    /// Log at error level.
    pub fn error(message: &str) {
        write(Level::Error, message)
    }
}

/// Capability `clock`: wall-clock and monotonic time.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::clock::now_ms()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        }
    }

    /// Monotonic nanoseconds from an arbitrary fixed point.
    pub fn monotonic_ns() -> u64 {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::clock::monotonic_ns()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::sync::OnceLock;
            static START: OnceLock<std::time::Instant> = OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as u64
        }
    }
}

/// Capability `crypto`: verify JWS tokens (JWTs) natively against a key set the operator
/// configured under `[keys.NAME]`. Key material never enters the plugin.
pub mod crypto {
    pub use crate::bindings::gateway::plugin::crypto::{Verified, VerifyError};

    /// Verify `token` with key set `key_set`, accepting only `algorithms` (e.g. `["RS256"]`).
    /// On success the claims come back as JSON text, unchecked: `exp`, `nbf`, `iss`, `aud`
    /// are for the plugin to judge.
    pub fn verify_jws(
        key_set: &str,
        token: &str,
        algorithms: &[String],
    ) -> Result<Verified, VerifyError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::crypto::verify_jws(key_set, token, algorithms)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_verify(key_set, token, algorithms)
        }
    }
}

/// Capability `counters`: atomic windowed counters, shared by every gateway on the same
/// `[state]` backend, namespaced to this plugin by the host.
pub mod counters {
    pub use crate::bindings::gateway::plugin::counters::{
        Bump, Count, CounterError, UnavailablePolicy,
    };

    /// Add to up to 16 counters atomically (one round trip to Redis) and return their
    /// state in order.
    pub fn increment(counters: &[Bump]) -> Result<Vec<Count>, CounterError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::counters::increment(counters)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_increment(counters)
        }
    }

    /// Sliding-window estimate of requests in the last `window_ms`: the current window's
    /// count plus the previous window's, weighted by how much of it still overlaps.
    pub fn sliding_estimate(count: &Count, window_ms: u64) -> u64 {
        let window = window_ms.max(1) as u128;
        let overlap = window.saturating_sub(count.elapsed_ms as u128);
        count.current + ((count.previous as u128 * overlap) / window) as u64
    }
}

/// Capability `kv`: small shared values with a TTL, namespaced to this plugin by the host.
pub mod kv {
    pub use crate::bindings::gateway::plugin::kv::KvError;

    /// The value of `key`, if set and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::kv::get(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_get(key)
        }
    }

    /// Store `value` under `key` for `ttl_ms` milliseconds.
    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::kv::set(key, value, ttl_ms)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_set(key, value, ttl_ms)
        }
    }

    /// Remove `key`; true if it was there.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::kv::delete(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_delete(key)
        }
    }
}
