//! The in-process backend: counters and kv in `dashmap`s. Expired entries are dropped when
//! touched and by a sweep every few thousand writes, so memory stays bounded by live keys.

use super::{Count, Increment, now_ms};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes between two sweeps of expired entries.
const SWEEP_EVERY: u64 = 4096;

struct Counter {
    window_index: u64,
    current: u64,
    previous: u64,
}

struct Value {
    bytes: Vec<u8>,
    expires_at_ms: u64,
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

    pub(super) fn increment(&self, ns: &str, counters: &[Increment]) -> Vec<Count> {
        let now = now_ms();
        let out = counters
            .iter()
            .map(|c| {
                let index = now / c.window_ms;
                let key = format!("{ns}\u{0}{}\u{0}{}", c.window_ms, c.key);
                let mut entry = self.counters.entry(key).or_insert(Counter {
                    window_index: index,
                    current: 0,
                    previous: 0,
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
        out
    }

    pub(super) fn get(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        let key = format!("{ns}\u{0}{key}");
        let value = self.values.get(&key)?;
        (value.expires_at_ms > now_ms()).then(|| value.bytes.clone())
    }

    pub(super) fn set(&self, ns: &str, key: &str, bytes: Vec<u8>, ttl_ms: u64) {
        let now = now_ms();
        self.values.insert(
            format!("{ns}\u{0}{key}"),
            Value {
                bytes,
                expires_at_ms: now + ttl_ms,
            },
        );
        self.wrote(now);
    }

    pub(super) fn delete(&self, ns: &str, key: &str) -> bool {
        self.values
            .remove(&format!("{ns}\u{0}{key}"))
            .is_some_and(|(_, v)| v.expires_at_ms > now_ms())
    }

    /// Every `SWEEP_EVERY` writes, drop what expired.
    fn wrote(&self, now: u64) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
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
    use super::*;

    fn bump(store: &MemoryStore, ns: &str, key: &str) -> Count {
        store.increment(
            ns,
            &[Increment {
                key: key.into(),
                window_ms: 3_600_000,
                delta: 1,
            }],
        )[0]
    }

    #[test]
    fn counts_per_namespace_and_key() {
        let store = MemoryStore::new();
        assert_eq!(bump(&store, "a", "k").current, 1);
        assert_eq!(bump(&store, "a", "k").current, 2);
        assert_eq!(bump(&store, "b", "k").current, 1);
        assert_eq!(bump(&store, "a", "other").current, 1);
    }

    #[test]
    fn kv_is_namespaced_and_expires() {
        let store = MemoryStore::new();
        store.set("a", "k", b"v".to_vec(), 60_000);
        assert_eq!(store.get("a", "k"), Some(b"v".to_vec()));
        assert_eq!(store.get("b", "k"), None);
        store.set("a", "gone", b"v".to_vec(), 1);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(store.get("a", "gone"), None);
        assert!(store.delete("a", "k"));
        assert!(!store.delete("a", "k"));
    }
}
