//! The pipeline with plain Rust filters, no Wasm: chain order, short-circuit, the reverse
//! response order, `on_error`, which filter gets which body, and the body caps.

use super::bodies::{RequestBody, ResponseBody};
use super::edit::{RequestEdit, ResponseEdit};
use super::filter::{
    Filter, FilterFailure, FilterNeeds, RequestContext, RequestVerdict, ResponseVerdict, Slot,
};
use super::headers::{HeaderEdits, Peer};
use super::pipeline::{ChainOutcome, Exchange};
use super::route::Route;
use crate::config::OnError;
use crate::error::ErrorKind;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, StatusCode, request, response};
use http_body_util::{Either, Full};
use std::sync::{Arc, Mutex};

/// What a probe does in a phase.
#[derive(Clone)]
enum Act {
    /// Continue, setting `x-<name>` (and, in the request phase, asking for the same header on
    /// the response).
    Tag,
    /// Answer the request itself / replace the response.
    Answer(u16),
    /// Fail with this policy.
    Fail(OnError),
    /// Continue with this body.
    Body(&'static str),
}

/// A filter that records what it saw in a shared log.
struct Probe {
    name: &'static str,
    needs: FilterNeeds,
    request: Act,
    response: Act,
    log: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    fn header(&self) -> HeaderName {
        HeaderName::from_bytes(format!("x-{}", self.name).as_bytes()).unwrap()
    }

