//! The types the pipeline runs on: a compiled [`Route`] and the [`Runtime`] snapshot holding
//! the route table. They live with the pipeline, not with the compiler that builds them, so
//! the pipeline depends on nothing above it (`crate::compile` builds them from a config).

use super::filter::{Filter, FilterNeeds};
use super::record::Observe;
use crate::edge::Edge;
use crate::router::Router;
use crate::telemetry::metrics::{PluginSeries, RouteSeries};
use crate::upstream::{Mirror, RetryPolicy, Split, Upstream};
use std::sync::Arc;
use std::time::Duration;

/// A compiled route.
pub struct Route {
    /// Route name.
    pub name: Arc<str>,
    /// Where requests go, unless a filter answers (with a split, its first upstream).
    pub upstream: Option<Arc<Upstream>>,
    /// Several upstreams by weight, in place of `upstream`.
    pub split: Option<Split>,
    /// Copies of requests to a shadow upstream.
    pub mirror: Option<Mirror>,
    /// Over the upstream's connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Over the upstream's response-head timeout.
    pub response_timeout: Option<Duration>,
    /// Global filters, then the route's own.
    pub chain: Vec<Arc<dyn Filter>>,
    /// Prefix removed before proxying.
    pub strip_prefix: Option<String>,
    /// Forward the client's `Host`.
    pub preserve_host: bool,
    /// Let WebSocket upgrades through, tunnels closed after this long idle.
    pub websocket: Option<Duration>,
    /// Request body cap (streamed or buffered), and response body buffering cap.
    pub max_body_bytes: usize,
    /// From routing to the response head.
    pub timeout: Duration,
    /// Which failed upstream attempts are tried again.
    pub retry: Option<Arc<RetryPolicy>>,
    /// Union of the chain's needs.
    pub needs: FilterNeeds,
    /// Its request metrics.
    pub series: RouteSeries,
    /// Each chain entry's call metrics, in chain order.
    pub plugin_series: Vec<PluginSeries>,
}

impl Route {
    /// A route that forwards to `upstream` through `chain`, buffering bodies up to
    /// `max_body_bytes` where a filter asks for them.
    pub fn new(
        name: &str,
        upstream: Option<Arc<Upstream>>,
        chain: Vec<Arc<dyn Filter>>,
        max_body_bytes: usize,
    ) -> Self {
        let needs = chain.iter().fold(FilterNeeds::default(), |acc, f| {
            let n = f.needs();
            FilterNeeds {
                request_body: acc.request_body || n.request_body,
                response_body: acc.response_body || (n.response_body && n.response_phase),
                response_phase: acc.response_phase || n.response_phase,
            }
        });
        let name: Arc<str> = Arc::from(name);
        let plugin_series = chain
            .iter()
            .map(|filter| PluginSeries::new(filter.name(), &name, filter.needs().response_phase))
            .collect();
        Route {
            series: RouteSeries::new(name.clone()),
            plugin_series,
            name,
            upstream,
            split: None,
            mirror: None,
            connect_timeout: None,
            response_timeout: None,
            chain,
            strip_prefix: None,
            preserve_host: false,
            websocket: None,
            max_body_bytes,
            timeout: Duration::from_millis(crate::config::defaults::route_timeout_ms()),
            retry: None,
            needs,
        }
    }
}

impl Route {
    /// Every upstream the route sends to: its one, or its split's, then its mirror's.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        let split = self.split.iter().flat_map(Split::upstreams);
        let single = match &self.split {
            Some(_) => None,
            None => self.upstream.as_ref(),
        };
        single
            .into_iter()
            .chain(split)
            .chain(self.mirror.as_ref().map(Mirror::upstream))
    }
}

/// Everything a request needs, compiled from one config.
pub struct Runtime {
    /// Route table.
    pub router: Router<Arc<Route>>,
    /// How requests are checked before routing, and who their clients are.
    pub edge: Edge,
    /// Metrics, access log and trace context.
    pub observe: Observe,
}
