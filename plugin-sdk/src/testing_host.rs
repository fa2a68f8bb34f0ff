//! Native stand-ins for the host capabilities, used when a filter runs under
//! [`crate::testing`]: a verifier the test installs, and per-thread counters and kv.

use crate::host::counters::{Bump, Count, CounterError, UnavailablePolicy};
use crate::host::crypto::{Verified, VerifyError};
use crate::host::kv::KvError;
use std::cell::RefCell;
use std::collections::HashMap;

type Verifier = Box<dyn Fn(&str, &str, &[String]) -> Result<Verified, VerifyError>>;

#[derive(Default)]
struct FakeHost {
    verifier: Option<Verifier>,
    /// (key, window) -> (window index, current, previous)
    counters: HashMap<(String, u64), (u64, u64, u64)>,
    counters_down: Option<UnavailablePolicy>,
    kv: HashMap<String, (Vec<u8>, u64)>,
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// Answer `crypto::verify_jws` calls on this thread with `verifier` (by default every call
/// fails with `keys-unavailable`).
pub fn set_verifier(
    verifier: impl Fn(&str, &str, &[String]) -> Result<Verified, VerifyError> + 'static,
) {
    HOST.with(|h| h.borrow_mut().verifier = Some(Box::new(verifier)));
}

/// Make `counters::increment` on this thread fail as if the backend were down (`Some`), or
/// work again (`None`).
pub fn set_counters_unavailable(policy: Option<UnavailablePolicy>) {
    HOST.with(|h| h.borrow_mut().counters_down = policy);
}

/// Forget this thread's counters and kv values.
pub fn reset_state() {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.counters.clear();
        h.kv.clear();
    });
}

pub(crate) fn fake_verify(
    key_set: &str,
    token: &str,
    algorithms: &[String],
) -> Result<Verified, VerifyError> {
    HOST.with(|h| match &h.borrow().verifier {
        Some(verify) => verify(key_set, token, algorithms),
        None => Err(VerifyError::KeysUnavailable),
    })
}

pub(crate) fn fake_increment(counters: &[Bump]) -> Result<Vec<Count>, CounterError> {
    let now = crate::clock::now_ms();
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(policy) = h.counters_down {
            return Err(CounterError::Unavailable(policy));
        }
        Ok(counters
            .iter()
            .map(|c| {
                let window = c.window_ms.max(1);
                let index = now / window;
                let entry = h
                    .counters
                    .entry((c.key.clone(), window))
                    .or_insert((index, 0, 0));
                if entry.0 != index {
                    *entry = (index, 0, if entry.0 + 1 == index { entry.1 } else { 0 });
                }
                entry.1 += c.delta;
                Count {
                    current: entry.1,
                    previous: entry.2,
                    elapsed_ms: now - index * window,
                }
            })
            .collect())
    })
}

pub(crate) fn fake_kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    let now = crate::clock::now_ms();
    HOST.with(|h| {
        Ok(h.borrow()
            .kv
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(v, _)| v.clone()))
    })
}

pub(crate) fn fake_kv_set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), KvError> {
    let expires = crate::clock::now_ms() + ttl_ms;
    HOST.with(|h| {
        h.borrow_mut()
            .kv
            .insert(key.to_string(), (value.to_vec(), expires))
    });
    Ok(())
}

pub(crate) fn fake_kv_delete(key: &str) -> Result<bool, KvError> {
    HOST.with(|h| Ok(h.borrow_mut().kv.remove(key).is_some()))
}
