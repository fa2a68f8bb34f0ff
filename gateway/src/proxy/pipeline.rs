//! The two chains of one request, over its [`Exchange`]: the per-request state that travels
//! from the request chain to the response chain (context, each filter's slot, how far the
//! request got, response-header edits asked for on the way in).

use super::bodies::{RequestBody, ResponseBody};
use super::filter::{
    FilterFailure, LocalResponse, RequestContext, RequestVerdict, ResponseVerdict, Slot,
};
use super::headers::{HeaderEdits, Peer};
use super::record::Record;
use super::route::Route;
use crate::config::OnError;
use crate::error::{Culprit, ErrorKind, GatewayError};
use crate::telemetry::metrics::{self, CallOutcome, PhaseSeries};
use http::{request, response};
use std::sync::Arc;
use std::time::Instant;

/// How the request chain ended.
pub enum ChainOutcome {
    /// Every filter let the request through: send it upstream with this body.
    Forward(RequestBody),
    /// A filter answered the request itself.
    Respond(LocalResponse),
}

/// One request's state between the phases.
pub struct Exchange<'r> {
    route: &'r Route,
    /// Facts and values filters read and set.
    pub ctx: RequestContext,
    slots: Vec<Slot>,
    /// How many filters, from the start of the chain, let the request through (continued, or
    /// failed with `on_error = "allow"`): only these see the response.
    passed: usize,
    /// Response-header edits by the chain position of the filter that asked for them.
    response_edits: Vec<(usize, HeaderEdits)>,
}

impl<'r> Exchange<'r> {
    /// A new exchange on `route`, of a request in trace `trace_id` if it has one.
    pub fn new(
        route: &'r Route,
        client: &Peer,
        scheme: &'static str,
        request_id: &str,
        trace_id: Option<u128>,
    ) -> Self {
        Exchange {
            route,
            ctx: RequestContext {
                route: route.name.clone(),
                request_id: Arc::from(request_id),
                trace_id,
                client_addr: client.addr_text.clone(),
                scheme,
                attributes: client.attributes.clone(),
                values: Arc::default(),
            },
            slots: route.chain.iter().map(|_| None).collect(),
            passed: 0,
            response_edits: Vec::new(),
        }
    }

    /// Request chain: each filter in order decides; an edit applies whole; the first filter
    /// that answers ends the chain. A filter is given the body only if it asked for it, and
    /// only such a filter may replace it.
    pub async fn request_chain(
        &mut self,
        parts: &mut request::Parts,
        mut body: RequestBody,
        record: &mut Record,
    ) -> Result<ChainOutcome, GatewayError> {
        let chain = &self.route.chain;
        for (position, (filter, slot)) in chain.iter().zip(self.slots.iter_mut()).enumerate() {
            let needs = filter.needs();
            let given = body.buffered().filter(|_| needs.request_body);
            let timer = record.on().then(Instant::now);
            let verdict = filter.on_request(parts, given, &self.ctx, slot).await;
            if let Some(timer) = timer {
                let series = &self.route.plugin_series[position];
                let outcome = match &verdict {
                    Ok(RequestVerdict::Continue(_)) => CallOutcome::Passed,
                    Ok(RequestVerdict::Respond(_)) => {
                        record.answered_by = Some(series.plugin.clone());
                        CallOutcome::Answered
                    }
                    Err(failure) => CallOutcome::Failed(failure.label),
                };
                note_call(record, &series.request, outcome, timer);
            }
            match verdict {
                Ok(RequestVerdict::Continue(edit)) => {
                    let (new_body, response_headers) = edit.apply(parts, &mut self.ctx);
                    if needs.request_body
                        && let Some(bytes) = new_body
                    {
                        body = RequestBody::Buffered(bytes);
                    }
                    if !response_headers.is_empty() {
                        self.response_edits.push((position, response_headers));
                    }
                }
                Ok(RequestVerdict::Respond(response)) => {
                    return Ok(ChainOutcome::Respond(response));
                }
                Err(failure) => fail_or_skip(failure, &self.ctx, record)?,
            }
            self.passed += 1;
        }
        Ok(ChainOutcome::Forward(body))
    }

