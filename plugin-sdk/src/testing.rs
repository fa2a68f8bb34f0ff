//! Unit-test a filter natively, without the gateway, under the gateway's rules.
//!
//! ```
//! use plugin_sdk::testing::{self, TestRequest, TestResponse};
//! # use plugin_sdk::{Context, Filter, Flow, NoConfig, Request};
//! # struct Tag;
//! # impl Filter for Tag {
//! #   type Config = NoConfig;
//! #   fn new(_: NoConfig) -> Result<Self, String> { Ok(Tag) }
//! #   fn on_request(&self, r: &mut Request, _: &mut Context) -> Flow {
//! #     r.set_header("x-tag", "1");
//! #     r.set_response_header("x-served-by", "tag");
//! #     Flow::Continue
//! #   }
//! # }
//! let filter = testing::init::<Tag>(serde_json::json!({})).unwrap();
//! let out = testing::request(&filter, TestRequest::get("/x").with_header("a", "b"));
//! assert_eq!(out.upstream().unwrap().header("x-tag"), Some("1"));
//! // The whole exchange: what the client gets back from this upstream response.
//! let trip = testing::round_trip(&filter, TestRequest::get("/x"), TestResponse::new(200));
//! assert_eq!(trip.client().unwrap().header("x-served-by"), Some("tag"));
//! ```
//!
//! The harness is as strict as the gateway host, so a test passes only on behaviour the
//! gateway reproduces. Requests and responses go through the same conversion as in the
//! gateway (`glue`), and what the filter returns is checked and applied as the gateway's
//! `plugin/limits.rs`, `plugin/filter.rs` and `proxy/pipeline.rs` do:
//!
//! - **Bodies are granted, not given.** `on_request` gets the request body only with
//!   [`Settings::request_body`], `on_response` the response body only with
//!   [`Settings::response_body`]. A body change from a filter not granted that body is
//!   ignored (the body passes on as it was).
//! - **No response phase unless asked for.** `on_response` runs only with
//!   [`Settings::response_phase`]; otherwise the response passes through unchanged
//!   ([`ResponseOutcome::called`] is false).
//! - **Declared headers.** With [`Settings::request_headers`] / `response_headers` the
//!   filter sees only those fields.
//! - **Valid HTTP only.** Header names must be RFC 9110 tokens, header values must not hold
//!   control characters other than HTAB (no CR, LF or NUL), a method must be a token, a
//!   changed path must start with `/` and path and query must parse as a URI target, and a
//!   reply's or changed status must be 200..=999. Otherwise: a [`Failure`] labelled
//!   `bad_output`.
//! - **Output caps** ([`Limits`], the gateway's defaults unless a test sets its own with
//!   [`Harness::with_limits`]): at most 100 header changes and 65536 header bytes per call
//!   (the request's headers and its response-header edits each on their own; a reply's
//!   fields), at most 1 MiB of body emitted, even a body change that would be ignored.
//!   Otherwise: a [`Failure`] labelled `output_cap`.
//! - **All or nothing.** A failed output applies nothing: the request (with its context) or
//!   response is left exactly as it was before the filter, and the outcome's `failure()`
//!   says why. The gateway then answers with the use's `error_status` (`on_error = "deny"`,
//!   the default) or skips the filter (`"allow"`).
//! - **Round trip** ([`round_trip`]): response-header edits made in the request phase
//!   ([`crate::Request::set_response_header`]) are applied to the upstream's response first,
//!   then `on_response` runs (if asked for). A filter that answered in its request phase
//!   gets no response phase: its reply is what the client gets.
//!
//! Header order across different names is not significant (the gateway keeps headers in a
//! map); the order of one name's values is kept.

mod output;
#[cfg(test)]
mod tests;

pub use output::{Failure, Limits};

#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing_host::{
    MetricValue, metric, reset_state, set_counters_unavailable, set_verifier,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing_host::{
    fake_declare, fake_increment, fake_kv_delete, fake_kv_get, fake_kv_set, fake_record,
    fake_verify,
};

#[cfg(doc)]
use crate::Settings;
use crate::bindings::gateway::plugin::types as wit;
use crate::http::{find_all_headers, find_header};
use crate::rules::HeaderPlace;
use crate::{Filter, Reply, glue};
use std::cell::RefCell;

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn capture_log(line: String) {
    LOGS.with(|logs| logs.borrow_mut().push(line));
}

