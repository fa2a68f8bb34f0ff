//! Instances of one plugin *use* (a plugin with one route's config), and the call discipline
//! that enforces limits.
//!
//! Pooled isolation keeps warm instances — already instantiated and `init`ed with this use's
//! config — and hands one to each call (≈ 1.6 µs), returning it afterwards. An instance that
//! trapped, timed out, ran out of fuel or memory is dropped, never reused: wasmtime cannot enter
//! it again, and its state is suspect anyway. Request isolation instantiates and `init`s a
//! fresh instance per request, so nothing one request leaves in memory is seen by the next.
//!
//! `max_instances` bounds live instances, not only calls: a call first takes a permit, then an
//! instance (a warm one, or a fresh one it instantiates under that permit), and the permit goes
//! with the instance in its [`Lease`] until the instance is back in the pool or dropped. So a
//! call parked in a slow host function (Redis) holds one of `max_instances`, and a request that
//! finds them all busy waits at most the plugin's `queue_timeout_ms` and then fails fast
//! (`busy`, 503 when failing closed) instead of building an instance of its own or queueing
//! without bound.
//!
//! A call's time limit starts once it holds its permit and covers everything guest code does
//! for it: instantiation and `init` of a fresh instance (request isolation, or a pooled use
//! whose instances were all discarded), then the filter call itself. So an `init` that loops
//! is stopped by the use's `timeout_ms` like the call is.
//!
//! Every call starts on the worker, where most finish within their first poll. One that has
//! run for [`HEAVY_AFTER`] (1 ms) moves to a guest thread ([`super::offload`]) at the next
//! epoch tick and finishes there, so a CPU-bound plugin holds a worker's event loop for at
//! most 1 ms plus one tick; and a use whose call moved starts its calls there directly for a
//! second afterwards (renewed while its calls keep running long), so its later calls do not
//! hold the worker at all.

use super::bindings::Plugin;
use super::bindings::exports::gateway::plugin::filter::Guest;
use super::bindings::types::Settings;
use super::limits::{Limits, Violation};
use super::loader::LoadedPlugin;
use super::offload;
use super::state::StoreState;
use crate::config::Isolation;
use crate::proxy::filter::CallNames;
use crate::telemetry::metrics;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Time allowed for instantiation plus `init` when the config is loaded (not on a request's
/// path): `init` may parse config or warm a runtime.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a use whose call had to move to a guest thread starts its calls there directly.
const HEAVY_SPELL: Duration = Duration::from_secs(1);

/// Time a call must have run before it moves to a guest thread (at the next epoch tick), and
/// starts a heavy spell. Ticks come at any moment of a call, so a call of a few microseconds
/// still meets one now and then (at 10,000 calls a second, several times a second); it must
/// not move for that: on a saturated machine the guest threads' low priority would make it
/// wait past its deadline. A call that has run this long is CPU-bound.
const HEAVY_AFTER: Duration = Duration::from_millis(1);

/// One live instance.
pub struct Instance {
    store: Store<StoreState>,
    bindings: Plugin,
    uses: u64,
    /// Set by the epoch callback when guest code ran into a tick (and yielded).
    ticked: Arc<AtomicBool>,
    _alive: Alive,
}

impl Instance {
    /// The filter interface and the store, for one call.
    pub fn filter(&mut self) -> (&Guest, &mut Store<StoreState>) {
        (self.bindings.gateway_plugin_filter(), &mut self.store)
    }
}

/// Counts an instance among its use's live ones while it exists, and in
/// `gateway_plugin_instances_total{event="discarded"}` when it goes.
struct Alive(Arc<AtomicUsize>, Option<prometheus::IntCounter>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        if let Some(discarded) = &self.1 {
            discarded.inc();
        }
    }
}

