//! W3C Trace Context: continue a client's trace (`traceparent`) or start one, and tell the
//! upstream. The gateway is one hop of the trace, with two spans: the request's (a child of
//! the client's span) and the upstream call's (its child, and the upstream's parent). The
//! trace id and flags are the client's; a trace the gateway starts is sampled at
//! `[tracing] sample`. `tracestate` is passed on untouched
//! (the gateway adds no vendor entry), as the recommendation allows.

pub use crate::config::TraceMode;
use crate::telemetry::spans::sample_root;
use http::{HeaderMap, HeaderValue};

/// `traceparent`.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace (16 bytes, never all zero).
    pub trace_id: u128,
    /// The gateway's span for this request (never zero).
    pub span_id: u64,
    /// The gateway's span for the upstream call: the upstream's parent (never zero).
    pub upstream_span_id: u64,
    /// The caller's span, when the trace was continued.
    pub parent_id: Option<u64>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// The request's trace under `mode`: the client's continued, or a new one (`Always`),
    /// sampled at `sample`.
    pub fn of(headers: &HeaderMap, mode: TraceMode, sample: f64) -> Option<TraceContext> {
        if mode == TraceMode::Off {
            return None;
        }
        // Two `traceparent` fields are invalid: a new trace, as for any invalid one.
        let mut fields = headers.get_all(TRACEPARENT).iter();
        let continued = match (fields.next(), fields.next()) {
            (Some(value), None) => parse(value.as_bytes()),
            _ => None,
        };
        match continued {
            Some((trace_id, parent, flags)) => Some(TraceContext {
                trace_id,
                span_id: new_span_id(),
                upstream_span_id: new_span_id(),
                parent_id: Some(parent),
                flags,
            }),
            None if mode == TraceMode::Always => {
                let trace_id = (u128::from(new_span_id()) << 64) | u128::from(new_span_id());
                Some(TraceContext {
                    trace_id,
                    span_id: new_span_id(),
                    upstream_span_id: new_span_id(),
                    parent_id: None,
                    flags: u8::from(sample_root(trace_id, sample)),
                })
            }
            None => None,
        }
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// `traceparent` for the upstream: this trace, the gateway's upstream-call span as
    /// parent.
    pub fn traceparent(&self) -> HeaderValue {
        let text = format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.upstream_span_id, self.flags
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Set the upstream request's `traceparent`.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent());
    }
}

/// A random span id (never zero).
pub(crate) fn new_span_id() -> u64 {
    loop {
        let id = crate::telemetry::fast_random();
        if id != 0 {
            return id;
        }
    }
}

/// `version-traceid-parentid-flags` (version 00 exactly; a later version's first four fields,
/// as the recommendation says to parse them).
fn parse(value: &[u8]) -> Option<(u128, u64, u8)> {
    if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let version = hex(&value[0..2])? as u8;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let parent = hex(&value[36..52])? as u64;
    let flags = hex(&value[53..55])? as u8;
    (trace_id != 0 && parent != 0).then_some((trace_id, parent, flags))
}

/// Lowercase hex digits (uppercase is invalid in `traceparent`).
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(TRACEPARENT, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const INBOUND: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn an_inbound_trace_is_continued_with_a_span_of_our_own() {
        let trace = TraceContext::of(&headers(&[INBOUND]), TraceMode::Continue, 1.0).unwrap();
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_id, Some(0x00f0_67aa_0ba9_02b7));
        assert_ne!(trace.span_id, 0x00f0_67aa_0ba9_02b7);
        let out = trace.traceparent();
        let out = out.to_str().unwrap();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        assert_eq!(out.len(), 55);
        // The upstream's parent is the gateway's upstream-call span, below its request span.
        assert!(out.contains(&format!("-{:016x}-", trace.upstream_span_id)));
        assert_ne!(trace.upstream_span_id, trace.span_id);
    }

    #[test]
    fn invalid_or_absent_context_starts_a_trace_only_when_asked() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(
                TraceContext::of(&headers(&[bad]), TraceMode::Continue, 1.0),
                None,
                "{bad}"
            );
            let started = TraceContext::of(&headers(&[bad]), TraceMode::Always, 1.0).unwrap();
            assert_eq!(started.parent_id, None, "{bad}");
        }
        assert_eq!(
            TraceContext::of(&headers(&[INBOUND, INBOUND]), TraceMode::Continue, 1.0),
            None
        );
        assert_eq!(
            TraceContext::of(&headers(&[INBOUND]), TraceMode::Off, 1.0),
            None
        );
        // Traces the gateway starts are sampled at the ratio; continued ones keep their flags.
        assert!(
            !TraceContext::of(&headers(&[]), TraceMode::Always, 0.0)
                .unwrap()
                .sampled()
        );
        assert!(
            TraceContext::of(&headers(&[INBOUND]), TraceMode::Continue, 0.0)
                .unwrap()
                .sampled()
        );
        // A later version may append fields; its first four are used.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceContext::of(&headers(&[later]), TraceMode::Continue, 1.0).is_some());
    }
}
