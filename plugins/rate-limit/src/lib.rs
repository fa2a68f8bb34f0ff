//! `rate-limit`: limits per second, minute, hour and day (several at once) on the host's
//! `counters` capability — in-memory per gateway, or in Redis shared by all gateways.
//!
//! ```toml
//! { use = "rate-limit", config = { minute = 100, hour = 2000, limit_by = "consumer",
//!   algorithm = "fixed" } }
//! ```
//! - `limit_by`: `consumer` (the context's `consumer`, falling back to the client IP),
//!   `ip`, `header` (with `header_name`), or `route`. Counters are per route unless
//!   `per_route = false`.
//! - `algorithm`: `fixed` admits exactly the limit per window (up to twice the limit across a
//!   window boundary); `sliding` weighs the previous window by its overlap, smoothing bursts
//!   at boundaries, exact only if the previous window's requests were evenly spread.
//! - Over a limit: 429 with `Retry-After`. Every response carries `RateLimit-Limit`,
//!   `RateLimit-Remaining`, `RateLimit-Reset` (the tightest limit, IETF draft names) and
//!   `X-RateLimit-Limit-<Period>` / `X-RateLimit-Remaining-<Period>`; `hide_headers = true`
//!   drops them all, `x_headers = false` only the `X-` ones.
//! - When the backend is down the operator's `[state] on_unavailable` applies, unless the
//!   plugin's own `on_unavailable` overrides it.

use plugin_sdk::counters::{self, Bump, CounterError, UnavailablePolicy};
use plugin_sdk::{Context, Filter, Flow, Reply, Request, Settings};
use serde::Deserialize;

/// What requests are counted together.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitBy {
    /// The authenticated consumer, else the client IP.
    Consumer,
    /// The client IP.
    Ip,
    /// A request header's value (requests without it share one counter).
    Header,
    /// The route as a whole.
    Route,
}

/// Counting algorithm.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Fixed windows.
    #[default]
    Fixed,
    /// Sliding-window estimate.
    Sliding,
}

/// Fail open or closed.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Let requests through.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Requests per second.
    #[serde(default)]
    pub second: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub minute: Option<u64>,
    /// Requests per hour.
    #[serde(default)]
    pub hour: Option<u64>,
    /// Requests per day.
    #[serde(default)]
    pub day: Option<u64>,
    /// What is counted together (default `consumer`).
    #[serde(default = "default_limit_by")]
    pub limit_by: LimitBy,
    /// Header for `limit_by = "header"`.
    #[serde(default)]
    pub header_name: Option<String>,
    /// `fixed` (default) or `sliding`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Count per route (default) or across every route using this plugin.
    #[serde(default = "default_true")]
    pub per_route: bool,
    /// Send no rate-limit headers at all.
    #[serde(default)]
    pub hide_headers: bool,
    /// Send the `X-RateLimit-*` headers too (default true).
    #[serde(default = "default_true")]
    pub x_headers: bool,
    /// Override `[state] on_unavailable` for this use.
    #[serde(default)]
    pub on_unavailable: Option<OnUnavailable>,
}

fn default_limit_by() -> LimitBy {
    LimitBy::Consumer
}
fn default_true() -> bool {
    true
}

/// One configured limit, with its `X-RateLimit-*` header names built once.
#[derive(Debug, Clone)]
struct Limit {
    window_ms: u64,
    max: u64,
    limit_header: String,
    remaining_header: String,
}

/// The filter.
pub struct RateLimit {
    config: Config,
    limits: Vec<Limit>,
}

