//! Which target an attempt goes to: `balance = "round_robin" | "least_request" | "random" |
//! "consistent_hash"`, each weighted, each choosing only among the targets the caller says are
//! usable (healthy, not ejected, not at their connection cap, not tried yet).
//!
//! Round robin walks a schedule built once from the weights (smooth weighted round robin, so
//! a heavy target's turns are spread, not bunched). Least request is the power of two
//! choices: two targets at random, the one with fewer requests in flight per weight — nearly
//! as good as scanning all, without a scan. Consistent hashing uses a Maglev table: each
//! target's place in it comes from its own address, so removing one of N targets moves only
//! about 1/N of the keys; a key whose target is unusable is hashed again, which moves only
//! that target's keys.

use crate::config::Balance;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of the Maglev table: a prime well above 100 × the targets an upstream has.
const MAGLEV_SIZE: usize = 65_537;
/// Further hashes of a key whose target is unusable before scanning.
const REHASHES: u64 = 8;

/// Chooses targets for one upstream.
pub struct Balancer {
    policy: Policy,
    weights: Vec<u32>,
    next: AtomicUsize,
}

enum Policy {
    RoundRobin { schedule: Vec<u32> },
    LeastRequest,
    Random { total: u64, cumulative: Vec<u64> },
    ConsistentHash { table: Vec<u32> },
}

impl Balancer {
    /// A balancer for targets with these `weights` (each ≥ 1), named by `identities` (their
    /// addresses: a target's place in a hash table follows its identity, not its index).
    pub fn new(balance: Balance, weights: &[u32], identities: &[&str]) -> Balancer {
        let weights: Vec<u32> = weights.iter().map(|w| (*w).max(1)).collect();
        let policy = match balance {
            Balance::RoundRobin => Policy::RoundRobin {
                schedule: smooth_schedule(&weights),
            },
            Balance::LeastRequest => Policy::LeastRequest,
            Balance::Random => {
                let mut total = 0;
                let cumulative = weights
                    .iter()
                    .map(|w| {
                        total += u64::from(*w);
                        total
                    })
                    .collect();
                Policy::Random { total, cumulative }
            }
            Balance::ConsistentHash => Policy::ConsistentHash {
                table: maglev(&weights, identities),
            },
        };
        Balancer {
            policy,
            weights,
            next: AtomicUsize::new(0),
        }
    }

    /// The target for an attempt, among those `usable` says may take it; `key` is the
    /// request's hash key (consistent hashing; without one, round robin), `load(i)` target
    /// `i`'s requests in flight (least request).
    pub fn pick(
        &self,
        key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
        load: &dyn Fn(usize) -> usize,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        match &self.policy {
            Policy::RoundRobin { schedule } => self.round_robin(schedule, usable),
            Policy::Random { total, cumulative } => {
                for _ in 0..3 {
                    let at = fastrand::u64(0..*total);
                    let i = cumulative.partition_point(|edge| *edge <= at);
                    if usable(i) {
                        return Some(i);
                    }
                }
                self.scan_from(fastrand::usize(0..n), usable)
            }
            Policy::LeastRequest => {
                if n == 1 {
                    return usable(0).then_some(0);
                }
                let a = self.random_usable(usable)?;
                // Two different ones where there are: a target drawn twice is no choice.
                let b = self.random_usable(&|i| i != a && usable(i)).unwrap_or(a);
                // Fewer in flight per weight; compared without dividing.
                let cost = |i: usize, other: usize| load(i) as u64 * u64::from(self.weights[other]);
                Some(if cost(b, a) < cost(a, b) { b } else { a })
            }
            Policy::ConsistentHash { table } => match key {
                None => self.round_robin(&[], usable),
                Some(key) => {
                    let mut hashed = key;
                    for round in 0..=REHASHES {
                        let i = table[(hashed % MAGLEV_SIZE as u64) as usize] as usize;
                        if usable(i) {
                            return Some(i);
                        }
                        hashed = hash_of(&(key, round));
                    }
                    self.scan_from((key % n as u64) as usize, usable)
                }
            },
        }
    }

    fn round_robin(&self, schedule: &[u32], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if schedule.is_empty() {
            return self.scan_from(turn % self.weights.len(), usable);
        }
        (0..schedule.len())
            .map(|k| schedule[(turn + k) % schedule.len()] as usize)
            .find(|i| usable(*i))
    }

    /// A usable target at random (a few tries, then a scan from a random place).
    fn random_usable(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        (0..3)
            .map(|_| fastrand::usize(0..n))
            .find(|i| usable(*i))
            .or_else(|| self.scan_from(fastrand::usize(0..n), usable))
    }

