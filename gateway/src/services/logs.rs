//! The `log` capability's budgets, shared by every instance of a plugin.
//!
//! A plugin granted `log` once wrote ≈ 6 MiB of log per request: a hostile or buggy plugin
//! could fill the disk, drown everyone else's lines and spend the worker's time formatting. So
//! each plugin's lines are budgeted twice: per call (a request's phase, counted in the store,
//! see `plugin::host::log`) and per plugin per second, over all its instances and workers
//! (counted here, because one plugin's many instances must not multiply its allowance).
//! Lines past either budget are dropped, and counted in [`PluginLog::dropped`] (the metric
//! the `/metrics` endpoint is to export).

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much a plugin may log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    /// Lines per call (one `on-request` or `on-response`).
    pub call_lines: u32,
    /// Bytes of message per call.
    pub call_bytes: usize,
    /// Lines per second, over all of the plugin's instances.
    pub second_lines: u32,
    /// Bytes of message per second, over all of the plugin's instances.
    pub second_bytes: usize,
    /// Longest single line kept; the rest is cut and marked.
    pub line_bytes: usize,
}

impl LogBudget {
    /// Generous for diagnostics (a line per header of a large request), small enough that a
    /// flooding plugin writes at most ≈ 256 KiB of log per second however busy the gateway is.
    pub const DEFAULT: LogBudget = LogBudget {
        call_lines: 100,
        call_bytes: 16 << 10,
        second_lines: 1_000,
        second_bytes: 256 << 10,
        line_bytes: 4 << 10,
    };
}

impl std::fmt::Display for LogBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines / {} KiB per call, {} lines / {} KiB per second",
            self.call_lines,
            self.call_bytes >> 10,
            self.second_lines,
            self.second_bytes >> 10
        )
    }
}

/// One plugin's log accounting across its instances.
#[derive(Debug)]
pub struct PluginLog {
    /// The plugin's budget.
    pub budget: LogBudget,
    window: Mutex<Window>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    lines: u32,
    bytes: usize,
}

impl PluginLog {
    fn new(budget: LogBudget) -> Self {
        PluginLog {
            budget,
            window: Mutex::new(Window {
                start: Instant::now(),
                lines: 0,
                bytes: 0,
            }),
            dropped: AtomicU64::new(0),
        }
    }

    /// Take `bytes` of one line from this second's budget; `false` if it does not fit.
    pub fn take(&self, bytes: usize, now: Instant) -> bool {
        // A poisoned lock only means a thread panicked between two plain integer writes.
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(window.start) >= Duration::from_secs(1) {
            *window = Window {
                start: now,
                lines: 0,
                bytes: 0,
            };
        }
        if window.lines >= self.budget.second_lines
            || window.bytes + bytes > self.budget.second_bytes
        {
            return false;
        }
        window.lines += 1;
        window.bytes += bytes;
        true
    }

    /// Count one dropped line.
    pub fn drop_line(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Lines dropped since start, for the metrics endpoint.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Every plugin's [`PluginLog`], by plugin name.
#[derive(Debug, Default)]
pub struct PluginLogs {
    plugins: DashMap<Arc<str>, Arc<PluginLog>>,
}

impl PluginLogs {
    /// The accounting of `plugin`, made with the default budget on first use.
    pub fn plugin(&self, plugin: &Arc<str>) -> Arc<PluginLog> {
        if let Some(log) = self.plugins.get(plugin) {
            return log.clone();
        }
        self.plugins
            .entry(plugin.clone())
            .or_insert_with(|| Arc::new(PluginLog::new(LogBudget::DEFAULT)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_budget_is_shared_and_refills() {
        let logs = PluginLogs::default();
        let name: Arc<str> = Arc::from("p");
        let (a, b) = (logs.plugin(&name), logs.plugin(&name));
        let now = Instant::now();
        for _ in 0..500 {
            assert!(a.take(10, now));
            assert!(b.take(10, now));
        }
        assert!(
            !a.take(10, now),
            "1,000 lines per second over both instances"
        );
        assert!(a.take(10, now + Duration::from_secs(1)), "a new second");
        assert!(
            !a.take(300 << 10, now + Duration::from_secs(2)),
            "bytes too"
        );
        a.drop_line();
        assert_eq!(b.dropped(), 1);
    }
}