/// Log lines written on this thread since the last call (e.g. `"Info: hello"`).
pub fn logs() -> Vec<String> {
    LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
}

/// Build a filter from a JSON config, exactly as `init` does.
pub fn init<F: Filter>(config: serde_json::Value) -> Result<F, String> {
    crate::testing_host::initializing(|| glue::build::<F>(&config.to_string()))
}

/// Header fields as (name, value) pairs, lower-case names.
type Fields = Vec<(String, String)>;

fn wit_headers(fields: &[(String, String)]) -> Vec<wit::Header> {
    fields
        .iter()
        .map(|(name, value)| wit::Header {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// A request to feed a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Host.
    pub authority: Option<String>,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Context values as set by earlier filters.
    pub context: Vec<(String, String)>,
    /// Client address.
    pub client_addr: String,
    /// Connection facts (`tls.sni`, …), as a TLS listener would pass them.
    pub attributes: Vec<(String, String)>,
}

impl TestRequest {
    /// A request with `method` and `target` (path with optional `?query`).
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (target.to_string(), None),
        };
        TestRequest {
            method: method.to_string(),
            path,
            query,
            authority: Some("example.test".into()),
            headers: Vec::new(),
            body: None,
            context: Vec::new(),
            client_addr: "127.0.0.1:40000".into(),
            attributes: Vec::new(),
        }
    }

    /// A GET request.
    pub fn get(target: &str) -> Self {
        TestRequest::new("GET", target)
    }

    /// This request with a header field added.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// This request with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// This request with a context value, as an earlier filter would set it.
    pub fn with_context(mut self, key: &str, value: &str) -> Self {
        self.context.push((key.to_string(), value.to_string()));
        self
    }

    /// This request with a connection fact (`with_attribute("tls.sni", "api.example.com")`).
    pub fn with_attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes.push((name.to_string(), value.to_string()));
        self
    }

    /// This request from client address `addr` (`ip:port`).
    pub fn with_client(mut self, addr: &str) -> Self {
        self.client_addr = addr.to_string();
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all_headers(&self.headers, name)
    }

    /// The context and head the gateway would pass, with only the `declared` headers.
    fn wit(&self, declared: &Option<Vec<String>>) -> (wit::Context, wit::RequestHead) {
        (
            wit::Context {
                route: "test".into(),
                request_id: "test-request".into(),
                client_addr: self.client_addr.clone(),
                values: self.context.clone(),
                attributes: self.attributes.clone(),
            },
            wit::RequestHead {
                method: self.method.clone(),
                scheme: "http".into(),
                authority: self.authority.clone(),
                path: self.path.clone(),
                query: self.query.clone(),
                headers: only_declared(&self.headers, declared),
            },
        )
    }
}

/// A response to feed a filter (or the one the client gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResponse {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
}

impl TestResponse {
    /// A response with `status`.
    pub fn new(status: u16) -> Self {
        TestResponse {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// This response with a header field added.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// This response with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all_headers(&self.headers, name)
    }

    fn from_reply(reply: &Reply) -> Self {
        TestResponse {
            status: reply.status(),
            headers: reply
                .headers()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Some(reply.body().to_vec()),
        }
    }
}

/// Validated header changes (lower-case names), applied as the gateway applies them:
/// remove, then set, then add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Names whose every field goes.
    pub remove: Vec<String>,
    /// Fields replacing every field of their name.
    pub set: Vec<(String, String)>,
    /// Fields appended.
    pub add: Vec<(String, String)>,
}

impl HeaderEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Apply to `fields` as `http::HeaderMap` does: `set` replaces a name's fields where the
    /// first of them was (or appends), `add` appends.
    fn apply(&self, fields: &mut Fields) {
        fields.retain(|(n, _)| !self.remove.contains(n));
        for (name, value) in &self.set {
            match fields.iter().position(|(n, _)| n == name) {
                Some(first) => {
                    let mut index = 0;
                    fields.retain(|(n, _)| {
                        let keep = index <= first || n != name;
                        index += 1;
                        keep
                    });
                    fields[first].1 = value.clone();
                }
                None => fields.push((name.clone(), value.clone())),
            }
        }
        fields.extend(self.add.iter().cloned());
    }
}

