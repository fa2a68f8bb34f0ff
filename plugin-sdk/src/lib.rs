//! # plugin-sdk: write gateway filters in Rust
//!
//! A filter is a type implementing [`Filter`]: it is built once per configured use from its
//! typed config, then sees every request before it goes upstream and every response before it
//! goes back. Every hook defaults to "continue", so a filter overrides only what it needs.
//!
//! ```
//! use plugin_sdk::{Context, Filter, Flow, Reply, Request};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { header: String }
//!
//! struct Hello { header: String }
//!
//! impl Filter for Hello {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> { Ok(Hello { header: config.header }) }
//!     fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Flow {
//!         if req.header("x-block").is_some() {
//!             return Flow::Respond(Reply::new(403).with_body("no"));
//!         }
//!         req.set_header(&self.header, "hello");
//!         Flow::Continue
//!     }
//! }
//! // In a cdylib crate built for wasm32-wasip2: plugin_sdk::export_filter!(Hello);
//! # let hello = plugin_sdk::testing::init::<Hello>(serde_json::json!({"header": "x-hi"})).unwrap();
//! # let out = plugin_sdk::testing::request(&hello, plugin_sdk::testing::TestRequest::get("/"));
//! # assert_eq!(out.upstream().unwrap().header("x-hi"), Some("hello"));
//! ```
//!
//! - Config arrives as JSON (the route's `config` table) and is parsed into `Filter::Config`
//!   with serde; a parse error or an `Err` from [`Filter::new`] rejects the gateway config with
//!   that message, so write messages an operator can act on.
//! - [`Request`] and [`Response`] are views you read and change in place; the SDK sends the
//!   gateway only what changed.
//! - [`Context`] carries facts about the request and values earlier filters set (an auth
//!   filter sets `consumer`; a rate limiter reads it).
//! - Host capabilities ([`log`], [`clock`], [`crypto`], [`counters`], [`kv`]) must be granted in the gateway config; they return
//!   values, never panic.
//! - [`Settings`] says what a filter needs: bodies, the headers it reads, and whether
//!   `on_response` runs at all (`response_phase`, off by default: a filter implementing
//!   `on_response` asks for it). A filter without config uses [`NoConfig`].
//! - [`testing`] runs a filter natively, without the gateway, for unit tests, and is as strict
//!   as the gateway about what it grants and accepts.

extern crate self as plugin_sdk;

#[cfg(any(
    test,
    all(
        feature = "call-arena",
        target_family = "wasm",
        not(target_feature = "atomics")
    )
))]
mod arena;
mod config;
mod context;
mod glue;
pub mod host;
mod http;
pub mod rules;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
mod testing_host;

pub use config::NoConfig;
pub use context::Context;
pub use host::{clock, counters, crypto, kv, log, metrics};
pub use http::{Flow, Reply, Request, Response, Settings, is_valid_header_name};

/// The plugin's global allocator (see the `arena` module): short-lived allocations of a call
/// come from a bump arena. A plugin that brings its own allocator turns off the default
/// `call-arena` feature.
#[cfg(all(
    feature = "call-arena",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: arena::CallArena<std::alloc::System, { arena::ARENA_BYTES }> =
    arena::CallArena::new(std::alloc::System);

/// Start serving allocations from the call arena: called once the filter is built, so its
/// long-lived state comes from the default allocator.
pub(crate) fn enable_call_arena() {
    #[cfg(all(
        feature = "call-arena",
        target_family = "wasm",
        not(target_feature = "atomics")
    ))]
    ALLOCATOR.enable();
}

/// Generated bindings for `wit/` (world `plugin`). Plugin authors never need these.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "plugin_sdk::bindings",
        runtime_path: "plugin_sdk::__private::wit_bindgen::rt",
    });
}

/// Implementation details used by [`export_filter!`].
#[doc(hidden)]
pub mod __private {
    pub use crate::glue::*;
    pub use wit_bindgen;
}

/// A gateway filter. Implement the hooks you need; the others continue.
pub trait Filter: Sized + 'static {
    /// This filter's configuration, parsed from the route's `config` table (as JSON).
    type Config: serde::de::DeserializeOwned;

    /// Build the filter from its config; an `Err` rejects the gateway config with the message.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// What the filter needs from the gateway (bodies, response phase, headers it reads). The
    /// default asks for nothing, and in particular no response phase: a filter that
    /// implements [`Filter::on_response`] sets `response_phase: true`.
    fn settings(&self) -> Settings {
        Settings::default()
    }

    /// Called before the request goes upstream.
    fn on_request(&self, _request: &mut Request, _ctx: &mut Context) -> Flow {
        Flow::Continue
    }

    /// Called before the response goes back to the client (chain in reverse order), only if
    /// [`Settings::response_phase`] is set, and only for a request this filter let through.
    /// `Flow::Respond` replaces the response.
    fn on_response(&self, _request: &Request, _response: &mut Response, _ctx: &Context) -> Flow {
        Flow::Continue
    }
}

/// Export `$filter` (a [`Filter`]) as this component's `gateway:plugin/filter`.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[doc(hidden)]
        pub struct __GatewayFilterExport;

        impl $crate::bindings::exports::gateway::plugin::filter::Guest for __GatewayFilterExport {
            fn init(
                config: String,
            ) -> Result<$crate::bindings::gateway::plugin::types::Settings, String> {
                $crate::__private::init::<$filter>(&config)
            }

            fn on_request(
                ctx: $crate::bindings::gateway::plugin::types::Context,
                request: $crate::bindings::gateway::plugin::types::RequestHead,
                body: Option<Vec<u8>>,
            ) -> $crate::bindings::gateway::plugin::types::RequestAction {
                $crate::__private::on_request::<$filter>(ctx, request, body)
            }

            fn on_response(
                ctx: $crate::bindings::gateway::plugin::types::Context,
                request: $crate::bindings::gateway::plugin::types::RequestHead,
                response: $crate::bindings::gateway::plugin::types::ResponseHead,
                body: Option<Vec<u8>>,
            ) -> $crate::bindings::gateway::plugin::types::ResponseAction {
                $crate::__private::on_response::<$filter>(ctx, request, response, body)
            }
        }

        // Only a wasm component exports these symbols; native builds (unit tests) would
        // choke on their `ns:pkg/iface#func` names.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin!(__GatewayFilterExport with_types_in $crate::bindings);
    };
}
