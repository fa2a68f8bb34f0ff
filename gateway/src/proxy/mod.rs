//! The request pipeline: route, run the request chain, proxy, run the response chain.
//!
//! ```text
//! request ─▶ route ─▶ hygiene ─▶ [filter 1 → … → filter n] ─▶ upstream
//!                                  │ respond                    │
//! client ◀── [filter 1 ← … ← filter k] ◀────────────────────────┘
//! ```
//!
//! Bodies stream through untouched unless a filter on the route asked for one; then that body
//! is buffered up to the route's `max_body_bytes` (413 for requests, 502 for responses past it).
//! When a filter answers the request itself, only the filters before it see the response.
//! Every error becomes a response in exactly one place, [`GatewayError::into_response`].

pub mod filter;
pub mod headers;

use crate::error::{ErrorKind, GatewayError, Source};
use crate::router::{RequestKey, request_host};
use crate::runtime::{Route, Runtime};
use crate::upstream::clone_parts;
use bytes::Bytes;
use filter::{FilterFailure, LocalResponse, RequestContext, RequestVerdict, ResponseVerdict, Slot};
use http::{HeaderValue, Request, Response, StatusCode, header, request, response};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use std::sync::Arc;

pub use filter::Filter;
pub use headers::Peer;

/// Bodies on both sides: streamed from the peer, or buffered/generated in full.
pub type Body = Either<Incoming, Full<Bytes>>;

/// Handle one client request; always answers.
pub async fn handle(
    runtime: Arc<Runtime>,
    client: &Peer,
    scheme: &'static str,
    request: Request<Incoming>,
) -> Response<Body> {
    let mut request_id_value = headers::request_id(request.headers());
    let request_id = request_id_value.to_str().unwrap_or_default();
    // For the log line of a failure; cloning a method or URI shares its bytes.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let result = proxy(
        &runtime,
        client,
        scheme,
        request,
        request_id,
        &request_id_value,
    )
    .await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%request_id, %method, path = uri.path(), source = %error.source(), code = error.kind().code(), "{}", error.message());
            error.into_response(request_id).map(Either::Right)
        }
    };
    // Unique per response: kept out of HTTP/2's HPACK table ("never indexed"), where each id
    // would be inserted only to evict the fields that do repeat and lengthen every lookup.
    request_id_value.set_sensitive(true);
    response
        .headers_mut()
        .insert(headers::X_REQUEST_ID, request_id_value);
    response
}

async fn proxy(
    runtime: &Runtime,
    client: &Peer,
    scheme: &'static str,
    request: Request<Incoming>,
    request_id: &str,
    request_id_value: &HeaderValue,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let host = if runtime.router.matches_hosts() {
        request_host(&parts.uri, &parts.headers)
    } else {
        None
    };
    let route = runtime
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
                Source::Downstream,
                format!("no route for {} {}", parts.method, parts.uri.path()),
            )
        })?;

    headers::strip_hop_by_hop(&mut parts.headers);
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::add_forwarded(&mut parts.headers, client, scheme, original_host);
    parts
        .headers
        .insert(headers::X_REQUEST_ID, request_id_value.clone());
    if route.chain.is_empty() {
        // Nothing to filter: no context, slots or phases to set up.
        let (parts, body) = forward(&route, parts, Either::Left(body)).await?;
        return Ok(Response::from_parts(parts, Either::Left(body)));
    }

    let mut ctx = RequestContext {
        route: route.name.clone(),
        request_id: request_id.to_string(),
        client_addr: client.addr_text.clone(),
        scheme,
        values: Vec::new(),
        position: 0,
        response_edits: Vec::new(),
    };
    let mut slots: Vec<Slot> = route.chain.iter().map(|_| None).collect();

    // Request phase.
    let (mut buffered, mut streaming) = if route.needs.request_body {
        let bytes = read_request_body(&parts, body, route.max_body_bytes).await?;
        (Some(bytes), None)
    } else {
        (None, Some(body))
    };
    let mut ran = 0;
    let mut local: Option<LocalResponse> = None;
    for (position, (filter, slot)) in route.chain.iter().zip(slots.iter_mut()).enumerate() {
        ctx.position = position;
        let mut body = if filter.needs().request_body {
            buffered.take()
        } else {
            None
        };
        let verdict = filter
            .on_request(&mut parts, &mut body, &mut ctx, slot)
            .await;
        if filter.needs().request_body {
            buffered = body;
        }
        match verdict {
            Ok(RequestVerdict::Continue) => ran += 1,
            Ok(RequestVerdict::Respond(response)) => {
                local = Some(response);
                break;
            }
            Err(failure) => {
                fail_or_skip(failure, &ctx)?;
                ran += 1;
            }
        }
    }

    // Upstream, unless a filter answered.
    let request_head = if route.needs.response_phase {
        Some(clone_parts(&parts))
    } else {
        None
    };
    let (mut response_parts, mut response_body) = match local {
        Some(response) => {
            let (parts, bytes) = response.into_parts();
            (parts, ResponseBody::Buffered(bytes))
        }
        None => {
            let body = match (buffered, streaming.take()) {
                (Some(bytes), _) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    Either::Right(Full::new(bytes))
                }
                (None, Some(incoming)) => Either::Left(incoming),
                (None, None) => Either::Right(Full::new(Bytes::new())),
            };
            let (parts, body) = forward(&route, parts, body).await?;
            (parts, ResponseBody::Streaming(body))
        }
    };

    // Response phase, in reverse over the filters that let the request through: each one's
    // response header edits (asked for in its request phase), then its `on-response`.
    let mut edits = std::mem::take(&mut ctx.response_edits);
    let needs_body = (0..ran).any(|i| {
        let needs = route.chain[i].needs();
        needs.response_phase && needs.response_body
    });
    if request_head.is_some() && needs_body {
        response_body =
            ResponseBody::Buffered(response_body.buffer(route.max_body_bytes, &route).await?);
    }
    for i in (0..ran).rev() {
        while let Some((_, edit)) = edits.pop_if(|(position, _)| *position == i) {
            edit.apply(&mut response_parts.headers);
        }
        let filter = &route.chain[i];
        let Some(request_head) = request_head
            .as_ref()
            .filter(|_| filter.needs().response_phase)
        else {
            continue;
        };
        let mut body = match (&response_body, filter.needs().response_body) {
            (ResponseBody::Buffered(bytes), true) => Some(bytes.clone()),
            _ => None,
        };
        let verdict = filter
            .on_response(
                request_head,
                &mut response_parts,
                &mut body,
                &ctx,
                &mut slots[i],
            )
            .await;
        match verdict {
            Ok(ResponseVerdict::Continue) => {
                if let Some(bytes) = body {
                    response_body = ResponseBody::Buffered(bytes);
                }
            }
            Ok(ResponseVerdict::Replace(replacement)) => {
                let (parts, bytes) = replacement.into_parts();
                response_parts = parts;
                response_body = ResponseBody::Buffered(bytes);
            }
            Err(failure) => fail_or_skip(failure, &ctx)?,
        }
    }

    let body = match response_body {
        ResponseBody::Streaming(incoming) => Either::Left(incoming),
        ResponseBody::Buffered(bytes) => {
            response_parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Either::Right(Full::new(bytes))
        }
    };
    Ok(Response::from_parts(response_parts, body))
}