/// Keep only the headers a filter declared it reads, as the gateway does.
fn only_declared(fields: &[(String, String)], declared: &Option<Vec<String>>) -> Vec<wit::Header> {
    let mut headers = wit_headers(fields);
    if let Some(names) = declared {
        headers.retain(|h| names.iter().any(|n| n.eq_ignore_ascii_case(&h.name)));
    }
    headers
}

/// How a filter's request phase ended.
#[derive(Debug, Clone)]
enum RequestVerdict {
    Continue,
    Respond(Reply),
    Failed(Failure),
}

/// What a filter did with a request.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The request after the filter (unchanged if it answered or failed).
    request: TestRequest,
    verdict: RequestVerdict,
    /// Response-header edits from the request phase (validated).
    response_edits: HeaderEdits,
}

impl RequestOutcome {
    /// The request as it goes on to later filters and the upstream; None if the filter
    /// answered or its output failed.
    pub fn upstream(&self) -> Option<&TestRequest> {
        matches!(self.verdict, RequestVerdict::Continue).then_some(&self.request)
    }

    /// The request after the filter: with its changes if it let the request through, else
    /// exactly as it came in (it answered, or its output failed and nothing was applied).
    pub fn request(&self) -> &TestRequest {
        &self.request
    }

    /// The filter's own reply, if it answered (and the reply passed the gateway's checks).
    pub fn reply(&self) -> Option<&Reply> {
        match &self.verdict {
            RequestVerdict::Respond(reply) => Some(reply),
            _ => None,
        }
    }

    /// Why the gateway would refuse what the filter returned, if it would.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.verdict {
            RequestVerdict::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// Context values after the filter (what later filters see), in the order first set.
    pub fn context(&self) -> &[(String, String)] {
        &self.request.context
    }

    /// A context value after the filter.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.request
            .context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value the filter set or added for header `name` on this request's response
    /// ([`crate::Request::set_response_header`]); None if it did not.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let edits = &self.response_edits;
        edits
            .set
            .iter()
            .chain(&edits.add)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every response-header edit the filter made in its request phase, as the gateway
    /// applies them to the response.
    pub fn response_header_edits(&self) -> &HeaderEdits {
        &self.response_edits
    }

    /// The outcome of a filter whose output failed: nothing applied.
    fn failed(request: TestRequest, failure: Failure) -> Self {
        RequestOutcome {
            request,
            verdict: RequestVerdict::Failed(failure),
            response_edits: HeaderEdits::default(),
        }
    }
}

/// How a filter's response phase ended.
#[derive(Debug, Clone)]
enum ResponseVerdict {
    /// `on_response` not called (no response phase).
    Skipped,
    Continue,
    Replace,
    Failed(Failure),
}

/// What a filter did with a response.
#[derive(Debug, Clone)]
pub struct ResponseOutcome {
    response: TestResponse,
    verdict: ResponseVerdict,
}

impl ResponseOutcome {
    /// The response as it goes on towards the client: with the filter's changes, its
    /// replacement, or exactly as it came in (no response phase, or its output failed).
    pub fn response(&self) -> &TestResponse {
        &self.response
    }

    /// Whether `on_response` was called (only with [`Settings::response_phase`]).
    pub fn called(&self) -> bool {
        !matches!(self.verdict, ResponseVerdict::Skipped)
    }

    /// Whether the filter replaced the response with its own.
    pub fn replaced(&self) -> bool {
        matches!(self.verdict, ResponseVerdict::Replace)
    }

    /// Why the gateway would refuse what the filter returned, if it would.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.verdict {
            ResponseVerdict::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// A request's way through one filter and back: its request phase, the upstream (given by
/// the test), then its response phase.
#[derive(Debug, Clone)]
pub struct RoundTrip {
    request: RequestOutcome,
    /// None when the request phase answered or failed: there is no upstream response.
    response: Option<ResponseOutcome>,
}

impl RoundTrip {
    /// The request phase.
    pub fn request_phase(&self) -> &RequestOutcome {
        &self.request
    }

    /// The response phase: the upstream's response with the request phase's response-header
    /// edits applied, then through `on_response` if the filter has a response phase. None if
    /// the request phase answered or failed.
    pub fn response_phase(&self) -> Option<&ResponseOutcome> {
        self.response.as_ref()
    }

