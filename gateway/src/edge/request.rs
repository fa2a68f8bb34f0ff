//! Strict reading of a request head (RFC 9110, RFC 9112), before routing: what hyper parsed
//! is checked against the rules a proxy must hold to, so that no request reaches a route, a
//! plugin or an upstream in a form the gateway did not check.
//!
//! | What | Rule | Answer |
//! |---|---|---|
//! | target length | `max_uri_bytes` | 414 |
//! | header fields | `max_headers` fields, `max_header_bytes` of names and values | 431 |
//! | `Host` | exactly one on HTTP/1.1, at most one otherwise; a valid authority; equal to an absolute-form target's | 400 |
//! | `Transfer-Encoding` | only a single `chunked` | 400; 501 for an unknown coding |
//! | `Content-Length` | not with `Transfer-Encoding`; one value | 400 and close |
//! | names with `_` | `underscores_in_headers` | dropped, or 400 |
//! | `X-Real-IP` | only the gateway sets it | removed |
//! | `Via` | this gateway named fewer than `max_loops` times | 508 |
//! | path | [`super::path::normalize`] | 400, or rewritten |
//!
//! The rewritten path replaces the request's, so the router, every plugin and the upstream see
//! the same one.

use super::path::{self, PathPolicy};
use crate::config::Underscores;
use crate::error::{Culprit, ErrorKind, GatewayError};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri, Version, header, request};
use std::borrow::Cow;

/// How requests are checked; compiled from `[server]` and `[server.http]`.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// Path normalization.
    pub path: PathPolicy,
    /// Most request header fields.
    pub max_headers: usize,
    /// Most bytes of header names and values.
    pub max_header_bytes: usize,
    /// Longest request target.
    pub max_uri_bytes: usize,
    /// Header names with `_`.
    pub underscores: Underscores,
    /// This gateway's `Via` pseudonym.
    pub via_name: String,
    /// Passes through this gateway that make a loop.
    pub max_loops: usize,
}

fn refuse(kind: ErrorKind, message: impl Into<String>) -> GatewayError {
    GatewayError::new(kind, Culprit::Downstream, message)
}

/// Check `parts` and put its path in canonical form; the error is the answer.
pub fn check(parts: &mut request::Parts, policy: &RequestPolicy) -> Result<(), GatewayError> {
    check_target(&parts.uri, policy)?;
    let scan = Scan::of(&parts.headers);
    check_size(&scan, policy)?;
    check_host(parts, &scan)?;
    if scan.transfer_encoding && parts.version <= Version::HTTP_11 {
        check_framing(&parts.headers)?;
    }
    if scan.lengths > 1 || scan.length_list {
        return Err(refuse(
            ErrorKind::AmbiguousFraming,
            "more than one Content-Length value",
        ));
    }
    let (underscore, via, real_ip) = (scan.underscore, scan.via, scan.real_ip);
    if real_ip {
        // Only the gateway says who the client is (`X-Real-IP` with `trusted_proxies`).
        parts.headers.remove(X_REAL_IP);
    }
    if via {
        check_loop(&parts.headers, policy)?;
    }
    if underscore {
        underscores(&mut parts.headers, policy.underscores)?;
    }
    normalize_path(&mut parts.uri, &policy.path)
}

/// What one pass over the header fields finds: the checks then look up only what is there.
#[derive(Debug, Default)]
struct Scan<'a> {
    fields: usize,
    bytes: usize,
    host: Option<&'a HeaderValue>,
    hosts: usize,
    transfer_encoding: bool,
    lengths: usize,
    length_list: bool,
    via: bool,
    underscore: bool,
    real_ip: bool,
}

const X_REAL_IP: &str = "x-real-ip";

