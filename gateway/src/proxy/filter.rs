//! The `Filter` abstraction the pipeline runs: request and response phases with a per-request
//! context. The pipeline knows nothing of WebAssembly; the plugin host's `WasmFilter`
//! implements this trait, and pipeline tests use plain Rust filters.
//!
//! A filter only reads: it answers with a verdict whose edit the pipeline applies whole
//! ([`super::edit`]), so no filter can leave a request half changed.

use super::edit::{RequestEdit, ResponseEdit};
use super::headers::Attributes;
use crate::config::OnError;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{StatusCode, request, response};
use std::any::Any;
use std::sync::Arc;

/// Per-request state a filter may keep between its request and response phase (e.g. the
/// instance it ran on, under request isolation).
pub type Slot = Option<Box<dyn Any + Send>>;

/// Facts about a request that travel along the chain.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The matched route.
    pub route: Arc<str>,
    /// Request id (propagated or generated); shared, since every plugin call takes it along.
    pub request_id: Arc<str>,
    /// The request's trace id, if it has a trace (for the plugins' log lines).
    pub trace_id: Option<u128>,
    /// The client's address as text (`ip:port`), formatted once per connection.
    pub client_addr: Arc<str>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The connection's facts (TLS), shared by its requests.
    pub attributes: Attributes,
    /// Values set by filters for later ones, in the order first set. Shared: a plugin call
    /// holds it while it runs (without copying it), and a change after the call finds it
    /// unshared again.
    pub values: Arc<Vec<(String, String)>>,
}

/// What names a plugin call in the plugin's log lines.
#[derive(Debug, Clone, Copy)]
pub struct CallNames<'a> {
    /// The route.
    pub route: &'a Arc<str>,
    /// The request id.
    pub request_id: &'a str,
    /// The request's trace, if it has one.
    pub trace_id: Option<u128>,
}

impl RequestContext {
    /// What names a plugin call of this request in the plugin's log lines.
    pub fn call_names(&self) -> CallNames<'_> {
        CallNames {
            route: &self.route,
            request_id: &self.request_id,
            trace_id: self.trace_id,
        }
    }

    /// Set `key` to `value`, replacing an earlier value (both strings taken: a plugin's
    /// values arrive owned, and are not copied again).
    pub fn set(&mut self, key: String, value: String) {
        let values = Arc::make_mut(&mut self.values);
        match values.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => values.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A complete response produced by a filter.
pub type LocalResponse = http::Response<Bytes>;

/// What a filter decided about a request.
pub enum RequestVerdict {
    /// Go on, with these changes.
    Continue(RequestEdit),
    /// Answer the client with this; later filters and the upstream are skipped.
    Respond(LocalResponse),
}

/// What a filter decided about a response.
pub enum ResponseVerdict {
    /// Go on, with these changes.
    Continue(ResponseEdit),
    /// Replace the response with this.
    Replace(LocalResponse),
}

/// A filter call that failed, with what the failure should do to the request.
#[derive(Debug, Clone)]
pub struct FilterFailure {
    /// Which plugin.
    pub plugin: Arc<str>,
    /// Stable label: `timeout`, `fuel`, `memory`, `trap`, `output_cap`, …
    pub label: &'static str,
    /// Details for the log.
    pub detail: String,
    /// Fail open or closed.
    pub on_error: OnError,
    /// Status when failing closed.
    pub status: StatusCode,
}

/// What bodies a filter needs and whether it has a response phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterNeeds {
    /// Buffer and pass the request body.
    pub request_body: bool,
    /// Buffer and pass the response body.
    pub response_body: bool,
    /// Call the response phase.
    pub response_phase: bool,
}

/// One entry of a route's chain.
pub trait Filter: Send + Sync {
    /// The plugin's name, for logs.
    fn name(&self) -> &str;

    /// What this filter needs from the pipeline.
    fn needs(&self) -> FilterNeeds;

    /// Instances alive now (plugin uses), so a reload can warm the use replacing this one.
    fn alive_instances(&self) -> usize {
        0
    }

    /// What the admin API's `/plugins` shows of this use (module, limits, instances), if
    /// anything.
    fn inventory(&self) -> Option<serde_json::Value> {
        None
    }

    /// Decide about the request. `body` is `Some` only if `needs().request_body`.
    fn on_request<'a>(
        &'a self,
        request: &'a request::Parts,
        body: Option<&'a Bytes>,
        ctx: &'a RequestContext,
        slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<RequestVerdict, FilterFailure>>;

    /// Decide about the response. `body` is `Some` only if `needs().response_body`.
    fn on_response<'a>(
        &'a self,
        request: &'a request::Parts,
        response: &'a response::Parts,
        body: Option<&'a Bytes>,
        ctx: &'a RequestContext,
        slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<ResponseVerdict, FilterFailure>>;
}
