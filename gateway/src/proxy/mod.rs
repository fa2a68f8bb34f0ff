//! The request pipeline, as named phases over one request's [`Exchange`]:
//!
//! ```text
//! edge ─▶ route ─▶ hygiene ─▶ request chain [filter 1 → … → filter n] ─▶ forward ─▶ upstream
//!                          │ a filter answers                        │
//! client ◀────────── finish ◀── response chain [filter 1 ← … ← filter k] ◀───┘
//! ```
//!
//! - **edge** ([`crate::edge::request`]): the head checked strictly (`Host`, framing, limits,
//!   loops) and its path normalized, so routing, plugins and the upstream see one path.
//! - **route** ([`route_phase`]): the most specific route, or 404.
//! - **hygiene** ([`headers`]): hop-by-hop headers out; `X-Forwarded-*`, `X-Real-IP`, `Via`
//!   and `X-Request-Id` in (the client as [`crate::edge::client_ip`] resolves it behind
//!   trusted proxies), before any filter sees the request.
//! - **request chain** ([`pipeline::Exchange::request_chain`]): each filter answers with a
//!   verdict; its edit applies whole ([`edit`]); the first filter that answers the request
//!   itself ends the chain.
//! - **forward** ([`forward`]): the upstream call, with the route's rewrites.
//! - **response chain** ([`pipeline::Exchange::response_chain`]): in reverse, over only the
//!   filters that let the request through.
//!
//! Bodies stream through unless a filter on the route asked for one; then that body is
//! buffered. Either way a request body is bounded by the route's `max_body_bytes` (413) and
//! the server's `request_body_timeout_ms` (408), a buffered response body by `max_body_bytes`
//! (502) ([`bodies`]). Everything after routing runs within the route's `timeout_ms` (504). A route without filters skips the chains entirely. Every error becomes a
//! response in exactly one place, [`GatewayError::into_response`].

pub mod bodies;
pub mod edit;
pub mod filter;
mod forward;
pub mod grpc;
pub mod headers;
pub mod live;
pub mod pipeline;
pub mod record;
pub mod route;
#[cfg(test)]
mod tests;
pub mod trace;
pub mod websocket;

use crate::edge::{self, Edge, client_ip};
use crate::error::{Culprit, ErrorKind, GatewayError};
use crate::router::{RequestKey, request_host};
use crate::upstream::{Affinity, RouteDeadline, clone_parts};
use bytes::Bytes;
use filter::LocalResponse;
use http::{HeaderValue, Request, Response, StatusCode, Version, header, request};
use http_body_util::Either;
use hyper::body::Incoming;
use pipeline::{ChainOutcome, Exchange};
use record::Record;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

pub use crate::body::Body;
pub use filter::Filter;
pub use headers::Peer;
pub use live::Live;
pub use route::{Route, Runtime};

/// Handle one client request; always answers.
pub async fn handle(
    runtime: Arc<Runtime>,
    client: &Peer,
    scheme: &'static str,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let version = parts.version;
    let grpc = grpc::is_grpc(&parts.headers);
    let mut request_id = headers::request_id(&parts.headers);
    // For the log line of a failure; cloning a method or URI shares its bytes.
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let mut record = runtime.observe.begin(&parts.headers);
    // hyper has read the declared length already: a chunked body has none.
    let bytes_in = hyper::body::Body::size_hint(&body).exact();
    let result = match edge::request::check(&mut parts, &runtime.edge.request) {
        Ok(()) => {
            proxy(
                &runtime,
                client,
                scheme,
                parts,
                body,
                &request_id,
                &mut record,
            )
            .await
        }
        Err(error) => Err(error),
    };
    let id_text = request_id.to_str().unwrap_or_default();
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let trace_id = record.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
            tracing::warn!(request_id = %id_text, trace_id, %method, path = uri.path(), culprit = %error.culprit(), code = error.kind().code(), "{}", error.message());
            record.error = Some(error.kind().code());
            let close = error.closes_connection() && version < Version::HTTP_2;
            let mut response = error.into_response(id_text).map(Either::Right);
            if close {
                // hyper closes an HTTP/1.x connection after a response that says so.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if grpc {
        response = grpc::answer(response);
    }
    if record.on() {
        let bytes_out = hyper::body::Body::size_hint(response.body()).exact();
        let arrived = record::Arrived {
            method: &method,
            uri: &uri,
            bytes_in,
            peer: &client.addr_text,
            request_id: id_text,
        };
        record.finish(
            &runtime.observe,
            &arrived,
            response.status().as_u16(),
            bytes_out,
        );
    }
    // Unique per response: kept out of HTTP/2's HPACK table ("never indexed"), where each id
    // would be inserted only to evict the fields that do repeat and lengthen every lookup.
    request_id.set_sensitive(true);
    response
        .headers_mut()
        .insert(headers::X_REQUEST_ID, request_id);
    response
}

