//! Request-path normalization at the edge, before routing.
//!
//! # Why this exists
//!
//! Route plugins (authentication, authorization, rate limits, IP allow-lists)
//! are attached to routes, and routes are selected by matching the request
//! path. That makes the path match the security boundary: a plugin on
//! `/admin` protects nothing if `/public/../admin`, `/%61dmin` or `//admin`
//! miss the `/admin` route (and land on a permissive one) while the upstream
//! reads all of them as `/admin`. Every "path confusion" bypass is one
//! component (the gateway) and another (the upstream) reading the same bytes
//! differently.
//!
//! This module removes the disagreement in two ways:
//!
//! 1. It rewrites the path into one canonical spelling (the equivalences of
//!    RFC 3986 that every conforming server must honour), and **the gateway
//!    must both route on and forward that returned path**. Routing on the
//!    normalized path while forwarding the original one would reintroduce
//!    exactly the mismatch this module exists to remove.
//! 2. Spellings whose meaning differs between upstreams (an encoded slash, a
//!    backslash, `;` parameters, double-encoded dots) cannot be canonicalized
//!    in a way every upstream agrees with. They are rejected with `400` by
//!    default ([`Escaped::Reject`], fail closed), or, where an operator knows
//!    the upstream treats them as opaque data, passed through untouched
//!    ([`Escaped::KeepOpaque`]), so the route sees what the upstream sees.
//!
//! [`normalize`] is pure and total: no I/O, no panics on any input, output
//! always starts with `/`, and it is idempotent (`normalize(normalize(x)) ==
//! normalize(x)`). An already-normal path (the overwhelmingly common case) is
//! recognised by a single byte scan and returned as [`Cow::Borrowed`] without
//! allocating.
//!
//! # What is done, in order
//!
//! The input is the path component only (what `http::Uri::path()` returns):
//! no query, no fragment. It must be origin-form, i.e. start with `/`; the
//! asterisk-form `*` (`OPTIONS *`) and authority-form (`CONNECT`) are handled
//! by the caller, not here.
//!
//! 1. **Character check.** ASCII control characters, space, DEL, `?` and `#`
//!    cannot occur in a path component (`http::Uri` never yields them); their
//!    presence means the caller passed something that is not a path, so it is
//!    an error ([`PathError::InvalidCharacter`]). Non-ASCII UTF-8 and the
//!    few sub-RFC characters `http` tolerates (`"`, `{`, `}`, …) are copied
//!    byte for byte: they are not structural and never change segmentation.
//! 2. **Percent-encoding normalization (RFC 3986 §6.2.2.1, §6.2.2.2).**
//!    Every `%` must be followed by two hex digits, otherwise the path is
//!    rejected ([`PathError::InvalidPercentEncoding`]: `%`, `%4`, `%zz`).
//!    Escapes of *unreserved* characters (`ALPHA / DIGIT / "-" / "." / "_" /
//!    "~"`) are decoded in any hex case (`%61` → `a`, `%7e` → `~`, `%2E` →
//!    `.`); all other escapes are kept, with their hex digits upper-cased
//!    (`%c3%a9` → `%C3%A9`). Decoding can only produce unreserved characters,
//!    never `%` or `/`, so one pass is enough and the step is idempotent.
//! 3. **Escaped separators and parameters** (see [`Escaped`]): `%2F` (`/`),
//!    `%5C` (`\`) and `;` are rejected, or kept opaque. A literal `\` is
//!    always rejected (see below).
//! 4. **Slash merging** (not part of RFC 3986; nginx's `merge_slashes`,
//!    Envoy's `merge_slashes`): with [`PathPolicy::merge_slashes`] every run
//!    of `/` becomes one `/` (`//admin` → `/admin`, `/a//b/` → `/a/b/`). It
//!    is applied *before* dot-segment removal, the way nginx and a POSIX file
//!    system read it: `/a//../b` is `/a/../b`, i.e. `/b`. With merging off,
//!    empty segments are real segments and strict RFC 3986 applies
//!    (`/a//../b` → `/a/b`).
//! 5. **Dot-segment removal (RFC 3986 §5.2.4, §6.2.2.3).** Segments that are
//!    exactly `.` or `..` (after step 2, so `%2e`, `.%2E`, `%2e%2e` count) are
//!    resolved; `..` never climbs above the root (`/..` → `/`,
//!    `/a/b/../../../admin` → `/admin`). A final `.` or `..` leaves a trailing
//!    slash (`/a/b/..` → `/a/`), and an existing trailing slash is kept.
//!    Segments such as `...`, `..b` or `.well-known` are ordinary names.
//!
//! Not done, deliberately: case normalization of the path (paths are
//! case-sensitive; only hex digits are upper-cased), decoding of reserved
//! escapes such as `%20` or `%3B` (they are data, `;` unescaped is not),
//! IRI/Unicode normalization, and rejecting `%00` (kept as `%00`; if an
//! upstream is C-string based, reject it in that route's plugin).
//!
//! # Interpretation decisions
//!
//! **Dot-segments produced by decoding are resolved, not rejected, under both
//! policies.** `%2e` *is* `.` (RFC 3986 §2.3, §6.2.2.2): every conforming
//! upstream must treat `/public/%2e%2e/admin` as `/admin`, so the gateway does
//! the same and forwards `/admin`; the route for `/admin` and its plugins
//! apply. Rejecting would add no safety (router and upstream already agree
//! once the normalized path is forwarded) and would break clients that
//! over-encode.
//!
//! **"Dot-segments that survive decoding"** are the ones this normalization
//! cannot resolve because they only become dot-segments if some later
//! component decodes *more* than RFC 3986 allows:
//!
//! * `..%2F`, `..%5C`, `..;`: after step 2 the segment is `..%2Fadmin`,
//!   `..%5Cadmin` or `..;x` — by RFC 3986 not a dot-segment, but an upstream
//!   that decodes `%2F`/`%5C` before splitting, or strips `;params` before
//!   resolving (Tomcat/Jetty: `/public/..;/admin` → `/admin`), would see
//!   `../admin`. Under [`Escaped::Reject`] these are already refused because
//!   of the encoded slash / backslash / `;`. Under [`Escaped::KeepOpaque`]
//!   the segment stays a single opaque segment and is forwarded byte for
//!   byte: the router matches `/public/..%2Fadmin` under `/public`, and that
//!   exact path is what the upstream receives.
//! * Double (or deeper) encoding: `%252e%252e` is kept by step 2 as it is
//!   (`%25` is `%`, not unreserved, and `2e` is literal text), which an
//!   upstream that decodes twice reads as `..`. Under [`Escaped::Reject`], every segment
//!   that still contains `%25` is decoded further, up to
//!   [`MAX_NESTED_DECODES`] extra levels; if any level yields `.`/`..` the
//!   path is rejected ([`PathError::DotSegmentHiddenByEncoding`]), if one
//!   yields `/` or `\` it is rejected as an encoded (back)slash, and if
//!   encoding is nested deeper than that it is rejected
//!   ([`PathError::NestedEncoding`]). A plain `%25` (`/100%25`) is fine.
//!   Under [`Escaped::KeepOpaque`] they are kept as they are.
//!
//! **A literal backslash is rejected under both policies.** `\` is not a
//! legal URI character at all (RFC 3986 requires `%5C`); browsers and every
//! WHATWG URL parser turn it into `/` before sending, so no conforming client
//! needs it. The upstreams that do receive it raw disagree about it: IIS,
//! ASP.NET, Windows file APIs (and Envoy's Chromium-derived `normalize_path`)
//! treat it as `/`, POSIX servers as a name character. Keeping it opaque
//! would therefore guarantee a router/upstream mismatch exactly on the
//! backends where it matters (`/public\..\admin`), and translating it to `/`
//! would rewrite a character some upstreams treat as data. A client with a
//! genuine backslash in a name can send `%5C`, which [`Escaped::KeepOpaque`]
//! preserves.
//!
//! **Errors are reported for the first offending byte from the left**, so
//! the same input always yields the same [`PathError`]. All of them map to
//! `400 Bad Request`; [`PathError::reason`] is a
//! short fixed text suitable for the response body and logs (it never echoes
//! the attacker-controlled path).
//!
//! # Mapping to nginx and Envoy
//!
//! | This module | nginx | Envoy (`HttpConnectionManager`) |
//! |---|---|---|
//! | always on: unreserved `%XX` decoded, other escapes kept (upper-cased) | decodes **all** `%XX` (incl. `%2F`) into `$uri` for `location` matching; `proxy_pass` without a URI part forwards the *original* request line, with a URI part the normalized (re-encoded) one | `normalize_path: true` (default false; runtime `http_connection_manager.normalize_path`) |
//! | always on: `.`/`..` removed, incl. `%2e` forms, never above `/` | always: `location` matching uses the URI after `%XX` decoding and `.`/`..` resolution; `..` above root is a 400 | part of `normalize_path` (RFC 3986 §6) |
//! | `merge_slashes: true` (default) / `false` | `merge_slashes on` (default) / `off` | `merge_slashes: true` / `false` (default false) |
//! | `Escaped::Reject` (default): `%2F`, `%5C`, `;`, double-encoded dots → 400 | no equivalent (decodes `%2F` to `/` and resolves it) | `path_with_escaped_slashes_action: REJECT_REQUEST` (covers `%2F`/`%5C` only) |
//! | `Escaped::KeepOpaque`: kept verbatim, `%2F` does not split segments | no equivalent | `KEEP_UNCHANGED` (Envoy's `IMPLEMENTATION_SPECIFIC_DEFAULT`) |
//! | not offered: decoding `%2F` turns data into structure, so the path the client meant is not the one routed | default behaviour for matching | `UNESCAPE_AND_REDIRECT` (decode, then 3xx to the new path), `UNESCAPE_AND_FORWARD` (decode and forward) |
//! | literal `\` → 400 under both policies | on Windows builds treated as `/`; elsewhere a name character | `normalize_path` treats `\` as `/` (Chromium canonicalizer) |
//! | `;` → 400 (`Reject`) or kept (`KeepOpaque`) | name character | name character |
//!
//! Notes on the differences: nginx matches on a fully decoded URI, which is
//! safe for its own file serving but means `%2F` becomes a separator, and a
//! bare `proxy_pass http://up;` then forwards the raw, un-normalized path: the
//! classic mismatch. Envoy runs `normalize_path` before `merge_slashes`, so
//! `/a//../b` is `/a/b` in Envoy and `/b` here and in nginx (merging first);
//! both are self-consistent as long as the result is what is forwarded.
//!
//! # Wiring
//!
//! ```text
//! let path = match path::normalize(req.uri().path(), &policy) {
//!     Ok(p) => p,
//!     Err(e) => return respond(400, e.reason()),
//! };
//! // route on `path`, and if it is Cow::Owned rebuild the request URI with
//! // it (keeping the original query) before forwarding upstream.
//! ```

