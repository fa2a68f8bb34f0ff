//! What the gateway accepts from a filter call, mirrored for the harness: the output caps of
//! the gateway's `plugin/limits.rs` (`check_request_action`, `check_response_action`) and the
//! validation of its `plugin/filter.rs` (`request_verdict`, `response_verdict`, `new_target`,
//! `header_edits`), which parses with the `http` crate. The rules are restated here rather
//! than shared because the SDK cannot depend on the gateway; keep them in step, since a rule
//! the gateway enforces and this module does not lets a test pass on output production
//! refuses.

use super::HeaderEdits;
use crate::bindings::gateway::plugin::types as wit;
use std::fmt;

/// Output caps for one filter call: the gateway's per-plugin `max_headers`,
/// `max_header_bytes` and `max_body_bytes`. `Default` is the gateway's defaults; set these to
/// what the plugin's `[plugins.NAME]` table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Header changes per call (remove + set + add), counted separately for the request's
    /// headers and its response-header edits; for a reply, its header fields.
    pub max_headers: usize,
    /// Header bytes per call: names and values set or added, plus names removed (counted as
    /// `max_headers` is).
    pub max_header_bytes: usize,
    /// Body bytes emitted per call (a changed body or a reply's body).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 100,
            max_header_bytes: 64 << 10,
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OutputCap,
    BadOutput,
    Failed,
}

/// Why the gateway would refuse what a filter returned. Nothing of that output is applied;
/// the gateway then answers with the use's `error_status` (`on_error = "deny"`, the default)
/// or skips the filter (`"allow"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    kind: Kind,
    message: String,
}

impl Failure {
    /// The gateway's label for it, as in its logs and metrics: `output_cap`, `bad_output`, or
    /// `failed` (the filter returned `Flow::Fail`).
    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::OutputCap => "output_cap",
            Kind::BadOutput => "bad_output",
            Kind::Failed => "failed",
        }
    }

    /// What was wrong, in the gateway's words (e.g. `invalid header name "bad name"`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// More headers, header bytes or body bytes than the limits allow.
    pub fn is_output_cap(&self) -> bool {
        self.kind == Kind::OutputCap
    }

    /// Not valid HTTP: a header name or value, the method, the path or query, a status.
    pub fn is_bad_output(&self) -> bool {
        self.kind == Kind::BadOutput
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.label(), self.message)
    }
}

impl std::error::Error for Failure {}

/// The filter's own `Flow::Fail(reason)`.
pub(crate) fn failed(reason: String) -> Failure {
    Failure {
        kind: Kind::Failed,
        message: reason,
    }
}

fn cap(message: String) -> Failure {
    Failure {
        kind: Kind::OutputCap,
        message,
    }
}

fn bad(message: String) -> Failure {
    Failure {
        kind: Kind::BadOutput,
        message,
    }
}

// Output caps, checked first (the gateway checks them as the call returns, before it looks
// at the output).

/// Check what `on_request` returned against the caps.
pub(super) fn check_request_action(
    action: &wit::RequestAction,
    limits: &Limits,
) -> Result<(), Failure> {
    match action {
        wit::RequestAction::Continue(changes) => {
            check_headers(&changes.headers, limits)?;
            check_headers(&changes.response_headers, limits)?;
            // Counted even when the body was not granted and the change will be ignored.
            check_body(changes.body.as_deref(), limits)
        }
        wit::RequestAction::Respond(response) => check_reply(response, limits),
        wit::RequestAction::Fail(_) => Ok(()),
    }
}

/// Check what `on_response` returned against the caps.
pub(super) fn check_response_action(
    action: &wit::ResponseAction,
    limits: &Limits,
) -> Result<(), Failure> {
    match action {
        wit::ResponseAction::Continue(changes) => {
            check_headers(&changes.headers, limits)?;
            check_body(changes.body.as_deref(), limits)
        }
        wit::ResponseAction::Replace(response) => check_reply(response, limits),
        wit::ResponseAction::Fail(_) => Ok(()),
    }
}

fn check_reply(response: &wit::Response, limits: &Limits) -> Result<(), Failure> {
    let bytes = response
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len())
        .sum();
    check_counts(response.headers.len(), bytes, limits)?;
    check_body(Some(&response.body), limits)
}

