//! Two counts per second over the last few seconds, in atomics: what the error-rate breaker
//! (requests, errors) and the retry budget (requests, retries) measure their share over.
//! Adding is a clock read and two relaxed adds; a bucket whose second has passed is reset by
//! the first writer of its new second.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Counts of the last `seconds` seconds.
pub struct Window {
    buckets: Box<[Bucket]>,
    epoch: Instant,
}

#[derive(Default)]
struct Bucket {
    /// The second (since the epoch) it counts, + 1; 0: never used.
    second: AtomicU64,
    counts: [AtomicU32; 2],
}

impl Window {
    /// A window of `seconds` (at least 1) one-second buckets.
    pub fn new(seconds: u64) -> Window {
        Window {
            buckets: (0..seconds.max(1)).map(|_| Bucket::default()).collect(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs() + 1
    }

    /// Add `(first, second)` to this second's counts.
    pub fn add(&self, first: u32, second: u32) {
        let now = self.now();
        let bucket = &self.buckets[(now % self.buckets.len() as u64) as usize];
        let stamped = bucket.second.load(Ordering::Relaxed);
        if stamped != now
            && bucket
                .second
                .compare_exchange(stamped, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            for count in &bucket.counts {
                count.store(0, Ordering::Relaxed);
            }
        }
        for (count, n) in bucket.counts.iter().zip([first, second]) {
            if n > 0 {
                count.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Both counts summed over the window.
    pub fn sums(&self) -> (u64, u64) {
        let oldest = self.now().saturating_sub(self.buckets.len() as u64);
        let mut sums = (0, 0);
        for bucket in &self.buckets {
            if bucket.second.load(Ordering::Relaxed) > oldest {
                sums.0 += u64::from(bucket.counts[0].load(Ordering::Relaxed));
                sums.1 += u64::from(bucket.counts[1].load(Ordering::Relaxed));
            }
        }
        sums
    }

    /// Forget everything counted.
    pub fn clear(&self) {
        for bucket in &self.buckets {
            bucket.second.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_clear() {
        let window = Window::new(10);
        window.add(1, 0);
        window.add(1, 1);
        window.add(0, 1);
        assert_eq!(window.sums(), (2, 2));
        window.clear();
        assert_eq!(window.sums(), (0, 0));
    }
}
