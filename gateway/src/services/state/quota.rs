//! Per-plugin quotas on the in-process state backend.
//!
//! A plugin's `memory_mb` bounds its own linear memory, but what it stores through `kv` and
//! `counters` on the `memory` backend lives in the gateway's heap: one plugin writing 64 KiB
//! values under fresh keys grew the gateway from 12 MiB to 1.27 GiB in ten requests. So each
//! plugin's namespace has quotas (kv keys and bytes, counter keys), counted as entries are
//! written, replaced, deleted and swept. A write past them first evicts the expired entries
//! (at most once per [`SWEEP_SPACING_MS`] per namespace), and if the namespace is still full
//! it is refused with a message naming the quota — live entries are never evicted behind the
//! plugin's back, since a rate limiter whose counters vanish stops limiting.
//!
//! On the `redis` backend the data lives in Redis, whose `maxmemory` bounds it; these quotas
//! are not applied there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Least time between two quota-driven sweeps of one namespace.
pub const SWEEP_SPACING_MS: u64 = 100;

/// A namespace's limits (`[plugins.NAME]` `kv_max_keys`, `kv_max_bytes`, `counters_max_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Live kv keys.
    pub kv_max_keys: usize,
    /// kv bytes: keys plus values.
    pub kv_max_bytes: usize,
    /// Live counter keys (one per key and window length).
    pub counters_max_keys: usize,
}

/// One plugin's namespace: its name (the key prefix) and what it holds now.
#[derive(Debug)]
pub struct Namespace {
    name: Arc<str>,
    quota: Quota,
    kv_keys: AtomicUsize,
    kv_bytes: AtomicUsize,
    counters: AtomicUsize,
    last_sweep_ms: AtomicU64,
}

impl Namespace {
    /// An empty namespace named `name`.
    pub fn new(name: Arc<str>, quota: Quota) -> Arc<Self> {
        Arc::new(Namespace {
            name,
            quota,
            kv_keys: AtomicUsize::new(0),
            kv_bytes: AtomicUsize::new(0),
            counters: AtomicUsize::new(0),
            last_sweep_ms: AtomicU64::new(0),
        })
    }

    /// The plugin name that prefixes its keys.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// kv keys and bytes held now.
    pub fn kv_usage(&self) -> (usize, usize) {
        (
            self.kv_keys.load(Ordering::Relaxed),
            self.kv_bytes.load(Ordering::Relaxed),
        )
    }

    /// Counter keys held now.
    pub fn counter_keys(&self) -> usize {
        self.counters.load(Ordering::Relaxed)
    }

    /// Whether `keys` more kv keys and `bytes` more bytes fit.
    pub(super) fn kv_fits(&self, keys: usize, bytes: usize) -> bool {
        let (held_keys, held_bytes) = self.kv_usage();
        held_keys.saturating_add(keys) <= self.quota.kv_max_keys
            && held_bytes.saturating_add(bytes) <= self.quota.kv_max_bytes
    }

    pub(super) fn kv_added(&self, bytes: usize) {
        self.kv_keys.fetch_add(1, Ordering::Relaxed);
        self.kv_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn kv_removed(&self, bytes: usize) {
        self.kv_keys.fetch_sub(1, Ordering::Relaxed);
        self.kv_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The refusal of a kv write that does not fit.
    pub(super) fn kv_full(&self) -> String {
        let (keys, bytes) = self.kv_usage();
        format!(
            "kv quota of plugin `{}` reached: {keys} keys and {bytes} bytes held, limits \
             {} keys (kv_max_keys) and {} bytes (kv_max_bytes); entries free up as they \
             expire or are deleted",
            self.name, self.quota.kv_max_keys, self.quota.kv_max_bytes
        )
    }

    /// Whether `keys` more counter keys fit.
    pub(super) fn counters_fit(&self, keys: usize) -> bool {
        self.counter_keys().saturating_add(keys) <= self.quota.counters_max_keys
    }

    pub(super) fn counter_added(&self) {
        self.counters.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn counter_removed(&self) {
        self.counters.fetch_sub(1, Ordering::Relaxed);
    }

    /// The refusal of counters that do not fit.
    pub(super) fn counters_full(&self) -> String {
        format!(
            "counters quota of plugin `{}` reached: {} counter keys held, limit {} \
             (counters_max_keys); counters free up as their windows pass",
            self.name,
            self.counter_keys(),
            self.quota.counters_max_keys
        )
    }

    /// Claim the right to sweep now: true at most once per [`SWEEP_SPACING_MS`].
    pub(super) fn may_sweep(&self, now_ms: u64) -> bool {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= SWEEP_SPACING_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
