//! What one request did, gathered on its way through the phases and written out once at its
//! end: its metrics and its access log line ([`Record::finish`]).
//!
//! A request is recorded only when someone looks ([`Observe::begin`]: metrics are on, the
//! access log wants it, or its trace is sampled for export); otherwise the phases skip their
//! clock reads and the record stays empty.

use super::route::Route;
use super::trace::{TraceContext, TraceMode, new_span_id};
use crate::telemetry::access_log::{AccessLog, Entry};
use crate::telemetry::metrics::{self, RouteSeries};
use crate::telemetry::spans::{Span, SpanExport};
use http::{HeaderMap, Method, Uri};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How requests are observed, per config.
pub struct Observe {
    /// The access log, when `[access_log]` writes one.
    pub access_log: Option<Arc<AccessLog>>,
    /// Log query strings.
    pub log_query: bool,
    /// What happens to trace context.
    pub trace: TraceMode,
    /// Share of the traces the gateway starts that are sampled.
    pub sample: f64,
    /// Span export, when `[tracing] otlp_endpoint` is set.
    pub spans: Option<Arc<SpanExport>>,
    /// The series of requests no route matched (`route="-"`).
    pub unrouted: RouteSeries,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            access_log: None,
            log_query: false,
            trace: TraceMode::default(),
            sample: 1.0,
            spans: None,
            unrouted: RouteSeries::new(Arc::from("-")),
        }
    }
}

impl Observe {
    /// A record for a request whose head (`headers`) was just read, with its trace:
    /// recording (clock started) when metrics are on, the access log wants this request or
    /// its spans are exported; empty otherwise.
    pub fn begin(&self, headers: &HeaderMap) -> Record {
        let log = self.access_log.as_ref().is_some_and(|log| log.wants());
        let trace = TraceContext::of(headers, self.trace, self.sample);
        let spans = (self.spans.is_some() && trace.is_some_and(|t| t.sampled()))
            .then(|| Box::new(SpanNotes::new()));
        Record {
            started: (log || spans.is_some() || metrics::enabled()).then(Instant::now),
            log,
            trace,
            spans,
            ..Record::default()
        }
    }
}

/// What a sampled request's spans are made of, noted as it goes.
pub struct SpanNotes {
    /// Wall-clock time of the request's start (the others are placed from their `Instant`s).
    wall: SystemTime,
    /// When the record's clock started.
    at: Instant,
    /// Plugin calls.
    calls: Vec<CallNote>,
    /// The upstream call.
    upstream: Option<UpstreamNote>,
}

struct CallNote {
    plugin: Arc<str>,
    phase: &'static str,
    outcome: String,
    start: Instant,
    took: Duration,
}

struct UpstreamNote {
    upstream: Arc<str>,
    start: Instant,
    took: Duration,
    status: Option<u16>,
}

impl SpanNotes {
    fn new() -> Self {
        SpanNotes {
            wall: SystemTime::now(),
            at: Instant::now(),
            calls: Vec::new(),
            upstream: None,
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.wall + at.saturating_duration_since(self.at)
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
    /// Span notes, when the request's trace is exported.
    spans: Option<Box<SpanNotes>>,
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

    /// A plugin call, for the request's spans (when they are exported).
    pub fn note_call(
        &mut self,
        plugin: &Arc<str>,
        phase: &'static str,
        outcome: &str,
        start: Instant,
        took: Duration,
    ) {
        if let Some(notes) = &mut self.spans {
            notes.calls.push(CallNote {
                plugin: plugin.clone(),
                phase,
                outcome: outcome.to_string(),
                start,
                took,
            });
        }
    }

    /// The upstream call to `upstream` (answered with `status`, if it answered), for the
    /// request's spans.
    pub fn note_upstream(
        &mut self,
        upstream: &str,
        start: Instant,
        took: Duration,
        status: Option<u16>,
    ) {
        if let Some(notes) = &mut self.spans {
            notes.upstream = Some(UpstreamNote {
                upstream: Arc::from(upstream),
                start,
                took,
                status,
            });
        }
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
        if let (Some(notes), Some(export), Some(trace)) = (&self.spans, &observe.spans, &self.trace)
        {
            export_spans(export, trace, notes, &self, arrived, status, took);
        }
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

/// The request's spans: a server span (the gateway's span id of `trace`), its plugin calls
/// and its upstream call (the span the upstream's `traceparent` names) below it.
fn export_spans(
    export: &SpanExport,
    trace: &TraceContext,
    notes: &SpanNotes,
    record: &Record,
    arrived: &Arrived<'_>,
    status: u16,
    took: Duration,
) {
    let route = record.route.as_ref().map(|r| r.name.clone());
    let child = |span_id, kind, name: String, start: Instant, took, attributes, failed| Span {
        trace_id: trace.trace_id,
        span_id,
        parent_id: Some(trace.span_id),
        parent_is_remote: false,
        kind,
        name: Cow::Owned(name),
        start: notes.wall(start),
        took,
        attributes,
        failed,
    };
    for call in &notes.calls {
        let failed = !matches!(call.outcome.as_str(), "continue" | "respond" | "replace");
        export.end(child(
            new_span_id(),
            SpanKind::Internal,
            format!("plugin {} {}", call.plugin, call.phase),
            call.start,
            call.took,
            vec![
                KeyValue::new("gateway.plugin", call.plugin.to_string()),
                KeyValue::new("gateway.phase", call.phase),
                KeyValue::new("gateway.outcome", call.outcome.clone()),
            ],
            failed,
        ));
    }
    if let Some(call) = &notes.upstream {
        let mut attributes = vec![KeyValue::new("gateway.upstream", call.upstream.to_string())];
        if let Some(target) = &record.target {
            attributes.push(KeyValue::new("server.address", target.to_string()));
        }
        if let Some(status) = call.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        export.end(child(
            trace.upstream_span_id,
            SpanKind::Client,
            format!("upstream {}", call.upstream),
            call.start,
            call.took,
            attributes,
            call.status.is_none_or(|s| s >= 500),
        ));
    }
    let mut attributes = vec![
        KeyValue::new("http.request.method", arrived.method.to_string()),
        KeyValue::new("url.path", arrived.uri.path().to_string()),
        KeyValue::new("http.response.status_code", i64::from(status)),
        KeyValue::new("client.address", arrived.peer.to_string()),
        KeyValue::new("gateway.request_id", arrived.request_id.to_string()),
    ];
    if let Some(route) = &route {
        attributes.push(KeyValue::new("http.route", route.to_string()));
    }
    if let Some(code) = record.error {
        attributes.push(KeyValue::new("error.type", code));
    }
    export.end(Span {
        trace_id: trace.trace_id,
        span_id: trace.span_id,
        parent_id: trace.parent_id,
        parent_is_remote: trace.parent_id.is_some(),
        kind: SpanKind::Server,
        name: Cow::Owned(match &route {
            Some(route) => format!("{} {route}", arrived.method),
            None => arrived.method.to_string(),
        }),
        start: notes.wall,
        took,
        attributes,
        failed: status >= 500,
    });
}