/// An instance and the permit it counts against `max_instances`, held together: the permit
/// is released exactly when the instance goes back to the pool or is dropped.
pub struct Lease {
    /// The instance (boxed: a lease moves through every call several times, and the
    /// component's bindings make an instance a few hundred bytes).
    pub instance: Box<Instance>,
    _permit: OwnedSemaphorePermit,
}

/// One guest call, owning its arguments so that it can move to a guest thread.
pub trait GuestCall: Send + 'static {
    /// What the guest answers.
    type Answer: Send + 'static;
    /// Make the call on `instance`, whose limits are armed.
    fn call(
        self,
        instance: &mut Instance,
    ) -> impl Future<Output = wasmtime::Result<Self::Answer>> + Send + '_;
}

/// What a call hands back: the lease (`None` when it was lost with a call that ran out of
/// time on a guest thread), the call's result and its cost.
pub type Outcome<T> = (Option<Lease>, Result<T, Violation>, CallCost);

/// What one call cost, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallCost {
    /// Fuel the guest burnt, when the use has a fuel budget (and the call came back).
    pub fuel: Option<u64>,
    /// Time spent in host calls that can wait (state backend, key sets).
    pub host_time: Duration,
}

/// The instances of one plugin use.
pub struct InstancePool {
    plugin: Arc<LoadedPlugin>,
    config_json: Arc<str>,
    limits: Limits,
    settings: Settings,
    // Boxed on purpose: what moves in and out of the pool, and with every lease, is a pointer.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Instance>>>,
    permits: Arc<Semaphore>,
    /// Instances alive now (warm, busy, or finishing on a guest thread).
    alive: Arc<AtomicUsize>,
    /// Until when calls start on a guest thread ([`HEAVY_SPELL`] after one had to move), in
    /// nanoseconds since [`epoch`].
    heavy_until: AtomicU64,
}

impl InstancePool {
    /// Create the pool: instantiate once and call `init`, which validates the config. The
    /// error of a rejected config is returned as `Violation::Init` with the plugin's message.
    pub async fn new(
        plugin: Arc<LoadedPlugin>,
        config_json: String,
        limits: Limits,
    ) -> Result<Arc<Self>, Violation> {
        plugin.ticker.serve_timeout(limits.timeout);
        let config_json: Arc<str> = Arc::from(config_json);
        let alive = Arc::new(AtomicUsize::new(0));
        let fresh = Fresh {
            plugin: plugin.clone(),
            config_json: config_json.clone(),
            memory_bytes: limits.memory_bytes,
            alive: alive.clone(),
            ticked: Arc::new(AtomicBool::new(false)),
        };
        let (instance, settings) = fresh
            .instantiate(Instant::now() + INIT_TIMEOUT)
            .await
            .map_err(InitFailure::into_violation)?;
        let pool = Arc::new(InstancePool {
            permits: Arc::new(Semaphore::new(plugin.max_instances)),
            plugin,
            config_json,
            limits,
            settings,
            idle: Mutex::new(Vec::new()),
            alive,
            heavy_until: AtomicU64::new(0),
        });
        pool.release(instance);
        Ok(pool)
    }

    /// Warm the pool up to `count` instances (at most `max_instances`; pooled uses only),
    /// off the request path: a reload does this for a changed use before it serves, so the
    /// replaced use's traffic does not meet a cold pool. Stops at the first instance that
    /// fails to start (its `init` already succeeded once, so that is a transient failure).
    pub async fn prewarm(&self, count: usize) {
        if self.plugin.isolation != Isolation::Pooled {
            return;
        }
        let count = count.min(self.plugin.max_instances);
        while self.alive() < count {
            let fresh = Fresh {
                plugin: self.plugin.clone(),
                config_json: self.config_json.clone(),
                memory_bytes: self.limits.memory_bytes,
                alive: self.alive.clone(),
                ticked: Arc::new(AtomicBool::new(false)),
            };
            match fresh.instantiate(Instant::now() + INIT_TIMEOUT).await {
                Ok((instance, _)) => self.release(instance),
                Err(_) => return,
            }
        }
    }

