//! Entry points of the `cargo fuzz` targets in `gateway/fuzz/`, re-exported as the doc-hidden
//! `gateway::fuzz`.
//!
//! # Why this exists
//!
//! Every module of this library is private, and the fuzz targets must drive the gateway's own
//! code, not a copy of it: the edge path normalizer, the config front half (`gateway check`
//! before any plugin is loaded) and the path a plugin's request action takes from the WIT
//! record to the request sent upstream. Each entry here does that work and asserts the promises
//! of the code it drives, so a broken promise is a panic, which libFuzzer reports as a crash;
//! each fuzz target is then one line. The entries are ordinary code, compiled in every build
//! (clippy and the dead-code lint see them), and the tests below replay the committed seed
//! corpus (`gateway/fuzz/corpus/`) on the stable toolchain in `cargo test`.
//!
//! The structured input of [`request_action`] derives `arbitrary::Arbitrary` only with the
//! `fuzzing` feature, which the fuzz crate turns on: the gateway itself does not depend on
//! `arbitrary`.

use crate::compile::validate;
use crate::config::{self, ConfigError, LimitsConfig};
use crate::edge::path::{self, Escaped, PathError, PathPolicy};
use crate::plugin::bindings::types::{
    HeaderChanges, HeaderResult, RequestAction, RequestChanges, Response,
};
use crate::plugin::filter::request_verdict;
use crate::plugin::limits::{self, Limits};
use crate::proxy::filter::{RequestContext, RequestVerdict};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, request};
use plugin_sdk::rules::{self, HeaderPlace};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// path_normalize

/// The policy a `path_normalize` input's first byte selects: bit 0 set turns slash merging
/// off, bit 1 set selects [`Escaped::KeepOpaque`]. The seeds use the digits `0`..`3`
/// (`0`: merge + reject, the default; `1`: reject without merging; `2`: merge + keep opaque;
/// `3`: keep opaque without merging).
fn path_policy(selector: u8) -> PathPolicy {
    PathPolicy {
        merge_slashes: selector & 1 == 0,
        escaped: if selector & 2 == 0 {
            Escaped::Reject
        } else {
            Escaped::KeepOpaque
        },
    }
}

/// Fuzz [`path::normalize`]: the first byte picks the policy ([`path_policy`]), the rest is
/// the path (invalid UTF-8 replaced). Asserts the module's promises: no panic; errors are
/// deterministic and `NotOriginForm` exactly for input not starting with `/`; a normalized
/// path starts with `/`, is `Borrowed` exactly when unchanged, is a fixed point
/// (idempotence), has no `.`/`..` segment, no `//` when merging, no backslash or forbidden
/// character, only upper-case escapes of reserved bytes, none of `;`, `%2F`, `%5C` under
/// `Reject` (and the same output under `KeepOpaque`); and when the input is a path `http`
/// accepts, so is the output, as a path alone.
pub fn path_normalize(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let input = String::from_utf8_lossy(rest);
    check_normalized(&input, &path_policy(selector));
}