use std::borrow::Cow;
use std::fmt;

/// How many extra decoding levels [`Escaped::Reject`] looks through when a
/// segment still contains `%25` (an encoded `%`): 4 covers double- through
/// quintuple-encoding; anything nested deeper is rejected outright. Bounding
/// it keeps the cost linear in the path length.
pub const MAX_NESTED_DECODES: usize = 4;

/// Normalization settings. `PathPolicy::default()` is the fail-closed
/// configuration: merge slashes, reject ambiguous escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathPolicy {
    /// Collapse runs of `/` into one before dot-segment removal
    /// (nginx `merge_slashes`, Envoy `merge_slashes`). Default `true`.
    pub merge_slashes: bool,
    /// What to do with spellings upstreams disagree about. Default
    /// [`Escaped::Reject`].
    pub escaped: Escaped,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            merge_slashes: true,
            escaped: Escaped::Reject,
        }
    }
}

/// Treatment of `%2F` (encoded `/`), `%5C` (encoded `\`), `;` path
/// parameters and dot-segments hidden by double encoding (`%252e`).
///
/// A literal `\` is rejected under both variants (see the module docs).
/// Dot-segments produced by single decoding (`%2e%2e`) are always resolved,
/// not subject to this setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Escaped {
    /// Respond `400`. The default: the gateway cannot know how the upstream
    /// will read these, so it refuses to guess.
    #[default]
    Reject,
    /// Keep them verbatim (hex upper-cased). `%2F` stays `%2F` and does *not*
    /// split segments, `..%2Fx` and `..;x` are ordinary segments, `%252e`
    /// stays `%252e`. Only safe if the upstream also treats them as opaque
    /// data, since the route is matched on exactly these bytes.
    KeepOpaque,
}

