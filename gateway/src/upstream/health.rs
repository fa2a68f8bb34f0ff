//! Whether each target of an upstream is in rotation: active health checks (a `GET` of a path
//! every interval, thresholds of consecutive passes and failures) and passive outlier
//! detection (consecutive failures of real requests eject a target for a time that grows with
//! each ejection, at most a share of the targets at once). A target serves while it is
//! healthy by the checks and not ejected.
//!
//! Everything is atomics read on the request path: one load per flag, no lock. The checks
//! run as one task per upstream on the control runtime ([`Checker`]), which ends when the
//! upstream is dropped (a reload that changed it).

use crate::config::{HealthCheckConfig, InitialHealth, OutlierConfig};
use crate::telemetry::metrics;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a request to a target went, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head that is not a 5xx.
    Success,
    /// A 5xx, a connect or TLS failure, a timeout, a broken exchange.
    Failure,
}

/// One target's health.
pub struct TargetHealth {
    /// Healthy by the active checks (always, without checks).
    checked_ok: AtomicBool,
    /// Active checks: consecutive passes (> 0) or failures (< 0).
    streak: std::sync::atomic::AtomicI32,
    /// Consecutive failed requests.
    failures: AtomicU32,
    /// Ejected until this many ms after the upstream's epoch; 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the next one lasts this + 1 times the base).
    ejections: AtomicU32,
    healthy_gauge: IntGauge,
    label: (String, String),
}

/// The health of an upstream's targets.
pub struct Health {
    targets: Vec<TargetHealth>,
    /// Replaced by a reload: its state no longer shows in the `healthy` gauges (which the
    /// upstream replacing it shares).
    retired: AtomicBool,
    start_ok: bool,
    outlier: OutlierConfig,
    epoch: Instant,
}

impl Health {
    /// Health for `targets` (their labels) of `upstream`, as configured.
    pub fn new(
        upstream: &str,
        targets: &[String],
        checks: Option<&HealthCheckConfig>,
        outlier: &OutlierConfig,
    ) -> Health {
        let start_ok = checks.is_none_or(|c| c.initial == InitialHealth::Healthy);
        let targets = targets
            .iter()
            .map(|target| {
                let gauge = metrics::metrics()
                    .target_healthy
                    .with_label_values(&[upstream, target]);
                TargetHealth {
                    checked_ok: AtomicBool::new(start_ok),
                    streak: std::sync::atomic::AtomicI32::new(0),
                    failures: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                    ejections: AtomicU32::new(0),
                    healthy_gauge: gauge,
                    label: (upstream.to_string(), target.clone()),
                }
            })
            .collect();
        Health {
            targets,
            retired: AtomicBool::new(false),
            start_ok,
            outlier: outlier.clone(),
            epoch: Instant::now(),
        }
    }

    /// Now, as the ejection deadlines count it.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether target `i` is in rotation now. Reads the clock only while it is ejected; an
    /// ejection found over is cleared, so the next call reads none.
    pub fn serves(&self, i: usize) -> bool {
        self.serves_at(i, || self.now_ms())
    }