fn check_normalized(input: &str, policy: &PathPolicy) {
    let out = match path::normalize(input, policy) {
        Ok(out) => out,
        Err(error) => {
            assert_eq!(
                error == PathError::NotOriginForm,
                !input.starts_with('/'),
                "{input:?} {policy:?}: {error:?}"
            );
            assert_eq!(path::normalize(input, policy), Err(error), "{input:?}");
            return;
        }
    };
    let show = || format!("{input:?} {policy:?} -> {out:?}");
    assert!(out.starts_with('/'), "{}", show());
    assert_eq!(
        matches!(out, Cow::Borrowed(_)),
        *out == *input,
        "Borrowed iff unchanged: {}",
        show()
    );
    let again = path::normalize(&out, policy);
    assert!(
        matches!(again, Ok(Cow::Borrowed(s)) if s == &*out),
        "not idempotent: {} -> {again:?}",
        show()
    );
    assert!(
        !out.split('/')
            .any(|segment| segment == "." || segment == ".."),
        "dot-segment survived: {}",
        show()
    );
    if policy.merge_slashes {
        assert!(!out.contains("//"), "slashes not merged: {}", show());
    }
    assert!(
        !out.bytes()
            .any(|b| b <= 0x20 || matches!(b, 0x7F | b'?' | b'#' | b'\\')),
        "forbidden byte kept: {}",
        show()
    );
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let (Some(hi), Some(lo)) = (upper_hex(bytes.get(i + 1)), upper_hex(bytes.get(i + 2)))
        else {
            panic!("escape not two upper-case hex digits at {i}: {}", show());
        };
        let value = hi << 4 | lo;
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "escape of an unreserved byte kept: {}",
            show()
        );
    }
    if policy.escaped == Escaped::Reject {
        assert!(
            !out.contains(';') && !out.contains("%2F") && !out.contains("%5C"),
            "ambiguous spelling passed under Reject: {}",
            show()
        );
        // The policies differ only in what `Reject` refuses: a path it takes, `KeepOpaque`
        // normalizes the same way.
        let opaque = PathPolicy {
            escaped: Escaped::KeepOpaque,
            ..*policy
        };
        let kept = path::normalize(input, &opaque);
        assert!(
            matches!(&kept, Ok(k) if *k == *out),
            "KeepOpaque disagrees with Reject: {} but {kept:?}",
            show()
        );
    }
    // What the gateway forwards is rebuilt into the request URI: a path `http` handed us must
    // stay one `http` takes back, as a path with no query.
    if is_http_path(input) {
        let parsed = out.parse::<PathAndQuery>();
        assert!(
            matches!(&parsed, Ok(pq) if pq.path() == &*out && pq.query().is_none()),
            "output is not a path http accepts: {} ({parsed:?})",
            show()
        );
    }
}

