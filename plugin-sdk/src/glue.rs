//! Between the generated bindings and [`Filter`]: config parsing, the one filter instance of
//! this component, and conversion of views into the WIT actions. Used by `export_filter!` and
//! by [`crate::testing`], so tests exercise the same path as the gateway.

use crate::bindings::gateway::plugin::types as wit;
use crate::{Context, Filter, Flow, Request, Response};
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    /// The filter built by `init` (a component instance is single-threaded).
    static FILTER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Parse a JSON config; empty text and `null` mean `{}`.
pub fn parse_config<C: serde::de::DeserializeOwned>(json: &str) -> Result<C, String> {
    let json = match json.trim() {
        "" | "null" => "{}",
        other => other,
    };
    serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))
}

/// Build the filter from its config.
pub fn build<F: Filter>(config: &str) -> Result<F, String> {
    F::new(parse_config(config)?)
}

/// `init` export: build and keep the filter, return its settings.
pub fn init<F: Filter>(config: &str) -> Result<wit::Settings, String> {
    let filter = build::<F>(config)?;
    let settings = filter.settings().to_wit();
    FILTER.with(|slot| *slot.borrow_mut() = Some(Box::new(filter)));
    crate::enable_call_arena();
    Ok(settings)
}

/// A filter export called before a successful `init` traps rather than answering. A reply
/// (say a plain 500) would reach the client as if it were the plugin's own decision, and the
/// gateway could not tell it from one; a trap is a `trap` violation to the host: logged with
/// the plugin's name, handled by the use's `on_error`, and the instance is discarded. The host
/// never makes such a call, so this only fires on a host or embedding bug. (Plugins build with
/// `panic = "abort"`, so the panic is the trap; natively it is an ordinary panic.)
fn not_initialised() -> ! {
    panic!("gateway plugin: filter export called before a successful init")
}

/// `on-request` export.
pub fn on_request<F: Filter>(
    ctx: wit::Context,
    head: wit::RequestHead,
    body: Option<Vec<u8>>,
) -> wit::RequestAction {
    FILTER.with(
        |slot| match slot.borrow().as_ref().and_then(|f| f.downcast_ref::<F>()) {
            Some(filter) => run_request(filter, ctx, head, body).0,
            None => not_initialised(),
        },
    )
}

/// `on-response` export.
pub fn on_response<F: Filter>(
    ctx: wit::Context,
    request: wit::RequestHead,
    response: wit::ResponseHead,
    body: Option<Vec<u8>>,
) -> wit::ResponseAction {
    FILTER.with(
        |slot| match slot.borrow().as_ref().and_then(|f| f.downcast_ref::<F>()) {
            Some(filter) => run_response(filter, ctx, request, response, body),
            None => not_initialised(),
        },
    )
}

/// Run `on_request`; also returns the context values as the filter left them. The views are
/// consumed: what the filter set or added moves into the action without a copy.
pub fn run_request<F: Filter>(
    filter: &F,
    ctx: wit::Context,
    head: wit::RequestHead,
    body: Option<Vec<u8>>,
) -> (wit::RequestAction, Vec<(String, String)>) {
    let mut request = Request::from_wit(head, body);
    let mut ctx = Context::from_wit(ctx);
    let action = match filter.on_request(&mut request, &mut ctx) {
        Flow::Continue => {
            let (values, changes) = ctx.into_values_and_changes();
            return (
                wit::RequestAction::Continue(request.into_changes(changes)),
                values,
            );
        }
        Flow::Respond(reply) => wit::RequestAction::Respond(reply.into_wit()),
        Flow::Fail(reason) => wit::RequestAction::Fail(reason),
    };
    (action, ctx.into_values_and_changes().0)
}

/// Run `on_response`.
pub fn run_response<F: Filter>(
    filter: &F,
    ctx: wit::Context,
    request: wit::RequestHead,
    response: wit::ResponseHead,
    body: Option<Vec<u8>>,
) -> wit::ResponseAction {
    let request = Request::from_wit(request, None);
    let mut response = Response::from_wit(response, body);
    let ctx = Context::from_wit(ctx);
    match filter.on_response(&request, &mut response, &ctx) {
        Flow::Continue => wit::ResponseAction::Continue(response.into_changes()),
        Flow::Respond(reply) => wit::ResponseAction::Replace(reply.into_wit()),
        Flow::Fail(reason) => wit::ResponseAction::Fail(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoConfig;

    struct Nothing;

    impl Filter for Nothing {
        type Config = NoConfig;
        fn new(_: NoConfig) -> Result<Self, String> {
            Ok(Nothing)
        }
    }

    fn head() -> (wit::Context, wit::RequestHead) {
        let ctx = wit::Context {
            route: "r".into(),
            request_id: "id".into(),
            client_addr: "127.0.0.1:1".into(),
            values: Vec::new(),
            attributes: Vec::new(),
        };
        let head = wit::RequestHead {
            method: "GET".into(),
            scheme: "http".into(),
            authority: None,
            path: "/".into(),
            query: None,
            headers: Vec::new(),
        };
        (ctx, head)
    }

    // Each test runs on its own thread, so `FILTER` starts empty.
    #[test]
    #[should_panic(expected = "before a successful init")]
    fn on_request_before_init_traps() {
        let (ctx, head) = head();
        on_request::<Nothing>(ctx, head, None);
    }

    #[test]
    #[should_panic(expected = "before a successful init")]
    fn on_response_before_init_traps() {
        let (ctx, head) = head();
        let response = wit::ResponseHead {
            status: 200,
            headers: Vec::new(),
        };
        on_response::<Nothing>(ctx, head, response, None);
    }

    #[test]
    fn after_init_the_filter_answers() {
        assert!(init::<Nothing>("{}").is_ok());
        let (ctx, head) = head();
        assert!(matches!(
            on_request::<Nothing>(ctx, head, None),
            wit::RequestAction::Continue(_)
        ));
    }
}
