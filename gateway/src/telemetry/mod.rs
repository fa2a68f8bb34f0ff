//! Logging through `tracing`: human-readable by default, JSON lines with `--log-format json`;
//! the level comes from `RUST_LOG` (default `info`). Plugin `log` calls arrive here under the
//! `plugin` target, tagged with plugin, route and request id.
//!
//! Beside the log: Prometheus [`metrics`] (with the families plugins declare,
//! [`plugin_metrics`]), the [`access_log`], exported [`spans`], and whether the gateway is
//! ready (`/ready` on the admin listener).

pub mod access_log;
pub mod metrics;
pub mod plugin_metrics;
pub mod spans;

use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people; files and pipes get plain text that tools can grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A fast, non-cryptographic random number (xorshift, seeded per thread from the clock and
/// the thread): for sampling and trace/span ids, where uniqueness matters and secrecy does not.
pub fn fast_random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the OS once per process and differs per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() | 1
}

static READY: AtomicBool = AtomicBool::new(false);

/// Whether the gateway serves and takes new connections (`/ready`).
pub fn is_ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Mark the gateway ready (config loaded, listening) or not (draining).
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::Relaxed);
    metrics::metrics().ready.set(i64::from(ready));
}
