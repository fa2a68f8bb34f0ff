//! Spans over OTLP/HTTP: for each sampled request, a server span for the request, one span
//! per plugin call and a client span for the upstream call, handed to the OpenTelemetry SDK's
//! batch processor (its own thread, a bounded queue, batches on a timer) and sent by its
//! OTLP/HTTP protobuf exporter.
//!
//! The spans are built whole when the request ends, from what [`crate::proxy::record`]
//! noted on the way, not through the SDK's tracer: the gateway's span ids are chosen when the
//! request arrives (the upstream's `traceparent` names one of them before the span exists),
//! and the tracer always draws its own. Nothing here runs for a request that is not sampled;
//! with no `otlp_endpoint` nothing here runs at all.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, ShouldSample, SpanData,
    SpanEvents, SpanLinks, SpanProcessor,
};
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// `[tracing]`'s export settings, typed.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped (and counted by the SDK's log).
    pub queue: usize,
    /// How long spans wait to be batched.
    pub batch_delay: Duration,
}

/// The running exporter.
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

impl SpanExport {
    /// Start the batch processor and its exporter (no connection is made until a batch is
    /// sent; a collector that is down loses batches, never requests).
    pub fn start(settings: &ExportSettings) -> anyhow::Result<SpanExport> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(settings.queue)
            .with_max_export_batch_size(settings.queue.min(512))
            .with_scheduled_delay(settings.batch_delay)
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        );
        Ok(SpanExport {
            processor,
            scope: InstrumentationScope::builder("gateway")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Queue one finished span (never blocks: a full queue drops it).
    pub fn end(&self, span: Span) {
        let parent_is_remote = span.parent_is_remote;
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(
                TraceId::from(span.trace_id),
                SpanId::from(span.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: span.parent_id.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: parent_is_remote,
            span_kind: span.kind,
            name: span.name,
            start_time: span.start,
            end_time: span.start + span.took,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if span.failed {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Send what is queued and stop (at shutdown).
    pub fn shutdown(&self) {
        if let Err(error) = self.processor.shutdown() {
            tracing::warn!("span export did not flush at shutdown: {error}");
        }
    }
}

/// One finished span.
pub struct Span {
    /// Its trace.
    pub trace_id: u128,
    /// Its id.
    pub span_id: u64,
    /// Its parent's id (none for a trace the gateway started).
    pub parent_id: Option<u64>,
    /// Whether the parent is the caller's (the request span of a continued trace).
    pub parent_is_remote: bool,
    /// Server, internal or client.
    pub kind: SpanKind,
    /// Name.
    pub name: Cow<'static, str>,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub took: Duration,
    /// Attributes.
    pub attributes: Vec<KeyValue>,
    /// Whether it ended in an error.
    pub failed: bool,
}

/// Whether a trace the gateway starts is sampled, at `ratio` (the SDK's trace-id ratio rule,
/// so a collector's tail sampler agrees on which ids pass).
pub fn sample_root(trace_id: u128, ratio: f64) -> bool {
    let decision = Sampler::TraceIdRatioBased(ratio)
        .should_sample(
            None,
            TraceId::from(trace_id),
            "",
            &SpanKind::Server,
            &[],
            &[],
        )
        .decision;
    decision == SamplingDecision::RecordAndSample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_sampling_follows_the_ratio() {
        let ids =
            (1..=10_000u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        let sampled = ids.filter(|&id| sample_root(id, 0.25)).count();
        assert!((2_000..3_000).contains(&sampled), "{sampled}");
        assert!(sample_root(7, 1.0));
        assert!(!sample_root(u128::MAX, 0.0));
    }
}