/// The value of an upper-case hex digit.
fn upper_hex(digit: Option<&u8>) -> Option<u8> {
    match digit? {
        d @ b'0'..=b'9' => Some(d - b'0'),
        d @ b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Whether `input` is a path `http` would hand the normalizer (`Uri::path()`): it parses as a
/// `PathAndQuery` that is all path.
fn is_http_path(input: &str) -> bool {
    input
        .parse::<PathAndQuery>()
        .is_ok_and(|pq| pq.path() == input && pq.query().is_none())
}

// ---------------------------------------------------------------------------------------------
// config_check

/// Fuzz the config front half, what `gateway check` runs before it loads any plugin: TOML text
/// → [`config::parse`] → [`validate::check`], with every error rendered as the CLI prints it.
/// Input that is not UTF-8 is skipped (the loader reads the file as a string). Asserts: no
/// panic; a rejected config names at least one error, each placed at a real line and column
/// of `fuzz.toml`; an accepted one has a matcher per route and an address per listener.
pub fn config_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match config::parse("fuzz.toml", text, PathBuf::from(".")) {
        Ok(loaded) => loaded,
        Err(errors) => return check_errors(text, &errors.0),
    };
    match validate::check(&loaded.config, &loaded.source) {
        Ok(checked) => {
            assert_eq!(checked.matchers.len(), loaded.config.routes.len());
            assert_eq!(checked.listen.len(), loaded.config.server.listen.len());
        }
        Err(errors) => check_errors(text, &errors),
    }
}

fn check_errors(text: &str, errors: &[ConfigError]) {
    assert!(!errors.is_empty(), "a rejected config with no error");
    let lines = text.split('\n').count();
    for error in errors {
        let rendered = error.to_string();
        assert!(rendered.starts_with("fuzz.toml:"), "{rendered}");
        assert!(
            (1..=lines).contains(&error.line) && error.column >= 1,
            "error placed outside the file ({lines} lines): {rendered}"
        );
    }
    let all = config::ConfigErrors(errors.to_vec()).to_string();
    assert!(all.lines().count() >= errors.len(), "{all}");
}

// ---------------------------------------------------------------------------------------------
// request_action

/// Header names the fuzzer would rarely spell by chance: framing fields in several cases,
/// `host`, `proxy-*`, and names that are not header names at all.
const NAMES: &[&str] = &[
    "content-length",
    "Content-Length",
    "transfer-encoding",
    "TRANSFER-ENCODING",
    "connection",
    "keep-alive",
    "te",
    "TE",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "Proxy-Connection",
    "host",
    "Host",
    "x-consumer",
    "content-type",
    "tea",
    "proxyish",
    "trailers-x",
    "x-a",
    "",
    "bad name",
    "x-evil\r\n",
    "x:y",
    "é",
];

/// Header values the same way: line breaks, NUL, DEL, padding, non-ASCII.
const VALUES: &[&str] = &[
    "1",
    "",
    "chunked",
    "close",
    "a\r\nx-evil: 1",
    "a\nb",
    "a\rb",
    "a\0b",
    "\u{7f}",
    " padded ",
    "\t",
    "café",
    "example.com",
    "5",
];

/// Request targets and new paths: dot-segments, encodings, `?`/`#`, not origin-form.
const PATHS: &[&str] = &[
    "/",
    "/a/b",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "//admin",
    "/a?b",
    "/a#b",
    "a",
    "",
    "*",
    "/a b",
    "/é",
    "/{x}",
    "/a\r\nb",
    "http://example.com/x",
];

/// Queries: empty (removes the query), `#`, `?`, encodings, spaces.
const QUERIES: &[&str] = &["", "a=1", "a=1&b=2", "x#y", "?", "%zz", "a b", "é=1"];

/// Methods: standard, custom, and not methods.
const METHODS: &[&str] = &[
    "GET",
    "DELETE",
    "PATCH",
    "CUSTOM",
    "get",
    "",
    "BAD METHOD",
    "G\0T",
];

/// A string the fuzzer picks from a table of interesting ones, or spells itself.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub enum Text {
    /// Entry `n` (modulo its length) of the table for this field.
    Known(u8),
    /// Any string.
    Raw(String),
}

impl Text {
    fn pick(&self, table: &[&str]) -> String {
        match self {
            Text::Known(n) => table
                .get(usize::from(*n) % table.len().max(1))
                .copied()
                .unwrap_or_default()
                .to_string(),
            Text::Raw(text) => text.clone(),
        }
    }
}

/// One header field a plugin sets or adds (or a request carries).
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub struct HeaderInput {
    /// Its name.
    pub name: Text,
    /// Its value.
    pub value: Text,
}

impl HeaderInput {
    fn to_wit(&self) -> HeaderResult {
        HeaderResult {
            name: self.name.pick(NAMES),
            value: self.value.pick(VALUES),
        }
    }
}

/// WIT `header-changes`.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Default)]
pub struct HeaderChangesInput {
    /// Names removed.
    pub remove: Vec<Text>,
    /// Fields set.
    pub set: Vec<HeaderInput>,
    /// Fields added.
    pub add: Vec<HeaderInput>,
}

impl HeaderChangesInput {
    fn to_wit(&self) -> HeaderChanges {
        HeaderChanges {
            remove: self.remove.iter().map(|n| n.pick(NAMES)).collect(),
            set: self.set.iter().map(HeaderInput::to_wit).collect(),
            add: self.add.iter().map(HeaderInput::to_wit).collect(),
        }
    }
}

/// WIT `request-changes`.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Default)]
pub struct RequestChangesInput {
    /// New method.
    pub method: Option<Text>,
    /// New path.
    pub path: Option<Text>,
    /// New query (`""` removes it).
    pub query: Option<Text>,
    /// Request header changes.
    pub headers: HeaderChangesInput,
    /// New body.
    pub body: Option<Vec<u8>>,
    /// Context values set.
    pub context: Vec<(String, String)>,
    /// Header changes for the response.
    pub response_headers: HeaderChangesInput,
}