impl<'a> Scan<'a> {
    fn of(headers: &'a http::HeaderMap) -> Self {
        let mut scan = Scan::default();
        for (name, value) in headers {
            scan.fields += 1;
            let text = name.as_str();
            scan.bytes += text.len() + value.len();
            if *name == header::HOST {
                scan.hosts += 1;
                scan.host.get_or_insert(value);
            } else if *name == header::CONTENT_LENGTH {
                scan.lengths += 1;
                scan.length_list |= value.as_bytes().contains(&b',');
            } else if *name == header::TRANSFER_ENCODING {
                scan.transfer_encoding = true;
            } else if *name == header::VIA {
                scan.via = true;
            } else {
                // A short name: a plain loop beats `memchr`'s setup.
                scan.underscore |= text.bytes().any(|b| b == b'_');
                scan.real_ip |= text == X_REAL_IP;
            }
        }
        scan
    }
}

fn check_target(uri: &Uri, policy: &RequestPolicy) -> Result<(), GatewayError> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > policy.max_uri_bytes {
        return Err(refuse(
            ErrorKind::UriTooLong,
            format!(
                "request target of {target} bytes (most {})",
                policy.max_uri_bytes
            ),
        ));
    }
    Ok(())
}

fn check_size(scan: &Scan<'_>, policy: &RequestPolicy) -> Result<(), GatewayError> {
    if scan.fields > policy.max_headers {
        return Err(refuse(
            ErrorKind::HeadersTooLarge,
            format!(
                "{} header fields (most {})",
                scan.fields, policy.max_headers
            ),
        ));
    }
    if scan.bytes > policy.max_header_bytes {
        return Err(refuse(
            ErrorKind::HeadersTooLarge,
            format!(
                "{} bytes of header names and values (most {})",
                scan.bytes, policy.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// `Host`: RFC 9112 §3.2 (HTTP/1.1 needs exactly one) and §3.2.2 (an absolute-form target's
/// authority wins, so a `Host` that disagrees with it is an attempt to route one way and be
/// served another); HTTP/2 carries `:authority` (in the URI) and at most one `Host`.
fn check_host(parts: &request::Parts, scan: &Scan<'_>) -> Result<(), GatewayError> {
    if scan.hosts > 1 {
        return Err(refuse(ErrorKind::BadRequest, "more than one Host header"));
    }
    let Some(host) = scan.host else {
        if parts.version == Version::HTTP_11 {
            return Err(refuse(
                ErrorKind::BadRequest,
                "HTTP/1.1 request without Host",
            ));
        }
        return Ok(());
    };
    let host = host.as_bytes();
    if !is_authority(host) {
        return Err(refuse(
            ErrorKind::BadRequest,
            "Host is not a valid host[:port]",
        ));
    }
    if let Some(target) = parts.uri.authority()
        && !target.as_str().as_bytes().eq_ignore_ascii_case(host)
    {
        return Err(refuse(
            ErrorKind::BadRequest,
            format!(
                "Host `{}` disagrees with the request target's `{}`",
                String::from_utf8_lossy(host),
                target.as_str()
            ),
        ));
    }
    Ok(())
}

/// `host [ ":" port ]` of RFC 3986 §3.2.2 as bytes may spell it (reg-name, IPv4, `[IPv6]`),
/// without user info: unreserved, sub-delims, `%`, `:`, `[`, `]`; not empty, not port only.
fn is_authority(host: &[u8]) -> bool {
    !host.is_empty() && host[0] != b':' && host.iter().all(|b| AUTHORITY[usize::from(*b)])
}

/// The bytes [`is_authority`] allows, as a table (a per-byte `contains` would be a `memchr`
/// call each).
static AUTHORITY: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// Transfer codings a server may meet; anything else is one it cannot implement (501).
const KNOWN_CODINGS: [&str; 6] = [
    "chunked",
    "gzip",
    "x-gzip",
    "deflate",
    "compress",
    "x-compress",
];

/// RFC 9112 §6.1 and §6.3: hyper decodes a final `chunked` and rejects other codings on
/// requests, but keeps a `Content-Length` beside `Transfer-Encoding` and a list before
/// `chunked`; a proxy must refuse both (the classic smuggling vectors), as Envoy does.
fn check_framing(headers: &http::HeaderMap) -> Result<(), GatewayError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
        .peekable();
    let chunked_only = match codings.peek() {
        None => None,
        Some(_) => {
            let codings: Vec<String> = codings.collect();
            if let Some(unknown) = codings
                .iter()
                .find(|coding| !KNOWN_CODINGS.contains(&coding.as_str()))
            {
                return Err(refuse(
                    ErrorKind::UnsupportedTransferCoding,
                    format!("transfer coding `{unknown}` is not implemented"),
                ));
            }
            Some(codings == ["chunked"])
        }
    };
    match chunked_only {
        Some(false) => Err(refuse(
            ErrorKind::BadRequest,
            "Transfer-Encoding must be exactly `chunked`",
        )),
        Some(true) if headers.contains_key(header::CONTENT_LENGTH) => Err(refuse(
            ErrorKind::AmbiguousFraming,
            "Content-Length together with Transfer-Encoding",
        )),
        _ => Ok(()),
    }
}

/// Names with `_`: CGI-style backends read `X_Consumer_Id` as `X-Consumer-Id`, so a plugin
/// that removed the one would let the other through.
fn underscores(headers: &mut http::HeaderMap, policy: Underscores) -> Result<(), GatewayError> {
    match policy {
        Underscores::Allow => Ok(()),
        Underscores::Reject => {
            let name = headers
                .keys()
                .find(|name| name.as_str().contains('_'))
                .map(HeaderName::as_str)
                .unwrap_or_default();
            Err(refuse(
                ErrorKind::BadRequest,
                format!("header name `{name}` has an underscore"),
            ))
        }
        Underscores::Drop => {
            let names: Vec<HeaderName> = headers
                .keys()
                .filter(|name| name.as_str().contains('_'))
                .cloned()
                .collect();
            for name in names {
                headers.remove(name);
            }
            Ok(())
        }
    }
}

/// RFC 9110 §7.6.3: each `Via` entry is `protocol received-by [comment]`.
fn check_loop(headers: &http::HeaderMap, policy: &RequestPolicy) -> Result<(), GatewayError> {
    let mut passes = 0;
    for entry in headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut words = entry.split_ascii_whitespace();
        if words.nth(1) == Some(policy.via_name.as_str()) {
            passes += 1;
        }
    }
    if passes >= policy.max_loops {
        return Err(refuse(
            ErrorKind::LoopDetected,
            format!(
                "the request passed this gateway (`Via: {}`) {passes} time(s) already; give \
                 each gateway tier its own `server.via`",
                policy.via_name
            ),
        ));
    }
    Ok(())
}

/// The `Via` entry this gateway adds for a request of `version`.
pub fn via_entry(version: Version, name: &str) -> HeaderValue {
    let protocol = match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    // The name is checked to be a token when the config is compiled.
    HeaderValue::from_str(&format!("{protocol} {name}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 gateway"))
}

fn normalize_path(uri: &mut Uri, policy: &PathPolicy) -> Result<(), GatewayError> {
    let path = uri.path();
    if !path.starts_with('/') {
        // `*` (OPTIONS) and authority-form (CONNECT) have no path to normalize; no route
        // matches them.
        return Ok(());
    }
    let normalized = path::normalize(path, policy).map_err(|e| {
        refuse(
            ErrorKind::BadPath,
            format!("path `{}`: {}", path, e.reason()),
        )
    })?;
    let Cow::Owned(normalized) = normalized else {
        return Ok(());
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|e| refuse(ErrorKind::BadPath, format!("normalized path: {e}")))?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(path_and_query);
    *uri = Uri::from_parts(parts)
        .map_err(|e| refuse(ErrorKind::BadPath, format!("normalized path: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
