//! Polling rarely-ready futures only when they woke the task.
//!
//! A connection's task is woken several times per request (request bytes, the upstream's
//! answer, the client ready for more), each time for hyper's connection. Beside it wait the
//! shutdown signal and the park check, which are ready about never; polled on every wake as
//! `select!` does, they cost ≈ 1,000 instructions per proxied request (≈ 3%, callgrind).
//! [`Sparse`] gives them a waker of their own and polls them only after it was woken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The waker handed to the sparse futures: notes that they woke, then wakes the task.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// A gate in front of futures that are seldom ready.
#[derive(Debug)]
pub struct Sparse {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Sparse {
    /// A gate that lets the first poll through (to register the futures' wakers).
    pub fn new() -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Sparse {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Run `poll` (which polls the sparse futures) with their own waker, if one of them woke
    /// since the last time or the last run was ready; otherwise they are still pending.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if !self.flag.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        {
            let mut task = self.flag.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let polled = poll(&mut Context::from_waker(&self.waker));
        if polled.is_ready() {
            // What became ready must be polled again to wait anew (an interval's next tick).
            self.flag.woken.store(true, Ordering::Release);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;

    #[tokio::test]
    async fn polls_only_after_its_own_wake() {
        let sparse = Sparse::new();
        let mut sleep = pin!(tokio::time::sleep(std::time::Duration::from_millis(20)));
        let mut polls = 0;
        std::future::poll_fn(|cx| {
            sparse.poll(cx, |cx| {
                polls += 1;
                sleep.as_mut().poll(cx)
            })
        })
        .await;
        // Once to register, once when the timer fired: never for wakes of the task alone.
        assert_eq!(polls, 2);
    }
}