/// WIT `request-action`.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub enum ActionInput {
    /// `continue(request-changes)`.
    Continue(Box<RequestChangesInput>),
    /// `respond(response)`.
    Respond {
        /// Status.
        status: u16,
        /// Header fields.
        headers: Vec<HeaderInput>,
        /// Body.
        body: Vec<u8>,
    },
    /// `fail(string)`.
    Fail(String),
}

impl ActionInput {
    fn to_wit(&self) -> RequestAction {
        match self {
            ActionInput::Continue(changes) => RequestAction::Continue(RequestChanges {
                method: changes.method.as_ref().map(|m| m.pick(METHODS)),
                path: changes.path.as_ref().map(|p| p.pick(PATHS)),
                query: changes.query.as_ref().map(|q| q.pick(QUERIES)),
                headers: changes.headers.to_wit(),
                body: changes.body.clone(),
                context: changes.context.clone(),
                response_headers: changes.response_headers.to_wit(),
            }),
            ActionInput::Respond {
                status,
                headers,
                body,
            } => RequestAction::Respond(Response {
                status: *status,
                headers: headers.iter().map(HeaderInput::to_wit).collect(),
                body: body.clone(),
            }),
            ActionInput::Fail(reason) => RequestAction::Fail(reason.clone()),
        }
    }
}

/// The request a plugin answered about, its action, and the plugin's output caps.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub struct RequestActionInput {
    /// The request's method (an invalid one becomes `GET`).
    pub method: Text,
    /// The request target (an invalid one becomes `/`).
    pub target: Text,
    /// The request's header fields (invalid ones are left out).
    pub headers: Vec<HeaderInput>,
    /// What the plugin answered.
    pub action: ActionInput,
    /// `max_headers`, if not the default.
    pub max_headers: Option<u8>,
    /// `max_header_bytes`, if not the default.
    pub max_header_bytes: Option<u16>,
    /// `max_body_bytes`, if not the default.
    pub max_body_bytes: Option<u16>,
}

/// The fields of `headers` named `name`, in order.
fn values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect()
}

/// Every name and value in `headers` is one `http` would parse from its own text.
fn assert_valid_fields(headers: &HeaderMap, what: &str) {
    for (name, value) in headers {
        assert!(
            HeaderName::from_bytes(name.as_str().as_bytes()).is_ok(),
            "{what}: invalid name {name:?}"
        );
        assert!(
            HeaderValue::from_bytes(value.as_bytes()).is_ok(),
            "{what}: invalid value {value:?} for {name}"
        );
    }
}

/// Fields a plugin may not add at `place` (`rules::header_field_name`) are as they were, or
/// removed; `host` on a request, which may be set, is at most one field.
fn assert_no_reserved_added(before: &HeaderMap, after: &HeaderMap, place: HeaderPlace) {
    for name in after.keys() {
        if rules::header_field_name(name.as_str(), place, true).is_ok() {
            continue;
        }
        let (was, is) = (values(before, name), values(after, name));
        let settable = rules::header_field_name(name.as_str(), place, false).is_ok();
        assert!(
            is == was || (settable && is.len() == 1),
            "{place:?} field `{name}` added by a plugin: {was:?} -> {is:?}"
        );
    }
}

/// A request from the input's method, target and fields (invalid parts replaced).
fn request_parts(input: &RequestActionInput) -> request::Parts {
    let method = Method::from_bytes(input.method.pick(METHODS).as_bytes()).unwrap_or_default();
    let uri = input
        .target
        .pick(PATHS)
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    for header in &input.headers {
        let header = header.to_wit();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_str(&header.value),
        ) {
            parts.headers.append(name, value);
        }
    }
    parts
}

