//! What the gateway accepts from one plugin call, stated once.
//!
//! The gateway enforces these rules on every call (its `plugin/limits.rs` and
//! `plugin/filter.rs` call them) and [`crate::testing`] holds filters to the very same code, so
//! a unit test cannot pass on output that production refuses. Header names, header values and
//! methods are parsed by the `http` crate on both sides; what `http` does not decide (the caps,
//! the shape of a new path, which statuses a plugin may answer with) is here.
//!
//! Every function returns the gateway's own message on refusal. Caps are the violation label
//! `output_cap`; the other rules are `bad_output`.

pub mod metrics;

/// Output caps for one call: a plugin's `max_headers`, `max_header_bytes` and
/// `max_body_bytes` (see the gateway's README for where they are configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Header changes per call (remove + set + add), counted separately for a request's
    /// headers and its response-header edits; for a reply, its header fields.
    pub max_headers: usize,
    /// Header bytes per call: names and values set or added, plus names removed (counted as
    /// `max_headers` is).
    pub max_header_bytes: usize,
    /// Body bytes emitted per call (a changed body or a reply's body).
    pub max_body_bytes: usize,
}

impl OutputLimits {
    /// The gateway's defaults: 100 header changes, 64 KiB of headers, 1 MiB of body.
    pub const DEFAULT: OutputLimits = OutputLimits {
        max_headers: 100,
        max_header_bytes: 64 << 10,
        max_body_bytes: 1 << 20,
    };
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits::DEFAULT
    }
}

/// One set of header changes: the names removed and the fields set or added.
pub fn header_changes<'a>(
    removed: impl IntoIterator<Item = &'a str>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: &OutputLimits,
) -> Result<(), String> {
    let (mut count, mut bytes) = (0, 0);
    for name in removed {
        count += 1;
        bytes += name.len();
    }
    for (name, value) in fields {
        count += 1;
        bytes += name.len() + value.len();
    }
    counts(count, bytes, limits)
}

/// The context values one call sets: capped like a set of header changes (their count by
/// `max_headers`, keys plus values by `max_header_bytes`), since they live as long as the
/// request and reach every later plugin.
pub fn context_changes<'a>(
    values: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: &OutputLimits,
) -> Result<(), String> {
    let (mut count, mut bytes) = (0, 0);
    for (key, value) in values {
        count += 1;
        bytes += key.len() + value.len();
    }
    if count > limits.max_headers {
        return Err(format!(
            "{count} context values, limit {} (max_headers)",
            limits.max_headers
        ));
    }
    if bytes > limits.max_header_bytes {
        return Err(format!(
            "{bytes} context bytes, limit {} (max_header_bytes)",
            limits.max_header_bytes
        ));
    }
    Ok(())
}

fn counts(count: usize, bytes: usize, limits: &OutputLimits) -> Result<(), String> {
    if count > limits.max_headers {
        return Err(format!(
            "{count} header changes, limit {}",
            limits.max_headers
        ));
    }
    if bytes > limits.max_header_bytes {
        return Err(format!(
            "{bytes} header bytes, limit {}",
            limits.max_header_bytes
        ));
    }
    Ok(())
}

/// A body the call emits, if any: counted even when the plugin was not given the body and the
/// change will be ignored.
pub fn body(len: Option<usize>, limits: &OutputLimits) -> Result<(), String> {
    match len {
        Some(len) if len > limits.max_body_bytes => {
            Err(format!("{len} body bytes, limit {}", limits.max_body_bytes))
        }
        _ => Ok(()),
    }
}

/// Where a header field a plugin sets or adds will go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPlace {
    /// The request sent upstream.
    Request,
    /// The response sent to the client (from either phase, or a reply).
    Response,
}

