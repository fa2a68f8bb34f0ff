//! Forward: the upstream call, after the route's rewrites (prefix, `Host`, origin form).
//!
//! The upstream's response is held to the same framing rules as a client's request: a
//! `Content-Length` beside `Transfer-Encoding`, or a coding other than a single `chunked`, is
//! a 502 (hyper would decode it as chunked, or read to the close, and the length would then
//! lie to the client). The client's response is framed by the gateway itself: the client's
//! HTTP version, never the upstream's, and hyper's own length or chunking.

use super::headers;
use super::record::Record;
use super::route::Route;
use super::websocket::{self, Tunnel};
use crate::body::{Body, Streamed};
use crate::error::{Culprit, ErrorKind, GatewayError};
use crate::upstream::{Affinity, CallOptions, Mirror, RouteDeadline};
use http::{HeaderValue, Request, StatusCode, Version, header, request, response};
use http_body_util::Either;

/// Send the request to the route's upstream and take the response head, without its
/// hop-by-hop headers.
pub(super) async fn forward(
    route: &Route,
    mut parts: request::Parts,
    body: Body,
    deadline: RouteDeadline,
    record: &mut Record,
    affinity: &Affinity<'_>,
) -> Result<(response::Parts, Body), GatewayError> {
    let upstream = match &route.split {
        Some(split) => split.choose(&parts, affinity).0,
        None => route.upstream.as_ref().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::UpstreamUnreachable,
                Culprit::Internal,
                format!(
                    "route `{}` has no upstream and no plugin answered",
                    route.name
                ),
            )
        })?,
    };
    let tunnel = parts.extensions.remove::<Tunnel>();
    let key = upstream.hash_key(&parts, affinity);
    let copy = match &tunnel {
        None => route.mirror.as_ref().and_then(|m| Some((m, m.take()?))),
        Some(_) => None,
    };
    let body = match buffer_limit(route, &parts.method, copy.as_ref().map(|c| c.0)) {
        0 => body,
        limit => super::bodies::replayable(body, limit).await?,
    };
    prepare_upstream_request(route, &mut parts);
    if let Some((mirror, slot)) = copy {
        match super::bodies::copy_of(&body) {
            Some(bytes) => {
                let key = mirror.upstream().hash_key(&parts, affinity);
                mirror.send(slot, &parts, bytes, key);
            }
            None => mirror.skipped(slot),
        }
    }
    let sent = record.on().then(std::time::Instant::now);
    let options = CallOptions {
        key,
        retry: route.retry.as_deref(),
        connect_timeout: route.connect_timeout,
        response_timeout: route.response_timeout,
    };
    let response = upstream
        .send(
            Request::from_parts(parts, body),
            deadline,
            &mut record.target,
            options,
        )
        .await;
    if let Some(sent) = sent {
        let took = sent.elapsed();
        record.add_upstream_time(took);
        let status = response.as_ref().ok().map(|(r, _)| r.status().as_u16());
        record.note_upstream(upstream.name(), sent, took, status);
    }
    let (response, held) = response.map_err(|e| {
        if e.kind() == ErrorKind::RouteTimeout {
            super::route_timeout(route)
        } else {
            e
        }
    })?;
    let (mut parts, body) = response.into_parts();
    // `Transfer-Encoding` is hop-by-hop: a response without any has nothing to check.
    if headers::has_hop_by_hop(&parts.headers) {
        check_framing(&parts.headers).map_err(|why| {
            GatewayError::new(
                ErrorKind::UpstreamBadResponse,
                Culprit::Upstream(upstream.name().to_string()),
                format!("ambiguous response framing: {why}"),
            )
        })?;
        headers::strip_present_hop_by_hop(&mut parts.headers);
    }
    if let Some(tunnel) = tunnel
        && parts.status == StatusCode::SWITCHING_PROTOCOLS
    {
        // The upstream's `OnUpgrade` rides in the extensions already.
        websocket::restore_upgrade(&mut parts.headers);
        parts.extensions.insert(tunnel);
    }
    // hyper writes the status line in the response's version: the client's, not the peer's.
    parts.version = Version::HTTP_11;
    let body = Streamed::new(body, None, Some(upstream.body_timeout())).holding(held);
    Ok((parts, Either::Left(body)))
}

/// How much of a request body is read whole before it is sent: enough for the route's retry
/// policy (when it covers the method) and for a mirror copy; 0 streams it.
fn buffer_limit(route: &Route, method: &http::Method, mirror: Option<&Mirror>) -> u64 {
    let retry = match &route.retry {
        Some(policy) if policy.allows(method) => super::bodies::RETRY_BUFFER_BYTES,
        _ => 0,
    };
    retry.max(mirror.map_or(0, Mirror::max_body_bytes))
}

/// An upstream response's framing, as RFC 9112 §6.3 lets a proxy trust it.
fn check_framing(headers: &http::HeaderMap) -> Result<(), &'static str> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(coding) = codings.next() else {
        return Ok(());
    };
    if codings.next().is_some()
        || !coding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Err("Transfer-Encoding other than a single `chunked`");
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err("Content-Length together with Transfer-Encoding");
    }
    Ok(())
}

/// Rewrite the request for the upstream: strip the route prefix, fix `Host`.
fn prepare_upstream_request(route: &Route, parts: &mut request::Parts) {
    if let Some(prefix) = &route.strip_prefix
        && let Some(rest) = parts.uri.path().strip_prefix(prefix.as_str())
    {
        let path = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(uri) = path_and_query.parse() {
            parts.uri = uri;
        }
    }
    if !route.preserve_host {
        // The client sets `Host` to the target's address.
        parts.headers.remove(header::HOST);
    } else if !parts.headers.contains_key(header::HOST)
        && let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, value);
    }
    if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(path_and_query);
    }
}