fn check_headers(changes: &wit::HeaderChanges, limits: &Limits) -> Result<(), Failure> {
    let count = changes.remove.len() + changes.set.len() + changes.add.len();
    let bytes = changes.remove.iter().map(String::len).sum::<usize>()
        + changes
            .set
            .iter()
            .chain(&changes.add)
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>();
    check_counts(count, bytes, limits)
}

fn check_counts(count: usize, bytes: usize, limits: &Limits) -> Result<(), Failure> {
    if count > limits.max_headers {
        return Err(cap(format!(
            "{count} header changes, limit {}",
            limits.max_headers
        )));
    }
    if bytes > limits.max_header_bytes {
        return Err(cap(format!(
            "{bytes} header bytes, limit {}",
            limits.max_header_bytes
        )));
    }
    Ok(())
}

fn check_body(body: Option<&[u8]>, limits: &Limits) -> Result<(), Failure> {
    match body {
        Some(body) if body.len() > limits.max_body_bytes => Err(cap(format!(
            "{} body bytes, limit {}",
            body.len(),
            limits.max_body_bytes
        ))),
        _ => Ok(()),
    }
}

// Validation, as `http`'s parsers do it.

/// `http::HeaderName::from_bytes`: an RFC 9110 token of at most 65535 bytes, lower-cased.
fn header_name(name: &str) -> Result<String, Failure> {
    if name.len() < (1 << 16) && crate::is_valid_header_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(bad(format!("invalid header name {name:?}")))
    }
}

/// `http::HeaderValue::from_maybe_shared`: no control characters but HTAB (so no CR, LF or
/// NUL); visible ASCII, SP and bytes from 0x80 are fine.
fn header_field(header: &wit::Header) -> Result<(String, String), Failure> {
    let name = header_name(&header.name)?;
    if !header
        .value
        .bytes()
        .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
    {
        return Err(bad(format!("invalid value for header {name}")));
    }
    Ok((name, header.value.clone()))
}

/// Validate header changes whole (gateway `header_edits`): a bad name or value fails them all.
pub(super) fn header_edits(changes: &wit::HeaderChanges) -> Result<HeaderEdits, Failure> {
    let fields = |list: &[wit::Header]| {
        list.iter()
            .map(header_field)
            .collect::<Result<Vec<_>, Failure>>()
    };
    Ok(HeaderEdits {
        remove: changes
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?,
        set: fields(&changes.set)?,
        add: fields(&changes.add)?,
    })
}

/// `http::Method::from_bytes`: a non-empty token.
pub(super) fn method(method: &str) -> Result<(), Failure> {
    if crate::is_valid_header_name(method) {
        Ok(())
    } else {
        Err(bad(format!("invalid method {method:?}")))
    }
}

/// `http::StatusCode::from_u16` (100..=999), and the gateway refuses 1xx: 200..=999.
pub(super) fn status(status: u16) -> Result<u16, Failure> {
    if (200..=999).contains(&status) {
        Ok(status)
    } else {
        Err(bad(format!("invalid status {status}")))
    }
}

/// A reply's header fields, then its status (the order the gateway checks them in).
pub(super) fn reply(response: &wit::Response) -> Result<(), Failure> {
    for header in &response.headers {
        header_field(header)?;
    }
    status(response.status).map(drop)
}

/// The request target after a path or query change (gateway `apply_request_action`): the
/// path must start with `/`, and `{path}?{query}` must parse as `http::uri::PathAndQuery`.
/// Returns the new path and query as the gateway then reads them from the URI.
pub(super) fn target(
    path: &str,
    query: Option<&str>,
    new_path: Option<&str>,
    new_query: Option<&str>,
) -> Result<(String, Option<String>), Failure> {
    let path = new_path.unwrap_or(path);
    if !path.starts_with('/') {
        return Err(bad(format!("path {path:?} does not start with `/`")));
    }
    let query = match new_query {
        Some(query) => Some(query).filter(|q| !q.is_empty()),
        None => query,
    };
    if path.contains(['?', '#']) || query.is_some_and(|q| q.contains('#')) {
        return Err(bad(format!(
            "path {path:?} or query {query:?} contains `?` or `#`"
        )));
    }
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    parse_path_and_query(&target).ok_or_else(|| bad(format!("invalid path or query {target:?}")))
}

