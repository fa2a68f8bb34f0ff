//! The harness holds filters to the gateway's rules: each test here is one rule the harness
//! once let slide.

use super::*;
use crate::{Context, Flow, NoConfig, Request, Response, Settings};

type OnRequest = Box<dyn Fn(&mut Request, &mut Context) -> Flow>;
type OnResponse = Box<dyn Fn(&Request, &mut Response) -> Flow>;

/// A filter assembled per test; it records which hooks ran and the bodies they were given.
struct Probe {
    settings: Settings,
    on_request: OnRequest,
    on_response: OnResponse,
    seen: RefCell<Vec<String>>,
}

impl Probe {
    fn new(settings: Settings) -> Self {
        Probe {
            settings,
            on_request: Box::new(|_, _| Flow::Continue),
            on_response: Box::new(|_, _| Flow::Continue),
            seen: RefCell::new(Vec::new()),
        }
    }

    fn request(mut self, f: impl Fn(&mut Request, &mut Context) -> Flow + 'static) -> Self {
        self.on_request = Box::new(f);
        self
    }

    fn response(mut self, f: impl Fn(&Request, &mut Response) -> Flow + 'static) -> Self {
        self.on_response = Box::new(f);
        self
    }

    fn seen(&self) -> Vec<String> {
        self.seen.take()
    }
}

fn body_text(body: Option<&[u8]>) -> String {
    body.map_or("none".into(), |b| String::from_utf8_lossy(b).into_owned())
}

impl Filter for Probe {
    type Config = NoConfig;

    fn new(_: NoConfig) -> Result<Self, String> {
        Err("built by the tests".into())
    }

    fn settings(&self) -> Settings {
        self.settings.clone()
    }

    fn on_request(&self, request: &mut Request, ctx: &mut Context) -> Flow {
        let line = format!("request body={}", body_text(request.body()));
        self.seen.borrow_mut().push(line);
        (self.on_request)(request, ctx)
    }

    fn on_response(&self, request: &Request, response: &mut Response, _: &Context) -> Flow {
        let line = format!("response body={}", body_text(response.body()));
        self.seen.borrow_mut().push(line);
        (self.on_response)(request, response)
    }
}

fn with_phase() -> Settings {
    Settings {
        response_phase: true,
        ..Settings::default()
    }
}

fn upstream_response() -> TestResponse {
    TestResponse::new(200)
        .with_header("x-up", "1")
        .with_body("from upstream")
}

#[test]
fn request_body_only_when_granted() {
    let req = || TestRequest::new("POST", "/").with_body("payload");
    let plain = Probe::new(Settings::default());
    request(&plain, req());
    assert_eq!(plain.seen(), ["request body=none"]);
    let granted = Probe::new(Settings {
        request_body: true,
        ..Settings::default()
    });
    request(&granted, req());
    assert_eq!(granted.seen(), ["request body=payload"]);
}

#[test]
fn response_body_only_when_granted() {
    let plain = Probe::new(with_phase());
    response(&plain, TestRequest::get("/"), upstream_response());
    assert_eq!(plain.seen(), ["response body=none"]);
    let granted = Probe::new(Settings {
        response_body: true,
        ..with_phase()
    });
    response(&granted, TestRequest::get("/"), upstream_response());
    assert_eq!(granted.seen(), ["response body=from upstream"]);
    // A body without the phase is not passed either: there is no call.
    let no_phase = Probe::new(Settings {
        response_body: true,
        ..Settings::default()
    });
    response(&no_phase, TestRequest::get("/"), upstream_response());
    assert!(no_phase.seen().is_empty());
}

#[test]
fn no_response_phase_means_no_on_response() {
    assert!(!Settings::default().response_phase);
    let filter = Probe::new(Settings::default()).response(|_, resp| {
        resp.set_header("x-touched", "1");
        Flow::Respond(Reply::new(500))
    });
    let out = response(&filter, TestRequest::get("/"), upstream_response());
    assert!(!out.called());
    assert_eq!(out.response(), &upstream_response());
    assert!(filter.seen().is_empty());
    let with = Probe::new(with_phase()).response(|_, resp| {
        resp.set_header("x-touched", "1");
        Flow::Continue
    });
    let out = response(&with, TestRequest::get("/"), upstream_response());
    assert!(out.called());
    assert_eq!(out.response().header("x-touched"), Some("1"));
}

