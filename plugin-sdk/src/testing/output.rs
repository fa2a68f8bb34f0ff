//! What the gateway accepts from a filter call, for the harness: the same code the gateway
//! runs. The caps, path shape and statuses are [`crate::rules`], which the gateway calls too;
//! header names, header values, methods and request targets are parsed by the `http` crate,
//! as the gateway parses them. Only the walk over the WIT records (the guest's bindings here,
//! the host's there) is this module's own.

use super::HeaderEdits;
use crate::bindings::gateway::plugin::types as wit;
use crate::rules::{self, HeaderPlace};
use std::fmt;

/// Output caps for one filter call: the gateway's per-plugin `max_headers`,
/// `max_header_bytes` and `max_body_bytes`. `Default` is the gateway's defaults; set these to
/// what the plugin's `[plugins.NAME]` table configures.
pub type Limits = crate::rules::OutputLimits;

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
            let values = changes
                .context
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            rules::context_changes(values, limits).map_err(cap)?;
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
    let fields = response
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()));
    rules::header_changes([], fields, limits).map_err(cap)?;
    check_body(Some(&response.body), limits)
}

fn check_headers(changes: &wit::HeaderChanges, limits: &Limits) -> Result<(), Failure> {
    let removed = changes.remove.iter().map(String::as_str);
    let fields = changes
        .set
        .iter()
        .chain(&changes.add)
        .map(|h| (h.name.as_str(), h.value.as_str()));
    rules::header_changes(removed, fields, limits).map_err(cap)
}

fn check_body(body: Option<&[u8]>, limits: &Limits) -> Result<(), Failure> {
    rules::body(body.map(<[u8]>::len), limits).map_err(cap)
}

// Validation, by `http`'s parsers, as in the gateway.

fn header_name(name: &str) -> Result<String, Failure> {
    ::http::HeaderName::from_bytes(name.as_bytes())
        .map(|n| n.as_str().to_string())
        .map_err(|_| bad(format!("invalid header name {name:?}")))
}

fn header_field(
    header: &wit::Header,
    place: HeaderPlace,
    adds: bool,
) -> Result<(String, String), Failure> {
    let name = header_name(&header.name)?;
    rules::header_field_name(&name, place, adds).map_err(bad)?;
    ::http::HeaderValue::from_bytes(header.value.as_bytes())
        .map_err(|_| bad(format!("invalid value for header {name}")))?;
    Ok((name, header.value.clone()))
}

/// Validate header changes bound for `place` whole (gateway `header_edits`): a bad name or
/// value fails them all.
pub(super) fn header_edits(
    changes: &wit::HeaderChanges,
    place: HeaderPlace,
) -> Result<HeaderEdits, Failure> {
    let fields = |list: &[wit::Header], adds| {
        list.iter()
            .map(|header| header_field(header, place, adds))
            .collect::<Result<Vec<_>, Failure>>()
    };
    Ok(HeaderEdits {
        remove: changes
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?,
        set: fields(&changes.set, false)?,
        add: fields(&changes.add, true)?,
    })
}

pub(super) fn method(method: &str) -> Result<(), Failure> {
    ::http::Method::from_bytes(method.as_bytes())
        .map(drop)
        .map_err(|_| bad(format!("invalid method {method:?}")))
}

pub(super) fn status(status: u16) -> Result<u16, Failure> {
    rules::status(status).map_err(bad)
}

/// A reply's header fields, then its status (the order the gateway checks them in).
pub(super) fn reply(response: &wit::Response) -> Result<(), Failure> {
    for header in &response.headers {
        header_field(header, HeaderPlace::Response, true)?;
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
    let query = match new_query {
        Some(query) => Some(query).filter(|q| !q.is_empty()),
        None => query,
    };
    rules::target_shape(path, query).map_err(bad)?;
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let parsed: ::http::uri::PathAndQuery = target
        .parse()
        .map_err(|_| bad(format!("invalid path or query {target:?}")))?;
    Ok((
        parsed.path().to_string(),
        parsed.query().map(str::to_string),
    ))
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
        for (path, query) in [
            ("/a?b", Some("c")),
            ("/a#frag", Some("")),
            ("/a", Some("x#y")),
        ] {
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
            header_field(
                &wit::Header {
                    name: "X-A".into(),
                    value: value.into(),
                },
                HeaderPlace::Request,
                false,
            )
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
