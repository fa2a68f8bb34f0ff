//! Capability `log`: a plugin's lines land in the gateway's tracing output, tagged with plugin,
//! route and request id — within a budget, so a plugin cannot flood the log.
//!
//! Budgets ([`LogBudget::DEFAULT`]): 100 lines / 16 KiB per call, 1,000 lines / 256 KiB per
//! plugin per second (over all its instances, see [`crate::services::logs`]), and 4 KiB per
//! line (a longer line is cut and marked `… [N bytes cut]`). A line past a budget is dropped
//! and counted in the plugin's dropped-lines counter; the first line a call drops is replaced
//! by one warning naming the plugin and the budget, so a flood costs one record, never one per
//! dropped line.
//!
//! A call is recognised by its deadline: the instance pool gives every call a fresh one
//! before entering the guest, so a new deadline means a new call and fresh per-call counts.

use crate::plugin::bindings::gateway::plugin::log::{Host, Level};
use crate::plugin::state::StoreState;
use crate::services::logs::{LogBudget, PluginLog};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

super::gateway_unit!(Log, "log", crate::plugin::bindings::gateway::plugin::log);

/// What one call has logged, and the plugin's shared accounting.
#[derive(Debug)]
pub struct CallLog {
    plugin: Arc<PluginLog>,
    /// Deadline of the call these counts are for.
    call: Option<Instant>,
    lines: u32,
    bytes: usize,
    /// Whether this call has dropped a line (and so written its summary).
    dropped: bool,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Write it.
    Write,
    /// Drop it, and write the call's one summary instead.
    DropFirst,
    /// Drop it silently: the summary is written.
    Drop,
}

impl CallLog {
    /// Fresh counts against `plugin`'s accounting.
    pub fn new(plugin: Arc<PluginLog>) -> Self {
        CallLog {
            plugin,
            call: None,
            lines: 0,
            bytes: 0,
            dropped: false,
        }
    }

    /// The plugin's budget.
    pub fn budget(&self) -> LogBudget {
        self.plugin.budget
    }

    /// Account for a line of `bytes` in the call whose deadline is `call`.
    fn admit(&mut self, call: Instant, bytes: usize, now: Instant) -> Verdict {
        if self.call != Some(call) {
            self.call = Some(call);
            self.lines = 0;
            self.bytes = 0;
            self.dropped = false;
        }
        let budget = self.plugin.budget;
        let fits_call = self.lines < budget.call_lines && self.bytes + bytes <= budget.call_bytes;
        if fits_call && self.plugin.take(bytes, now) {
            self.lines += 1;
            self.bytes += bytes;
            return Verdict::Write;
        }
        self.plugin.drop_line();
        if std::mem::replace(&mut self.dropped, true) {
            Verdict::Drop
        } else {
            Verdict::DropFirst
        }
    }
}

impl Host for StoreState {
    async fn write(&mut self, level: Level, message: String) {
        let message = truncate(&message, self.log.budget().line_bytes);
        match self.log.admit(self.deadline, message.len(), Instant::now()) {
            Verdict::Write => emit(self, level, &message),
            Verdict::DropFirst => summary(self),
            Verdict::Drop => {}
        }
    }
}

fn emit(state: &StoreState, level: Level, message: &str) {
    let plugin = &*state.plugin;
    let route = &*state.route;
    let request_id = state.request_id.as_str();
    let trace_id = state.trace_id.as_str();
    match level {
        Level::Trace => {
            tracing::trace!(target: "plugin", plugin, route, request_id, trace_id, "{message}")
        }
        Level::Debug => {
            tracing::debug!(target: "plugin", plugin, route, request_id, trace_id, "{message}")
        }
        Level::Info => {
            tracing::info!(target: "plugin", plugin, route, request_id, trace_id, "{message}")
        }
        Level::Warn => {
            tracing::warn!(target: "plugin", plugin, route, request_id, trace_id, "{message}")
        }
        Level::Error => {
            tracing::error!(target: "plugin", plugin, route, request_id, trace_id, "{message}")
        }
    }
}

/// The one record of a call that went over its budget (target `gateway`, not `plugin`: it is
/// the gateway's word, shown even where plugin lines are filtered out).
fn summary(state: &StoreState) {
    let plugin = &*state.plugin;
    tracing::warn!(
        plugin,
        route = &*state.route,
        request_id = state.request_id.as_str(),
        trace_id = state.trace_id.as_str(),
        "plugin {plugin} is over its log budget ({}); dropping the rest of this call's log lines",
        state.log.budget()
    );
}

/// `text` cut to at most `max` bytes on a character boundary, the cut marked.
fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [{} bytes cut]",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::logs::PluginLogs;
    use std::time::Duration;

    #[test]
    fn truncates_on_char_boundary_and_marks_the_cut() {
        assert_eq!(truncate("héllo", 2), "h… [5 bytes cut]");
        assert_eq!(truncate("héllo", 3), "hé… [3 bytes cut]");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn a_call_writes_its_budget_then_one_summary() {
        let logs = PluginLogs::default();
        let mut log = CallLog::new(logs.plugin(&Arc::from("p")));
        let (call, now) = (Instant::now(), Instant::now());
        let verdicts: Vec<Verdict> = (0..1_000).map(|_| log.admit(call, 100, now)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Write).count(),
            100
        );
        assert_eq!(verdicts[100], Verdict::DropFirst);
        assert!(verdicts[101..].iter().all(|v| *v == Verdict::Drop));
        assert_eq!(logs.plugin(&Arc::from("p")).dropped(), 900);

        let next = call + Duration::from_millis(1);
        assert_eq!(log.admit(next, 100, now), Verdict::Write, "a new call");
        assert_eq!(
            log.admit(next, 16 << 10, now),
            Verdict::DropFirst,
            "bytes count too"
        );
    }

    #[test]
    fn the_plugin_budget_spans_calls() {
        let logs = PluginLogs::default();
        let mut log = CallLog::new(logs.plugin(&Arc::from("p")));
        let (start, now) = (Instant::now(), Instant::now());
        let written = (0..20u64)
            .flat_map(|call| {
                let call = start + Duration::from_micros(call);
                (0..100).map(move |_| call)
            })
            .filter(|call| log.admit(*call, 10, now) == Verdict::Write)
            .count();
        assert_eq!(
            written, 1_000,
            "1,000 lines per second over 20 calls of 100"
        );
    }
}