#[test]
fn ungranted_body_changes_are_ignored() {
    let rewrite = |settings: Settings| {
        Probe::new(settings)
            .request(|req, _| {
                req.set_body("changed");
                Flow::Continue
            })
            .response(|_, resp| {
                resp.set_body("changed");
                Flow::Continue
            })
    };
    let req = || TestRequest::new("POST", "/").with_body("original");
    let plain = rewrite(with_phase());
    let out = request(&plain, req());
    assert_eq!(out.failure(), None);
    assert_eq!(
        out.upstream().unwrap().body.as_deref(),
        Some(&b"original"[..])
    );
    let resp = response(&plain, req(), upstream_response());
    assert_eq!(resp.response().body.as_deref(), Some(&b"from upstream"[..]));
    let granted = rewrite(Settings {
        request_body: true,
        response_body: true,
        ..with_phase()
    });
    let out = request(&granted, req());
    assert_eq!(
        out.upstream().unwrap().body.as_deref(),
        Some(&b"changed"[..])
    );
    let resp = response(&granted, req(), upstream_response());
    assert_eq!(resp.response().body.as_deref(), Some(&b"changed"[..]));
}

/// Each case makes valid changes (a header, a context value, a response header) and then one
/// invalid one; the gateway's message for it.
#[test]
fn bad_request_output_applies_nothing() {
    type Edit = fn(&mut Request) -> Option<Reply>;
    let cases: [(Edit, &str); 9] = [
        (
            |r| {
                r.set_header("bad name", "v");
                None
            },
            "invalid header name \"bad name\"",
        ),
        (
            |r| {
                r.add_header("x-split", "a\r\nx-evil: 1");
                None
            },
            "invalid value for header x-split",
        ),
        (
            |r| {
                r.remove_header("x:y");
                None
            },
            "invalid header name \"x:y\"",
        ),
        (
            |r| {
                r.set_response_header("x-nul", "a\0");
                None
            },
            "invalid value for header x-nul",
        ),
        (
            |r| {
                r.set_method("GE T");
                None
            },
            "invalid method \"GE T\"",
        ),
        (
            |r| {
                r.set_path("relative");
                None
            },
            "path \"relative\" does not start with `/`",
        ),
        (
            |r| {
                r.set_path("/a b");
                None
            },
            "invalid path or query \"/a b?q=1\"",
        ),
        (|_| Some(Reply::new(101)), "invalid status 101"),
        (
            |_| Some(Reply::new(403).with_header("x-bad", "\u{7}")),
            "invalid value for header x-bad",
        ),
    ];
    let input = TestRequest::get("/p?q=1")
        .with_header("x-keep", "1")
        .with_context("k", "before");
    for (edit, message) in cases {
        let filter = Probe::new(Settings::default()).request(move |req, ctx| {
            req.set_header("x-keep", "changed");
            req.set_method("POST");
            ctx.set("k", "after");
            req.set_response_header("x-resp", "1");
            match edit(req) {
                Some(reply) => Flow::Respond(reply),
                None => Flow::Continue,
            }
        });
        let out = request(&filter, input.clone());
        let failure = out
            .failure()
            .unwrap_or_else(|| panic!("{message}: accepted"));
        assert_eq!(failure.label(), "bad_output");
        assert!(failure.is_bad_output());
        assert_eq!(failure.message(), message);
        assert_eq!(failure.to_string(), format!("bad_output: {message}"));
        assert!(out.upstream().is_none() && out.reply().is_none());
        assert_eq!(out.request(), &input, "{message}: nothing applied");
        assert_eq!(out.context_value("k"), Some("before"));
        assert!(out.response_header_edits().is_empty());
        let trip = round_trip(&filter, input.clone(), upstream_response());
        assert_eq!(trip.failure(), Some(failure));
        assert!(trip.client().is_none() && trip.response_phase().is_none());
    }
}

