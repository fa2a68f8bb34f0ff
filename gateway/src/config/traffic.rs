//! Where a route's traffic goes besides its one upstream, as written in `[[routes]]`: a
//! weighted split over several upstreams (canary releases) with overrides and stickiness,
//! and request mirroring to a shadow upstream.

use serde::Deserialize;

/// One entry of a route's `upstreams`: `{ upstream = "v2", weight = 5 }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SplitArmConfig {
    /// An upstream's name.
    pub upstream: String,
    /// Share of the route's requests relative to the other entries (0 to 10000; 0: only by
    /// an override).
    pub weight: u32,
}

/// `split = { … }`: how a request is placed among a route's `upstreams`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// A request header whose value names one of the route's upstreams sends the request
    /// there (force the canary for testers).
    #[serde(default)]
    pub override_header: Option<String>,
    /// The same by a cookie.
    #[serde(default)]
    pub override_cookie: Option<String>,
    /// Keep a client on one side by a hash of this key (`context:consumer`, `client_ip`,
    /// `header:NAME`, `cookie:NAME`); a request without it is placed at random by weight.
    #[serde(default)]
    pub sticky: Option<String>,
}

/// `mirror = { … }`: copies of requests sent to a shadow upstream, answers discarded.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The shadow upstream's name.
    pub upstream: String,
    /// Share of requests copied (0 < share ≤ 1).
    #[serde(default = "whole")]
    pub share: f64,
    /// Copies in flight at once; a request past it is not copied.
    #[serde(default = "defaults::mirror_max_in_flight")]
    pub max_in_flight: usize,
    /// Largest request body copied (read whole before the request goes on); a request with a
    /// larger or streamed (chunked) body is not copied.
    #[serde(default = "defaults::mirror_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn whole() -> f64 {
    1.0
}

/// Defaults of the traffic keys.
pub mod defaults {
    /// `mirror.max_in_flight`.
    pub fn mirror_max_in_flight() -> usize {
        64
    }

    /// `mirror.max_body_bytes`.
    pub fn mirror_max_body_bytes() -> usize {
        64 * 1024
    }
}
