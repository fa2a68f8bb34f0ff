//! Body buffering for filters that asked for a body: a request body is read whole up to the
//! route's `max_body_bytes` (past it: 413, and a client's malformed body is its own 400), an
//! upstream's response body likewise (past it: 502). Everything else streams.

use super::route::Route;
use crate::body::Body;
use crate::error::{Culprit, ErrorKind, GatewayError};
use bytes::Bytes;
use http::{HeaderValue, header, request};
use http_body_util::{BodyExt, Either, Full, Limited};

/// A request body on its way to the upstream.
pub enum RequestBody {
    /// Untouched, as the client sends it.
    Streaming(Body),
    /// Read whole, because a filter asked for it.
    Buffered(Bytes),
}

impl RequestBody {
    /// Buffer `body` if a filter on `route` asked for the request body, else stream it.
    pub async fn read(
        route: &Route,
        parts: &request::Parts,
        body: Body,
    ) -> Result<Self, GatewayError> {
        if !route.needs.request_body {
            return Ok(RequestBody::Streaming(body));
        }
        let cap = route.max_body_bytes;
        let too_large = || {
            GatewayError::new(
                ErrorKind::RequestBodyTooLarge,
                Culprit::Downstream,
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
            Ok(collected) => Ok(RequestBody::Buffered(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(GatewayError::new(
                ErrorKind::BadRequest,
                Culprit::Downstream,
                format!("cannot read request body: {e}"),
            )),
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
