//! What one request did, gathered on its way through the phases and written out once at its
//! end: its metrics and its access log line ([`Record::finish`]).
//!
//! A request is recorded only when someone looks ([`Observe::begin`]: metrics are on or the
//! access log wants it); otherwise the phases skip their clock reads and the record stays
//! empty.

use super::route::Route;
use super::trace::{TraceContext, TraceMode};
use crate::telemetry::access_log::{AccessLog, Entry};
use crate::telemetry::metrics::{self, RouteSeries};
use http::{Method, Uri};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How requests are observed, per config.
pub struct Observe {
    /// The access log, when `[access_log]` writes one.
    pub access_log: Option<Arc<AccessLog>>,
    /// Log query strings.
    pub log_query: bool,
    /// What happens to trace context.
    pub trace: TraceMode,
    /// The series of requests no route matched (`route="-"`).
    pub unrouted: RouteSeries,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            access_log: None,
            log_query: false,
            trace: TraceMode::default(),
            unrouted: RouteSeries::new(Arc::from("-")),
        }
    }
}

impl Observe {
    /// A record for a request whose head was just read: recording (clock started) when
    /// metrics are on or the access log wants this request, empty otherwise.
    pub fn begin(&self) -> Record {
        let log = self.access_log.as_ref().is_some_and(|log| log.wants());
        Record {
            started: (log || metrics::enabled()).then(Instant::now),
            log,
            ..Record::default()
        }
    }
}

/// One request's facts, filled in by the phases.
#[derive(Default)]
pub struct Record {
    /// Set when the request is recorded: when its head was read.
    pub started: Option<Instant>,
    /// Whether it goes to the access log (sampling decided).
    log: bool,
    /// The route it matched.
    pub route: Option<Arc<Route>>,
    /// Its trace.
    pub trace: Option<TraceContext>,
    /// The client as resolved behind trusted proxies, when it differs from the peer.
    pub client: Option<String>,
    /// The upstream target that answered.
    pub target: Option<Arc<str>>,
    /// Waiting on upstreams for response heads.
    pub upstream_time: Option<Duration>,
    /// In plugin calls.
    pub plugin_time: Option<Duration>,
    /// The plugin that answered the request itself.
    pub answered_by: Option<Arc<str>>,
    /// Context value `consumer` at the end of the chains.
    pub consumer: Option<String>,
    /// The gateway's error code, when it answered an error itself.
    pub error: Option<&'static str>,
}

impl Record {
    /// Whether the phases should note their facts.
    pub fn on(&self) -> bool {
        self.started.is_some()
    }

    /// Add `took` to the time spent in plugins.
    pub fn add_plugin_time(&mut self, took: Duration) {
        *self.plugin_time.get_or_insert(Duration::ZERO) += took;
    }

    /// Add `took` to the time spent waiting on upstreams.
    pub fn add_upstream_time(&mut self, took: Duration) {
        *self.upstream_time.get_or_insert(Duration::ZERO) += took;
    }
}

/// The request as it arrived, for the record.
pub struct Arrived<'a> {
    /// Method.
    pub method: &'a Method,
    /// Target as sent.
    pub uri: &'a Uri,
    /// Declared body length.
    pub bytes_in: Option<u64>,
    /// The peer (`ip:port`).
    pub peer: &'a str,
    /// Request id.
    pub request_id: &'a str,
}

impl Record {
    /// Count the request and log it: status `status`, a body of `bytes_out` bytes if known.
    pub fn finish(
        self,
        observe: &Observe,
        arrived: &Arrived<'_>,
        status: u16,
        bytes_out: Option<u64>,
    ) {
        let Some(started) = self.started else {
            return;
        };
        let took = started.elapsed();
        if metrics::enabled() {
            let series = self.route.as_ref().map_or(&observe.unrouted, |r| &r.series);
            series.count(
                arrived.method,
                status,
                took,
                arrived.bytes_in.unwrap_or(0),
                bytes_out.unwrap_or(0),
            );
            if let Some(code) = self.error {
                metrics::metrics()
                    .errors
                    .with_label_values(&[&*series.route, code])
                    .inc();
            }
        }
        let Some(log) = observe.access_log.as_ref().filter(|_| self.log) else {
            return;
        };
        let millis = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        log.log(Entry {
            time: String::new(),
            at: std::time::SystemTime::now(),
            request_id: arrived.request_id.to_string(),
            trace_id: self.trace.map(|t| t.trace_id_hex()),
            route: self.route.as_ref().map(|r| r.name.to_string()),
            method: arrived.method.to_string(),
            path: arrived.uri.path().to_string(),
            query: observe
                .log_query
                .then(|| arrived.uri.query().map(str::to_string))
                .flatten(),
            status,
            bytes_in: arrived.bytes_in,
            bytes_out,
            duration_ms: millis(took),
            upstream_ms: self.upstream_time.map(millis),
            plugin_ms: self.plugin_time.map(millis),
            client: self.client.unwrap_or_else(|| arrived.peer.to_string()),
            consumer: self.consumer,
            upstream: self.target.map(|t| t.to_string()),
            error: self.error,
            answered_by: self.answered_by.map(|p| p.to_string()),
        });
    }
}