/// Why a path was refused. Every variant means `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, or not starting with `/` (not origin-form).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// Control character, space, DEL, `?` or `#`.
    InvalidCharacter,
    /// `%2F` (or a deeper encoding of `/`) under [`Escaped::Reject`].
    EncodedSlash,
    /// `%5C` (or a deeper encoding of `\`) under [`Escaped::Reject`].
    EncodedBackslash,
    /// A literal `\` (always).
    Backslash,
    /// A `;` path parameter under [`Escaped::Reject`].
    PathParameter,
    /// A segment that becomes `.` or `..` when decoded again (`%252e%252e`)
    /// under [`Escaped::Reject`].
    DotSegmentHiddenByEncoding,
    /// `%25` nested deeper than [`MAX_NESTED_DECODES`] under
    /// [`Escaped::Reject`].
    NestedEncoding,
}

impl PathError {
    /// Short, fixed reason text for a 400 body or a log line.
    pub const fn reason(&self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path does not start with /",
            PathError::InvalidPercentEncoding => "invalid percent-encoding",
            PathError::InvalidCharacter => "invalid character in path",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::EncodedBackslash => "encoded backslash in path",
            PathError::Backslash => "backslash in path",
            PathError::PathParameter => "path parameter (;) in path",
            PathError::DotSegmentHiddenByEncoding => "dot-segment hidden by encoding",
            PathError::NestedEncoding => "excessively nested percent-encoding",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Normalize an origin-form request path (see the module docs for the exact
/// rules). Returns [`Cow::Borrowed`] exactly when the path is already normal.
pub fn normalize<'a>(path: &'a str, policy: &PathPolicy) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if is_normal(bytes, policy) {
        return Ok(Cow::Borrowed(path));
    }
    let out = normalize_slow(path, policy)?;
    // Inputs the fast scan cannot vouch for (e.g. `%25` under `Reject`) may
    // still be normal; keep the "Borrowed iff unchanged" contract.
    if out == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(out))
    }
}