impl Filter for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let limits: Vec<Limit> = [
            ("second", 1_000, config.second),
            ("minute", 60_000, config.minute),
            ("hour", 3_600_000, config.hour),
            ("day", 86_400_000, config.day),
        ]
        .into_iter()
        .filter_map(|(name, window_ms, max)| {
            max.map(|max| Limit {
                window_ms,
                max,
                limit_header: format!("x-ratelimit-limit-{name}"),
                remaining_header: format!("x-ratelimit-remaining-{name}"),
            })
        })
        .collect();
        if limits.is_empty() {
            return Err("give at least one of `second`, `minute`, `hour`, `day`".into());
        }
        if config.limit_by == LimitBy::Header {
            match &config.header_name {
                Some(h) if plugin_sdk::is_valid_header_name(h) => {}
                _ => return Err("limit_by = \"header\" needs a valid `header_name`".into()),
            }
        }
        Ok(RateLimit { config, limits })
    }

    fn settings(&self) -> Settings {
        // Response headers are set from the request phase (`set_response_header`): no
        // response phase, so no second call per request.
        Settings {
            request_headers: Some(self.config.header_name.iter().cloned().collect()),
            response_headers: Some(Vec::new()),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        let identity = self.identity(req, ctx);
        let bumps: Vec<Bump> = self
            .limits
            .iter()
            .map(|l| Bump {
                key: identity.clone(),
                window_ms: l.window_ms,
                delta: 1,
            })
            .collect();
        let counts = match counters::increment(bumps) {
            Ok(counts) => counts,
            Err(CounterError::Unavailable(policy)) => {
                let allow = match self.config.on_unavailable {
                    Some(OnUnavailable::Allow) => true,
                    Some(OnUnavailable::Deny) => false,
                    None => policy == UnavailablePolicy::Allow,
                };
                return if allow {
                    Flow::Continue
                } else {
                    Flow::Respond(Reply::error(
                        503,
                        "rate_limit_unavailable",
                        "rate limiting is unavailable",
                        ctx,
                    ))
                };
            }
            Err(CounterError::Invalid(message)) => {
                plugin_sdk::log::error(&format!("counters refused the request: {message}"));
                return Flow::Continue;
            }
        };
        let mut headers: Vec<(&str, u64)> = Vec::new();
        let mut tightest: Option<(u64, u64, u64)> = None; // (remaining, limit, reset_s)
        let mut exceeded_reset: Option<u64> = None;
        for (limit, count) in self.limits.iter().zip(&counts) {
            let used = match self.config.algorithm {
                Algorithm::Fixed => count.current,
                Algorithm::Sliding => counters::sliding_estimate(count, limit.window_ms),
            };
            let remaining = limit.max.saturating_sub(used);
            let reset_s = (limit.window_ms - count.elapsed_ms.min(limit.window_ms)).div_ceil(1000);
            if used > limit.max {
                exceeded_reset = Some(exceeded_reset.map_or(reset_s, |r| r.max(reset_s)));
            }
            if tightest.is_none_or(|(r, _, _)| remaining < r) {
                tightest = Some((remaining, limit.max, reset_s));
            }
            if self.config.x_headers {
                headers.push((&limit.limit_header, limit.max));
                headers.push((&limit.remaining_header, remaining));
            }
        }
        if let Some((remaining, max, reset_s)) = tightest {
            headers.push(("ratelimit-limit", max));
            headers.push(("ratelimit-remaining", remaining));
            headers.push(("ratelimit-reset", reset_s));
        }
        if let Some(retry_after) = exceeded_reset {
            let mut reply = Reply::error(429, "rate_limited", "API rate limit exceeded", ctx)
                .with_header("retry-after", retry_after.max(1).to_string());
            if !self.config.hide_headers {
                for (name, value) in headers {
                    reply = reply.with_header(name, value.to_string());
                }
            }
            return Flow::Respond(reply);
        }
        if !self.config.hide_headers {
            for (name, value) in headers {
                req.set_response_header(name, value.to_string());
            }
        }
        Flow::Continue
    }
}

impl RateLimit {
    /// The counter key for this request, built in one string.
    fn identity(&self, req: &Request, ctx: &Context) -> String {
        let (kind, who) = match self.config.limit_by {
            LimitBy::Consumer => match ctx.get("consumer") {
                Some(consumer) => ("consumer:", consumer),
                None => ("ip:", ctx.client_ip()),
            },
            LimitBy::Ip => ("ip:", ctx.client_ip()),
            LimitBy::Header => {
                let name = self.config.header_name.as_deref().unwrap_or_default();
                ("header:", req.header(name).unwrap_or(""))
            }
            LimitBy::Route => ("route", ""),
        };
        let route = if self.config.per_route {
            ctx.route()
        } else {
            ""
        };
        let mut key = String::with_capacity(route.len() + 1 + kind.len() + who.len());
        if self.config.per_route {
            key.push_str(route);
            key.push('|');
        }
        key.push_str(kind);
        key.push_str(who);
        // Counter keys are bounded by the host; keep long header values within that.
        key.truncate(key.floor_char_boundary(400));
        key
    }
}

