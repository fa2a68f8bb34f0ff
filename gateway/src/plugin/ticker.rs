//! The epoch ticker: one thread that advances the engines' epoch every [`TICK`] while guest
//! code may run, so a call's `timeout_ms` deadline is `timeout_ms` ticks away.
//!
//! It sleeps whenever no call has started or been in flight for [`IDLE_TICKS`] ticks. Each
//! tick is a timer wake-up of its own thread, and on the benchmark VM one costs ≈ 50 µs of CPU
//! (a timer programmed and fired through the hypervisor): 5% of a core at 1 kHz, charged to
//! the gateway whether or not any plugin runs. Every guest call holds a [`Running`] guard; the
//! first call after a quiet spell wakes the thread (one `unpark`), and while a call is in
//! flight the thread never sleeps, so a guest stuck in a loop is still interrupted. Under
//! steady load calls start every tick and the thread ticks without pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// One epoch tick.
pub const TICK: Duration = Duration::from_millis(1);

/// Quiet ticks after which the thread sleeps until the next call.
const IDLE_TICKS: u32 = 100;

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
    stop: AtomicBool,
    /// Ticks so far (tests and diagnostics).
    ticks: AtomicU64,
}

/// Held while guest code may run (instantiation, `init`, a filter call): the ticker keeps
/// ticking until it is dropped.
pub struct Running<'a>(&'a Shared);

impl Ticker {
    /// Start the thread, asleep until the first call; `advance` increments the epochs.
    pub fn start(advance: impl Fn() + Send + 'static) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared {
            calls: AtomicU64::new(0),
            asleep: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
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
    pub fn running(&self) -> Running<'_> {
        let shared = &*self.shared;
        shared.calls.fetch_add(STARTED + 1, Ordering::SeqCst);
        // Pairs with the thread's store of `asleep` and load of `calls`: either it sees this
        // call and stays awake, or this sees it asleep and wakes it.
        if shared.asleep.load(Ordering::SeqCst) && shared.asleep.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
        Running(shared)
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }

    /// End the thread (after its current tick).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Release);
    }
}

impl Shared {
    fn run(&self, advance: impl Fn()) {
        let mut seen = self.calls.load(Ordering::Relaxed);
        let mut quiet = IDLE_TICKS;
        while !self.stop.load(Ordering::Relaxed) {
            if quiet >= IDLE_TICKS {
                self.asleep.store(true, Ordering::SeqCst);
                if self.calls.load(Ordering::SeqCst) == seen {
                    // A wake-up that raced with the check above returns at once.
                    std::thread::park();
                }
                self.asleep.store(false, Ordering::SeqCst);
                quiet = 0;
            }
            std::thread::sleep(TICK);
            advance();
            self.ticks.fetch_add(1, Ordering::Relaxed);
            let now = self.calls.load(Ordering::Acquire);
            let busy = now != seen || now & RUNNING_MASK > 0;
            seen = now;
            quiet = if busy { 0 } else { quiet + 1 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Wait up to 10 s for `done`, checking every tick.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(TICK);
        }
        false
    }

    /// Whether the ticker advances during `span`.
    fn ticks_during(ticker: &Ticker, span: Duration) -> bool {
        let before = ticker.ticks();
        std::thread::sleep(span);
        ticker.ticks() != before
    }

    #[test]
    fn sleeps_without_calls_and_ticks_while_one_runs() {
        let ticker = Ticker::start(|| {}).unwrap();
        assert!(!ticks_during(&ticker, TICK * 50), "ticking before any call");
        let running = ticker.running();
        let woke = ticker.ticks();
        assert!(
            eventually(|| ticker.ticks() > woke),
            "a call did not wake it"
        );
        // A call that runs for longer than the idle spell keeps it ticking: a guest stuck in
        // a loop must still reach its deadline.
        std::thread::sleep(TICK * (IDLE_TICKS * 2));
        assert!(
            ticks_during(&ticker, TICK * 50),
            "stopped under a running call"
        );
        drop(running);
        // Asleep again once quiet: two spans in a row without a tick.
        assert!(eventually(
            || !ticks_during(&ticker, TICK * 20) && !ticks_during(&ticker, TICK * 20)
        ));
        // And woken again by the next call.
        let again = ticker.ticks();
        let _running = ticker.running();
        assert!(eventually(|| ticker.ticks() > again));
        ticker.stop();
    }
}
