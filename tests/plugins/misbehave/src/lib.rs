//! Test plugin that misbehaves on demand, to prove the gateway's limits: loops forever, eats
//! memory, panics or traps in other ways, floods headers, logs, `kv` or `counters`, sets
//! framing headers, fails or loops in init, or counts calls in a global.

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Response, Settings};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do wrong.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Nothing.
    Ok,
    /// Loop forever.
    Loop,
    /// Allocate until killed.
    Memory,
    /// Panic (a trap, with `panic = "abort"`).
    Panic,
    /// Emit 10 MiB of headers.
    Headers,
    /// Count calls in a global.
    Count,
    /// Reject the config in init.
    InitFail,
    /// Ask for both bodies: upper-case the request body, report body sizes in headers.
    Body,
    /// Change method and path, set a context value, and set a header with an invalid name:
    /// the gateway must refuse the whole answer, not apply half of it.
    HalfBad,
    /// Answer `fail(reason)` (`Flow::Fail`) in its phase.
    Fail,
    /// Recurse until the stack overflows.
    StackOverflow,
    /// Read linear memory out of bounds.
    OutOfBounds,
    /// Execute `unreachable` (`std::process::abort`).
    Unreachable,
    /// Call `exit(3)`.
    Exit,
    /// Log 100,000 lines of 100 bytes in one call.
    LogFlood,
    /// Set the header named `header` where `place` says (framing names must be refused).
    Frame,
    /// Loop forever in every `init` after the first, which arms it in `kv` (so the gateway
    /// starts, and the instances made on a request's path loop).
    InitLoop,
    /// Spin for `spin_ms` of wall-clock time, then continue (a CPU-bound tenant).
    Spin,
    /// Write 64 KiB to `kv` under a fresh key per call; answers the error, if any, in
    /// `x-kv-error`.
    KvFlood,
    /// Bump 16 fresh `counters` keys per call (the most one call may); answers the error in `x-counters-error`.
    CounterFlood,
    /// Set a context value of 1 MiB.
    ContextFlood,
}

/// Where `frame` sets its header.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Place {
    /// The request's headers (`on_request`).
    #[default]
    Request,
    /// The response's headers, from `on_request` (`set_response_header`).
    ResponseHeaders,
    /// The response's headers, from `on_response`.
    Response,
    /// A reply's headers (`Flow::Respond`).
    Reply,
}

/// Which phase misbehaves.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `on_request`.
    #[default]
    Request,
    /// `on_response`.
    Response,
}

/// `{"mode": "loop", "phase": "request"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to do wrong.
    pub mode: Mode,
    /// When.
    #[serde(default)]
    pub phase: Phase,
    /// `frame`: the header to set.
    #[serde(default)]
    pub header: String,
    /// `frame`: where to set it.
    #[serde(default)]
    pub place: Place,
    /// `spin`: how long.
    #[serde(default)]
    pub spin_ms: u64,
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The misbehaving filter.
pub struct Misbehave {
    mode: Mode,
    phase: Phase,
    header: String,
    place: Place,
    spin_ms: u64,
}

/// Recursion that keeps nothing in linear memory (no shadow-stack frame), so it is wasm's own
/// call stack (`max_wasm_stack`) that runs out: a real stack overflow.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

#[allow(unsafe_code)]
fn read_out_of_bounds() -> u8 {
    // Far past any linear memory the plugin may have (4 GiB - 16): wasm bounds-checks it and
    // traps; there is nothing there to read.
    let address = std::hint::black_box(0xffff_fff0usize);
    // SAFETY: deliberately not safe; on wasm the access traps before it reads anything.
    unsafe { std::ptr::read_volatile(address as *const u8) }
}

fn spin(ms: u64) {
    let start = plugin_sdk::clock::monotonic_ns();
    while plugin_sdk::clock::monotonic_ns() - start < ms * 1_000_000 {
        std::hint::black_box(start);
    }
}

/// The misbehaviour itself; returns headers to add (for `headers`).
fn misbehave(mode: Mode) -> Vec<(String, String)> {
    match mode {
        Mode::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mode::Memory => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let chunk = vec![1u8; 1 << 20];
                hoard.push(std::hint::black_box(chunk));
            }
        }
        Mode::Panic => panic!("misbehave: deliberate panic"),
        Mode::StackOverflow => {
            recurse(0);
            Vec::new()
        }
        Mode::OutOfBounds => vec![("x-read".into(), read_out_of_bounds().to_string())],
        Mode::Unreachable => std::process::abort(),
        Mode::Exit => std::process::exit(3),
        Mode::LogFlood => {
            let line = "f".repeat(100);
            for _ in 0..100_000 {
                plugin_sdk::log::info(&line);
            }
            Vec::new()
        }
        Mode::Headers => {
            let value = "v".repeat(1024);
            (0..10_240)
                .map(|i| (format!("x-flood-{i}"), value.clone()))
                .collect()
        }
        Mode::Ok
        | Mode::Count
        | Mode::InitFail
        | Mode::Body
        | Mode::HalfBad
        | Mode::Fail
        | Mode::Frame
        | Mode::InitLoop
        | Mode::Spin
        | Mode::KvFlood
        | Mode::CounterFlood
        | Mode::ContextFlood => Vec::new(),
    }
}

