//! Capability `log`: a plugin's lines land in the gateway's tracing output, tagged with plugin,
//! route and request id, truncated so a plugin cannot flood the log with one call.

use crate::plugin::bindings::gateway::plugin::log::{Host, Level};
use crate::plugin::state::StoreState;

super::gateway_unit!(Log, "log", crate::plugin::bindings::gateway::plugin::log);

/// Longest message kept from one call; the rest is cut.
const MAX_MESSAGE_BYTES: usize = 4096;

impl Host for StoreState {
    async fn write(&mut self, level: Level, message: String) {
        let message = truncate(&message, MAX_MESSAGE_BYTES);
        let plugin = &*self.plugin;
        let route = &*self.route;
        let request_id = self.request_id.as_str();
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", plugin, route, request_id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", plugin, route, request_id, "{message}")
            }
            Level::Info => tracing::info!(target: "plugin", plugin, route, request_id, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, route, request_id, "{message}"),
            Level::Error => {
                tracing::error!(target: "plugin", plugin, route, request_id, "{message}")
            }
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(super::truncate("héllo", 2), "h");
        assert_eq!(super::truncate("héllo", 3), "hé");
        assert_eq!(super::truncate("abc", 10), "abc");
    }
}
