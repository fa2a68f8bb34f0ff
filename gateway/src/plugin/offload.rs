//! Guest threads: where a guest call that turned out to be CPU-bound finishes, off the
//! workers' event loops.
//!
//! Each worker is a single-threaded runtime, and guest code does not return to it until the
//! call ends: eight clients on a route whose plugin loops for 50 ms held a plugin-free route on
//! the same worker at p99 ≈ 1.4 s. Yielding at epoch ticks alone would only share the worker in
//! slices of a tick (1–5 ms) per busy call per I/O event of every other request. So a call
//! that has run guest code for a millisecond when an epoch tick comes (not one waiting on a
//! host call, which stays on the worker: that wait costs the worker nothing) moves here and
//! runs to its end, yielding at each further tick so the calls sharing a guest
//! thread take turns. Its deadline still holds; the worker just awaits the result.
//!
//! The threads run at the lowest ordinary priority (nice 19), so a worker thread that wakes
//! for I/O takes the CPU from guest code at once: other routes' latency is bounded by the
//! kernel's scheduler, not by other tenants' plugins. Guest code still gets the CPU left
//! over, so a plugin that legitimately computes for milliseconds keeps working while the
//! workers are not saturated; when they are, it is the one that waits.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// Nice value of the guest threads: the lowest priority short of `SCHED_IDLE`, under which a
/// loaded machine could starve a plugin that is merely slow.
const GUEST_NICE: i32 = 19;

static GUEST_RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

/// Run `future` on a guest thread; the future back if the threads cannot be started (the
/// caller then finishes it where it is).
pub fn spawn<F>(future: F) -> Result<JoinHandle<F::Output>, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match GUEST_RUNTIME.get_or_init(start) {
        Some(runtime) => Ok(runtime.spawn(future)),
        None => Err(future),
    }
}

fn start() -> Option<Runtime> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("wasm-guest")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .inspect_err(|e| {
            tracing::warn!(
                "cannot start guest threads ({e}); CPU-bound plugin calls stay on the workers"
            );
        })
        .ok()
}

/// Lower the calling thread's priority to [`GUEST_NICE`] (on Linux, `setpriority` on thread
/// id 0 applies to the calling thread only).
fn lower_priority() {
    #[allow(unsafe_code)]
    // SAFETY: plain syscall wrapper with no pointers; failure only leaves the priority as is.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, GUEST_NICE) };
    if result != 0 {
        tracing::debug!(
            "cannot lower guest thread priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