/// Bytes `http` 1.x accepts unescaped in a path (the WHATWG path set, plus `"`, `{`, `}`).
fn path_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E)
        || matches!(b, b'"' | b'{' | b'}' | 0x80..=0xFF)
}

/// Bytes `http` 1.x accepts in a query.
fn query_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..=0xFF)
}

/// `http::uri::PathAndQuery` parsing of a target starting with `/`: the first `?` starts the
/// query, a `#` cuts off the rest (a fragment is not sent), any other byte outside the
/// allowed sets fails, as does a target over 65534 bytes. Returns (path, query).
fn parse_path_and_query(target: &str) -> Option<(String, Option<String>)> {
    let bytes = target.as_bytes();
    if bytes.is_empty() || bytes.len() > usize::from(u16::MAX - 1) {
        return None;
    }
    let mut end = bytes.len();
    let mut query_start = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'?' => {
                query_start = Some(i);
                i += 1;
                break;
            }
            b'#' => {
                end = i;
                break;
            }
            b if path_byte(b) => i += 1,
            _ => return None,
        }
    }
    if query_start.is_some() {
        while i < bytes.len() {
            match bytes[i] {
                b'#' => {
                    end = i;
                    break;
                }
                b if query_byte(b) => i += 1,
                _ => return None,
            }
        }
    }
    let kept = &target[..end];
    Some(match query_start {
        Some(q) => (kept[..q].to_string(), Some(kept[q + 1..].to_string())),
        None => (kept.to_string(), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_http_does() {
        let t = |path: &str, query: Option<&str>| target("/old", Some("q=1"), Some(path), query);
        let ok = |path: &str, query: Option<&str>| Ok((path.to_string(), query.map(String::from)));
        assert_eq!(t("/a", None), ok("/a", Some("q=1")));
        assert_eq!(t("/a", Some("")), ok("/a", None));
        assert_eq!(
            t("/a{\"j\":1}", Some("x=\u{e9}")),
            ok("/a{\"j\":1}", Some("x=\u{e9}"))
        );
        // A `?` in the new path would start the query and a `#` cut the rest off: refused,
        // as the gateway refuses them.
        for (path, query) in [("/a?b", Some("c")), ("/a#frag", Some("")), ("/a", Some("x#y"))] {
            let err = t(path, query).unwrap_err();
            assert!(err.message().contains("contains `?` or `#`"), "{err}");
        }
        for bad_target in [
            ("/a b", None),
            ("/a", Some("x=\"")),
            ("/a\n", None),
            ("/<", None),
        ] {
            let err = t(bad_target.0, bad_target.1).unwrap_err();
            assert!(err.message().starts_with("invalid path or query"), "{err}");
        }
        let err = t("a", None).unwrap_err();
        assert_eq!(err.message(), "path \"a\" does not start with `/`");
        assert!(t(&format!("/{}", "a".repeat(65533)), Some("")).is_ok());
        assert!(t(&format!("/{}", "a".repeat(65534)), Some("")).is_err());
    }

    #[test]
    fn header_values_as_http_accepts_them() {
        let field = |value: &str| {
            header_field(&wit::Header {
                name: "X-A".into(),
                value: value.into(),
            })
        };
        assert_eq!(
            field("a\tb c~\u{e9}"),
            Ok(("x-a".into(), "a\tb c~\u{e9}".into()))
        );
        for bad_value in ["a\r\nx: 1", "a\nb", "nul\0", "del\x7f", "bell\x07"] {
            assert_eq!(
                field(bad_value).unwrap_err().message(),
                "invalid value for header x-a"
            );
        }
        assert!(header_name(&"a".repeat(65535)).is_ok());
        assert!(header_name(&"a".repeat(65536)).is_err());
        for bad_name in ["", "bad name", "x:y", "caf\u{e9}"] {
            assert!(header_name(bad_name).is_err(), "{bad_name:?}");
        }
    }
}