/// A failed filter: log it, then skip (`on_error = "allow"`) or fail the request.
fn fail_or_skip(failure: FilterFailure, ctx: &RequestContext) -> Result<(), GatewayError> {
    tracing::warn!(
        plugin = %failure.plugin,
        route = %ctx.route,
        request_id = %ctx.request_id,
        violation = failure.label,
        on_error = ?failure.on_error,
        "plugin failed: {}",
        failure.detail
    );
    match failure.on_error {
        crate::config::OnError::Allow => Ok(()),
        crate::config::OnError::Deny => Err(GatewayError::new(
            ErrorKind::PluginFailed,
            Source::Plugin(failure.plugin.to_string()),
            format!("plugin `{}` failed ({})", failure.plugin, failure.label),
        )
        .with_status(failure.status)),
    }
}

/// Send the request to the route's upstream and take the response head, without its
/// hop-by-hop headers.
async fn forward(
    route: &Route,
    mut parts: request::Parts,
    body: Body,
) -> Result<(response::Parts, Incoming), GatewayError> {
    let upstream = route.upstream.as_ref().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::UpstreamUnreachable,
            Source::Internal,
            format!(
                "route `{}` has no upstream and no plugin answered",
                route.name
            ),
        )
    })?;
    prepare_upstream_request(route, &mut parts);
    let response = upstream.send(Request::from_parts(parts, body)).await?;
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Ok((parts, body))
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

async fn read_request_body(
    parts: &request::Parts,
    body: Incoming,
    cap: usize,
) -> Result<Bytes, GatewayError> {
    let too_large = || {
        GatewayError::new(
            ErrorKind::RequestBodyTooLarge,
            Source::Downstream,
            format!("request body exceeds the route's limit of {cap} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(GatewayError::new(
            ErrorKind::BadRequest,
            Source::Downstream,
            format!("cannot read request body: {e}"),
        )),
    }
}

/// A response body on its way back: still streaming from the upstream, or in memory.
enum ResponseBody {
    Streaming(Incoming),
    Buffered(Bytes),
}

impl ResponseBody {
    async fn buffer(self, cap: usize, route: &Route) -> Result<Bytes, GatewayError> {
        let incoming = match self {
            ResponseBody::Buffered(bytes) => return Ok(bytes),
            ResponseBody::Streaming(incoming) => incoming,
        };
        let source = Source::Upstream(
            route
                .upstream
                .as_ref()
                .map(|u| u.name().to_string())
                .unwrap_or_default(),
        );
        match Limited::new(incoming, cap).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(GatewayError::new(
                ErrorKind::UpstreamBadResponse,
                source,
                format!("response body exceeds the route's limit of {cap} bytes"),
            )),
            Err(e) => Err(GatewayError::new(
                ErrorKind::UpstreamBadResponse,
                source,
                format!("cannot read response body: {e}"),
            )),
        }
    }
}

/// Build a local response (used by filters).
pub fn local_response(status: StatusCode, headers: http::HeaderMap, body: Bytes) -> LocalResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
