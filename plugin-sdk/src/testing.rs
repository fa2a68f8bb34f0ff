//! Unit-test a filter natively, without the gateway.
//!
//! ```
//! use plugin_sdk::testing::{self, TestRequest};
//! # use plugin_sdk::{Filter, Flow, Request, Context};
//! # struct Tag; impl Filter for Tag { type Config = serde::de::IgnoredAny;
//! #   fn new(_: Self::Config) -> Result<Self, String> { Ok(Tag) }
//! #   fn on_request(&self, r: &mut Request, _: &mut Context) -> Flow { r.set_header("x-tag", "1"); Flow::Continue } }
//! let filter = testing::init::<Tag>(serde_json::json!({})).unwrap();
//! let out = testing::request(&filter, TestRequest::get("/x").header("a", "b"));
//! assert_eq!(out.upstream().unwrap().get_header("x-tag"), Some("1"));
//! ```
//!
//! Requests and responses go through the same conversion as in the gateway, and the outcome
//! applies the filter's changes the way the gateway does, so what a test sees is what the
//! upstream or the client would see.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing_host::{
    fake_increment, fake_kv_delete, fake_kv_get, fake_kv_set, fake_verify,
};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing_host::{reset_state, set_counters_unavailable, set_verifier};

use crate::bindings::gateway::plugin::types as wit;
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
    glue::build::<F>(&config.to_string())
}

/// A request to feed a filter.
#[derive(Debug, Clone)]
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
        }
    }

    /// A GET request.
    pub fn get(target: &str) -> Self {
        TestRequest::new("GET", target)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Set a context value, as an earlier filter would.
    pub fn context(mut self, key: &str, value: &str) -> Self {
        self.context.push((key.to_string(), value.to_string()));
        self
    }

    /// Set the client address.
    pub fn client(mut self, addr: &str) -> Self {
        self.client_addr = addr.to_string();
        self
    }

    /// First value of header `name`.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }

    /// All values of header `name`.
    pub fn get_header_all(&self, name: &str) -> Vec<&str> {
        crate::http::find_all_headers(&self.headers, name)
    }

    fn wit(&self) -> (wit::Context, wit::RequestHead) {
        (
            wit::Context {
                route: "test".into(),
                request_id: "test-request".into(),
                client_addr: self.client_addr.clone(),
                values: self.context.clone(),
            },
            wit::RequestHead {
                method: self.method.clone(),
                scheme: "http".into(),
                authority: self.authority.clone(),
                path: self.path.clone(),
                query: self.query.clone(),
                headers: self
                    .headers
                    .iter()
                    .map(|(n, v)| wit::Header {
                        name: n.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            },
        )
    }
}

/// Apply header changes as the gateway does: remove, set, add.
fn apply_headers(headers: &mut Vec<(String, String)>, changes: &wit::HeaderChanges) {
    headers.retain(|(n, _)| !changes.remove.contains(n));
    for h in &changes.set {
        headers.retain(|(n, _)| *n != h.name);
        headers.push((h.name.clone(), h.value.clone()));
    }
    for h in &changes.add {
        headers.push((h.name.clone(), h.value.clone()));
    }
}

/// What a filter did with a request.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    upstream: Option<TestRequest>,
    reply: Option<Reply>,
    /// Context values after the filter (what later filters see).
    pub context: Vec<(String, String)>,
    /// The raw action, for assertions on exactly what is sent to the gateway.
    pub action: wit::RequestAction,
}

impl RequestOutcome {
    /// The value the filter set or added for header `name` on this request's response
    /// (`Request::set_response_header`); None if it did not.
    pub fn response_header(&self, name: &str) -> Option<String> {
        let wit::RequestAction::Continue(changes) = &self.action else {
            return None;
        };
        let mut fields = Vec::new();
        apply_headers(&mut fields, &changes.response_headers);
        let name = name.to_ascii_lowercase();
        fields.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl RequestOutcome {
    /// The request as it would go on (None if the filter responded).
    pub fn upstream(&self) -> Option<&TestRequest> {
        self.upstream.as_ref()
    }

    /// The filter's own reply, if it answered.
    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// A context value after the filter.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Keep only the headers a filter declared it reads, as the gateway does.
fn only_declared(headers: &mut Vec<wit::Header>, declared: &Option<Vec<String>>) {
    if let Some(names) = declared {
        headers.retain(|h| names.iter().any(|n| n.eq_ignore_ascii_case(&h.name)));
    }
}

/// Run `on_request` on `request`.
pub fn request<F: Filter>(filter: &F, request: TestRequest) -> RequestOutcome {
    let (ctx, mut head) = request.wit();
    only_declared(&mut head.headers, &filter.settings().request_headers);
    let (action, after) = glue::run_request(filter, ctx, head, request.body.clone());
    let mut context = request.context.clone();
    let (upstream, reply) = match &action {
        wit::RequestAction::Respond(response) => (None, Some(Reply::from_wit(response.clone()))),
        wit::RequestAction::Continue(changes) => {
            let mut next = request.clone();
            if let Some(method) = &changes.method {
                next.method = method.clone();
            }
            if let Some(path) = &changes.path {
                next.path = path.clone();
            }
            if let Some(query) = &changes.query {
                next.query = Some(query.clone()).filter(|q| !q.is_empty());
            }
            apply_headers(&mut next.headers, &changes.headers);
            if let Some(body) = &changes.body {
                next.body = Some(body.clone());
            }
            for (key, value) in &changes.context {
                match context.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => *v = value.clone(),
                    None => context.push((key.clone(), value.clone())),
                }
            }
            next.context = context.clone();
            (Some(next), None)
        }
    };
    debug_assert_eq!(after, context);
    RequestOutcome {
        upstream,
        reply,
        context,
        action,
    }
}

/// A response to feed a filter.
#[derive(Debug, Clone)]
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

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// First value of header `name`.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

/// Run `on_response`; returns the response the client would get.
pub fn response<F: Filter>(
    filter: &F,
    request: TestRequest,
    response: TestResponse,
) -> TestResponse {
    let (ctx, mut head) = request.wit();
    let settings = filter.settings();
    only_declared(&mut head.headers, &settings.request_headers);
    let mut wit_response = wit::ResponseHead {
        status: response.status,
        headers: response
            .headers
            .iter()
            .map(|(n, v)| wit::Header {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    only_declared(&mut wit_response.headers, &settings.response_headers);
    let action = glue::run_response(filter, ctx, head, wit_response, response.body.clone());
    match action {
        wit::ResponseAction::Replace(reply) => TestResponse {
            status: reply.status,
            headers: reply
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: Some(reply.body),
        },
        wit::ResponseAction::Continue(changes) => {
            let mut out = response;
            if let Some(status) = changes.status {
                out.status = status;
            }
            apply_headers(&mut out.headers, &changes.headers);
            if let Some(body) = changes.body {
                out.body = Some(body);
            }
            out
        }
    }
}
