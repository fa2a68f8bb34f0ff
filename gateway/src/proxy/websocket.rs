//! WebSocket upgrades through a route that allows them (`websocket = true`): the handshake is
//! an ordinary request to the pipeline — routing, the request chain (so auth, ACL and rate
//! limits apply to it), the upstream — with its `Connection: upgrade` and `Upgrade:
//! websocket` put back after hop-by-hop hygiene. When the upstream answers 101, the response
//! carries a [`Tunnel`] extension, and the connection layer joins the two upgraded
//! connections (`crate::server`). A route without `websocket` forwards the request without
//! its upgrade headers, as any hop-by-hop header.

use http::{HeaderMap, HeaderValue, Method, Version, header, request};
use std::time::Duration;

/// Set on a 101 response whose connection becomes a tunnel: how long it may stay silent.
#[derive(Debug, Clone, Copy)]
pub struct Tunnel {
    /// Close after this long without a byte either way.
    pub idle_timeout: Duration,
}

/// Whether the request asks for a WebSocket upgrade (RFC 6455 §4.1: an HTTP/1.1 GET with
/// `Upgrade: websocket` and `Connection: upgrade`).
pub fn is_upgrade(parts: &request::Parts) -> bool {
    parts.method == Method::GET
        && parts.version == Version::HTTP_11
        && has_token(&parts.headers, header::UPGRADE, b"websocket")
        && has_token(&parts.headers, header::CONNECTION, b"upgrade")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// Put the upgrade back on a request (or 101 response) whose hop-by-hop headers are gone.
pub fn restore_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}
