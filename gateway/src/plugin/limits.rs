//! Per-plugin limits and the ways a plugin call can violate them.
//!
//! Each violation is a distinct [`Violation`] with a stable label (`timeout`, `fuel`, `memory`,
//! `trap`, `output_cap`, `bad_output`, `init`, `busy`, `failed`) used in logs and, later, metric labels.

use crate::config::{LimitsConfig, OnError, defaults};
use http::StatusCode;
use plugin_sdk::rules::{self, OutputLimits};
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;

use super::bindings::types::{HeaderChanges, RequestAction, Response, ResponseAction};

/// Limits with every default filled in.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time per call.
    pub timeout: Duration,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Header changes, header bytes and body bytes per call.
    pub output: OutputLimits,
    /// What a failure does to the request.
    pub on_error: OnError,
    /// Status when failing closed.
    pub error_status: StatusCode,
}

impl Limits {
    /// Resolve written limits against the defaults.
    pub fn resolve(config: &LimitsConfig) -> Self {
        let memory_mb = config.memory_mb.unwrap_or(defaults::MEMORY_MB);
        Limits {
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(defaults::TIMEOUT_MS)),
            fuel: config.fuel,
            memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            output: OutputLimits {
                max_headers: config
                    .max_headers
                    .unwrap_or(OutputLimits::DEFAULT.max_headers),
                max_header_bytes: config
                    .max_header_bytes
                    .unwrap_or(OutputLimits::DEFAULT.max_header_bytes),
                max_body_bytes: config
                    .max_body_bytes
                    .unwrap_or(OutputLimits::DEFAULT.max_body_bytes),
            },
            on_error: config.on_error.unwrap_or_default(),
            error_status: StatusCode::from_u16(
                config.error_status.unwrap_or(defaults::ERROR_STATUS),
            )
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// How a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Ran past `timeout_ms`.
    Timeout,
    /// Ran out of `fuel`.
    Fuel,
    /// Tried to grow memory past `memory_mb`.
    Memory(String),
    /// Trapped (panic, unreachable, out-of-bounds access, stack overflow…).
    Trap(String),
    /// Emitted more headers or bytes than allowed.
    OutputCap(String),
    /// Emitted something that is not valid HTTP (bad header name, bad status…).
    BadOutput(String),
    /// Could not be instantiated or initialised.
    Init(String),
    /// Every one of the use's `max_instances` was busy for the whole bounded wait.
    Busy(usize),
    /// The plugin answered `fail(reason)`: it could not decide.
    Failed(String),
}

impl Violation {
    /// Stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Violation::Timeout => "timeout",
            Violation::Fuel => "fuel",
            Violation::Memory(_) => "memory",
            Violation::Trap(_) => "trap",
            Violation::OutputCap(_) => "output_cap",
            Violation::BadOutput(_) => "bad_output",
            Violation::Init(_) => "init",
            Violation::Busy(_) => "busy",
            Violation::Failed(_) => "failed",
        }
    }

    /// The status when failing closed: the use's `error_status`, except for a busy plugin,
    /// which is an overload (503) rather than a fault of the plugin.
    pub fn status(&self, error_status: StatusCode) -> StatusCode {
        match self {
            Violation::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => error_status,
        }
    }

    /// A plugin's own `fail(reason)`, its reason cut to one line of at most 300 characters so
    /// a plugin cannot flood the log through it.
    pub fn failed(reason: &str) -> Self {
        Violation::Failed(first_line(reason))
    }

    /// Whether the instance must be discarded (it trapped or was interrupted mid-call).
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self,
            Violation::OutputCap(_)
                | Violation::BadOutput(_)
                | Violation::Busy(_)
                | Violation::Failed(_)
        )
    }

    /// Classify a call error. `memory_exceeded` is the limiter's record for this call.
    pub fn from_call_error(error: &wasmtime::Error, memory_exceeded: bool) -> Self {
        if memory_exceeded {
            return Violation::Memory(format!("{error:#}"));
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Violation::Timeout,
            Some(Trap::OutOfFuel) => Violation::Fuel,
            _ => Violation::Trap(first_line(&format!("{error:#}"))),
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Timeout => f.write_str("timeout: ran past its time limit"),
            Violation::Fuel => f.write_str("fuel: ran out of fuel"),
            Violation::Memory(detail) => write!(f, "memory: {detail}"),
            Violation::Trap(detail) => write!(f, "trap: {detail}"),
            Violation::OutputCap(detail) => write!(f, "output_cap: {detail}"),
            Violation::BadOutput(detail) => write!(f, "bad_output: {detail}"),
            Violation::Init(detail) => write!(f, "init: {detail}"),
            Violation::Failed(reason) => write!(f, "failed: {reason}"),
            Violation::Busy(max) => write!(
                f,
                "busy: all {max} instances (max_instances) stayed busy past the wait"
            ),
        }
    }
}