// ---------------------------------------------------------------------------
// Byte classes

const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const SEMI: u8 = 3;
const BACKSLASH: u8 = 4;
const INVALID: u8 = 5;

const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b'/' => SLASH,
            b'%' => PERCENT,
            b';' => SEMI,
            b'\\' => BACKSLASH,
            0x00..=0x20 | 0x7F | b'?' | b'#' => INVALID,
            _ => PLAIN,
        };
        i += 1;
    }
    t
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[inline]
fn upper_hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 `unreserved`.
#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Is the segment starting at `start` exactly `.` or `..`?
#[inline]
fn is_dot_segment_at(b: &[u8], start: usize) -> bool {
    let seg_end = |i: usize| i >= b.len() || b[i] == b'/';
    match b.get(start) {
        Some(b'.') => seg_end(start + 1) || (b.get(start + 1) == Some(&b'.') && seg_end(start + 2)),
        _ => false,
    }
}

/// Fast path: one scan, no allocation. `true` only if normalization would
/// not change a single byte and cannot fail.
fn is_normal(b: &[u8], policy: &PathPolicy) -> bool {
    let reject = policy.escaped == Escaped::Reject;
    let mut i = 0;
    while i < b.len() {
        match CLASS[b[i] as usize] {
            PLAIN => i += 1,
            SLASH => {
                if (policy.merge_slashes && b.get(i + 1) == Some(&b'/'))
                    || is_dot_segment_at(b, i + 1)
                {
                    return false;
                }
                i += 1;
            }
            PERCENT => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(upper_hex_val),
                    b.get(i + 2).copied().and_then(upper_hex_val),
                ) else {
                    return false;
                };
                let v = hi << 4 | lo;
                if is_unreserved(v) || (reject && matches!(v, b'/' | b'\\' | b'%')) {
                    return false;
                }
                i += 3;
            }
            SEMI if !reject => i += 1,
            _ => return false,
        }
    }
    true
}