/// The phases in order; the first error ends the request. All but routing run within the
/// route's `timeout_ms`.
async fn proxy(
    runtime: &Runtime,
    peer: &Peer,
    scheme: &'static str,
    mut parts: request::Parts,
    body: Incoming,
    request_id: &HeaderValue,
    record: &mut Record,
) -> Result<Response<Body>, GatewayError> {
    let route = route_phase(runtime, &parts)?;
    if record.on() {
        record.route = Some(route.clone());
    }
    let body = bodies::bounded_request(&route, body, runtime.edge.body_idle)?;
    let resolved = client_ip::resolve(peer.addr.ip(), &parts.headers, &runtime.edge.trusted);
    if record.on()
        && let Some(resolved) = &resolved
    {
        record.client = Some(resolved.client.to_string());
    }
    let tunnel = match route.websocket {
        Some(idle_timeout) if websocket::is_upgrade(&parts) => {
            Some(websocket::Tunnel { idle_timeout })
        }
        _ => None,
    };
    hygiene_phase(
        &mut parts,
        peer,
        resolved.as_ref(),
        scheme,
        request_id,
        &runtime.edge,
    );
    if let Some(trace) = &record.trace {
        trace.propagate(&mut parts.headers);
    }
    if let Some(tunnel) = tunnel {
        websocket::restore_upgrade(&mut parts.headers);
        // Marks the request for `forward`, which marks a 101 for the connection layer.
        parts.extensions.insert(tunnel);
    }
    if route.chain.is_empty() {
        // Nothing to filter: no exchange, slots or chains to set up, and the upstream call's
        // own timer keeps the route's deadline (one timer and clock read per request).
        let deadline = RouteDeadline::Within(route.timeout);
        let affinity = Affinity {
            client: resolved.map_or(peer.addr.ip(), |r| r.client),
            context: None,
        };
        let (parts, body) =
            forward::forward(&route, parts, body, deadline, record, &affinity).await?;
        return Ok(Response::from_parts(parts, body));
    }
    let client = match resolved {
        // Plugins see the real client; its port is not known past a proxy.
        Some(resolved) => Cow::Owned(peer.behind(SocketAddr::new(resolved.client, 0))),
        None => Cow::Borrowed(peer),
    };
    let deadline = Instant::now() + route.timeout;
    let id = request_id.to_str().unwrap_or_default();
    // Boxed: the chains' state is most of this future's size, and every request's future
    // (a route without plugins too) is moved whole a few times on its way into hyper.
    let phases = Box::pin(filtered(
        &route, &client, scheme, id, parts, body, deadline, record,
    ));
    match tokio::time::timeout_at(deadline, phases).await {
        Ok(result) => result,
        Err(_) => Err(route_timeout(&route)),
    }
}

/// The answer when `route`'s `timeout_ms` passed before the response head.
pub(crate) fn route_timeout(route: &Route) -> GatewayError {
    GatewayError::new(
        ErrorKind::RouteTimeout,
        Culprit::Internal,
        format!(
            "route `{}` gave no response head within its timeout_ms = {}",
            route.name,
            route.timeout.as_millis()
        ),
    )
}

