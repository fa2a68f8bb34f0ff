//! Errors the gateway answers clients with, and the one place they become HTTP responses.
//!
//! Every failure on the request path is a [`GatewayError`]: it records *what* went wrong
//! ([`ErrorKind`]), *who* failed ([`Culprit`]: the client, the upstream, a named plugin, or the
//! gateway itself) and whether a retry could help. [`GatewayError::into_response`] is the only
//! function that turns an error into a client response, so every gateway-generated error has the
//! same JSON shape:
//!
//! ```json
//! {"error":{"status":502,"code":"upstream_unreachable","message":"…","request_id":"…"}}
//! ```
//!
//! An error keeps what caused it ([`std::error::Error::source`]: the hyper or I/O error
//! underneath), so logs can show the whole chain; the client sees only the message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use std::fmt;
use std::sync::Arc;

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matches the request.
    NoRoute,
    /// The request itself is malformed (bad URI, bad header).
    BadRequest,
    /// The request's framing is ambiguous (`Content-Length` with `Transfer-Encoding`, or two
    /// lengths): refused and the connection closed, since its next bytes cannot be trusted.
    AmbiguousFraming,
    /// The request path cannot be put in one canonical spelling (see `edge::path`).
    BadPath,
    /// The request target is longer than `server.http.max_uri_bytes`.
    UriTooLong,
    /// The request headers are more or larger than `server.http` allows.
    HeadersTooLarge,
    /// A transfer coding the gateway does not implement.
    UnsupportedTransferCoding,
    /// The request already passed this gateway `server.max_loops` times.
    LoopDetected,
    /// The request body is larger than the route's `max_body_bytes`.
    RequestBodyTooLarge,
    /// The client paused sending its body longer than `server.request_body_timeout_ms`.
    RequestBodyTimeout,
    /// The route's `timeout_ms` passed before the response head.
    RouteTimeout,
    /// No upstream target could be connected to.
    UpstreamUnreachable,
    /// The TLS handshake with the upstream failed (its certificate did not verify, or no
    /// common protocol).
    UpstreamTls,
    /// The upstream did not answer within the response timeout.
    UpstreamTimeout,
    /// The upstream answered with something unusable (protocol error, body over the cap).
    UpstreamBadResponse,
    /// The upstream's concurrency breaker or every target's connection cap is full.
    UpstreamOverloaded,
    /// The upstream's error-rate circuit breaker is open.
    CircuitOpen,
    /// Every target is unhealthy or ejected, and the upstream says `no_healthy = "fail"`.
    NoHealthyUpstream,
    /// A plugin failed (trap, timeout, fuel, memory, output cap) and its policy is to deny.
    PluginFailed,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with (plugins may override, see `with_status`).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest | ErrorKind::AmbiguousFraming | ErrorKind::BadPath => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::LoopDetected => StatusCode::LOOP_DETECTED,
            ErrorKind::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RouteTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamUnreachable
            | ErrorKind::UpstreamTls
            | ErrorKind::UpstreamBadResponse => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamOverloaded
            | ErrorKind::CircuitOpen
            | ErrorKind::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::PluginFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code used in the JSON body and in logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::AmbiguousFraming => "ambiguous_framing",
            ErrorKind::BadPath => "bad_path",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::HeadersTooLarge => "request_headers_too_large",
            ErrorKind::UnsupportedTransferCoding => "unsupported_transfer_coding",
            ErrorKind::LoopDetected => "loop_detected",
            ErrorKind::RequestBodyTooLarge => "request_body_too_large",
            ErrorKind::RequestBodyTimeout => "request_body_timeout",
            ErrorKind::RouteTimeout => "route_timeout",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamTls => "upstream_tls",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamBadResponse => "upstream_bad_response",
            ErrorKind::UpstreamOverloaded => "upstream_overloaded",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::PluginFailed => "plugin_failed",
        }
    }
}

/// Who caused an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// The client (downstream).
    Downstream,
    /// The upstream named here.
    Upstream(String),
    /// The plugin named here.
    Plugin(String),
    /// The gateway itself.
    Internal,
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Culprit::Downstream => f.write_str("downstream"),
            Culprit::Upstream(name) => write!(f, "upstream {name}"),
            Culprit::Plugin(name) => write!(f, "plugin {name}"),
            Culprit::Internal => f.write_str("internal"),
        }
    }
}

/// An error on the request path, answered to the client by [`GatewayError::into_response`].
#[derive(Debug, Clone)]
pub struct GatewayError {
    kind: ErrorKind,
    culprit: Culprit,
    message: String,
    status: StatusCode,
    retryable: bool,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl GatewayError {
    /// A new error of `kind` caused by `culprit`, with a human-readable message.
    pub fn new(kind: ErrorKind, culprit: Culprit, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            culprit,
            message: message.into(),
            status: kind.status(),
            retryable: false,
            cause: None,
        }
    }

    /// Keep the error underneath (reported by [`std::error::Error::source`]).
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// Answer with `status` instead of the kind's default (a plugin's `error_status`).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Mark whether trying another upstream target could succeed.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Who caused it.
    pub fn culprit(&self) -> &Culprit {
        &self.culprit
    }

    /// Whether another attempt (e.g. another target) could succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The status the client will see.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether an HTTP/1.1 connection must close after this answer: the rest of the request
    /// cannot be read (or trusted) as the start of the next one.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::AmbiguousFraming
                | ErrorKind::RequestBodyTooLarge
                | ErrorKind::RequestBodyTimeout
        )
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The one place an error becomes a client response.
    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": {
                "status": self.status.as_u16(),
                "code": self.kind.code(),
                "message": self.message,
                "request_id": request_id,
            }
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", value);
        }
        response
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.code(),
            self.culprit,
            self.message
        )
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_response_is_json_with_code_and_request_id() {
        let err = GatewayError::new(
            ErrorKind::UpstreamTimeout,
            Culprit::Upstream("users".into()),
            "no response within 50 ms",
        );
        let response = err.into_response("abc123");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["x-request-id"], "abc123");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "upstream_timeout");
        assert_eq!(json["error"]["status"], 504);
        assert_eq!(json["error"]["request_id"], "abc123");
    }

    #[test]
    fn plugin_status_override() {
        let err = GatewayError::new(
            ErrorKind::PluginFailed,
            Culprit::Plugin("jwt".into()),
            "trap",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.kind().code(), "plugin_failed");
    }

    #[test]
    fn the_cause_is_kept_as_the_error_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = GatewayError::new(
            ErrorKind::UpstreamBadResponse,
            Culprit::Upstream("users".into()),
            "users failed",
        )
        .with_cause(io);
        assert_eq!(err.culprit(), &Culprit::Upstream("users".into()));
        let cause = err.source().expect("the cause is kept");
        assert_eq!(cause.to_string(), "reset by peer");
        assert!(
            GatewayError::new(ErrorKind::NoRoute, Culprit::Downstream, "x")
                .source()
                .is_none()
        );
    }
}