    fn scan_from(&self, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        (0..n).map(|k| (start + k) % n).find(|i| usable(*i))
    }
}

/// The hash of a request key (a header or cookie value, a client IP, a context value).
pub fn hash_of(value: &impl Hash) -> u64 {
    // SipHash with fixed keys: the same key hashes alike on every worker and every reload.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Smooth weighted round robin (nginx's): at each turn every target gains its weight and the
/// richest is chosen and pays the total, so turns of a heavy target are spread out.
fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .unwrap_or((0, &0));
            current[best] -= total;
            best as u32
        })
        .collect()
}

/// A Maglev lookup table (Eisenbud et al., 2016), each target taking turns as often as its
/// weight says. Each target's permutation of the table comes from its identity.
fn maglev(weights: &[u32], identities: &[&str]) -> Vec<u32> {
    let m = MAGLEV_SIZE as u64;
    let n = weights.len();
    let (offsets, skips): (Vec<u64>, Vec<u64>) = identities
        .iter()
        .map(|id| (hash_of(&(id, 0u8)) % m, hash_of(&(id, 1u8)) % (m - 1) + 1))
        .unzip();
    let mut next = vec![0u64; n];
    let mut table = vec![u32::MAX; MAGLEV_SIZE];
    let mut filled = 0;
    'fill: loop {
        for i in 0..n {
            for _ in 0..weights[i] {
                // Target i's next preferred slot that is still empty.
                let mut slot = (offsets[i] + next[i] * skips[i]) % m;
                while table[slot as usize] != u32::MAX {
                    next[i] += 1;
                    slot = (offsets[i] + next[i] * skips[i]) % m;
                }
                table[slot as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == MAGLEV_SIZE {
                    break 'fill;
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(balancer: &Balancer, n: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..picks {
            counts[balancer.pick(None, &|_| true, &|_| 0).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_the_weights_and_spreads_the_turns() {
        let balancer = Balancer::new(Balance::RoundRobin, &[1, 3], &["a", "b"]);
        assert_eq!(shares(&balancer, 2, 4000), vec![1000, 3000]);
        assert_eq!(smooth_schedule(&[1, 3]), vec![1, 0, 1, 1]);
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn an_unusable_target_is_passed_over() {
        for balance in [
            Balance::RoundRobin,
            Balance::Random,
            Balance::LeastRequest,
            Balance::ConsistentHash,
        ] {
            let balancer = Balancer::new(balance, &[1, 1, 1], &["a", "b", "c"]);
            for key in 0..100 {
                let picked = balancer.pick(Some(key), &|i| i != 1, &|_| 0).unwrap();
                assert_ne!(picked, 1, "{balance:?}");
            }
            assert_eq!(balancer.pick(Some(1), &|_| false, &|_| 0), None);
        }
    }

    #[test]
    fn random_follows_the_weights() {
        let balancer = Balancer::new(Balance::Random, &[1, 4], &["a", "b"]);
        let counts = shares(&balancer, 2, 50_000);
        let share = counts[1] as f64 / 50_000.0;
        assert!((share - 0.8).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let balancer = Balancer::new(Balance::LeastRequest, &[1, 1], &["a", "b"]);
        let load = |i: usize| if i == 0 { 10 } else { 1 };
        let picks: Vec<usize> = (0..100)
            .map(|_| balancer.pick(None, &|_| true, &load).unwrap())
            .collect();
        assert!(picks.iter().all(|i| *i == 1), "{picks:?}");
    }

    #[test]
    fn maglev_moves_about_one_in_n_keys_when_a_target_goes() {
        let ids = [
            "10.0.0.1:80",
            "10.0.0.2:80",
            "10.0.0.3:80",
            "10.0.0.4:80",
            "10.0.0.5:80",
        ];
        let all = Balancer::new(Balance::ConsistentHash, &[1; 5], &ids);
        let fewer = Balancer::new(Balance::ConsistentHash, &[1; 4], &ids[..4]);
        let keys = 10_000;
        let mut moved = 0;
        let mut counts = [0; 5];
        for key in 0..keys {
            let key = hash_of(&key);
            let before = all.pick(Some(key), &|_| true, &|_| 0).unwrap();
            let after = fewer.pick(Some(key), &|_| true, &|_| 0).unwrap();
            counts[before] += 1;
            if before != after {
                moved += 1;
            }
        }
        let moved = moved as f64 / keys as f64;
        assert!(moved < 0.2 + 0.05, "moved {moved}");
        for count in counts {
            assert!(
                (count as f64 / keys as f64 - 0.2).abs() < 0.03,
                "{counts:?}"
            );
        }
    }
}