impl Filter for Misbehave {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        plugin_sdk::log::info(&format!(
            "misbehave init: {:?} in {:?}",
            config.mode, config.phase
        ));
        if config.mode == Mode::InitFail {
            return Err("misbehave: config rejected on purpose".into());
        }
        if config.mode == Mode::InitLoop {
            if plugin_sdk::kv::get("init-loop-armed")
                .ok()
                .flatten()
                .is_some()
            {
                misbehave(Mode::Loop);
            }
            let _ = plugin_sdk::kv::set("init-loop-armed", b"1", 3_600_000);
        }
        Ok(Misbehave {
            mode: config.mode,
            phase: config.phase,
            header: config.header,
            place: config.place,
            spin_ms: config.spin_ms,
        })
    }

    fn settings(&self) -> Settings {
        let bodies = self.mode == Mode::Body;
        Settings {
            request_body: bodies,
            response_body: bodies,
            response_phase: true,
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        if self.mode == Mode::Body {
            let body = req.body().unwrap_or_default().to_ascii_uppercase();
            req.set_header("x-request-body-len", body.len().to_string());
            req.set_body(body);
        }
        if self.mode == Mode::Count {
            let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
            req.set_header("x-call-count", n.to_string());
        }
        if self.mode == Mode::HalfBad {
            req.set_method("DELETE");
            req.set_path("/elsewhere");
            ctx.set("consumer", "mallory");
            req.set_header("x-fine", "1");
            req.set_header("bad name", "1");
        }
        if self.mode == Mode::Fail && self.phase == Phase::Request {
            return Flow::Fail("misbehave: cannot decide on purpose".into());
        }
        if self.mode == Mode::Frame {
            match self.place {
                Place::Request => req.set_header(&self.header, "5"),
                Place::ResponseHeaders => req.set_response_header(&self.header, "5"),
                Place::Reply => {
                    return Flow::Respond(
                        Reply::new(200)
                            .with_header(&self.header, "5")
                            .with_body("framed by a plugin"),
                    );
                }
                Place::Response => {}
            }
        }
        if self.mode == Mode::Spin {
            spin(self.spin_ms);
        }
        if self.mode == Mode::KvFlood {
            let n = CALLS.fetch_add(1, Ordering::Relaxed);
            let value = vec![7u8; 64 << 10];
            if let Err(e) = plugin_sdk::kv::set(&format!("flood-{n}"), &value, 3_600_000) {
                req.set_header("x-kv-error", e.to_string());
            }
        }
        if self.mode == Mode::CounterFlood {
            let n = CALLS.fetch_add(1, Ordering::Relaxed);
            let bumps = (0..16)
                .map(|i| plugin_sdk::counters::Bump {
                    key: format!("flood-{n}-{i}"),
                    window_ms: 60_000,
                    delta: 1,
                })
                .collect();
            if let Err(e) = plugin_sdk::counters::increment(bumps) {
                req.set_header("x-counters-error", e.to_string());
            }
        }
        if self.mode == Mode::ContextFlood {
            ctx.set("flood", &"c".repeat(1 << 20));
        }
        if self.phase == Phase::Request {
            for (name, value) in misbehave(self.mode) {
                req.add_header(&name, &value);
            }
        }
        Flow::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, _ctx: &Context) -> Flow {
        if self.mode == Mode::Body {
            let len = resp.body().map_or(0, <[u8]>::len);
            resp.set_header("x-response-body-len", len.to_string());
        }
        if self.mode == Mode::Count {
            resp.set_header("x-call-count", CALLS.load(Ordering::Relaxed).to_string());
        }
        if self.mode == Mode::Fail && self.phase == Phase::Response {
            return Flow::Fail("misbehave: cannot decide on purpose".into());
        }
        if self.mode == Mode::Frame && self.place == Place::Response {
            resp.set_header(&self.header, "5");
        }
        if self.phase == Phase::Response {
            for (name, value) in misbehave(self.mode) {
                resp.add_header(&name, &value);
            }
        }
        Flow::Continue
    }
}

plugin_sdk::export_filter!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    #[test]
    fn counts_and_floods() {
        let count = testing::init::<Misbehave>(json!({"mode": "count"})).unwrap();
        let first = testing::request(&count, TestRequest::get("/"));
        let n: u64 = first
            .upstream()
            .unwrap()
            .header("x-call-count")
            .unwrap()
            .parse()
            .unwrap();
        let second = testing::request(&count, TestRequest::get("/"));
        assert_eq!(
            second.upstream().unwrap().header("x-call-count"),
            Some((n + 1).to_string().as_str())
        );
        let flood = testing::init::<Misbehave>(json!({"mode": "headers"})).unwrap();
        let out = testing::request(&flood, TestRequest::get("/"));
        // 10,240 headers: over the gateway's output cap, so none of them is applied.
        let failure = out.failure().expect("flood refused");
        assert_eq!(failure.label(), "output_cap");
        assert_eq!(failure.message(), "10240 header changes, limit 100");
        assert!(out.upstream().is_none());
        let err = testing::init::<Misbehave>(json!({"mode": "init-fail"}))
            .err()
            .unwrap();
        assert_eq!(err, "misbehave: config rejected on purpose");
    }
}