    fn record(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn failure(&self, on_error: OnError) -> FilterFailure {
        FilterFailure {
            plugin: Arc::from(self.name),
            label: "trap",
            detail: "on purpose".into(),
            on_error,
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn tag(&self) -> HeaderEdits {
        HeaderEdits {
            set: vec![(self.header(), HeaderValue::from_static("1"))],
            ..HeaderEdits::default()
        }
    }
}

fn body_text(body: Option<&Bytes>) -> String {
    body.map_or("-".into(), |b| String::from_utf8_lossy(b).into_owned())
}

impl Filter for Probe {
    fn name(&self) -> &str {
        self.name
    }

    fn needs(&self) -> FilterNeeds {
        self.needs
    }

    fn on_request<'a>(
        &'a self,
        request: &'a request::Parts,
        body: Option<&'a Bytes>,
        ctx: &'a RequestContext,
        _slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<RequestVerdict, FilterFailure>> {
        async move {
            let seen: Vec<&str> = ["x-a", "x-b", "x-c"]
                .into_iter()
                .filter(|h| request.headers.contains_key(*h))
                .collect();
            self.record(format!(
                "req {} body={} headers={} ctx={}",
                self.name,
                body_text(body),
                seen.join(","),
                ctx.get("who").unwrap_or("-"),
            ));
            match &self.request {
                Act::Tag => Ok(RequestVerdict::Continue(RequestEdit {
                    headers: self.tag(),
                    response_headers: self.tag(),
                    context: vec![("who".into(), self.name.into())],
                    ..RequestEdit::default()
                })),
                Act::Answer(status) => Ok(RequestVerdict::Respond(super::local_response(
                    StatusCode::from_u16(*status).unwrap(),
                    http::HeaderMap::new(),
                    Bytes::from_static(b"answered"),
                ))),
                Act::Fail(on_error) => Err(self.failure(*on_error)),
                Act::Body(text) => Ok(RequestVerdict::Continue(RequestEdit {
                    body: Some(Bytes::from_static(text.as_bytes())),
                    ..RequestEdit::default()
                })),
            }
        }
        .boxed()
    }

    fn on_response<'a>(
        &'a self,
        _request: &'a request::Parts,
        response: &'a response::Parts,
        body: Option<&'a Bytes>,
        _ctx: &'a RequestContext,
        _slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<ResponseVerdict, FilterFailure>> {
        async move {
            let seen: Vec<&str> = ["x-a", "x-b", "x-c"]
                .into_iter()
                .filter(|h| response.headers.contains_key(*h))
                .collect();
            self.record(format!(
                "resp {} body={} headers={}",
                self.name,
                body_text(body),
                seen.join(",")
            ));
            match &self.response {
                Act::Tag => Ok(ResponseVerdict::Continue(ResponseEdit::default())),
                Act::Answer(status) => Ok(ResponseVerdict::Replace(super::local_response(
                    StatusCode::from_u16(*status).unwrap(),
                    http::HeaderMap::new(),
                    Bytes::from_static(b"replaced"),
                ))),
                Act::Fail(on_error) => Err(self.failure(*on_error)),
                Act::Body(text) => Ok(ResponseVerdict::Continue(ResponseEdit {
                    body: Some(Bytes::from_static(text.as_bytes())),
                    ..ResponseEdit::default()
                })),
            }
        }
        .boxed()
    }
}

const PHASES: FilterNeeds = FilterNeeds {
    request_body: false,
    response_body: false,
    response_phase: true,
};

/// A chain of probes sharing one log.
struct Chain {
    log: Arc<Mutex<Vec<String>>>,
    filters: Vec<Arc<dyn Filter>>,
}

impl Chain {
    fn new() -> Self {
        Chain {
            log: Arc::default(),
            filters: Vec::new(),
        }
    }

    fn probe(
        mut self,
        name: &'static str,
        needs: FilterNeeds,
        request: Act,
        response: Act,
    ) -> Self {
        self.filters.push(Arc::new(Probe {
            name,
            needs,
            request,
            response,
            log: self.log.clone(),
        }));
        self
    }

    fn route(&self, cap: usize) -> Route {
        Route::new("test", None, self.filters.clone(), cap)
    }

    fn log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn peer() -> Peer {
    Peer::new("127.0.0.1:40000".parse().unwrap())
}

fn request_parts() -> request::Parts {
    http::Request::get("/x").body(()).unwrap().into_parts().0
}

fn response_parts() -> response::Parts {
    http::Response::new(()).into_parts().0
}

fn full(text: &'static str) -> crate::body::Body {
    Either::Right(Full::new(Bytes::from_static(text.as_bytes())))
}

/// Both chains over `route`, the upstream answering 200 with `upstream_body`.
async fn run(
    route: &Route,
    request_body: &'static str,
    upstream_body: &'static str,
) -> Result<(u16, http::HeaderMap, Bytes), crate::error::GatewayError> {
    let peer = peer();
    let mut exchange = Exchange::new(route, &peer, "http", "id-1", None);
    let mut parts = request_parts();
    let body = RequestBody::read(route, full(request_body)).await?;
    // Recording on: the chains' timing and counting paths run too.
    let mut record = super::record::Record::default();
    record.started = Some(std::time::Instant::now());
    let (response, body) = match exchange
        .request_chain(&mut parts, body, &mut record)
        .await?
    {
        ChainOutcome::Respond(local) => {
            let (response, bytes) = local.into_parts();
            (response, ResponseBody::Buffered(bytes))
        }
        ChainOutcome::Forward(_) => (
            response_parts(),
            ResponseBody::Streaming(full(upstream_body)),
        ),
    };
    let head = request_parts();
    let (mut response, body) = exchange
        .response_chain(Some(&head), response, body, &mut record)
        .await?;
    let body = body.into_client(&mut response.headers);
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Ok((response.status.as_u16(), response.headers, bytes))
}

#[tokio::test]
async fn the_request_chain_runs_in_order_and_the_response_chain_in_reverse() {
    let chain = Chain::new()
        .probe("a", PHASES, Act::Tag, Act::Tag)
        .probe("b", PHASES, Act::Tag, Act::Tag)
        .probe("c", PHASES, Act::Tag, Act::Tag);
    let (status, headers, _) = run(&chain.route(1024), "", "").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        chain.log(),
        [
            // Each filter sees the edits and context values of those before it.
            "req a body=- headers= ctx=-",
            "req b body=- headers=x-a ctx=a",
            "req c body=- headers=x-a,x-b ctx=b",
            // Each one's response-header edit is applied just before its own response phase.
            "resp c body=- headers=x-c",
            "resp b body=- headers=x-b,x-c",
            "resp a body=- headers=x-a,x-b,x-c",
        ]
    );
    assert!(headers.contains_key("x-a"));
}

#[tokio::test]
async fn a_filter_that_answers_ends_the_chain_and_only_earlier_filters_see_the_reply() {
    let chain = Chain::new()
        .probe("a", PHASES, Act::Tag, Act::Tag)
        .probe("b", PHASES, Act::Answer(403), Act::Tag)
        .probe("c", PHASES, Act::Tag, Act::Tag);
    let (status, headers, body) = run(&chain.route(1024), "", "").await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(body, "answered");
    assert_eq!(
        chain.log(),
        [
            "req a body=- headers= ctx=-",
            "req b body=- headers=x-a ctx=a",
            // a's response edit applies to b's reply too, before a's response phase.
            "resp a body=- headers=x-a",
        ]
    );
    assert!(
        headers.contains_key("x-a"),
        "a's response edit still applies"
    );
}

#[tokio::test]
async fn on_error_allow_skips_the_filter_and_deny_fails_the_request() {
    let allow = Chain::new()
        .probe("a", PHASES, Act::Fail(OnError::Allow), Act::Tag)
        .probe("b", PHASES, Act::Tag, Act::Tag);
    let (status, _, _) = run(&allow.route(1024), "", "").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        allow.log(),
        [
            "req a body=- headers= ctx=-",
            // Nothing of the failed call applied.
            "req b body=- headers= ctx=-",
            "resp b body=- headers=x-b",
            "resp a body=- headers=x-b",
        ]
    );

    let deny = Chain::new()
        .probe("a", PHASES, Act::Tag, Act::Tag)
        .probe("b", PHASES, Act::Fail(OnError::Deny), Act::Tag)
        .probe("c", PHASES, Act::Tag, Act::Tag);
    let error = run(&deny.route(1024), "", "").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PluginFailed);
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.message(), "plugin `b` failed (trap)");
    assert_eq!(
        deny.log(),
        [
            "req a body=- headers= ctx=-",
            "req b body=- headers=x-a ctx=a"
        ]
    );