    /// Response chain: in reverse over the filters that let the request through, each one's
    /// response-header edits (asked for in its request phase), then its response phase if it
    /// has one. `request` is the request head as it went upstream (`None` when no filter on
    /// the route has a response phase).
    pub async fn response_chain(
        &mut self,
        request: Option<&request::Parts>,
        mut parts: response::Parts,
        mut body: ResponseBody,
        record: &mut Record,
    ) -> Result<(response::Parts, ResponseBody), GatewayError> {
        let chain = &self.route.chain[..self.passed];
        let body_wanted = chain.iter().any(|f| {
            let needs = f.needs();
            needs.response_phase && needs.response_body
        });
        if request.is_some() && body_wanted {
            body = ResponseBody::Buffered(body.buffer(self.route).await?);
        }
        for (position, filter) in chain.iter().enumerate().rev() {
            while let Some((_, edit)) = self.response_edits.pop_if(|(p, _)| *p == position) {
                edit.apply(&mut parts.headers);
            }
            let needs = filter.needs();
            let Some(request) = request.filter(|_| needs.response_phase) else {
                continue;
            };
            let given = match &body {
                ResponseBody::Buffered(bytes) if needs.response_body => Some(bytes),
                _ => None,
            };
            let slot = &mut self.slots[position];
            let timer = record.on().then(Instant::now);
            let verdict = filter
                .on_response(request, &parts, given, &self.ctx, slot)
                .await;
            if let Some(timer) = timer
                && let Some(series) = &self.route.plugin_series[position].response
            {
                let outcome = match &verdict {
                    Ok(ResponseVerdict::Continue(_)) => CallOutcome::Passed,
                    Ok(ResponseVerdict::Replace(_)) => CallOutcome::Answered,
                    Err(failure) => CallOutcome::Failed(failure.label),
                };
                note_call(record, series, outcome, timer);
            }
            match verdict {
                Ok(ResponseVerdict::Continue(edit)) => {
                    if let Some(bytes) = edit.apply(&mut parts)
                        && needs.response_body
                    {
                        body = ResponseBody::Buffered(bytes);
                    }
                }
                Ok(ResponseVerdict::Replace(replacement)) => {
                    let (new_parts, bytes) = replacement.into_parts();
                    parts = new_parts;
                    body = ResponseBody::Buffered(bytes);
                }
                Err(failure) => fail_or_skip(failure, &self.ctx, record)?,
            }
        }
        Ok((parts, body))
    }
}

/// Count a call that started at `timer` (metrics, the request's plugin time, its span).
fn note_call(record: &mut Record, series: &PhaseSeries, outcome: CallOutcome<'_>, timer: Instant) {
    let took = timer.elapsed();
    record.add_plugin_time(took);
    record.note_call(
        series.plugin(),
        series.phase(),
        series.outcome_label(outcome),
        timer,
        took,
    );
    if metrics::enabled() {
        series.call(outcome, took);
    }
}

/// A failed filter: log it (once, here), then skip it (`on_error = "allow"`) or fail the
/// request.
///
/// The line is inside a `request` span carrying route and request id. The span is made here,
/// when there is something to log, not for every request: entering a span per request cost
/// ≈ 5k instructions with the default `info` log level (2.6% of the 3-plugin chain), for
/// lines that only failures write. (A plugin's own `log` lines carry the same fields.)
fn fail_or_skip(
    failure: FilterFailure,
    ctx: &RequestContext,
    record: &Record,
) -> Result<(), GatewayError> {
    let trace_id = record.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
    let span =
        tracing::warn_span!("request", route = %ctx.route, request_id = %ctx.request_id, trace_id);
    let _in_request = span.enter();
    tracing::warn!(
        plugin = %failure.plugin,
        violation = failure.label,
        on_error = ?failure.on_error,
        "plugin failed: {}",
        failure.detail
    );
    match failure.on_error {
        OnError::Allow => Ok(()),
        OnError::Deny => Err(GatewayError::new(
            ErrorKind::PluginFailed,
            Culprit::Plugin(failure.plugin.to_string()),
            format!("plugin `{}` failed ({})", failure.plugin, failure.label),
        )
        .with_status(failure.status)),
    }
}
