//! The edge: what the gateway checks and decides about a client, its connection and its
//! request before routing, so that routing, plugins and the upstream all see one checked
//! request and the real client.
//!
//! - [`admission`]: caps on open connections, in total and per client IP.
//! - [`proxy_protocol`]: the PROXY v2 header a trusted load balancer sends first.
//! - [`request`]: strict reading of the request head (`Host`, framing, limits, `Via` loops,
//!   header names with `_`) and [`path`] normalization.
//! - [`client_ip`] with [`trusted`]: the real client behind trusted proxies.

pub mod admission;
pub mod client_ip;
pub mod path;
pub mod proxy_protocol;
pub mod redirect;
pub mod request;
pub mod trusted;

use std::sync::Arc;

/// What the request path needs of the edge config, per runtime snapshot.
#[derive(Debug, Clone)]
pub struct Edge {
    /// How request heads are checked.
    pub request: request::RequestPolicy,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted: Arc<trusted::TrustedProxies>,
    /// The `Via` entry added to every HTTP/1.1 request.
    pub via_http11: http::HeaderValue,
    /// The `Via` entry added to every HTTP/2 request.
    pub via_http2: http::HeaderValue,
    /// Longest pause between two frames of a request body.
    pub body_idle: std::time::Duration,
}