    /// What the plugin asked for in `init`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The effective limits of this use.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The plugin's name.
    pub fn plugin_name(&self) -> &Arc<str> {
        &self.plugin.name
    }

    /// The isolation mode.
    pub fn isolation(&self) -> Isolation {
        self.plugin.isolation
    }

    /// Instances of this use alive now.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Instances of this use kept warm (idle) now.
    pub fn warm(&self) -> usize {
        self.lock_idle().len()
    }

    /// The plugin this is a use of.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Run one guest call on `lease` (the request's own, kept from an earlier phase) or on
    /// an instance leased now; `names` name the call in the plugin's log lines.
    pub async fn call<C: GuestCall>(
        &self,
        lease: Option<Lease>,
        names: CallNames<'_>,
        call: C,
    ) -> Outcome<C::Answer> {
        let (mut lease, start) = match lease {
            Some(lease) => (lease, Instant::now()),
            None => match self.lease().await {
                Ok(leased) => leased,
                Err(violation) => return (None, Err(violation), CallCost::default()),
            },
        };
        let deadline = start + self.limits.timeout;
        lease
            .instance
            .prepare(deadline, &self.limits, self.plugin.metered, names);
        let ticked = lease.instance.ticked.clone();
        let running = self.plugin.ticker.running();
        // Boxed where it is made: moved by pointer from here on, whichever thread finishes it.
        let call = Box::pin(async move {
            let _running = running;
            let result = call.call(&mut lease.instance).await;
            (lease, result)
        });
        match self.drive(start, deadline, &ticked, call).await {
            Some((lease, result)) => {
                let store = &lease.instance.store;
                let exceeded = store.data().limiter.exceeded;
                let cost = CallCost {
                    fuel: self
                        .limits
                        .fuel
                        .filter(|_| self.plugin.metered)
                        .map(|budget| budget.saturating_sub(store.get_fuel().unwrap_or(0))),
                    host_time: store.data().host_time,
                };
                let result = result.map_err(|e| Violation::from_call_error(&e, exceeded));
                (Some(lease), result, cost)
            }
            None => (None, Err(Violation::Timeout), CallCost::default()),
        }
    }

