//! A route's weighted split over several upstreams (`upstreams = [{ upstream, weight }]`),
//! the way a canary goes 5 % → 25 % → 100 %.
//!
//! Each request lands on a point in `0..total weight`, and the upstream whose share covers
//! that point takes it. Without stickiness the point is random; with `sticky` it is the hash
//! of the request's key (its consumer, client IP, a header or a cookie), so one client stays
//! on one side. Shares are laid out in the order written, so raising the last entry's weight
//! (the canary, listed last) only moves clients onto it: nobody who was on the canary goes
//! back. An override header or cookie naming one of the route's upstreams wins over both,
//! and only the route's own upstreams can be named.

use super::{Affinity, HashOn, Upstream, cookie};
use crate::telemetry::metrics;
use http::HeaderName;
use prometheus::IntCounter;
use std::sync::Arc;

/// The compiled split of one route.
pub struct Split {
    /// Each upstream with the end of its share, in the order written.
    arms: Vec<(Arc<Upstream>, u64)>,
    /// Each arm's `gateway_route_split_total` series: by weight, by override.
    counted: Vec<[IntCounter; 2]>,
    total: u64,
    override_header: Option<HeaderName>,
    override_cookie: Option<String>,
    sticky: Option<HashOn>,
}

/// Why a request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Its point fell in the upstream's share.
    Weight = 0,
    /// Its override header or cookie named the upstream.
    Override = 1,
}

impl Split {
    /// Route `route`'s split over `arms` (upstream, weight; the weights sum to more than
    /// zero).
    pub fn new(
        route: &str,
        arms: Vec<(Arc<Upstream>, u32)>,
        override_header: Option<HeaderName>,
        override_cookie: Option<String>,
        sticky: Option<HashOn>,
    ) -> Split {
        let split = &metrics::metrics().route_split;
        let counted = arms
            .iter()
            .map(|(upstream, _)| {
                let name = upstream.name();
                [
                    split.with_label_values(&[route, name, "weight"]),
                    split.with_label_values(&[route, name, "override"]),
                ]
            })
            .collect();
        let mut end = 0u64;
        let arms = arms
            .into_iter()
            .map(|(upstream, weight)| {
                end += u64::from(weight);
                (upstream, end)
            })
            .collect();
        Split {
            arms,
            counted,
            total: end.max(1),
            override_header,
            override_cookie,
            sticky,
        }
    }

    /// The upstreams, in the order written.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.arms.iter().map(|(upstream, _)| upstream)
    }

    /// Where this request goes, and why.
    pub fn choose(
        &self,
        parts: &http::request::Parts,
        affinity: &Affinity<'_>,
    ) -> (&Arc<Upstream>, Placed) {
        let (arm, placed) = match self.overridden(parts) {
            Some(arm) => (arm, Placed::Override),
            None => {
                let point = match self.sticky.as_ref().and_then(|on| on.key(parts, affinity)) {
                    Some(hash) => hash % self.total,
                    None => fastrand::u64(0..self.total),
                };
                let arm = self.arms.iter().position(|(_, end)| point < *end);
                (arm.unwrap_or(self.arms.len() - 1), Placed::Weight)
            }
        };
        if metrics::enabled() {
            self.counted[arm][placed as usize].inc();
        }
        (&self.arms[arm].0, placed)
    }

    /// The index of the route's upstream an override header or cookie names.
    fn overridden(&self, parts: &http::request::Parts) -> Option<usize> {
        let by_header = || {
            let value = parts.headers.get(self.override_header.as_ref()?)?;
            self.named(value.as_bytes())
        };
        let by_cookie = || self.named(cookie(parts, self.override_cookie.as_deref()?)?);
        by_header().or_else(by_cookie)
    }

    fn named(&self, name: &[u8]) -> Option<usize> {
        self.upstreams().position(|u| u.name().as_bytes() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn upstream(name: &str) -> Arc<Upstream> {
        let config: UpstreamConfig =
            toml::from_str("targets = [\"127.0.0.1:9\"]").expect("upstream config");
        Arc::new(
            Upstream::new(
                name,
                &config,
                (1, &Default::default()),
                std::path::Path::new("."),
            )
            .expect("upstream"),
        )
    }

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = http::Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    fn affinity() -> Affinity<'static> {
        Affinity {
            client: [127, 0, 0, 1].into(),
            context: None,
        }
    }

    #[test]
    fn the_split_follows_the_weights() {
        let split = Split::new(
            "r",
            vec![(upstream("stable"), 90), (upstream("canary"), 10)],
            None,
            None,
            None,
        );
        let n = 20_000;
        let canary = (0..n)
            .filter(|_| split.choose(&parts(&[]), &affinity()).0.name() == "canary")
            .count();
        let share = canary as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.01, "canary share {share}");
    }

    #[test]
    fn an_override_names_only_the_routes_upstreams() {
        let split = Split::new(
            "r",
            vec![(upstream("stable"), 100), (upstream("canary"), 0)],
            Some(HeaderName::from_static("x-canary")),
            Some("side".into()),
            None,
        );
        let forced = split.choose(&parts(&[("x-canary", "canary")]), &affinity());
        assert_eq!((forced.0.name(), forced.1), ("canary", Placed::Override));
        let by_cookie = split.choose(&parts(&[("cookie", "a=1; side=canary")]), &affinity());
        assert_eq!(by_cookie.0.name(), "canary");
        let unknown = split.choose(&parts(&[("x-canary", "admin")]), &affinity());
        assert_eq!((unknown.0.name(), unknown.1), ("stable", Placed::Weight));
    }

    #[test]
    fn a_sticky_key_stays_put_and_a_raised_canary_only_gains() {
        let sticky = || Some(HashOn::Header(HeaderName::from_static("x-user")));
        let at = |canary: u32| {
            Split::new(
                "r",
                vec![
                    (upstream("stable"), 100 - canary),
                    (upstream("canary"), canary),
                ],
                None,
                None,
                sticky(),
            )
        };
        let (five, twenty_five) = (at(5), at(25));
        let mut on_canary = 0;
        for user in 0..2000 {
            let request = parts(&[("x-user", &format!("user-{user}"))]);
            let first = five.choose(&request, &affinity()).0.name().to_string();
            assert_eq!(five.choose(&request, &affinity()).0.name(), first);
            if first == "canary" {
                on_canary += 1;
                assert_eq!(twenty_five.choose(&request, &affinity()).0.name(), "canary");
            }
        }
        assert!((50..150).contains(&on_canary), "{on_canary} of 2000 at 5 %");
    }
}
