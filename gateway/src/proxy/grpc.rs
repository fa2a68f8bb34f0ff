//! gRPC clients get gRPC errors. A call the gateway itself refuses (no route, upstream down,
//! a plugin's 401, a timeout) would reach a gRPC client as an HTTP error it can only guess at,
//! so — as Envoy does — such a response becomes a *trailers-only* gRPC response: HTTP 200,
//! `content-type: application/grpc`, and `grpc-status` / `grpc-message` in the one header
//! block, which ends the stream. Plugins keep seeing the HTTP view (they answered 401, the
//! client sees `UNAUTHENTICATED`); the response body's `error.message`, when it has one,
//! becomes `grpc-message`.
//!
//! | HTTP | gRPC |
//! |---|---|
//! | 400 | 13 `INTERNAL` |
//! | 401 | 16 `UNAUTHENTICATED` |
//! | 403 | 7 `PERMISSION_DENIED` |
//! | 404 | 12 `UNIMPLEMENTED` |
//! | 408, 504 | 4 `DEADLINE_EXCEEDED` |
//! | 413, 429 | 8 `RESOURCE_EXHAUSTED` |
//! | 502, 503 | 14 `UNAVAILABLE` |
//! | other 4xx, 5xx | 2 `UNKNOWN` |
//!
//! This follows gRPC's own HTTP-to-status table, except that the gateway's timeouts say
//! `DEADLINE_EXCEEDED` and its size and rate limits `RESOURCE_EXHAUSTED`, which is what
//! they are. Responses from the upstream that are already gRPC pass untouched.

use super::Body;
use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};

/// Whether a request is a gRPC call (`content-type: application/grpc[+proto|…]`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| is_grpc_type(value.as_bytes()))
}

fn is_grpc_type(value: &[u8]) -> bool {
    value.len() >= 16
        && value[..16].eq_ignore_ascii_case(b"application/grpc")
        && matches!(value.get(16), None | Some(b'+' | b';'))
}

/// The gRPC status for an HTTP error status.
pub fn status_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        408 | 504 => 4,
        413 | 429 => 8,
        502 | 503 => 14,
        _ => 2,
    }
}

/// `response` to a gRPC call as gRPC: unchanged if it is gRPC already or no error, else
/// trailers-only with the mapped status.
pub fn answer(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let grpc_already = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| is_grpc_type(value.as_bytes()));
    if grpc_already || parts.status.as_u16() < 400 {
        return Response::from_parts(parts, body);
    }
    let message = match body {
        // A gateway or plugin answer is whole already: read at once, never awaited.
        Either::Right(full) => full
            .collect()
            .now_or_never()
            .and_then(Result::ok)
            .and_then(|collected| error_message(&collected.to_bytes())),
        Either::Left(_) => None,
    };
    let message = message.unwrap_or_else(|| {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    });
    let code = status_for(parts.status);
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    parts
        .headers
        .insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(value) = HeaderValue::try_from(percent_encode(&message)) {
        parts.headers.insert("grpc-message", value);
    }
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

/// `error.message` of a JSON error body (the gateway's and the SDK's `Reply::error` shape).
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["error"]["message"].as_str().map(str::to_string)
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` as is, everything else `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;x=1",
        ] {
            assert!(is_grpc_type(yes.as_bytes()), "{yes}");
        }
        for no in ["application/grpcx", "application/json", "application/grp"] {
            assert!(!is_grpc_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn an_error_becomes_trailers_only_with_its_message() {
        let body =
            r#"{"error":{"status":401,"code":"unauthorized","message":"missing API key ✗"}}"#;
        let response = Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .header("www-authenticate", "ApiKey")
            .body(Either::Right(Full::new(Bytes::from(body))))
            .unwrap();
        let answered = answer(response);
        assert_eq!(answered.status(), 200);
        let headers = answered.headers();
        assert_eq!(headers["grpc-status"], "16");
        assert_eq!(headers["grpc-message"], "missing API key %E2%9C%97");
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["www-authenticate"], "ApiKey");
        assert!(hyper::body::Body::is_end_stream(answered.body()));
    }

    #[test]
    fn grpc_and_successful_responses_pass() {
        let ok = Response::new(Either::Right(Full::new(Bytes::from("x"))));
        assert_eq!(answer(ok).status(), 200);
        let grpc = Response::builder()
            .status(503)
            .header("content-type", "application/grpc")
            .body(Either::Right(Full::new(Bytes::new())))
            .unwrap();
        assert_eq!(answer(grpc).status(), 503);
    }
}