    /// What the client gets: the filter's reply if it answered, else the upstream's response
    /// after the response phase. None if either phase failed (the gateway answers with the
    /// use's `error_status`, or, with `on_error = "allow"`, skips the filter).
    pub fn client(&self) -> Option<TestResponse> {
        if let Some(reply) = self.request.reply() {
            return Some(TestResponse::from_reply(reply));
        }
        self.response
            .as_ref()
            .filter(|r| r.failure().is_none())
            .map(|r| r.response.clone())
    }

    /// The failure of the request or the response phase, if either failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.request
            .failure()
            .or_else(|| self.response.as_ref().and_then(ResponseOutcome::failure))
    }
}

/// Runs one filter under the gateway's rules with chosen [`Limits`]; the free functions
/// [`request`], [`response`] and [`round_trip`] are this with the default limits.
///
/// ```
/// # use plugin_sdk::{Context, Filter, Flow, NoConfig, Request};
/// # struct Tag;
/// # impl Filter for Tag {
/// #   type Config = NoConfig;
/// #   fn new(_: NoConfig) -> Result<Self, String> { Ok(Tag) }
/// #   fn on_request(&self, r: &mut Request, _: &mut Context) -> Flow {
/// #     r.set_header("x-a", "1"); r.set_header("x-b", "2"); Flow::Continue
/// #   }
/// # }
/// use plugin_sdk::testing::{self, Harness, Limits, TestRequest};
/// let filter = testing::init::<Tag>(serde_json::json!({})).unwrap();
/// let strict = Harness::new(&filter).with_limits(Limits { max_headers: 1, ..Limits::default() });
/// let out = strict.request(TestRequest::get("/"));
/// assert_eq!(out.failure().unwrap().label(), "output_cap");
/// ```
#[derive(Debug)]
pub struct Harness<'f, F> {
    filter: &'f F,
    limits: Limits,
}

impl<'f, F: Filter> Harness<'f, F> {
    /// A harness for `filter` with the gateway's default limits.
    pub fn new(filter: &'f F) -> Self {
        Harness {
            filter,
            limits: Limits::default(),
        }
    }

    /// This harness with `limits` (as the plugin's gateway config sets them).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Run `on_request` on `request`.
    pub fn request(&self, request: TestRequest) -> RequestOutcome {
        let settings = self.filter.settings();
        let (ctx, head) = request.wit(&settings.request_headers);
        let body = request.body.clone().filter(|_| settings.request_body);
        let (action, after) = glue::run_request(self.filter, ctx, head, body);
        if let Err(failure) = output::check_request_action(&action, &self.limits) {
            return RequestOutcome::failed(request, failure);
        }
        let changes = match action {
            wit::RequestAction::Respond(reply) => {
                let verdict = match output::reply(&reply) {
                    Ok(()) => RequestVerdict::Respond(Reply::from_wit(reply)),
                    Err(failure) => RequestVerdict::Failed(failure),
                };
                return RequestOutcome {
                    request,
                    verdict,
                    response_edits: HeaderEdits::default(),
                };
            }
            wit::RequestAction::Continue(changes) => changes,
            wit::RequestAction::Fail(reason) => {
                return RequestOutcome::failed(request, output::failed(reason));
            }
        };
        let (response_edits, target, edits) = match validate_request(&request, &changes) {
            Ok(valid) => valid,
            Err(failure) => return RequestOutcome::failed(request, failure),
        };
        let mut next = request;
        if let Some(method) = changes.method {
            next.method = method;
        }
        if let Some((path, query)) = target {
            next.path = path;
            next.query = query;
        }
        edits.apply(&mut next.headers);
        if settings.request_body
            && let Some(body) = changes.body
        {
            next.body = Some(body);
        }
        for (key, value) in changes.context {
            match next.context.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value,
                None => next.context.push((key, value)),
            }
        }
        debug_assert_eq!(after, next.context);
        RequestOutcome {
            request: next,
            verdict: RequestVerdict::Continue,
            response_edits,
        }
    }

    /// Run the response phase on `response` to `request` (the request as it went upstream):
    /// `on_response` if the filter has a response phase, else nothing. Response-header edits
    /// from a request phase are not applied here; see [`Harness::round_trip`].
    pub fn response(&self, request: TestRequest, response: TestResponse) -> ResponseOutcome {
        let settings = self.filter.settings();
        if !settings.response_phase {
            return ResponseOutcome {
                response,
                verdict: ResponseVerdict::Skipped,
            };
        }
        let (ctx, head) = request.wit(&settings.request_headers);
        let response_head = wit::ResponseHead {
            status: response.status,
            headers: only_declared(&response.headers, &settings.response_headers),
        };
        let body = response.body.clone().filter(|_| settings.response_body);
        let action = glue::run_response(self.filter, ctx, head, response_head, body);
        let failed = |response, failure| ResponseOutcome {
            response,
            verdict: ResponseVerdict::Failed(failure),
        };
        if let Err(failure) = output::check_response_action(&action, &self.limits) {
            return failed(response, failure);
        }
        let changes = match action {
            wit::ResponseAction::Replace(reply) => {
                return match output::reply(&reply) {
                    Ok(()) => ResponseOutcome {
                        response: TestResponse::from_reply(&Reply::from_wit(reply)),
                        verdict: ResponseVerdict::Replace,
                    },
                    Err(failure) => failed(response, failure),
                };
            }
            wit::ResponseAction::Continue(changes) => changes,
            wit::ResponseAction::Fail(reason) => return failed(response, output::failed(reason)),
        };
        let (status, edits) = match validate_response(&changes) {
            Ok(valid) => valid,
            Err(failure) => return failed(response, failure),
        };
        let mut out = response;
        if let Some(status) = status {
            out.status = status;
        }
        edits.apply(&mut out.headers);
        if settings.response_body
            && let Some(body) = changes.body
        {
            out.body = Some(body);
        }
        ResponseOutcome {
            response: out,
            verdict: ResponseVerdict::Continue,
        }
    }

    /// Run `request` through the filter and, if it lets the request through, `upstream`
    /// (the upstream's response) back through it, as the gateway does: the request phase's
    /// response-header edits first, then the response phase.
    pub fn round_trip(&self, request: TestRequest, upstream: TestResponse) -> RoundTrip {
        let outcome = self.request(request);
        let response = outcome.upstream().map(|sent| {
            let mut response = upstream;
            outcome.response_edits.apply(&mut response.headers);
            self.response(sent.clone(), response)
        });
        RoundTrip {
            request: outcome,
            response,
        }
    }
}