#[test]
fn bad_response_output_applies_nothing() {
    type Edit = fn(&mut Response) -> Flow;
    let framing =
        "header `content-length` frames the message or the connection; the gateway sets it";
    let cases: [(Edit, &str); 6] = [
        (
            |r| {
                r.set_header("content-length", "5");
                Flow::Continue
            },
            framing,
        ),
        (
            |_| Flow::Respond(Reply::new(200).with_header("Content-Length", "5")),
            framing,
        ),
        (
            |r| {
                r.set_status(1000);
                Flow::Continue
            },
            "invalid status 1000",
        ),
        (
            |r| {
                r.set_status(199);
                Flow::Continue
            },
            "invalid status 199",
        ),
        (
            |r| {
                r.set_header("x-bad", "a\nb");
                Flow::Continue
            },
            "invalid value for header x-bad",
        ),
        (
            |_| Flow::Respond(Reply::new(200).with_header("", "v")),
            "invalid header name \"\"",
        ),
    ];
    for (edit, message) in cases {
        let filter = Probe::new(Settings {
            response_body: true,
            ..with_phase()
        })
        .response(move |_, resp| {
            resp.set_header("x-up", "changed");
            resp.set_body("changed");
            edit(resp)
        });
        let out = response(&filter, TestRequest::get("/"), upstream_response());
        let failure = out
            .failure()
            .unwrap_or_else(|| panic!("{message}: accepted"));
        assert_eq!(
            (failure.label(), failure.message()),
            ("bad_output", message)
        );
        assert_eq!(out.response(), &upstream_response(), "{message}");
        assert!(!out.replaced());
    }
}

/// A filter adding `n` request headers with `value`.
fn adds(n: usize, value: &str) -> Probe {
    let value = value.to_string();
    Probe::new(Settings::default()).request(move |req, _| {
        for i in 0..n {
            req.add_header(&format!("x-{i}"), value.as_str());
        }
        Flow::Continue
    })
}

fn label(out: &RequestOutcome) -> Option<&'static str> {
    out.failure().map(Failure::label)
}

#[test]
fn output_caps_are_the_gateways_defaults() {
    let get = || TestRequest::get("/");
    assert_eq!(label(&request(&adds(100, "v"), get())), None);
    let out = request(&adds(101, "v"), get());
    assert_eq!(label(&out), Some("output_cap"));
    assert_eq!(
        out.failure().unwrap().message(),
        "101 header changes, limit 100"
    );
    assert!(out.failure().unwrap().is_output_cap());
    assert_eq!(out.request(), &get());
    // Bytes: names and values of set and added fields, and removed names.
    let big = "v".repeat(32_000);
    assert_eq!(label(&request(&adds(2, &big), get())), None);
    let out = request(&adds(3, &big), get());
    assert_eq!(
        out.failure().unwrap().message(),
        "96009 header bytes, limit 65536"
    );
    // Removals count as changes.
    let removes = Probe::new(Settings::default()).request(|req, _| {
        for i in 0..101 {
            req.remove_header(&format!("x-{i}"));
        }
        Flow::Continue
    });
    assert_eq!(label(&request(&removes, get())), Some("output_cap"));
    // Response-header edits are capped on their own, as the gateway counts them.
    let split = Probe::new(Settings::default()).request(|req, _| {
        for i in 0..60 {
            req.add_header(&format!("x-{i}"), "v");
            req.add_response_header(&format!("x-{i}"), "v");
        }
        Flow::Continue
    });
    assert_eq!(label(&request(&split, get())), None);
    let many = Probe::new(Settings::default()).request(|req, _| {
        for i in 0..101 {
            req.add_response_header(&format!("x-{i}"), "v");
        }
        Flow::Continue
    });
    assert_eq!(label(&request(&many, get())), Some("output_cap"));
    // A reply's fields and body.
    let reply = Probe::new(Settings::default()).request(|_, _| {
        let reply = (0..101).fold(Reply::new(200), |r, i| {
            r.with_header(&format!("x-{i}"), "v")
        });
        Flow::Respond(reply)
    });
    assert_eq!(label(&request(&reply, get())), Some("output_cap"));
    let huge = Probe::new(Settings::default())
        .request(|_, _| Flow::Respond(Reply::new(200).with_body(vec![b'x'; (1 << 20) + 1])));
    assert_eq!(label(&request(&huge, get())), Some("output_cap"));
    // A body change is capped even when it would be ignored.
    let ungranted = Probe::new(Settings::default()).request(|req, _| {
        req.set_body(vec![b'x'; (1 << 20) + 1]);
        Flow::Continue
    });
    let out = request(&ungranted, get());
    assert_eq!(
        out.failure().unwrap().message(),
        "1048577 body bytes, limit 1048576"
    );
    let response_flood = Probe::new(with_phase()).response(|_, resp| {
        for i in 0..101 {
            resp.add_header(&format!("x-{i}"), "v");
        }
        Flow::Continue
    });
    let out = response(&response_flood, get(), upstream_response());
    assert_eq!(out.failure().map(Failure::label), Some("output_cap"));
    assert_eq!(out.response(), &upstream_response());
}

