//! Native stand-ins for the host capabilities, used when a filter runs under
//! [`crate::testing`]: a verifier the test installs, and per-thread counters and kv.

use crate::host::counters::{Bump, Count, CounterError, UnavailablePolicy};
use crate::host::crypto::{Verified, VerifyError};
use crate::host::kv::KvError;
use crate::rules::metrics::{self, Kind, Label};
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
    /// Declared metrics, by handle.
    metrics: Vec<FakeMetric>,
    /// Whether the filter is being built (metrics may be declared).
    initializing: bool,
}

/// A declared metric and what was recorded in it, by label values.
struct FakeMetric {
    kind: Kind,
    name: String,
    labels: Vec<Label>,
    series: usize,
    recorded: HashMap<Vec<String>, MetricValue>,
}

/// What a metric holds at one set of label values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricValue {
    /// A counter's total; a histogram's sum of observations.
    pub sum: f64,
    /// Adds to a counter; observations of a histogram.
    pub count: u64,
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

/// Forget this thread's counters, kv values and metrics.
pub fn reset_state() {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.counters.clear();
        h.kv.clear();
        h.metrics.clear();
    });
}

/// Run `build` (a filter's `new`) as the gateway runs `init`: metrics may be declared.
pub(crate) fn initializing<T>(build: impl FnOnce() -> T) -> T {
    HOST.with(|h| h.borrow_mut().initializing = true);
    let built = build();
    HOST.with(|h| h.borrow_mut().initializing = false);
    built
}

/// What metric `name` (as declared, without `gateway_plugin_`) holds at label `values`, if
/// anything was recorded there.
pub fn metric(name: &str, values: &[&str]) -> Option<MetricValue> {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    HOST.with(|h| {
        h.borrow()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.recorded.get(&values).copied())
    })
}

pub(crate) fn fake_declare(
    kind: Kind,
    name: &str,
    help: &str,
    labels: Vec<Label>,
    buckets: &[f64],
) -> Result<u32, String> {
    let series = metrics::check_declaration(kind, name, help, &labels, buckets)?;
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        if !h.initializing {
            return Err(format!(
                "metric {name:?} declared during a call; metrics are declared in init"
            ));
        }
        if let Some(at) = h.metrics.iter().position(|m| m.name == name) {
            let known = &h.metrics[at];
            if known.kind != kind || known.labels != labels {
                return Err(format!("metric {name:?} is already declared differently"));
            }
            return Ok(at as u32);
        }
        let total: usize = h.metrics.iter().map(|m| m.series).sum();
        metrics::check_budget(h.metrics.len() + 1, total.saturating_add(series))?;
        h.metrics.push(FakeMetric {
            kind,
            name: name.to_string(),
            labels,
            series,
            recorded: HashMap::new(),
        });
        Ok(h.metrics.len() as u32 - 1)
    })
}

pub(crate) fn fake_record(
    handle: u32,
    kind: Kind,
    values: Vec<String>,
    value: f64,
) -> Result<(), String> {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        let metric = h
            .metrics
            .get_mut(handle as usize)
            .filter(|m| m.kind == kind)
            .ok_or_else(|| format!("no {kind:?} was declared with handle {handle}"))?;
        metrics::check_values(&metric.name, &metric.labels, &values)?;
        if kind == Kind::Histogram {
            metrics::check_observation(&metric.name, value)?;
        }
        let recorded = metric.recorded.entry(values).or_default();
        recorded.sum += value;
        recorded.count += 1;
        Ok(())
    })
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