// ---------------------------------------------------------------------------
// Slow path

fn normalize_slow(path: &str, policy: &PathPolicy) -> Result<String, PathError> {
    let reject = policy.escaped == Escaped::Reject;
    let mut out = String::with_capacity(path.len());
    // `path` starts with '/'; segments are the pieces between literal '/'.
    let mut rest = &path[1..];
    loop {
        let (raw, next, is_last) = match rest.find('/') {
            Some(j) => (&rest[..j], &rest[j + 1..], false),
            None => (rest, "", true),
        };
        let start = out.len();
        out.push('/');
        push_segment(raw, reject, &mut out)?;
        let seg = &out[start + 1..];
        if reject && seg.contains("%25") {
            check_nested(seg.as_bytes())?;
        }
        match seg {
            "." => {
                out.truncate(start);
                if is_last {
                    out.push('/');
                }
            }
            ".." => {
                out.truncate(start);
                // Drop the previous segment with its leading '/'; at the root
                // there is nothing to drop. Only separators are literal '/'.
                let prev = out.rfind('/').unwrap_or(0);
                out.truncate(prev);
                if is_last {
                    out.push('/');
                }
            }
            "" if policy.merge_slashes && !is_last => out.truncate(start),
            _ => {}
        }
        if is_last {
            break;
        }
        rest = next;
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Append the normalized form of one raw segment (no '/' inside).
fn push_segment(raw: &str, reject: bool, out: &mut String) -> Result<(), PathError> {
    let b = raw.as_bytes();
    // `run` .. `i` is a verbatim run; both only ever sit next to ASCII bytes,
    // so slicing `raw` there is always on a char boundary.
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        match CLASS[b[i] as usize] {
            PERCENT => {
                out.push_str(&raw[run..i]);
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex_val),
                    b.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(PathError::InvalidPercentEncoding);
                };
                let v = hi << 4 | lo;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else if reject && v == b'/' {
                    return Err(PathError::EncodedSlash);
                } else if reject && v == b'\\' {
                    return Err(PathError::EncodedBackslash);
                } else {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(hi)]));
                    out.push(char::from(HEX_UPPER[usize::from(lo)]));
                }
                i += 3;
                run = i;
            }
            SEMI if reject => return Err(PathError::PathParameter),
            BACKSLASH => return Err(PathError::Backslash),
            INVALID => return Err(PathError::InvalidCharacter),
            _ => i += 1,
        }
    }
    out.push_str(&raw[run..]);
    Ok(())
}

/// One level of percent-decoding of every valid `%XX`; `None` if nothing
/// would change.
fn decode_once(b: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            )
        {
            out.get_or_insert_with(|| b[..i].to_vec())
                .push(hi << 4 | lo);
            i += 3;
            continue;
        }
        if let Some(o) = out.as_mut() {
            o.push(b[i]);
        }
        i += 1;
    }
    out
}