#[test]
fn limits_can_be_set_per_test() {
    let filter = adds(2, "12345");
    let harness = Harness::new(&filter);
    assert_eq!(label(&harness.request(TestRequest::get("/"))), None);
    let one = harness.with_limits(Limits {
        max_headers: 1,
        ..Limits::default()
    });
    assert_eq!(
        one.request(TestRequest::get("/"))
            .failure()
            .unwrap()
            .message(),
        "2 header changes, limit 1"
    );
    let filter = adds(2, "12345");
    let bytes = Harness::new(&filter).with_limits(Limits {
        max_header_bytes: 13,
        ..Limits::default()
    });
    assert_eq!(
        bytes
            .request(TestRequest::get("/"))
            .failure()
            .unwrap()
            .message(),
        "16 header bytes, limit 13"
    );
    let body = Probe::new(Settings {
        response_body: true,
        ..with_phase()
    })
    .response(|_, resp| {
        resp.set_body("12345");
        Flow::Continue
    });
    let small = Harness::new(&body).with_limits(Limits {
        max_body_bytes: 4,
        ..Limits::default()
    });
    let out = small.response(TestRequest::get("/"), upstream_response());
    assert_eq!(out.failure().unwrap().message(), "5 body bytes, limit 4");
}

/// A filter that decorates the response from its request phase and, with a response phase,
/// reports what it saw there.
fn decorator(settings: Settings) -> Probe {
    Probe::new(settings)
        .request(|req, _| {
            req.set_response_header("x-up", "replaced");
            req.add_response_header("x-from-request", "1");
            Flow::Continue
        })
        .response(|_, resp| {
            let saw = format!("{:?}", resp.header_all("x-up"));
            resp.set_header("x-on-response-saw", saw);
            Flow::Continue
        })
}

#[test]
fn round_trip_applies_response_edits_then_the_response_phase() {
    let with = decorator(with_phase());
    let trip = round_trip(&with, TestRequest::get("/"), upstream_response());
    let client = trip.client().unwrap();
    assert_eq!(client.header("x-from-request"), Some("1"));
    assert_eq!(client.header("x-on-response-saw"), Some("[\"replaced\"]"));
    assert_eq!(client.body.as_deref(), Some(&b"from upstream"[..]));
    assert!(trip.response_phase().unwrap().called());
    assert_eq!(with.seen(), ["request body=none", "response body=none"]);
    // Without a response phase the edits still apply; `on_response` is not called.
    let without = decorator(Settings::default());
    let trip = round_trip(&without, TestRequest::get("/"), upstream_response());
    let client = trip.client().unwrap();
    assert_eq!(client.header_all("x-up"), ["replaced"]);
    assert_eq!(client.header("x-from-request"), Some("1"));
    assert_eq!(client.header("x-on-response-saw"), None);
    assert!(!trip.response_phase().unwrap().called());
    assert_eq!(without.seen(), ["request body=none"]);
}