    let response_deny = Chain::new().probe("a", PHASES, Act::Tag, Act::Tag).probe(
        "b",
        PHASES,
        Act::Tag,
        Act::Fail(OnError::Deny),
    );
    let error = run(&response_deny.route(1024), "", "").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PluginFailed);
}

#[tokio::test]
async fn bodies_go_only_to_filters_that_asked_and_only_they_may_replace_them() {
    let wants_body = FilterNeeds {
        request_body: true,
        response_body: true,
        response_phase: true,
    };
    let chain = Chain::new()
        .probe("a", PHASES, Act::Body("ignored"), Act::Body("ignored"))
        .probe("b", wants_body, Act::Body("from b"), Act::Body("b's reply"))
        .probe("c", wants_body, Act::Tag, Act::Tag);
    let (_, headers, body) = run(&chain.route(1024), "client body", "upstream body")
        .await
        .unwrap();
    assert_eq!(
        chain.log(),
        [
            "req a body=- headers= ctx=-",
            "req b body=client body headers= ctx=-",
            "req c body=from b headers= ctx=-",
            "resp c body=upstream body headers=x-c",
            "resp b body=upstream body headers=x-c",
            "resp a body=- headers=x-c",
        ]
    );
    // a's replacement was not granted; b's was, and the length follows the body.
    assert_eq!(body, "b's reply");
    assert_eq!(headers["content-length"], "9");
}

#[tokio::test]
async fn a_response_phase_is_skipped_for_filters_without_one() {
    let request_only = FilterNeeds::default();
    let chain = Chain::new()
        .probe("a", request_only, Act::Tag, Act::Answer(500))
        .probe("b", PHASES, Act::Tag, Act::Tag);
    let (status, headers, _) = run(&chain.route(1024), "", "").await.unwrap();
    assert_eq!(status, 200, "a's on-response never ran");
    assert_eq!(
        chain.log(),
        [
            "req a body=- headers= ctx=-",
            "req b body=- headers=x-a ctx=a",
            "resp b body=- headers=x-b",
        ]
    );
    // a's response-header edit still applies: it needs no response phase.
    assert!(headers.contains_key("x-a"));
}

#[tokio::test]
async fn bodies_past_the_route_cap_are_refused() {
    let wants_body = FilterNeeds {
        request_body: true,
        response_body: true,
        response_phase: true,
    };
    let chain = Chain::new().probe("a", wants_body, Act::Tag, Act::Tag);
    let route = chain.route(4);
    let error = run(&route, "12345", "").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RequestBodyTooLarge);
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error = run(&route, "1234", "12345").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UpstreamBadResponse);
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert!(run(&route, "1234", "1234").await.is_ok());
}
