//! Circuit breakers of one upstream, checked before any target is tried.
//!
//! - Concurrency (Envoy's): at most `max_requests` in flight; up to `max_pending` more wait
//!   for a slot for `pending_timeout_ms`; the rest get 503 `upstream_overloaded` at once, so a
//!   slow upstream costs its callers a fast refusal instead of a pile-up.
//! - Error rate: once `min_requests` requests in the last `window_s` seconds failed at
//!   `error_rate` or more, the circuit opens: 503 `circuit_open` for `open_ms`; then it
//!   half-opens and lets exactly `probes` requests through; all succeed: closed, one fails:
//!   open again. The window is per-second buckets of atomics: recording a request is two
//!   atomic adds.

use super::window::Window;
use crate::config::BreakerConfig;
use crate::telemetry::metrics;
use prometheus::IntGauge;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_requests` in flight and no pending slot (or the wait ran out).
    Overloaded,
    /// The error-rate breaker is open (or half-open with its probes out).
    Open,
}

/// Let through: holds the concurrency slot; a half-open probe must report how it went.
pub struct Admission<'a> {
    _slot: Option<Slot<'a>>,
    probe: Option<&'a ErrorRate>,
}

impl Admission<'_> {
    /// How the request went (`ok`: a response head that is not a 5xx).
    pub fn finish(mut self, breaker: &Breaker, ok: bool) {
        if let Some(rate) = &breaker.rate {
            rate.record(ok, self.probe.take().is_some());
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        // A probe that never reported (its client went away) proves nothing: open again.
        if let Some(rate) = self.probe.take() {
            rate.record(false, true);
        }
    }
}

/// The breakers of one upstream.
pub struct Breaker {
    slots: Option<Slots>,
    rate: Option<ErrorRate>,
}

/// The concurrency slots: a counter, and a queue only for those who wait. (tokio's
/// `Semaphore` takes a lock on every release; this costs two atomic operations a request.)
struct Slots {
    max: usize,
    busy: AtomicUsize,
    max_pending: usize,
    pending: AtomicUsize,
    freed: Notify,
    wait: Duration,
}

/// One slot taken; given back when dropped.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        if self.0.pending.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

impl Breaker {
    /// From `[upstreams.NAME.breaker]`.
    pub fn new(upstream: &str, config: &BreakerConfig) -> Breaker {
        let slots = (config.max_requests > 0).then(|| Slots {
            max: config.max_requests,
            busy: AtomicUsize::new(0),
            max_pending: config.max_pending,
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
            wait: Duration::from_millis(config.pending_timeout_ms),
        });
        let rate = config.error_rate.map(|threshold| {
            let gauge = metrics::metrics()
                .circuit_state
                .with_label_values(&[upstream]);
            gauge.set(CLOSED.into());
            ErrorRate {
                upstream: upstream.to_string(),
                threshold,
                min_requests: config.min_requests,
                open_for: config.open_ms,
                probes: config.probes.max(1),
                window: Window::new(config.window_s),
                state: AtomicU8::new(CLOSED),
                opened_at: AtomicU64::new(0),
                probes_out: AtomicU32::new(0),
                probes_ok: AtomicU32::new(0),
                epoch: Instant::now(),
                gauge,
            }
        });
        Breaker { slots, rate }
    }

    /// Whether either breaker is configured.
    pub fn is_set(&self) -> bool {
        self.slots.is_some() || self.rate.is_some()
    }

    /// Let a request through, or say why not.
    pub async fn admit(&self) -> Result<Admission<'_>, Refusal> {
        let probe = match &self.rate {
            Some(rate) => rate.admit()?.then_some(rate),
            None => None,
        };
        let mut admission = Admission { _slot: None, probe };
        if let Some(slots) = &self.slots {
            admission._slot = Some(slots.take().await?);
        }
        Ok(admission)
    }
}

impl Slots {
    fn try_take(&self) -> Option<Slot<'_>> {
        let mut busy = self.busy.load(Ordering::SeqCst);
        while busy < self.max {
            match self.busy.compare_exchange_weak(
                busy,
                busy + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Slot(self)),
                Err(now) => busy = now,
            }
        }
        None
    }

    async fn take(&self) -> Result<Slot<'_>, Refusal> {
        if let Some(slot) = self.try_take() {
            return Ok(slot);
        }
        let waiting = self.pending.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.pending);
        if waiting >= self.max_pending {
            return Err(Refusal::Overloaded);
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Registered before the check, so a slot freed in between wakes this one.
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Refusal::Overloaded);
            }
        }
    }
}

/// Leaves the pending count when dropped.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The error-rate breaker.
pub struct ErrorRate {
    upstream: String,
    threshold: f64,
    min_requests: u64,
    open_for: u64,
    probes: u32,
    /// Requests and errors of the last `window_s` seconds.
    window: Window,
    state: AtomicU8,
    /// When it last opened (ms since `epoch`).
    opened_at: AtomicU64,
    probes_out: AtomicU32,
    probes_ok: AtomicU32,
    epoch: Instant,
    gauge: IntGauge,
}

impl ErrorRate {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Ok(true): a half-open probe; Ok(false): closed, through.
    fn admit(&self) -> Result<bool, Refusal> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(false),
            OPEN => {
                let opened = self.opened_at.load(Ordering::Relaxed);
                if self.now_ms() < opened + self.open_for {
                    return Err(Refusal::Open);
                }
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.probes_out.store(0, Ordering::Relaxed);
                    self.probes_ok.store(0, Ordering::Relaxed);
                    self.gauge.set(HALF_OPEN.into());
                    tracing::info!(upstream = %self.upstream, "circuit half-open: {} probes", self.probes);
                }
                self.admit_probe()
            }
            _ => self.admit_probe(),
        }
    }

    fn admit_probe(&self) -> Result<bool, Refusal> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(false);
        }
        if self.probes_out.fetch_add(1, Ordering::AcqRel) < self.probes {
            Ok(true)
        } else {
            Err(Refusal::Open)
        }
    }

    fn record(&self, ok: bool, probe: bool) {
        if probe {
            if !ok {
                self.open("a half-open probe failed");
            } else if self.probes_ok.fetch_add(1, Ordering::AcqRel) + 1 == self.probes
                && self
                    .state
                    .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.window.clear();
                self.gauge.set(CLOSED.into());
                tracing::info!(upstream = %self.upstream, "circuit closed: every probe succeeded");
            }
            return;
        }
        self.window.add(1, u32::from(!ok));
        if ok || self.state.load(Ordering::Acquire) != CLOSED {
            return;
        }
        let (total, errors) = self.window.sums();
        if total >= self.min_requests && errors as f64 >= self.threshold * total as f64 {
            self.open(&format!("{errors} of {total} requests failed"));
        }
    }

    fn open(&self, why: &str) {
        self.opened_at.store(self.now_ms(), Ordering::Relaxed);
        let previous = self.state.swap(OPEN, Ordering::AcqRel);
        if previous != OPEN {
            self.gauge.set(OPEN.into());
            tracing::warn!(
                upstream = %self.upstream,
                "circuit open for {} ms: {why}",
                self.open_for
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: f64, min: u64, open_ms: u64, probes: u32) -> BreakerConfig {
        BreakerConfig {
            error_rate: Some(rate),
            min_requests: min,
            open_ms,
            probes,
            window_s: 30,
            ..BreakerConfig::default()
        }
    }

    #[tokio::test]
    async fn the_error_rate_opens_then_exactly_the_probes_half_open_and_close() {
        let breaker = Breaker::new("unit-rate", &config(0.5, 4, 50, 3));
        for ok in [true, false, true] {
            breaker.admit().await.unwrap().finish(&breaker, ok);
        }
        // 2 of 4 failed: at the threshold with the minimum.
        breaker.admit().await.unwrap().finish(&breaker, false);
        assert_eq!(breaker.admit().await.err(), Some(Refusal::Open));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let mut probes = Vec::new();
        for _ in 0..3 {
            probes.push(breaker.admit().await.unwrap());
        }
        assert_eq!(
            breaker.admit().await.err(),
            Some(Refusal::Open),
            "only 3 probes"
        );
        for probe in probes {
            probe.finish(&breaker, true);
        }
        assert!(breaker.admit().await.is_ok(), "closed");
    }

    #[tokio::test]
    async fn a_failed_probe_opens_again() {
        let breaker = Breaker::new("unit-probe", &config(0.5, 2, 30, 2));
        breaker.admit().await.unwrap().finish(&breaker, false);
        breaker.admit().await.unwrap().finish(&breaker, false);
        assert!(breaker.admit().await.is_err());
        tokio::time::sleep(Duration::from_millis(40)).await;
        breaker.admit().await.unwrap().finish(&breaker, false);
        assert_eq!(breaker.admit().await.err(), Some(Refusal::Open));
        tokio::time::sleep(Duration::from_millis(40)).await;
        // A probe dropped without a result counts as failed.
        drop(breaker.admit().await.unwrap());
        assert_eq!(breaker.admit().await.err(), Some(Refusal::Open));
    }

    #[tokio::test]
    async fn concurrency_beyond_the_slots_and_the_queue_is_refused() {
        let breaker = Breaker::new(
            "unit-slots",
            &BreakerConfig {
                max_requests: 2,
                max_pending: 1,
                pending_timeout_ms: 50,
                ..BreakerConfig::default()
            },
        );
        let a = breaker.admit().await.unwrap();
        let _b = breaker.admit().await.unwrap();
        // The third waits for a slot; the fourth finds the queue full.
        let mut third = Box::pin(breaker.admit());
        assert!(
            tokio::time::timeout(Duration::ZERO, &mut third)
                .await
                .is_err()
        );
        assert_eq!(breaker.admit().await.err(), Some(Refusal::Overloaded));
        drop(a);
        assert!(third.await.is_ok(), "the pending one got the freed slot");
    }
}