/// Whether a plugin may set (`adds == false`) or add a field named `name` (any case) where
/// `place` says.
///
/// The names that frame a message or describe one connection (`content-length`,
/// `transfer-encoding`, `connection`, `keep-alive`, `te`, `trailer`, `upgrade`, `proxy-*`) are
/// the gateway's: it frames every message it writes itself, and a plugin's `content-length`
/// on a streamed body would make the client read the rest of the body as the next response
/// (response splitting). `host` may be set on a request (sent upstream with
/// `preserve_host`) but never added (two `Host` fields are an ambiguous request) and never
/// appears on a response. Removing any of these is allowed: the gateway frames the message
/// whatever the plugin removed.
pub fn header_field_name(name: &str, place: HeaderPlace, adds: bool) -> Result<(), String> {
    const FRAMING: [&str; 7] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    ];
    let is = |reserved: &str| reserved.len() == name.len() && name.eq_ignore_ascii_case(reserved);
    let proxy = name
        .get(..6)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("proxy-"));
    if proxy || FRAMING.iter().any(|reserved| is(reserved)) {
        return Err(format!(
            "header `{}` frames the message or the connection; the gateway sets it",
            name.to_ascii_lowercase()
        ));
    }
    if is("host") && (adds || place == HeaderPlace::Response) {
        return Err(match place {
            HeaderPlace::Request => "header `host` can be set, not added (one `Host` per request)",
            HeaderPlace::Response => "header `host` does not belong on a response",
        }
        .into());
    }
    Ok(())
}

/// A new path (and the query it will carry): it starts with `/`, and holds no `?` (which
/// would start a query) or `#` (which would cut the target short); the query holds no `#`.
pub fn target_shape(path: &str, query: Option<&str>) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with `/`"));
    }
    if path.contains(['?', '#']) || query.is_some_and(|q| q.contains('#')) {
        return Err(format!(
            "path {path:?} or query {query:?} contains `?` or `#`"
        ));
    }
    Ok(())
}

/// A status a plugin answers with or changes to: a final status, 200..=999 (a 1xx is not a
/// response a plugin can send).
pub fn status(status: u16) -> Result<u16, String> {
    if (200..=999).contains(&status) {
        Ok(status)
    } else {
        Err(format!("invalid status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_names_removed_and_fields_emitted() {
        let limits = OutputLimits {
            max_headers: 2,
            max_header_bytes: 10,
            max_body_bytes: 4,
        };
        assert_eq!(header_changes(["a"], [("b", "1")], &limits), Ok(()));
        assert_eq!(
            header_changes(["a", "b"], [("c", "1")], &limits),
            Err("3 header changes, limit 2".into())
        );
        assert_eq!(
            header_changes(["abcdef"], [("g", "hijkl")], &limits),
            Err("12 header bytes, limit 10".into())
        );
        assert_eq!(context_changes([("k", "v"), ("x", "y")], &limits), Ok(()));
        assert_eq!(
            context_changes([("k", "v"), ("x", "y"), ("z", "")], &limits),
            Err("3 context values, limit 2 (max_headers)".into())
        );
        assert_eq!(
            context_changes([("key", "a long value")], &limits),
            Err("15 context bytes, limit 10 (max_header_bytes)".into())
        );
        assert_eq!(body(Some(4), &limits), Ok(()));
        assert_eq!(body(None, &limits), Ok(()));
        assert_eq!(body(Some(5), &limits), Err("5 body bytes, limit 4".into()));
    }

    #[test]
    fn framing_names_belong_to_the_gateway() {
        use HeaderPlace::{Request, Response};
        for name in [
            "content-length",
            "Transfer-Encoding",
            "connection",
            "keep-alive",
            "TE",
            "trailer",
            "upgrade",
            "proxy-connection",
            "Proxy-Authorization",
        ] {
            for place in [Request, Response] {
                for adds in [false, true] {
                    let refused = header_field_name(name, place, adds).unwrap_err();
                    assert!(refused.contains("the gateway sets it"), "{name}: {refused}");
                }
            }
        }
        assert_eq!(header_field_name("host", Request, false), Ok(()));
        assert!(header_field_name("Host", Request, true).is_err());
        assert!(header_field_name("host", Response, false).is_err());
        for name in [
            "x-consumer",
            "content-type",
            "tea",
            "proxyish",
            "trailers-x",
        ] {
            assert_eq!(header_field_name(name, Response, true), Ok(()), "{name}");
        }
    }

    #[test]
    fn paths_and_statuses() {
        assert_eq!(target_shape("/a", Some("b=1")), Ok(()));
        assert!(
            target_shape("a", None)
                .unwrap_err()
                .contains("does not start with")
        );
        for (path, query) in [("/a?b", None), ("/a#b", None), ("/a", Some("x#y"))] {
            assert!(
                target_shape(path, query)
                    .unwrap_err()
                    .contains("`?` or `#`")
            );
        }
        assert_eq!(status(200), Ok(200));
        assert_eq!(status(999), Ok(999));
        assert_eq!(status(101), Err("invalid status 101".into()));
        assert_eq!(status(1000), Err("invalid status 1000".into()));
    }
}