/// Request chain, forward, response chain: a route with filters.
#[allow(clippy::too_many_arguments)]
async fn filtered(
    route: &Route,
    client: &Peer,
    scheme: &'static str,
    request_id: &str,
    mut parts: request::Parts,
    body: Body,
    deadline: Instant,
    record: &mut Record,
) -> Result<Response<Body>, GatewayError> {
    let trace_id = record.trace.map(|t| t.trace_id);
    let mut exchange = Exchange::new(route, client, scheme, request_id, trace_id);
    let body = bodies::RequestBody::read(route, body).await?;
    let outcome = exchange.request_chain(&mut parts, body, record).await?;
    if record.on() {
        record.consumer = exchange.ctx.get("consumer").map(str::to_string);
    }
    let (response, request_head) = match outcome {
        ChainOutcome::Respond(local) => {
            let (response, bytes) = local.into_parts();
            let request_head = route.needs.response_phase.then(|| clone_parts(&parts));
            (
                (response, bodies::ResponseBody::Buffered(bytes)),
                request_head,
            )
        }
        ChainOutcome::Forward(body) => {
            let request_head = route.needs.response_phase.then(|| clone_parts(&parts));
            let body = body.into_upstream(&mut parts.headers);
            let context = |key: &str| exchange.ctx.get(key).map(str::to_string);
            let affinity = Affinity {
                client: client.addr.ip(),
                context: Some(&context),
            };
            let (response, body) = forward::forward(
                route,
                parts,
                body,
                RouteDeadline::At(deadline),
                record,
                &affinity,
            )
            .await?;
            (
                (response, bodies::ResponseBody::Streaming(body)),
                request_head,
            )
        }
    };
    let (mut response, body) = exchange
        .response_chain(request_head.as_ref(), response.0, response.1, record)
        .await?;
    let body = body.into_client(&mut response.headers);
    Ok(Response::from_parts(response, body))
}

/// Route: the most specific matching route.
fn route_phase(runtime: &Runtime, parts: &request::Parts) -> Result<Arc<Route>, GatewayError> {
    let host = if runtime.router.matches_hosts() {
        request_host(&parts.uri, &parts.headers)
    } else {
        None
    };
    runtime
        .router
        .find(&RequestKey {
            host: host.as_deref(),
            path: parts.uri.path(),
            method: &parts.method,
            headers: &parts.headers,
        })
        .cloned()
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NoRoute,
                Culprit::Downstream,
                format!("no route for {} {}", parts.method, parts.uri.path()),
            )
        })
}

/// Hygiene: what no filter and no upstream may see from the client, and what every upstream
/// is told about it: who the client is (`X-Forwarded-For`, `X-Real-IP`), how it came
/// (`X-Forwarded-Proto`, `-Host`), that it passed here (`Via`), and the request id.
fn hygiene_phase(
    parts: &mut request::Parts,
    peer: &Peer,
    resolved: Option<&client_ip::Resolved>,
    scheme: &'static str,
    request_id: &HeaderValue,
    edge: &Edge,
) {
    headers::strip_request_hop_by_hop(&mut parts.headers);
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let real_ip = !edge.trusted.is_empty();
    headers::add_forwarded(
        &mut parts.headers,
        peer,
        resolved,
        real_ip,
        scheme,
        original_host,
    );
    // Both common versions' entries are made once per config.
    let via = match parts.version {
        Version::HTTP_11 => edge.via_http11.clone(),
        Version::HTTP_2 => edge.via_http2.clone(),
        version => edge::request::via_entry(version, &edge.request.via_name),
    };
    parts.headers.append(header::VIA, via);
    parts
        .headers
        .insert(headers::X_REQUEST_ID, request_id.clone());
}

/// Build a local response (used by filters).
pub fn local_response(status: StatusCode, headers: http::HeaderMap, body: Bytes) -> LocalResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