#[test]
fn round_trip_after_a_reply_has_no_response_phase() {
    let filter = Probe::new(with_phase())
        .request(|_, _| Flow::Respond(Reply::new(403).with_header("x-why", "no")))
        .response(|_, resp| {
            resp.set_header("x-on-response", "ran");
            Flow::Continue
        });
    let trip = round_trip(&filter, TestRequest::get("/"), upstream_response());
    assert!(trip.response_phase().is_none());
    assert_eq!(
        trip.client(),
        Some(
            TestResponse::new(403)
                .with_header("x-why", "no")
                .with_body("")
        )
    );
    assert_eq!(filter.seen(), ["request body=none"]);
}

#[test]
fn round_trip_response_phase_sees_the_request_as_sent() {
    let filter = Probe::new(with_phase())
        .request(|req, ctx| {
            req.set_path("/rewritten");
            ctx.set("k", "v");
            Flow::Continue
        })
        .response(|req, resp| {
            resp.set_header("x-path", req.path().to_string());
            Flow::Continue
        });
    let trip = round_trip(&filter, TestRequest::get("/p"), upstream_response());
    assert_eq!(trip.client().unwrap().header("x-path"), Some("/rewritten"));
    assert_eq!(trip.request_phase().context_value("k"), Some("v"));
}

#[test]
fn changes_apply_as_the_gateway_applies_them() {
    let filter = Probe::new(Settings::default()).request(|req, _| {
        req.set_path("/new");
        req.set_header("x-a", "only");
        req.add_header("x-a", "more");
        req.remove_header("x-b");
        Flow::Continue
    });
    let input = TestRequest::get("/old?q=1")
        .with_header("x-a", "1")
        .with_header("x-c", "c")
        .with_header("x-a", "2")
        .with_header("x-b", "b");
    let out = request(&filter, input);
    let up = out.upstream().unwrap();
    // The query stays; headers: remove, set, add.
    assert_eq!(
        (up.path.as_str(), up.query.as_deref()),
        ("/new", Some("q=1"))
    );
    assert_eq!(
        up.headers,
        [("x-a", "only"), ("x-c", "c"), ("x-a", "more")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
    );
}

#[test]
fn fail_is_a_failure_of_the_filter_and_applies_nothing() {
    let filter = Probe::new(with_phase())
        .request(|req, ctx| {
            req.set_header("x-half", "1");
            ctx.set("k", "v");
            Flow::Fail("upstream of my keys is down".into())
        })
        .response(|_, resp| {
            resp.set_header("x-half", "1");
            Flow::Fail("cannot decide".into())
        });
    let input = TestRequest::get("/");
    let out = request(&filter, input.clone());
    let failure = out.failure().expect("fail is a failure");
    assert_eq!(failure.label(), "failed");
    assert_eq!(failure.message(), "upstream of my keys is down");
    assert_eq!(out.request(), &input);
    assert_eq!(out.context_value("k"), None);
    let out = response(&filter, TestRequest::get("/"), upstream_response());
    assert_eq!(out.failure().map(Failure::label), Some("failed"));
    assert_eq!(out.response(), &upstream_response());
}

#[test]
fn attributes_reach_the_filter() {
    let filter = Probe::new(Settings::default()).request(|req, ctx| {
        let sni = ctx.attribute("tls.sni").unwrap_or("none").to_string();
        req.set_header("x-sni", &sni);
        Flow::Continue
    });
    let out = request(
        &filter,
        TestRequest::get("/").with_attribute("tls.sni", "api.test"),
    );
    assert_eq!(out.upstream().unwrap().header("x-sni"), Some("api.test"));
    let out = request(&filter, TestRequest::get("/"));
    assert_eq!(out.upstream().unwrap().header("x-sni"), Some("none"));
}
