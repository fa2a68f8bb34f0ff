//! Request bodies are bounded on every route ([`bounded_request`]): a declared length past
//! the route's `max_body_bytes` is refused at once (413, the upstream never called), a
//! streamed one is counted as it passes and cut off past the limit (413 while the response
//! has not started), and a pause longer than `request_body_timeout_ms` ends it (408).
//!
//! Body buffering for filters that asked for a body: a request body is read whole within the
//! same bounds (a client's malformed body is its own 400), an upstream's response body up to
//! `max_body_bytes` (past it: 502). Everything else streams.

use super::route::Route;
use crate::body::{Body, BodyFault, Streamed};
use crate::error::{Culprit, ErrorKind, GatewayError};
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// The client's body for `route`, bounded by its `max_body_bytes` and by `idle` between
/// frames; a declared `Content-Length` past the limit is refused before anything is sent.
pub fn bounded_request(
    route: &Route,
    body: Incoming,
    idle: Duration,
) -> Result<Body, GatewayError> {
    let cap = route.max_body_bytes as u64;
    // hyper gives a body with a Content-Length exactly that size hint.
    if hyper::body::Body::size_hint(&body).lower() > cap {
        return Err(too_large(cap));
    }
    Ok(Either::Left(Streamed::new(body, Some(cap), Some(idle))))
}

fn too_large(cap: u64) -> GatewayError {
    BodyFault::TooLarge(cap).request_error()
}

/// A request body on its way to the upstream.
pub enum RequestBody {
    /// Untouched, as the client sends it.
    Streaming(Body),
    /// Read whole, because a filter asked for it.
    Buffered(Bytes),
}

impl RequestBody {
    /// Buffer `body` if a filter on `route` asked for the request body, else stream it.
    pub async fn read(route: &Route, body: Body) -> Result<Self, GatewayError> {
        if !route.needs.request_body {
            return Ok(RequestBody::Streaming(body));
        }
        Self::read_all(body, route.max_body_bytes).await
    }

    /// Read `body` whole, up to `cap` bytes.
    async fn read_all(body: Body, cap: usize) -> Result<Self, GatewayError> {
        // `bounded_request` refused a declared length past the cap and counts the rest.
        match Limited::new(body, cap).collect().await {
            Ok(collected) => Ok(RequestBody::Buffered(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(cap as u64)),
            Err(e) => Err(match BodyFault::find(&*e) {
                Some(fault) => fault.request_error(),
                None => GatewayError::new(
                    ErrorKind::BadRequest,
                    Culprit::Downstream,
                    format!("cannot read request body: {e}"),
                ),
            }),
        }
    }

    /// The buffered bytes, if buffered.
    pub fn buffered(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(bytes) => Some(bytes),
            RequestBody::Streaming(_) => None,
        }
    }

    /// The body to send; a buffered one has its length in `headers`.
    pub fn into_upstream(self, headers: &mut http::HeaderMap) -> Body {
        match self {
            RequestBody::Streaming(body) => body,
            RequestBody::Buffered(bytes) => sized(bytes, headers),
        }
    }
}

/// Largest request body held in memory so that a retry can send it again.
pub const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// `body` read whole when its declared length is at most `limit` (a retry or a mirror copy
/// sends it again); a streamed body, chunked or larger, is left streaming.
pub async fn replayable(body: Body, limit: u64) -> Result<Body, GatewayError> {
    let Either::Left(streamed) = body else {
        return Ok(body);
    };
    let hint = hyper::body::Body::size_hint(&streamed);
    if !hint.exact().is_some_and(|n| n > 0 && n <= limit) {
        return Ok(Either::Left(streamed));
    }
    match RequestBody::read_all(Either::Left(streamed), limit as usize).await? {
        RequestBody::Buffered(bytes) => Ok(Either::Right(http_body_util::Full::new(bytes))),
        RequestBody::Streaming(body) => Ok(body),
    }
}

/// The bytes of a body in memory (an empty streamed one is empty); none for one still
/// streaming.
pub fn copy_of(body: &Body) -> Option<Bytes> {
    match body {
        Either::Right(full) => {
            let mut full = full.clone();
            let frame = futures::FutureExt::now_or_never(full.frame());
            Some(match frame {
                Some(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
                _ => Bytes::new(),
            })
        }
        Either::Left(streamed) if hyper::body::Body::is_end_stream(streamed) => Some(Bytes::new()),
        Either::Left(_) => None,
    }
}

/// A response body on its way back: still streaming from the upstream, or in memory.
pub enum ResponseBody {
    /// As the upstream sends it.
    Streaming(Body),
    /// Read whole (a filter asked for it, or a filter produced it).
    Buffered(Bytes),
}

impl ResponseBody {
    /// Read the body whole, up to `route`'s cap.
    pub async fn buffer(self, route: &Route) -> Result<Bytes, GatewayError> {
        let body = match self {
            ResponseBody::Buffered(bytes) => return Ok(bytes),
            ResponseBody::Streaming(body) => body,
        };
        let cap = route.max_body_bytes;
        let source = Culprit::Upstream(
            route
                .upstream
                .as_ref()
                .map(|u| u.name().to_string())
                .unwrap_or_default(),
        );
        match Limited::new(body, cap).collect().await {
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

    /// The body to send; a buffered one has its length in `headers`.
    pub fn into_client(self, headers: &mut http::HeaderMap) -> Body {
        match self {
            ResponseBody::Streaming(body) => body,
            ResponseBody::Buffered(bytes) => sized(bytes, headers),
        }
    }
}

/// A body in memory, its length declared in `headers` (whatever they said before).
fn sized(bytes: Bytes, headers: &mut http::HeaderMap) -> Body {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Either::Right(Full::new(bytes))
}
