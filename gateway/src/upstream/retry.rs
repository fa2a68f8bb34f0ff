//! Retries: a route's policy (which failures, how many attempts, per-try timeout, backoff,
//! which methods) and its upstream's budget (retries at most a share of requests plus a
//! floor a second, as linkerd and Envoy do), so a failing upstream is retried a little, never
//! stormed. The budget's window is ten one-second buckets of atomics.

use super::window::Window;
use crate::config::{RetryBudgetConfig, RetryConfig, RetryMethods, RetryOn};
use http::Method;
use std::time::Duration;

/// Seconds the budget looks back.
const WINDOW_S: u64 = 10;

/// Why an attempt failed, as a policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (nothing sent).
    Connect,
    /// The exchange broke after the request went out.
    Reset,
    /// No response head within the per-try timeout.
    Timeout,
    /// A response with this status.
    Status(u16),
}

impl Failure {
    /// The `reason` label of `gateway_upstream_retries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect_failure",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Status(_) => "status",
        }
    }
}

/// A route's retry policy, compiled.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub attempts: u32,
    connect_failure: bool,
    reset: bool,
    timeout: bool,
    statuses: Vec<u16>,
    /// Each attempt's time to the response head.
    pub per_try_timeout: Option<Duration>,
    backoff: Duration,
    max_backoff: Duration,
    all_methods: bool,
}

impl RetryPolicy {
    /// From a validated `retry` table.
    pub fn new(config: &RetryConfig) -> RetryPolicy {
        let named = |name: &str| {
            config
                .on
                .iter()
                .any(|on| matches!(on, RetryOn::Condition(c) if c == name))
        };
        RetryPolicy {
            attempts: config.attempts.max(1),
            connect_failure: named("connect_failure"),
            reset: named("reset"),
            timeout: named("timeout"),
            statuses: config
                .on
                .iter()
                .filter_map(|on| match on {
                    RetryOn::Status(status) => Some(*status),
                    RetryOn::Condition(_) => None,
                })
                .collect(),
            per_try_timeout: config.per_try_timeout_ms.map(Duration::from_millis),
            backoff: Duration::from_millis(config.backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            all_methods: config.methods == RetryMethods::All,
        }
    }

    /// The conditions `retry.on` may name.
    pub const CONDITIONS: &[&str] = &["connect_failure", "reset", "timeout"];

    /// Whether requests with `method` may be retried.
    pub fn allows(&self, method: &Method) -> bool {
        self.all_methods
            || matches!(
                *method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            )
    }

    /// Whether the policy retries `failure`.
    pub fn retries(&self, failure: Failure) -> bool {
        match failure {
            Failure::Connect => self.connect_failure,
            Failure::Reset => self.reset,
            Failure::Timeout => self.timeout,
            Failure::Status(status) => self.statuses.contains(&status),
        }
    }

    /// The pause before retry `n` (1 for the first): full jitter up to base × 2ⁿ⁻¹, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Retries allowed to one upstream: `percent` of its requests plus `min_per_s` a second,
/// over the last [`WINDOW_S`] seconds.
pub struct RetryBudget {
    percent: u64,
    floor: u64,
    /// Requests and retries.
    window: Window,
}

impl RetryBudget {
    /// From `retry_budget`.
    pub fn new(config: &RetryBudgetConfig) -> RetryBudget {
        RetryBudget {
            percent: u64::from(config.percent),
            floor: u64::from(config.min_per_s) * WINDOW_S,
            window: Window::new(WINDOW_S),
        }
    }

    /// A request arrived (its first attempt).
    pub fn deposit(&self) {
        self.window.add(1, 0);
    }

    /// Take one retry, if the budget has one.
    pub fn withdraw(&self) -> bool {
        let (requests, retries) = self.window.sums();
        if retries * 100 >= requests * self.percent + self.floor * 100 {
            return false;
        }
        self.window.add(0, 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_plus_the_floor() {
        let budget = RetryBudget::new(&RetryBudgetConfig {
            percent: 20,
            min_per_s: 1,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        // 20% of 100, plus 1 a second over the 10 s window.
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20 + 10);
    }

    #[test]
    fn the_policy_names_what_it_retries() {
        let policy = RetryPolicy::new(&RetryConfig {
            attempts: 3,
            on: vec![RetryOn::Condition("reset".into()), RetryOn::Status(503)],
            per_try_timeout_ms: None,
            backoff_ms: 100,
            max_backoff_ms: 300,
            methods: RetryMethods::Idempotent,
        });
        assert!(policy.retries(Failure::Reset) && policy.retries(Failure::Status(503)));
        assert!(!policy.retries(Failure::Timeout) && !policy.retries(Failure::Status(500)));
        assert!(policy.allows(&Method::PUT) && !policy.allows(&Method::POST));
        for n in 1..6 {
            assert!(policy.backoff(n) <= Duration::from_millis(300));
        }
        assert!(policy.backoff(1) <= Duration::from_millis(100));
    }
}
