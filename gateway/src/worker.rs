//! Which worker thread the current code runs on.
//!
//! The gateway serves like nginx's worker processes: each worker is a thread with a
//! single-threaded async runtime of its own and its own listening sockets (`SO_REUSEPORT`, so
//! the kernel spreads connections over them), and a request lives and dies on the worker that
//! accepted its connection ([`crate::server`]). State that does I/O on a runtime is therefore
//! kept per worker where a request would otherwise hop threads: an upstream connection's I/O
//! task runs on the worker that opened it, so each worker keeps its own idle connections
//! ([`crate::upstream`]). Everything else (route tables, plugin pools, counters) is shared.

use std::cell::Cell;
use std::num::NonZeroUsize;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the calling thread; 0 on any other thread.
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Mark the calling thread as worker `index`.
pub fn enter(index: usize) {
    INDEX.with(|cell| cell.set(index));
}

/// How many workers `[server] workers` asks for: the number given, or with 0 one per CPU this
/// process may run on (its affinity mask, so `taskset -c 0` means one).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_index() {
        enter(3);
        assert_eq!(current(), 3);
        let other = std::thread::spawn(current).join().unwrap_or(usize::MAX);
        assert_eq!(other, 0);
        assert_eq!(current(), 3);
    }

    /// Checked against `nproc`, which counts the CPUs of the process's affinity mask on its
    /// own (the old `count(0) >= 1` held whatever `count` did).
    #[test]
    fn zero_means_one_per_cpu() {
        assert_eq!(count(5), 5);
        let nproc = std::process::Command::new("nproc").output().unwrap();
        let cpus: usize = String::from_utf8_lossy(&nproc.stdout)
            .trim()
            .parse()
            .unwrap();
        assert_eq!(count(0), cpus);
    }
}