    /// A permit, then an instance under it: a warm one if pooled and available, else a fresh
    /// one, instantiated within the call's time (which starts once the permit is held; the
    /// start is returned). Fails as `busy` when no permit frees within `queue_timeout_ms`.
    async fn lease(&self) -> Result<(Lease, Instant), Violation> {
        let busy = || Violation::Busy(self.plugin.max_instances);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                let wait = self.permits.clone().acquire_owned();
                match tokio::time::timeout(self.plugin.queue_timeout, wait).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(busy()),
                }
            }
            Err(TryAcquireError::Closed) => return Err(busy()),
        };
        let start = Instant::now();
        if self.plugin.isolation == Isolation::Pooled
            && let Some(instance) = self.lock_idle().pop()
        {
            let lease = Lease {
                instance,
                _permit: permit,
            };
            return Ok((lease, start));
        }
        let ticked = Arc::new(AtomicBool::new(false));
        let fresh = Fresh {
            plugin: self.plugin.clone(),
            config_json: self.config_json.clone(),
            memory_bytes: self.limits.memory_bytes,
            alive: self.alive.clone(),
            ticked: ticked.clone(),
        };
        let deadline = start + self.limits.timeout;
        let running = self.plugin.ticker.running();
        let instantiate = Box::pin(async move {
            let _running = running;
            fresh.instantiate(deadline).await
        });
        match self.drive(start, deadline, &ticked, instantiate).await {
            Some(Ok((instance, _))) => Ok((
                Lease {
                    instance,
                    _permit: permit,
                },
                start,
            )),
            // On a request's path, instantiation and `init` are the call's time.
            Some(Err(InitFailure::Stopped(_, Violation::Timeout))) | None => {
                Err(Violation::Timeout)
            }
            Some(Err(failure)) => Err(failure.into_violation()),
        }
    }

    /// Drive guest work to its end or its deadline: on the worker while it finishes within a
    /// poll or waits on a host call, on a guest thread once guest code ran into an epoch tick
    /// (or from the start, in a heavy spell). `None` when the deadline passed first.
    async fn drive<O, F>(
        &self,
        start: Instant,
        deadline: Instant,
        ticked: &AtomicBool,
        mut work: Pin<Box<F>>,
    ) -> Option<O>
    where
        O: Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        let heavy_until = self.heavy_until.load(Ordering::Relaxed);
        if heavy_until == 0 || nanos_since_epoch(start) >= heavy_until {
            let mut timer = None;
            let step = poll_fn(|cx| {
                if let Poll::Ready(out) = work.as_mut().poll(cx) {
                    return Poll::Ready(Some(Some(out)));
                }
                // A tick met by a short call (they come at any moment of one) changes nothing:
                // it goes on here. Only a call that has run for `HEAVY_AFTER` moves.
                if ticked.swap(false, Ordering::Relaxed) && start.elapsed() >= HEAVY_AFTER {
                    return Poll::Ready(None);
                }
                // Parked in a host call: bound the wait (the timer is only made for this).
                let timer = timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(None)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if let Some(done) = step {
                return done;
            }
            self.note_heavy(start);
        }
        let bounded = async move { tokio::time::timeout_at(deadline.into(), work).await.ok() };
        let done = match offload::spawn(bounded) {
            Ok(handle) => tokio::time::timeout_at(deadline.into(), handle)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            Err(bounded) => bounded.await,
        };
        // A use that keeps running long calls keeps its spell: it never lapses under a
        // CPU-bound plugin, which would put one of its calls back on a worker each second.
        self.note_heavy(start);
        done
    }

    /// A call that started at `start` moved to a guest thread: if it has run for
    /// [`HEAVY_AFTER`], start (or extend) the use's heavy spell.
    fn note_heavy(&self, start: Instant) {
        let now = Instant::now();
        if now.duration_since(start) >= HEAVY_AFTER {
            let until = nanos_since_epoch(now + HEAVY_SPELL);
            self.heavy_until.store(until, Ordering::Relaxed);
        }
    }

    /// Give a leased instance back after a successful call (request isolation drops it); its
    /// permit is released either way.
    pub fn release_lease(&self, lease: Lease) {
        self.release(lease.instance);
    }

    /// Keep an instance warm (or drop it, past `max_uses` or a full pool).
    fn release(&self, instance: Box<Instance>) {
        if self.plugin.isolation != Isolation::Pooled {
            return;
        }
        if self.plugin.max_uses > 0 && instance.uses >= self.plugin.max_uses {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < self.plugin.max_instances {
            idle.push(instance);
        }
    }

    #[allow(clippy::vec_box)]
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Instance>>> {
        // A poisoned lock only means another thread panicked while pushing or popping; the
        // vector itself is still a valid list of instances.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Nanoseconds from the first call of this function (a process-wide base) to `at`.
fn nanos_since_epoch(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// At each epoch tick while guest code runs: stop the call if it is past its deadline
/// (reported as a timeout), else yield, saying so: on a worker, the call then moves to a guest
/// thread; on a guest thread, the calls sharing it take turns.
fn on_epoch_tick(state: &StoreState) -> wasmtime::Result<UpdateDeadline> {
    if Instant::now() >= state.deadline {
        Err(wasmtime::Error::from(Trap::Interrupt))
    } else {
        state.ticked.store(true, Ordering::Relaxed);
        Ok(UpdateDeadline::Yield(1))
    }
}

impl Instance {
    fn prepare(&mut self, deadline: Instant, limits: &Limits, metered: bool, names: CallNames<'_>) {
        self.uses += 1;
        self.ticked.store(false, Ordering::Relaxed);
        let data = self.store.data_mut();
        data.deadline = deadline;
        data.limiter.exceeded = false;
        data.host_time = Duration::ZERO;
        if *data.route != **names.route {
            data.route = names.route.clone();
        }
        data.request_id.clear();
        data.request_id.push_str(names.request_id);
        data.trace_id.clear();
        if let Some(trace_id) = names.trace_id {
            use std::fmt::Write as _;
            let _ = write!(data.trace_id, "{trace_id:032x}");
        }
        self.store.set_epoch_deadline(1);
        if metered {
            // A metered engine always needs fuel; a use without a budget gets plenty.
            let _ = self.store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
    }
}

/// What a fresh instance of a use is made from, owned so instantiation can move to a guest
/// thread.
struct Fresh {
    plugin: Arc<LoadedPlugin>,
    config_json: Arc<str>,
    memory_bytes: usize,
    alive: Arc<AtomicUsize>,
    ticked: Arc<AtomicBool>,
}

impl Fresh {
    /// A fresh instance with `init` called by `deadline`; returns the settings it declared.
    async fn instantiate(
        self,
        deadline: Instant,
    ) -> Result<(Box<Instance>, Settings), InitFailure> {
        let plugin = &self.plugin;
        let mut state = StoreState::new(
            plugin.name.clone(),
            self.memory_bytes,
            plugin.services.clone(),
            plugin.namespace.clone(),
        );
        state.deadline = deadline;
        state.ticked = self.ticked.clone();
        let mut store = Store::new(&plugin.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|store| on_epoch_tick(store.data()));
        store.set_epoch_deadline(1);
        if plugin.metered {
            let _ = store.set_fuel(u64::MAX);
        }
        let alive = self.alive.fetch_add(1, Ordering::Relaxed) + 1;
        let alive = Alive(self.alive.clone(), None).with_count(alive, &plugin.name);
        let failure = |what, e: &wasmtime::Error, store: &Store<StoreState>| {
            InitFailure::Stopped(
                what,
                Violation::from_call_error(e, store.data().limiter.exceeded),
            )
        };
        let bindings = match plugin.pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return Err(failure("instantiation failed", &e, &store)),
        };
        store.data_mut().initializing = true;
        let init = bindings
            .gateway_plugin_filter()
            .call_init(&mut store, &self.config_json)
            .await;
        store.data_mut().initializing = false;
        let settings = match init {
            Ok(Ok(settings)) => settings,
            Ok(Err(message)) => return Err(InitFailure::Refused(message)),
            Err(e) => return Err(failure("init trapped", &e, &store)),
        };
        let instance = Box::new(Instance {
            store,
            bindings,
            uses: 0,
            ticked: self.ticked,
            _alive: alive,
        });
        Ok((instance, settings))
    }
}

/// Why a fresh instance is not ready.
enum InitFailure {
    /// `init` rejected the config, with the plugin's message.
    Refused(String),
    /// Instantiation or `init` was stopped (what was running, and why).
    Stopped(&'static str, Violation),
}

impl InitFailure {
    fn into_violation(self) -> Violation {
        match self {
            InitFailure::Refused(message) => Violation::Init(message),
            InitFailure::Stopped(what, cause) => Violation::Init(format!("{what}: {cause}")),
        }
    }
}

impl Alive {
    /// Log the count this instance made (the coming metrics export it).
    fn with_count(mut self, alive: usize, plugin: &str) -> Self {
        tracing::debug!(plugin, alive, "plugin instance created");
        // Counted whether metrics are on yet or not (the instances `init` made at load come
        // before the admin listener): an instance costs far more than two label lookups.
        let counters = &metrics::metrics().plugin_instances_total;
        counters.with_label_values(&[plugin, "created"]).inc();
        self.1 = Some(counters.with_label_values(&[plugin, "discarded"]));
        self
    }
}