/// Check what `on-request` returned against the output caps.
pub fn check_request_action(action: &RequestAction, limits: &Limits) -> Result<(), Violation> {
    match action {
        RequestAction::Continue(changes) => {
            check_headers(&changes.headers, limits)?;
            check_headers(&changes.response_headers, limits)?;
            let values = changes
                .context
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            rules::context_changes(values, &limits.output).map_err(Violation::OutputCap)?;
            check_body(changes.body.as_deref(), limits)
        }
        RequestAction::Respond(response) => check_response(response, limits),
        RequestAction::Fail(_) => Ok(()),
    }
}

/// Check what `on-response` returned against the output caps.
pub fn check_response_action(action: &ResponseAction, limits: &Limits) -> Result<(), Violation> {
    match action {
        ResponseAction::Continue(changes) => {
            check_headers(&changes.headers, limits)?;
            check_body(changes.body.as_deref(), limits)
        }
        ResponseAction::Replace(response) => check_response(response, limits),
        ResponseAction::Fail(_) => Ok(()),
    }
}

fn check_response(response: &Response, limits: &Limits) -> Result<(), Violation> {
    let fields = response
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()));
    rules::header_changes([], fields, &limits.output).map_err(Violation::OutputCap)?;
    check_body(Some(&response.body), limits)
}

fn check_headers(changes: &HeaderChanges, limits: &Limits) -> Result<(), Violation> {
    let removed = changes.remove.iter().map(String::as_str);
    let fields = changes
        .set
        .iter()
        .chain(&changes.add)
        .map(|h| (h.name.as_str(), h.value.as_str()));
    rules::header_changes(removed, fields, &limits.output).map_err(Violation::OutputCap)
}

fn check_body(body: Option<&[u8]>, limits: &Limits) -> Result<(), Violation> {
    rules::body(body.map(<[u8]>::len), &limits.output).map_err(Violation::OutputCap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::types::{HeaderResult, RequestChanges};

    fn changes(add: usize, value_len: usize) -> RequestAction {
        RequestAction::Continue(RequestChanges {
            method: None,
            path: None,
            query: None,
            headers: HeaderChanges {
                remove: vec![],
                set: vec![],
                add: (0..add)
                    .map(|i| HeaderResult {
                        name: format!("x-{i}"),
                        value: "v".repeat(value_len),
                    })
                    .collect(),
            },
            body: None,
            context: vec![],
            response_headers: HeaderChanges {
                remove: vec![],
                set: vec![],
                add: vec![],
            },
        })
    }

    #[test]
    fn output_caps() {
        let limits = Limits::resolve(&LimitsConfig::default());
        assert!(check_request_action(&changes(100, 10), &limits).is_ok());
        let too_many = check_request_action(&changes(101, 1), &limits).unwrap_err();
        assert_eq!(too_many.label(), "output_cap");
        let too_big = check_request_action(&changes(2, 40_000), &limits).unwrap_err();
        assert!(too_big.to_string().contains("header bytes"), "{too_big}");
        assert!(!too_big.poisons_instance());
    }

    #[test]
    fn defaults() {
        let limits = Limits::resolve(&LimitsConfig::default());
        assert_eq!(limits.timeout, Duration::from_millis(20));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.error_status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