/// A request target after a path or query change: (path, query).
type Target = (String, Option<String>);

/// Validate a request phase's changes whole, in the gateway's order (so the first failure is
/// the one it reports): method, path and query, headers, response-header edits.
fn validate_request(
    request: &TestRequest,
    changes: &wit::RequestChanges,
) -> Result<(HeaderEdits, Option<Target>, HeaderEdits), Failure> {
    if let Some(method) = &changes.method {
        output::method(method)?;
    }
    let target = match (&changes.path, &changes.query) {
        (None, None) => None,
        (path, query) => Some(output::target(
            &request.path,
            request.query.as_deref(),
            path.as_deref(),
            query.as_deref(),
        )?),
    };
    let edits = output::header_edits(&changes.headers, HeaderPlace::Request)?;
    let response_edits = output::header_edits(&changes.response_headers, HeaderPlace::Response)?;
    Ok((response_edits, target, edits))
}

/// Validate a response phase's changes whole: status, then headers.
fn validate_response(
    changes: &wit::ResponseChanges,
) -> Result<(Option<u16>, HeaderEdits), Failure> {
    let status = changes.status.map(output::status).transpose()?;
    Ok((
        status,
        output::header_edits(&changes.headers, HeaderPlace::Response)?,
    ))
}

/// Run `on_request` on `request` (default [`Limits`]).
pub fn request<F: Filter>(filter: &F, request: TestRequest) -> RequestOutcome {
    Harness::new(filter).request(request)
}

/// Run the response phase on `response` (default [`Limits`]); see [`Harness::response`].
pub fn response<F: Filter>(
    filter: &F,
    request: TestRequest,
    response: TestResponse,
) -> ResponseOutcome {
    Harness::new(filter).response(request, response)
}

/// Run a request phase, the given upstream response and a response phase (default
/// [`Limits`]); see [`Harness::round_trip`].
pub fn round_trip<F: Filter>(
    filter: &F,
    request: TestRequest,
    upstream: TestResponse,
) -> RoundTrip {
    Harness::new(filter).round_trip(request, upstream)
}
