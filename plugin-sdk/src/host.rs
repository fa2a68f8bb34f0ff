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
