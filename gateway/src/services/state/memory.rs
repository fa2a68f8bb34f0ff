//! The in-process backend: counters and kv in `dashmap`s. Expired entries are dropped when
//! touched and by a sweep every few thousand writes, so memory stays bounded by live keys;
//! each plugin's live keys are bounded by its [`Quota`](super::Quota) (see [`super::quota`]).
use super::quota::Namespace;
use super::{Count, Increment, StateError, now_ms};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes between two sweeps of expired entries.
const SWEEP_EVERY: u64 = 4096;

struct Counter {
    window_index: u64,
    current: u64,
    previous: u64,
    /// Whose quota it counts against.
    namespace: Arc<Namespace>,
}

struct Value {
    bytes: Vec<u8>,
    expires_at_ms: u64,
    /// Key plus value bytes, as counted against the namespace's quota.
    size: usize,
    namespace: Arc<Namespace>,
}

impl Drop for Value {
    fn drop(&mut self) {
        self.namespace.kv_removed(self.size);
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.namespace.counter_removed();
    }
}

/// Counters and kv of one gateway process.
pub struct MemoryStore {
    counters: DashMap<String, Counter>,
    values: DashMap<String, Value>,
    writes: AtomicU64,
}

impl MemoryStore {
    pub(super) fn new() -> Self {
        MemoryStore {
            counters: DashMap::new(),
            values: DashMap::new(),
            writes: AtomicU64::new(0),
        }
    }

    /// Bump counters atomically as a batch: all of them, or none when new keys among them do
    /// not fit the namespace's quota.
    pub(super) fn increment(
        &self,
        ns: &Arc<Namespace>,
        counters: &[Increment],
    ) -> Result<Vec<Count>, StateError> {
        let now = now_ms();
        let keys: Vec<String> = counters
            .iter()
            .map(|c| format!("{}\u{0}{}\u{0}{}", ns.name(), c.window_ms, c.key))
            .collect();
        // Far from the quota (the common case) even an all-new batch fits: no lookups.
        if !ns.counters_fit(keys.len()) {
            let new = |store: &Self| {
                keys.iter()
                    .filter(|k| !store.counters.contains_key(*k))
                    .count()
            };
            if !ns.counters_fit(new(self)) {
                self.sweep_for(ns, now);
                if !ns.counters_fit(new(self)) {
                    return Err(StateError::Invalid(ns.counters_full()));
                }
            }
        }
        let out = counters
            .iter()
            .zip(keys)
            .map(|(c, key)| {
                let index = now / c.window_ms;
                let mut entry = self.counters.entry(key).or_insert_with(|| {
                    ns.counter_added();
                    Counter {
                        window_index: index,
                        current: 0,
                        previous: 0,
                        namespace: ns.clone(),
                    }
                });
                if entry.window_index != index {
                    entry.previous = if entry.window_index + 1 == index {
                        entry.current
                    } else {
                        0
                    };
                    entry.current = 0;
                    entry.window_index = index;
                }
                entry.current = entry.current.saturating_add(c.delta);
                Count {
                    current: entry.current,
                    previous: entry.previous,
                    elapsed_ms: now - index * c.window_ms,
                }
            })
            .collect();
        self.wrote(now);
        Ok(out)
    }

    pub(super) fn get(&self, ns: &Namespace, key: &str) -> Option<Vec<u8>> {
        let key = format!("{}\u{0}{key}", ns.name());
        let value = self.values.get(&key)?;
        (value.expires_at_ms > now_ms()).then(|| value.bytes.clone())
    }

    /// Store a value, within the namespace's quota.
    pub(super) fn set(
        &self,
        ns: &Arc<Namespace>,
        key: &str,
        bytes: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), StateError> {
        let now = now_ms();
        let key = format!("{}\u{0}{key}", ns.name());
        let size = key.len() + bytes.len();
        if !ns.kv_fits(1, size) {
            // What this write adds, replacing the value it may replace.
            let grows = |store: &Self| match store.values.get(&key) {
                Some(old) => (0, size.saturating_sub(old.size)),
                None => (1, size),
            };
            let (keys, added) = grows(self);
            if !ns.kv_fits(keys, added) {
                self.sweep_for(ns, now);
                let (keys, added) = grows(self);
                if !ns.kv_fits(keys, added) {
                    return Err(StateError::Invalid(ns.kv_full()));
                }
            }
        }
        ns.kv_added(size);
        self.values.insert(
            key,
            Value {
                bytes,
                expires_at_ms: now + ttl_ms,
                size,
                namespace: ns.clone(),
            },
        );
        self.wrote(now);
        Ok(())
    }

    pub(super) fn delete(&self, ns: &Namespace, key: &str) -> bool {
        self.values
            .remove(&format!("{}\u{0}{key}", ns.name()))
            .is_some_and(|(_, v)| v.expires_at_ms > now_ms())
    }

    /// A namespace is full: evict what expired (everyone's), at most once per spacing per
    /// namespace, so a plugin hammering its full quota cannot turn every write into a scan.
    fn sweep_for(&self, ns: &Namespace, now: u64) {
        if ns.may_sweep(now) {
            self.sweep(now);
        }
    }