    fn serves_at(&self, i: usize, now: impl FnOnce() -> u64) -> bool {
        let target = &self.targets[i];
        if !target.checked_ok.load(Ordering::Relaxed) {
            return false;
        }
        let until = target.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if until > now() {
            return false;
        }
        if target
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.show(target, true);
            let (upstream, label) = &target.label;
            tracing::info!(
                upstream,
                target = label,
                "ejection over: target back in rotation"
            );
        }
        true
    }

    /// Count a request's outcome on target `i`; a failure may eject it.
    pub fn record(&self, i: usize, outcome: Outcome) {
        let target = &self.targets[i];
        if outcome == Outcome::Success {
            if target.failures.load(Ordering::Relaxed) != 0 {
                target.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let limit = self.outlier.consecutive_failures;
        let failures = target.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if limit == 0 || failures < limit {
            return;
        }
        let now = self.now_ms();
        if target.ejected_until.load(Ordering::Relaxed) > now || !self.may_eject(now) {
            return;
        }
        target.failures.store(0, Ordering::Relaxed);
        let ejections = target.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = (self.outlier.base_ejection_ms * u64::from(ejections))
            .min(self.outlier.max_ejection_ms);
        target.ejected_until.store(now + length, Ordering::Relaxed);
        self.show(target, false);
        let (upstream, label) = &target.label;
        metrics::metrics()
            .ejections
            .with_label_values(&[upstream, label])
            .inc();
        tracing::warn!(
            upstream,
            target = label,
            failures,
            ejection_ms = length,
            "target ejected after {failures} consecutive failures"
        );
    }

    /// Whether one more target may be ejected: at most `max_ejected_percent` of them (at
    /// least one may be).
    fn may_eject(&self, now: u64) -> bool {
        let ejected = self
            .targets
            .iter()
            .filter(|t| t.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let allowed = (self.targets.len() * self.outlier.max_ejected_percent as usize / 100).max(1);
        ejected < allowed
    }

    /// A check of target `i` passed or failed; `thresholds` are (healthy, unhealthy).
    fn checked(&self, i: usize, passed: bool, (healthy, unhealthy): (u32, u32)) {
        let target = &self.targets[i];
        let streak = target.streak.load(Ordering::Relaxed);
        let streak = match (passed, streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        target.streak.store(streak, Ordering::Relaxed);
        let was_ok = target.checked_ok.load(Ordering::Relaxed);
        let now_ok = if was_ok {
            !(streak < 0 && streak.unsigned_abs() >= unhealthy)
        } else {
            streak > 0 && streak.unsigned_abs() >= healthy
        };
        if now_ok != was_ok {
            target.checked_ok.store(now_ok, Ordering::Relaxed);
            let (upstream, label) = &target.label;
            if now_ok {
                tracing::info!(
                    upstream,
                    target = label,
                    "target healthy again (active checks)"
                );
            } else {
                tracing::warn!(upstream, target = label, "target unhealthy (active checks)");
            }
        }
        self.refresh_gauge(i);
    }

    /// The `healthy` gauge of target `i` from its state now (an ejection may have ended).
    pub fn refresh_gauge(&self, i: usize) {
        let serves = self.serves(i);
        self.show(&self.targets[i], serves);
    }

    /// Show every target's starting state, once the upstream serves.
    pub fn publish(&self) {
        for target in &self.targets {
            self.show(target, self.start_ok);
        }
    }

    /// Stop showing in the gauges: a reload replaced this upstream.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether a reload replaced this upstream.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    fn show(&self, target: &TargetHealth, serves: bool) {
        if !self.is_retired() {
            target.healthy_gauge.set(i64::from(serves));
        }
    }

    /// The number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }
}

/// Runs the active checks of one upstream.
pub struct Checker {
    /// GET this path.
    pub path: String,
    /// Between checks of a target (jittered).
    pub interval: Duration,
    /// Per check.
    pub timeout: Duration,
    /// (healthy, unhealthy) thresholds.
    pub thresholds: (u32, u32),
    /// Passing statuses; empty: 2xx.
    pub expected: Vec<u16>,
}

impl Checker {
    /// From the config.
    pub fn new(config: &HealthCheckConfig) -> Checker {
        Checker {
            path: config.path.clone(),
            interval: Duration::from_millis(config.interval_ms),
            timeout: Duration::from_millis(config.timeout_ms),
            thresholds: (config.healthy_threshold, config.unhealthy_threshold),
            expected: config.expected_statuses.clone(),
        }
    }

    /// Whether `status` passes.
    pub fn passes(&self, status: u16) -> bool {
        if self.expected.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected.contains(&status)
        }
    }

    /// The pause before the next round: the interval ± 10%.
    pub fn next_pause(&self) -> Duration {
        let jitter = 0.9 + fastrand::f64() * 0.2;
        self.interval.mul_f64(jitter)
    }

    /// Record a round's results (`passed[i]` for target `i`) in `health`.
    pub fn record(&self, health: &Health, i: usize, passed: bool) {
        let (upstream, label) = &health.targets[i].label;
        metrics::metrics()
            .health_checks
            .with_label_values(&[
                upstream.as_str(),
                label.as_str(),
                if passed { "pass" } else { "fail" },
            ])
            .inc();
        health.checked(i, passed, self.thresholds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(consecutive: u32, percent: u32) -> Health {
        let outlier = OutlierConfig {
            consecutive_failures: consecutive,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            max_ejected_percent: percent,
        };
        let targets: Vec<String> = (0..4).map(|i| format!("unit-{i}:80")).collect();
        Health::new("unit", &targets, None, &outlier)
    }

    #[test]
    fn consecutive_failures_eject_for_longer_each_time_and_a_success_resets_them() {
        let h = health(3, 50);
        h.record(0, Outcome::Failure);
        h.record(0, Outcome::Failure);
        h.record(0, Outcome::Success);
        h.record(0, Outcome::Failure);
        h.record(0, Outcome::Failure);
        assert!(h.serves(0), "a success in between resets the count");
        h.record(0, Outcome::Failure);
        let now = h.now_ms();
        assert!(!h.serves_at(0, || now));
        assert!(h.serves_at(0, || now + 1000), "back after the base time");
        // The second ejection lasts twice as long, the third is capped.
        h.targets[0].ejected_until.store(0, Ordering::Relaxed);
        for _ in 0..3 {
            h.record(0, Outcome::Failure);
        }
        let now = h.now_ms();
        assert!(!h.serves_at(0, || now + 1500) && h.serves_at(0, || now + 2000));
        h.targets[0].ejected_until.store(0, Ordering::Relaxed);
        for _ in 0..3 {
            h.record(0, Outcome::Failure);
        }
        let now = h.now_ms();
        assert!(!h.serves_at(0, || now + 2400) && h.serves_at(0, || now + 2500));
    }

    #[test]
    fn at_most_the_configured_share_is_ejected() {
        let h = health(1, 50);
        for i in 0..4 {
            h.record(i, Outcome::Failure);
        }
        let serving = (0..4).filter(|i| h.serves(*i)).count();
        assert_eq!(serving, 2, "half of four ejected at most");
        let h = health(1, 0);
        h.record(0, Outcome::Failure);
        h.record(1, Outcome::Failure);
        assert_eq!(
            (0..4).filter(|i| h.serves(*i)).count(),
            3,
            "one always may be"
        );
        let h = health(0, 100);
        for _ in 0..100 {
            h.record(0, Outcome::Failure);
        }
        assert!(h.serves(0), "0 turns detection off");
    }

    #[test]
    fn active_checks_follow_the_thresholds() {
        let checks = HealthCheckConfig {
            path: "/".into(),
            interval_ms: 1000,
            timeout_ms: 100,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![],
            initial: InitialHealth::Unknown,
        };
        let h = Health::new(
            "unit-checks",
            &["t:80".into()],
            Some(&checks),
            &OutlierConfig::default(),
        );
        assert!(!h.serves(0), "unknown until a check passes");
        let checker = Checker::new(&checks);
        checker.record(&h, 0, true);
        assert!(!h.serves(0));
        checker.record(&h, 0, true);
        assert!(h.serves(0));
        checker.record(&h, 0, false);
        checker.record(&h, 0, false);
        assert!(h.serves(0));
        checker.record(&h, 0, false);
        assert!(!h.serves(0));
        assert!(checker.passes(204) && !checker.passes(301) && !checker.passes(500));
    }
}