/// What the upstream answered, framing fields included, for the response-header edits.
fn upstream_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-length", "5"),
        ("connection", "keep-alive"),
        ("server", "upstream"),
        ("x-a", "1"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

/// Fuzz a plugin's request action the way `WasmFilter::on_request` and the pipeline take it:
/// the WIT value is checked against the output caps (`limits::check_request_action`), turned
/// into a verdict (`request_verdict`: header edits, new target, method), and a `continue`
/// edit is applied to the request (`RequestEdit::apply`), its response-header edits to an
/// upstream response. Asserts: no panic; whenever the path accepts the action, the request
/// has only valid header names and values, no framing field (`content-length`,
/// `transfer-encoding`, `connection`, …, `proxy-*`) added or changed and at most one `host`,
/// a URI whose text parses back to the same path and query, a new path starting with `/`
/// (scheme and authority kept), and the context values set; the response-header edits add
/// no framing field or `host`; a reply carries only fields a plugin may add to a response,
/// with a final status.
pub fn request_action(input: RequestActionInput) {
    let mut parts = request_parts(&input);
    let limits = Limits::resolve(&LimitsConfig {
        max_headers: input.max_headers.map(usize::from),
        max_header_bytes: input.max_header_bytes.map(usize::from),
        max_body_bytes: input.max_body_bytes.map(usize::from),
        ..LimitsConfig::default()
    });
    let action = input.action.to_wit();
    if limits::check_request_action(&action, &limits).is_err() {
        return;
    }
    let context = match &action {
        RequestAction::Continue(changes) => changes.context.clone(),
        _ => Vec::new(),
    };
    let verdict = match request_verdict(action, &parts) {
        Ok(verdict) => verdict,
        Err(_) => return,
    };
    let edit = match verdict {
        RequestVerdict::Respond(reply) => {
            assert!((200..=999).contains(&reply.status().as_u16()));
            assert_valid_fields(reply.headers(), "reply");
            for name in reply.headers().keys() {
                assert!(
                    rules::header_field_name(name.as_str(), HeaderPlace::Response, true).is_ok(),
                    "reply carries reserved field `{name}`"
                );
            }
            return;
        }
        RequestVerdict::Continue(edit) => edit,
    };
    let before = parts.headers.clone();
    let original_uri = parts.uri.clone();
    let mut ctx = RequestContext {
        route: Arc::from("fuzz"),
        request_id: Arc::from("fuzz-1"),
        trace_id: None,
        client_addr: Arc::from("127.0.0.1:1"),
        scheme: "http",
        attributes: Arc::from([]),
        values: Arc::default(),
    };
    let (_body, response_edits) = edit.apply(&mut parts, &mut ctx);

    assert_valid_fields(&parts.headers, "request");
    assert_no_reserved_added(&before, &parts.headers, HeaderPlace::Request);
    let uri = &parts.uri;
    let text = uri.to_string();
    let same = |again: Uri| again.path() == uri.path() && again.query() == uri.query();
    assert!(
        text.parse::<Uri>().is_ok_and(same),
        "URI does not parse back: {text:?}"
    );
    if *uri != original_uri {
        assert!(uri.path().starts_with('/'), "new path {:?}", uri.path());
        assert_eq!(uri.scheme(), original_uri.scheme());
        assert_eq!(uri.authority(), original_uri.authority());
    }
    for (key, _) in &context {
        let last = context.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
        assert_eq!(ctx.get(key), last.map(String::as_str), "context `{key}`");
    }

    let upstream = upstream_headers();
    let mut response = upstream.clone();
    response_edits.apply(&mut response);
    assert_valid_fields(&response, "response");
    assert_no_reserved_added(&upstream, &response, HeaderPlace::Response);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every committed seed of `target`: (file name, bytes).
    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        seeds
    }

    #[test]
    fn path_seeds_hold() {
        let seeds = seeds("path_normalize");
        assert!(seeds.len() >= 20, "{} seeds", seeds.len());
        for (_, data) in &seeds {
            path_normalize(data);
        }
    }

    #[test]
    fn config_seeds_hold() {
        let seeds = seeds("config_check");
        assert!(seeds.len() >= 20, "{} seeds", seeds.len());
        for (_, data) in &seeds {
            config_check(data);
        }
        // The example config is among them and passes the front half.
        let example = include_str!("../../config/gateway.toml");
        let loaded = config::parse("x.toml", example, PathBuf::from(".")).unwrap();
        assert!(validate::check(&loaded.config, &loaded.source).is_ok());
    }

    #[test]
    fn every_policy_is_reachable() {
        let policies: Vec<_> = (b'0'..=b'3').map(path_policy).collect();
        assert_eq!(policies[0], PathPolicy::default());
        for (i, a) in policies.iter().enumerate() {
            assert!(policies[i + 1..].iter().all(|b| a != b));
        }
    }

    fn header(name: &str, value: &str) -> HeaderInput {
        HeaderInput {
            name: Text::Raw(name.into()),
            value: Text::Raw(value.into()),
        }
    }

    fn input(action: ActionInput) -> RequestActionInput {
        RequestActionInput {
            method: Text::Raw("GET".into()),
            target: Text::Raw("/orig?q=1".into()),
            headers: vec![header("content-length", "3"), header("host", "a.example")],
            action,
            max_headers: None,
            max_header_bytes: None,
            max_body_bytes: None,
        }
    }

    #[test]
    fn request_actions_run_the_gateway_path() {
        let changes = |headers: HeaderChangesInput| {
            ActionInput::Continue(Box::new(RequestChangesInput {
                method: Some(Text::Known(1)),
                path: Some(Text::Raw("/new/../path".into())),
                query: Some(Text::Known(0)),
                headers,
                context: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
                response_headers: HeaderChangesInput {
                    remove: vec![Text::Raw("content-length".into())],
                    set: vec![header("x-a", "2")],
                    add: vec![header("x-b", "3")],
                },
                ..RequestChangesInput::default()
            }))
        };
        // Accepted: set `host`, add an ordinary field, remove a framing field.
        request_action(input(changes(HeaderChangesInput {
            remove: vec![Text::Raw("Content-Length".into())],
            set: vec![header("host", "b.example")],
            add: vec![header("x-consumer", "alice")],
        })));
        // Refused whole (the checks must not trip on a refusal): framing fields, a line
        // break in a value, a second `host`, a path with a query in it, caps.
        for refused in [
            header("transfer-encoding", "chunked"),
            header("Proxy-Authorization", "x"),
            header("x-split", "a\r\nx-evil: 1"),
            header("host", "c.example"),
            header("bad name", "v"),
        ] {
            request_action(input(changes(HeaderChangesInput {
                add: vec![refused],
                ..HeaderChangesInput::default()
            })));
        }
        let mut capped = input(changes(HeaderChangesInput {
            add: vec![header("x-a", "1"), header("x-b", "2")],
            ..HeaderChangesInput::default()
        }));
        capped.max_headers = Some(1);
        request_action(capped);
        for path in ["/a?b", "a", "/a#b", "/a b"] {
            request_action(input(ActionInput::Continue(Box::new(
                RequestChangesInput {
                    path: Some(Text::Raw(path.into())),
                    ..RequestChangesInput::default()
                },
            ))));
        }
        request_action(input(ActionInput::Respond {
            status: 403,
            headers: vec![header("content-type", "text/plain")],
            body: b"no".to_vec(),
        }));
        request_action(input(ActionInput::Respond {
            status: 200,
            headers: vec![header("content-length", "99")],
            body: Vec::new(),
        }));
        request_action(input(ActionInput::Fail("down".into())));
    }

    #[test]
    fn tables_cover_every_reserved_name() {
        for reserved in [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "host",
        ] {
            assert!(
                NAMES.iter().any(|n| n.eq_ignore_ascii_case(reserved)),
                "{reserved}"
            );
        }
    }
}