    /// Every `SWEEP_EVERY` writes, drop what expired.
    fn wrote(&self, now: u64) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// Drop expired values and counters whose windows have passed (their drops release
    /// their namespaces' quota).
    fn sweep(&self, now: u64) {
        self.values.retain(|_, v| v.expires_at_ms > now);
        self.counters.retain(|key, c| {
            let window_ms = key
                .split('\u{0}')
                .nth(1)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(1);
            // Keep the previous window: sliding estimates read it.
            c.window_index + 1 >= now / window_ms
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::quota::Quota;
    use super::*;

    const ROOMY: Quota = Quota {
        kv_max_keys: 1000,
        kv_max_bytes: 1 << 20,
        counters_max_keys: 1000,
    };

    fn ns(name: &str, quota: Quota) -> Arc<Namespace> {
        Namespace::new(Arc::from(name), quota)
    }

    fn bump(store: &MemoryStore, ns: &Arc<Namespace>, key: &str) -> Result<Count, StateError> {
        let counts = store.increment(
            ns,
            &[Increment {
                key: key.into(),
                window_ms: 3_600_000,
                delta: 1,
            }],
        )?;
        Ok(counts[0])
    }

    #[test]
    fn counts_per_namespace_and_key() {
        let store = MemoryStore::new();
        let (a, b) = (ns("a", ROOMY), ns("b", ROOMY));
        assert_eq!(bump(&store, &a, "k").unwrap().current, 1);
        assert_eq!(bump(&store, &a, "k").unwrap().current, 2);
        assert_eq!(bump(&store, &b, "k").unwrap().current, 1);
        assert_eq!(bump(&store, &a, "other").unwrap().current, 1);
        assert_eq!((a.counter_keys(), b.counter_keys()), (2, 1));
    }

    #[test]
    fn kv_is_namespaced_and_expires() {
        let store = MemoryStore::new();
        let (a, b) = (ns("a", ROOMY), ns("b", ROOMY));
        store.set(&a, "k", b"v".to_vec(), 60_000).unwrap();
        assert_eq!(store.get(&a, "k"), Some(b"v".to_vec()));
        assert_eq!(store.get(&b, "k"), None);
        store.set(&a, "gone", b"v".to_vec(), 1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(store.get(&a, "gone"), None);
        assert!(store.delete(&a, "k"));
        assert!(!store.delete(&a, "k"));
    }

    #[test]
    fn kv_quota_counts_replacements_and_deletes_and_refuses_past_it() {
        let store = MemoryStore::new();
        let quota = Quota {
            kv_max_keys: 3,
            kv_max_bytes: 100,
            ..ROOMY
        };
        let (a, b) = (ns("a", quota), ns("b", quota));
        // Each entry is "a\0k1" (4 bytes) plus its value.
        store.set(&a, "k1", vec![0; 20], 60_000).unwrap();
        store.set(&a, "k1", vec![0; 30], 60_000).unwrap();
        assert_eq!(a.kv_usage(), (1, 34), "a replacement is counted once");
        store.set(&a, "k2", vec![0; 30], 60_000).unwrap();
        let full = store.set(&a, "k3", vec![0; 40], 60_000).unwrap_err();
        let StateError::Invalid(message) = full else {
            panic!("{full:?}")
        };
        assert!(
            message.contains("kv quota of plugin `a` reached"),
            "{message}"
        );
        assert!(message.contains("kv_max_bytes"), "{message}");
        // Replacing within the quota still works when the namespace is full, and another
        // namespace is not affected.
        store.set(&a, "k2", vec![0; 60], 60_000).unwrap();
        store.set(&b, "k3", vec![0; 40], 60_000).unwrap();
        assert!(store.delete(&a, "k2"));
        assert_eq!(a.kv_usage(), (1, 34));
        store.set(&a, "k3", vec![0; 40], 60_000).unwrap();
        store.set(&a, "k4", vec![], 60_000).unwrap();
        let keys = store.set(&a, "k5", vec![], 60_000).unwrap_err();
        assert!(format!("{keys:?}").contains("kv_max_keys"));
    }

    #[test]
    fn a_full_namespace_evicts_expired_entries_first() {
        let store = MemoryStore::new();
        let quota = Quota {
            kv_max_keys: 2,
            counters_max_keys: 2,
            ..ROOMY
        };
        let a = ns("a", quota);
        store.set(&a, "short", vec![1], 1).unwrap();
        store.set(&a, "long", vec![1], 60_000).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.set(&a, "new", vec![1], 60_000).unwrap();
        assert_eq!(a.kv_usage().0, 2);
        // Counters: two keys fill the quota; a batch with a new one is refused whole.
        bump(&store, &a, "x").unwrap();
        bump(&store, &a, "y").unwrap();
        let both = [
            Increment {
                key: "x".into(),
                window_ms: 3_600_000,
                delta: 1,
            },
            Increment {
                key: "z".into(),
                window_ms: 3_600_000,
                delta: 1,
            },
        ];
        let refused = store.increment(&a, &both).unwrap_err();
        assert!(format!("{refused:?}").contains("counters_max_keys"));
        assert_eq!(
            bump(&store, &a, "x").unwrap().current,
            2,
            "x untouched by the refusal"
        );
    }
}