/// `Reject` only: look through double (and deeper) encoding of a normalized
/// segment that still contains `%25`.
fn check_nested(seg: &[u8]) -> Result<(), PathError> {
    let mut cur = Cow::Borrowed(seg);
    for _ in 0..MAX_NESTED_DECODES {
        let Some(next) = decode_once(&cur) else {
            return Ok(());
        };
        if next.contains(&b'/') {
            return Err(PathError::EncodedSlash);
        }
        if next.contains(&b'\\') {
            return Err(PathError::EncodedBackslash);
        }
        if next == b"." || next == b".." {
            return Err(PathError::DotSegmentHiddenByEncoding);
        }
        cur = Cow::Owned(next);
    }
    if decode_once(&cur).is_some() {
        return Err(PathError::NestedEncoding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::*;

    const R: PathPolicy = PathPolicy {
        merge_slashes: true,
        escaped: Escaped::Reject,
    };
    const K: PathPolicy = PathPolicy {
        merge_slashes: true,
        escaped: Escaped::KeepOpaque,
    };
    const RN: PathPolicy = PathPolicy {
        merge_slashes: false,
        escaped: Escaped::Reject,
    };
    const KN: PathPolicy = PathPolicy {
        merge_slashes: false,
        escaped: Escaped::KeepOpaque,
    };

    #[test]
    fn default_policy_is_fail_closed() {
        assert_eq!(PathPolicy::default(), R);
        assert_eq!(Escaped::default(), Escaped::Reject);
    }

    #[rustfmt::skip]
    const CASES: &[(&str, PathPolicy, Result<&str, PathError>)] = &[
        // already normal
        ("/", R, Ok("/")),
        ("/api/v1/users/12345", R, Ok("/api/v1/users/12345")),
        ("/a/b/", R, Ok("/a/b/")),
        ("/.well-known/acme", R, Ok("/.well-known/acme")),
        ("/a/.../..b/b..", R, Ok("/a/.../..b/b..")),
        ("/caf%C3%A9/%20", R, Ok("/caf%C3%A9/%20")),
        ("/é/x", R, Ok("/é/x")),
        ("/100%25", R, Ok("/100%25")),
        // dot-segments, literal
        ("/public/../admin", R, Ok("/admin")),
        ("/./admin", R, Ok("/admin")),
        ("/a/b/../../../admin", R, Ok("/admin")),
        ("/..", R, Ok("/")),
        ("/.", R, Ok("/")),
        ("/../..//../admin", R, Ok("/admin")),
        ("/a/b/..", R, Ok("/a/")),
        ("/a/b/.", R, Ok("/a/b/")),
        ("/a/..", R, Ok("/")),
        ("/a/./", R, Ok("/a/")),
        ("/a/b/../c/./d/", R, Ok("/a/c/d/")),
        // dot-segments hidden by (single) encoding: resolved under both
        ("/public/%2e%2e/admin", R, Ok("/admin")),
        ("/public/%2E%2E/admin", K, Ok("/admin")),
        ("/public/.%2e/admin", R, Ok("/admin")),
        ("/public/%2e./admin", R, Ok("/admin")),
        ("/public/%2e/admin", R, Ok("/public/admin")),
        ("/a/%2e%2e", R, Ok("/")),
        ("/a%2e", R, Ok("/a.")),
        ("/a%2E%2E/b", R, Ok("/a../b")),
        ("/%2e%2e%2e", R, Ok("/...")),
        // encoded slash
        ("/public/..%2fadmin", R, Err(EncodedSlash)),
        ("/public/..%2fadmin", K, Ok("/public/..%2Fadmin")),
        ("/public/%2e%2e%2fadmin", K, Ok("/public/..%2Fadmin")),
        ("/a%2F..", R, Err(EncodedSlash)),
        ("/a%2F..", K, Ok("/a%2F..")),
        ("/a%2f%2e%2e", K, Ok("/a%2F..")),
        ("/a%2F/../b", K, Ok("/b")),
        // path parameters
        ("/a;x=1/b", R, Err(PathParameter)),
        ("/a;x=1/b", K, Ok("/a;x=1/b")),
        ("/public/..;/admin", R, Err(PathParameter)),
        ("/public/..;/admin", K, Ok("/public/..;/admin")),
        ("/a%3Bx", R, Ok("/a%3Bx")),
        // backslash: literal always rejected, encoded per policy
        ("/a\\..\\admin", R, Err(Backslash)),
        ("/a\\..\\admin", K, Err(Backslash)),
        ("/a%5c..%5cadmin", R, Err(EncodedBackslash)),
        ("/a%5c..%5cadmin", K, Ok("/a%5C..%5Cadmin")),
        // percent-encoding normalization
        ("/%61dmin", R, Ok("/admin")),
        ("/caf%c3%a9", R, Ok("/caf%C3%A9")),
        ("/%7e", R, Ok("/~")),
        ("/%7euser", R, Ok("/~user")),
        ("/%41%5a%61%7a%30%39%2d%2e%5f%7e", R, Ok("/AZaz09-._~")),
        ("/a%20b%3f", R, Ok("/a%20b%3F")),
        ("/%00", R, Ok("/%00")),
        // invalid escapes
        ("/a%", R, Err(InvalidPercentEncoding)),
        ("/a%4", R, Err(InvalidPercentEncoding)),
        ("/a%zz", R, Err(InvalidPercentEncoding)),
        ("/a%4g/b", K, Err(InvalidPercentEncoding)),
        ("/%%41", R, Err(InvalidPercentEncoding)),
        ("/%é", R, Err(InvalidPercentEncoding)),
        // double encoding
        ("/%252e%252e/admin", R, Err(DotSegmentHiddenByEncoding)),
        ("/%252e%252e/admin", K, Ok("/%252e%252e/admin")),
        ("/.%252E/admin", R, Err(DotSegmentHiddenByEncoding)),
        ("/..%252fadmin", R, Err(EncodedSlash)),
        ("/..%255cadmin", R, Err(EncodedBackslash)),
        ("/%25252e%25252e", R, Err(DotSegmentHiddenByEncoding)),
        ("/%2525252525252e", R, Err(NestedEncoding)),
        ("/%2525252525252e", K, Ok("/%2525252525252e")),
        ("/%252E", K, Ok("/%252E")),
        ("/%2541", R, Ok("/%2541")),
        // slash merging
        ("//admin", R, Ok("/admin")),
        ("//admin", RN, Ok("//admin")),
        ("/a//b/", R, Ok("/a/b/")),
        ("/a//b/", RN, Ok("/a//b/")),
        ("/a///b", KN, Ok("/a///b")),
        ("//", R, Ok("/")),
        ("//", RN, Ok("//")),
        ("/a//../b", R, Ok("/b")),
        ("/a//../b", RN, Ok("/a/b")),
        ("/a//.", RN, Ok("/a//")),
        ("/..//a", RN, Ok("//a")),
        ("//..", RN, Ok("/")),
        // not a path / invalid characters
        ("", R, Err(NotOriginForm)),
        ("*", R, Err(NotOriginForm)),
        ("a/b", R, Err(NotOriginForm)),
        ("%2F", K, Err(NotOriginForm)),
        ("/a b", R, Err(InvalidCharacter)),
        ("/a?b", R, Err(InvalidCharacter)),
        ("/a#b", K, Err(InvalidCharacter)),
        ("/a\u{0}", K, Err(InvalidCharacter)),
        // the first offending byte decides
        ("/a\\b%zz", R, Err(Backslash)),
        ("/a%zz\\b", R, Err(InvalidPercentEncoding)),
        ("/a;%2f", R, Err(PathParameter)),
    ];

    #[test]
    fn table() {
        assert!(CASES.len() >= 40);
        for (input, policy, want) in CASES {
            let got = normalize(input, policy);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *want,
                "input {input:?} policy {policy:?}"
            );
            if let Ok(out) = &got {
                // idempotent, and the output is recognised as normal
                let again = normalize(out, policy);
                assert!(
                    matches!(again, Ok(Cow::Borrowed(s)) if s == out.as_ref()),
                    "not idempotent: {input:?} -> {out:?} -> {again:?}"
                );
            }
        }
    }

    #[test]
    fn borrowed_fast_path() {
        for (p, pol) in [
            ("/api/v1/users/12345", R),
            ("/", R),
            ("/a/b/", R),
            ("/caf%C3%A9", R),
            ("/.well-known/x", R),
            ("/a%2F", K),
            ("/a;b=c", K),
            ("/a//b", RN),
            ("/100%25", R), // slow path, but unchanged
        ] {
            assert!(
                matches!(normalize(p, &pol), Ok(Cow::Borrowed(s)) if s == p),
                "{p:?} should be borrowed"
            );
        }
        for (p, pol) in [("/a//b", R), ("/%7e", R), ("/a/./b", K), ("/%c3", R)] {
            assert!(
                matches!(normalize(p, &pol), Ok(Cow::Owned(_))),
                "{p:?} should be owned"
            );
        }
    }

    #[test]
    fn reason_texts() {
        assert_eq!(EncodedSlash.reason(), "encoded slash in path");
        assert_eq!(Backslash.to_string(), "backslash in path");
        assert_eq!(PathParameter.reason(), "path parameter (;) in path");
        assert_eq!(
            DotSegmentHiddenByEncoding.reason(),
            "dot-segment hidden by encoding"
        );
        assert_eq!(InvalidPercentEncoding.reason(), "invalid percent-encoding");
        assert_eq!(NotOriginForm.reason(), "path does not start with /");
    }

    /// Deterministic xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn property_total_idempotent_canonical() {
        // Single characters plus a few multi-character tokens so that valid
        // escapes and dot-segments are frequent.
        const ALPHABET: &[&str] = &[
            "/", "/", "/", ".", ".", "%", "2", "e", "E", "f", "F", "5", "c", "C", ";", "a", "\\",
            "4", "1", "é", "%2e", "%2E", "%2f", "%5c", "%25", "%41", "..", "/..", "/.", "//", " ",
        ];
        let policies = [R, K, RN, KN];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut input = String::new();
        let mut ok = 0usize;
        for n in 0..200_000usize {
            input.clear();
            if rng.below(10) != 0 {
                input.push('/');
            }
            for _ in 0..rng.below(14) {
                input.push_str(ALPHABET[rng.below(ALPHABET.len())]);
            }
            let policy = policies[n % policies.len()];
            let got = normalize(&input, &policy);
            // The fast path never disagrees with the full algorithm.
            let slow = if input.starts_with('/') {
                normalize_slow(&input, &policy)
            } else {
                Err(NotOriginForm)
            };
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                slow.as_deref().map_err(|e| *e),
                "{input:?} {policy:?}"
            );
            let Ok(out) = got else { continue };
            ok += 1;
            assert!(out.starts_with('/'), "{input:?} -> {out:?}");
            assert_eq!(
                matches!(out, Cow::Borrowed(_)),
                *out == *input,
                "Borrowed iff unchanged: {input:?} -> {out:?}"
            );
            assert!(
                !out.split('/').any(|s| s == "." || s == ".."),
                "dot-segment survived: {input:?} -> {out:?}"
            );
            if policy.merge_slashes {
                assert!(!out.contains("//"), "{input:?} -> {out:?}");
            }
            if policy.escaped == Escaped::Reject {
                assert!(
                    !out.contains(';') && !out.contains("%2F") && !out.contains("%5C"),
                    "{input:?} -> {out:?}"
                );
            }
            assert!(!out.contains('\\'), "{input:?} -> {out:?}");
            let again = normalize(&out, &policy);
            assert!(
                matches!(again, Ok(Cow::Borrowed(s)) if s == out.as_ref()),
                "not idempotent: {input:?} -> {out:?} -> {again:?}"
            );
        }
        // Make sure the generator exercises the success path substantially.
        assert!(ok > 40_000, "only {ok} inputs normalized successfully");
    }

    #[test]
    fn long_and_deep_inputs_are_fine() {
        let deep = "/..".repeat(10_000);
        assert_eq!(normalize(&deep, &R).unwrap(), "/");
        let nested = format!("/%{}2e", "25".repeat(5_000));
        assert_eq!(normalize(&nested, &R), Err(NestedEncoding));
        let many = "/a".repeat(10_000) + &"/..".repeat(9_999);
        assert_eq!(normalize(&many, &R).unwrap(), "/a/");
    }

    /// `cargo test --release -- --ignored --nocapture bench`
    #[test]
    #[ignore]
    fn bench_normalize() {
        use std::hint::black_box;
        use std::time::Instant;
        const N: u32 = 1_000_000;
        let policy = PathPolicy::default();
        for path in [
            "/api/v1/users/12345",
            "/api/v1/../v1/users/%7ebob//profile/./%c3%a9",
        ] {
            let t = Instant::now();
            let mut len = 0usize;
            for _ in 0..N {
                len += normalize(black_box(path), black_box(&policy))
                    .map(|p| p.len())
                    .unwrap_or(0);
            }
            let ns = t.elapsed().as_nanos() as f64 / f64::from(N);
            println!("{path:50} {ns:7.1} ns/op (checksum {len})");
        }
    }
}
