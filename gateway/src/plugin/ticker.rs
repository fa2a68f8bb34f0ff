//! The epoch ticker: one thread that advances the engines' epoch while guest code may run.
//! An epoch increment makes running guest code check its call's wall-clock deadline (the
//! store's epoch callback, see [`super::pool`]); a call past it is stopped as a timeout.
//!
//! Each tick is a timer wake-up of its own thread, and on the benchmark VM one costs ≈ 50 µs
//! of CPU (a timer programmed and fired through the hypervisor): at 1 kHz, 5% of a core,
//! charged to the gateway whether or not any plugin runs. So the thread ticks only as often
//! as the loaded plugins' timeouts need — every quarter of the shortest `timeout_ms`, between
//! [`MIN_PERIOD`] and [`MAX_PERIOD`], which bounds how far past its timeout a call can run —
//! and sleeps once no call has started or been in flight for [`IDLE`]. Every guest call holds
//! a [`Running`] guard; the first call after a quiet spell wakes the thread (one `unpark`),
//! and while a call is in flight the thread never sleeps, so a guest stuck in a loop is still
//! stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Shortest period between ticks.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);
/// Longest period between ticks (while any call runs).
pub const MAX_PERIOD: Duration = Duration::from_millis(5);

/// Time without a call after which the thread sleeps until the next call.
const IDLE: Duration = Duration::from_millis(100);

/// One started call in [`Shared::calls`]' upper half; one running call is 1.
const STARTED: u64 = 1 << 32;
const RUNNING_MASK: u64 = STARTED - 1;

/// A handle on the ticker thread: cloned into every loaded plugin.
#[derive(Clone)]
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

struct Shared {
    /// Upper 32 bits: calls started (wrapping); lower 32 bits: calls running. One atomic add
    /// records both when a call starts.
    calls: AtomicU64,
    /// The thread has stopped ticking, or is about to: the next call must wake it.
    asleep: AtomicBool,
    /// Time between ticks, in microseconds.
    period_us: AtomicU64,
    stop: AtomicBool,
    /// Times the thread woke from a tick's sleep (tests and diagnostics).
    wakes: AtomicU64,
}

/// Held while guest code may run (instantiation, `init`, a filter call): the ticker keeps
/// ticking until it is dropped. Owned, so it can go with a call that moves to a guest thread.
pub struct Running(Arc<Shared>);

impl Ticker {
    /// Start the thread, asleep until the first call; `advance` increments the epochs.
    pub fn start(advance: impl Fn() + Send + 'static) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared {
            calls: AtomicU64::new(0),
            asleep: AtomicBool::new(true),
            period_us: AtomicU64::new(micros(MAX_PERIOD)),
            stop: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
        });
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || state.run(advance))?;
        Ok(Ticker {
            shared,
            thread: thread.thread().clone(),
        })
    }

    /// Mark a call as running (waking the thread if it sleeps) until the guard is dropped.
    pub fn running(&self) -> Running {
        let shared = &*self.shared;
        shared.calls.fetch_add(STARTED + 1, Ordering::SeqCst);
        // Pairs with the thread's store of `asleep` and load of `calls`: either it sees this
        // call and stays awake, or this sees it asleep and wakes it.
        if shared.asleep.load(Ordering::SeqCst) && shared.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
        Running(self.shared.clone())
    }

    /// Tick often enough for a call with this timeout to be stopped within a quarter of it
    /// past its deadline (within [`MIN_PERIOD`] for timeouts under 4 ms).
    pub fn serve_timeout(&self, timeout: Duration) {
        let period = (timeout / 4).clamp(MIN_PERIOD, MAX_PERIOD);
        self.shared
            .period_us
            .fetch_min(micros(period), Ordering::Relaxed);
    }

    /// Time between ticks.
    pub fn period(&self) -> Duration {
        Duration::from_micros(self.shared.period_us.load(Ordering::Relaxed))
    }

    /// Times the thread woke to tick so far.
    pub fn wakes(&self) -> u64 {
        self.shared.wakes.load(Ordering::Relaxed)
    }

    /// End the thread (after its current tick).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Release);
    }
}

impl Shared {
    fn run(&self, advance: impl Fn()) {
        let mut seen = self.calls.load(Ordering::Relaxed);
        let mut last_busy: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if last_busy.is_none_or(|at| at.elapsed() >= IDLE) {
                self.asleep.store(true, Ordering::SeqCst);
                if self.calls.load(Ordering::SeqCst) == seen {
                    // A wake-up that raced with the check above returns at once.
                    std::thread::park();
                }
                self.asleep.store(false, Ordering::SeqCst);
                last_busy = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(
                self.period_us.load(Ordering::Relaxed),
            ));
            self.wakes.fetch_add(1, Ordering::Relaxed);
            let now = self.calls.load(Ordering::Acquire);
            if now & RUNNING_MASK > 0 {
                // Only running guest code looks at the epoch.
                advance();
            }
            if now != seen || now & RUNNING_MASK > 0 {
                last_busy = Some(Instant::now());
            }
            seen = now;
        }
    }
}

fn micros(span: Duration) -> u64 {
    u64::try_from(span.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Wait up to 10 s for `done`.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(MIN_PERIOD);
        }
        false
    }

    /// Whether `count` moves during `span`.
    fn moves(count: impl Fn() -> u64, span: Duration) -> bool {
        let before = count();
        std::thread::sleep(span);
        count() != before
    }

    #[test]
    fn sleeps_without_calls_and_advances_while_one_runs() {
        let advanced = Arc::new(AtomicU64::new(0));
        let counter = advanced.clone();
        let ticker = Ticker::start(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let advances = || advanced.load(Ordering::Relaxed);
        let span = MAX_PERIOD * 10;
        assert!(!moves(|| ticker.wakes(), span), "awake before any call");
        let running = ticker.running();
        assert!(eventually(|| advances() > 0), "a call did not wake it");
        // A call that runs for longer than the idle spell keeps it ticking: a guest stuck in
        // a loop must still reach its deadline.
        std::thread::sleep(IDLE * 2);
        assert!(
            eventually(|| moves(advances, span)),
            "stopped under a running call"
        );
        drop(running);
        // No epoch advance without a running call, and asleep again once quiet.
        assert!(eventually(|| !moves(advances, span)));
        assert!(eventually(
            || !moves(|| ticker.wakes(), span) && !moves(|| ticker.wakes(), span)
        ));
        // Woken again by the next call.
        let before = advances();
        let _running = ticker.running();
        assert!(eventually(|| advances() > before));
        ticker.stop();
    }

    #[test]
    fn period_follows_the_shortest_timeout() {
        let ticker = Ticker::start(|| {}).unwrap();
        assert_eq!(ticker.period(), MAX_PERIOD);
        ticker.serve_timeout(Duration::from_millis(200));
        assert_eq!(ticker.period(), MAX_PERIOD);
        ticker.serve_timeout(Duration::from_millis(8));
        assert_eq!(ticker.period(), Duration::from_millis(2));
        ticker.serve_timeout(Duration::from_millis(20));
        assert_eq!(
            ticker.period(),
            Duration::from_millis(2),
            "never lengthened"
        );
        ticker.serve_timeout(Duration::from_millis(1));
        assert_eq!(ticker.period(), MIN_PERIOD);
        ticker.stop();
    }
}