plugin_sdk::export_filter!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest, TestResponse};
    use serde_json::json;

    #[test]
    fn admits_exactly_the_limit_then_429() {
        testing::reset_state();
        let f = testing::init::<RateLimit>(json!({"hour": 3, "limit_by": "consumer"})).unwrap();
        let req = || TestRequest::get("/").with_context("consumer", "alice");
        for expected_remaining in ["2", "1", "0"] {
            let out = testing::request(&f, req());
            assert!(out.upstream().is_some());
            assert_eq!(
                out.response_header("ratelimit-remaining"),
                Some(expected_remaining)
            );
        }
        let out = testing::request(&f, req());
        let reply = out.reply().expect("limited");
        assert_eq!(reply.status(), 429);
        assert!(reply.header("retry-after").is_some());
        assert_eq!(reply.header("x-ratelimit-remaining-hour"), Some("0"));
        // Another consumer has its own counter.
        let other = TestRequest::get("/").with_context("consumer", "bob");
        assert!(testing::request(&f, other).upstream().is_some());
    }

    #[test]
    fn several_limits_apply_at_once_and_the_tightest_is_reported() {
        testing::reset_state();
        let f =
            testing::init::<RateLimit>(json!({"minute": 2, "day": 100, "limit_by": "ip"})).unwrap();
        let out = testing::request(&f, TestRequest::get("/"));
        assert_eq!(out.response_header("ratelimit-limit"), Some("2"));
        assert_eq!(out.response_header("x-ratelimit-remaining-day"), Some("99"));
        assert!(
            testing::request(&f, TestRequest::get("/"))
                .upstream()
                .is_some()
        );
        let limited = testing::request(&f, TestRequest::get("/"));
        assert_eq!(
            limited.reply().unwrap().status(),
            429,
            "minute limit hit first"
        );
    }

    #[test]
    fn long_multibyte_keys_are_cut_on_a_character_boundary() {
        testing::reset_state();
        let f = testing::init::<RateLimit>(
            json!({"minute": 1, "limit_by": "header", "header_name": "x-key"}),
        )
        .unwrap();
        // 3 bytes per character: byte 400 falls inside one.
        let key = "€".repeat(300);
        let req = || TestRequest::get("/").with_header("x-key", &key);
        assert!(testing::request(&f, req()).upstream().is_some());
        assert_eq!(testing::request(&f, req()).reply().unwrap().status(), 429);
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        use plugin_sdk::counters::Count;
        let count = |current, previous, elapsed_ms| Count {
            current,
            previous,
            elapsed_ms,
        };
        // A quarter into the window, three quarters of the previous one still overlap.
        assert_eq!(
            counters::sliding_estimate(&count(10, 100, 15_000), 60_000),
            85
        );
        assert_eq!(counters::sliding_estimate(&count(10, 100, 0), 60_000), 110);
        assert_eq!(
            counters::sliding_estimate(&count(10, 100, 60_000), 60_000),
            10
        );
    }

    #[test]
    fn response_gets_headers_without_a_response_phase() {
        testing::reset_state();
        let f = testing::init::<RateLimit>(json!({"minute": 10, "limit_by": "ip"})).unwrap();
        assert!(!f.settings().response_phase);
        let out = testing::request(&f, TestRequest::get("/"));
        assert_eq!(out.response_header("ratelimit-limit"), Some("10"));
        assert_eq!(
            out.response_header("x-ratelimit-remaining-minute"),
            Some("9")
        );
        // What the client gets: the upstream's response with the headers added.
        let trip = testing::round_trip(&f, TestRequest::get("/"), TestResponse::new(200));
        let client = trip.client().expect("let through");
        assert_eq!(client.header("ratelimit-limit"), Some("10"));
        assert_eq!(client.header("x-ratelimit-remaining-minute"), Some("8"));
        let hidden =
            testing::init::<RateLimit>(json!({"minute": 10, "hide_headers": true})).unwrap();
        let out = testing::request(&hidden, TestRequest::get("/"));
        assert_eq!(out.response_header("ratelimit-limit"), None);
    }

    #[test]
    fn unavailable_backend_follows_policy() {
        testing::reset_state();
        let f = testing::init::<RateLimit>(json!({"second": 1})).unwrap();
        testing::set_counters_unavailable(Some(UnavailablePolicy::Deny));
        let out = testing::request(&f, TestRequest::get("/"));
        assert_eq!(out.reply().unwrap().status(), 503);
        testing::set_counters_unavailable(Some(UnavailablePolicy::Allow));
        assert!(
            testing::request(&f, TestRequest::get("/"))
                .upstream()
                .is_some()
        );
        testing::set_counters_unavailable(None);
    }
}
