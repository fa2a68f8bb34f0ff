//! Per-plugin limits and the ways a plugin call can violate them.
//!
//! Each violation is a distinct [`Violation`] with a stable label (`timeout`, `fuel`, `memory`,
//! `trap`, `output_cap`, `bad_output`, `init`, `busy`, `failed`) used in logs and, later, metric labels.
//!
//! A trap's detail names what happened — wasmtime's trap kind (`StackOverflow`,
//! `MemoryOutOfBounds`, `UnreachableCodeReached`, …) or a WASI `exit` with its status — and
//! where: the plugin's innermost frames from wasmtime's `WasmBacktrace`. Wasmtime's own text
//! (`error while executing at wasm backtrace:` on its first line) says neither, so a stack
//! overflow, a bad pointer and an `exit` would read alike. Function names come from the
//! module's name section (Rust symbols demangled), which the plugin author wrote: they are
//! untrusted text, escaped (no control characters reach the log) and cut short. The backtrace
//! is captured by wasmtime only when a call traps (wasmtime's default `wasm_backtrace(true)`);
//! a call that returns pays nothing for it.

use crate::config::{LimitsConfig, OnError, defaults};
use http::StatusCode;
use plugin_sdk::rules::{self, OutputLimits};
use std::fmt;
use std::time::Duration;
use wasmtime::{FrameInfo, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

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
            return Violation::Memory(trap_detail(error, None));
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Violation::Timeout,
            Some(Trap::OutOfFuel) => Violation::Fuel,
            trap => Violation::Trap(trap_detail(error, trap)),
        }
    }
}

/// Frames of the plugin's backtrace shown in a trap's detail, innermost first.
const MAX_FRAMES: usize = 5;

/// Characters kept of one function name (mangled Rust names run to ~100).
const MAX_NAME_CHARS: usize = 120;

/// What trapped and where: `StackOverflow (call stack exhausted) in f < g < …`.
fn trap_detail(error: &wasmtime::Error, trap: Option<&Trap>) -> String {
    let kind = match (error.downcast_ref::<I32Exit>(), trap) {
        (Some(exit), _) => format!("exit with status {}", exit.0),
        (None, Some(trap)) => format!("{trap:?} ({trap})"),
        // A host function's error: the gateway's text, its first line.
        (None, None) => first_line(&error.root_cause().to_string()),
    };
    match error.downcast_ref::<WasmBacktrace>().map(frames) {
        Some(frames) if !frames.is_empty() => format!("{kind} in {frames}"),
        _ => kind,
    }
}

/// The innermost [`MAX_FRAMES`] frames, `inner < outer`, with how many more there were.
fn frames(backtrace: &WasmBacktrace) -> String {
    let all = backtrace.frames();
    let mut text = all
        .iter()
        .take(MAX_FRAMES)
        .map(frame_name)
        .collect::<Vec<_>>()
        .join(" < ");
    if all.len() > MAX_FRAMES {
        text.push_str(&format!(" < … {} more", all.len() - MAX_FRAMES));
    }
    text
}

/// A frame's function: its name from the module, demangled when it is a Rust symbol
/// (`test_misbehave::recurse`, not `_ZN14test_misbehave7recurse17h…E`), then escaped.
fn frame_name(frame: &FrameInfo) -> String {
    match frame.func_name() {
        Some(name) => untrusted(
            &format!("{:#}", rustc_demangle::demangle(name)),
            MAX_NAME_CHARS,
        ),
        None => format!("wasm function {}", frame.func_index()),
    }
}

/// Text from a plugin, fit for one log line: at most `max` characters, control characters
/// and invisible direction overrides escaped (`\n`, `\u{1b}`, `\u{202e}`), a cut marked `…`.
pub(crate) fn untrusted(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().take(max) {
        if c.is_control() || is_invisible_override(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Zero-width and bidirectional formatting characters, which can make a log line read as
/// something else.
fn is_invisible_override(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first line of `text`, at most 300 characters, unprintable ones escaped.
fn first_line(text: &str) -> String {
    untrusted(text.lines().next().unwrap_or(""), 300)
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

    #[test]
    fn a_trap_names_its_kind() {
        let cases = [
            (
                wasmtime::Error::from(Trap::StackOverflow),
                "StackOverflow (",
            ),
            (
                wasmtime::Error::from(Trap::MemoryOutOfBounds),
                "MemoryOutOfBounds (",
            ),
            (
                wasmtime::Error::from(Trap::UnreachableCodeReached),
                "UnreachableCodeReached (",
            ),
            (
                wasmtime::Error::from(Trap::IntegerDivisionByZero),
                "IntegerDivisionByZero (",
            ),
            (wasmtime::Error::from(I32Exit(3)), "exit with status 3"),
            (
                wasmtime::format_err!("host said no\nsecond line"),
                "host said no",
            ),
        ];
        for (error, kind) in cases {
            let violation = Violation::from_call_error(&error, false);
            assert_eq!(violation.label(), "trap");
            let Violation::Trap(detail) = &violation else {
                panic!("{violation:?}")
            };
            assert!(detail.starts_with(kind), "{detail}");
            assert!(!detail.contains('\n'), "{detail}");
        }
        let timeout = Violation::from_call_error(&wasmtime::Error::from(Trap::Interrupt), false);
        assert_eq!(timeout, Violation::Timeout);
    }

    #[test]
    fn untrusted_text_is_escaped_and_capped() {
        assert_eq!(untrusted("f\n\u{1b}[31mred", 100), "f\\n\\u{1b}[31mred");
        assert_eq!(untrusted("ab\u{202e}cd", 100), "ab\\u{202e}cd");
        assert_eq!(untrusted("quoted \"name\"", 100), "quoted \"name\"");
        assert_eq!(untrusted("abcdef", 3), "abc…");
        assert_eq!(first_line("one\ntwo"), "one");
    }
}
