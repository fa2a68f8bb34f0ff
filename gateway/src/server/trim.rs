//! Handing the memory of parked connections back to the operating system.
//!
//! A parked connection frees hyper's ≈ 24 KB of buffers ([`super::park`]), but glibc's
//! allocator keeps freed chunks that sit between live allocations resident; only
//! `malloc_trim` returns their pages. So parks are counted, and once a second, if enough
//! connections parked since the last trim to matter, the heap is trimmed on a blocking thread.
//! Other allocators (musl, or a non-glibc target) get nothing: the count is kept but unused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Parks since the last trim.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// Parks that make a trim worth its walk over the heap: about 1.5 MB of buffers.
const TRIM_AFTER_PARKS: usize = 64;

/// A connection parked: its buffers are free.
pub fn parked() {
    PARKED.fetch_add(1, Ordering::Relaxed);
}

/// Trim the heap once a second when [`TRIM_AFTER_PARKS`] connections parked since the last
/// trim; runs until the runtime ends.
pub async fn run() {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if PARKED.load(Ordering::Relaxed) < TRIM_AFTER_PARKS {
            continue;
        }
        PARKED.store(0, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointers and has no preconditions; it only locks the
    // allocator's arenas while it returns free pages to the kernel.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
