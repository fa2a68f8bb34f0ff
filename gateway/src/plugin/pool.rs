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
//! finds them all busy waits at most [`ACQUIRE_WAIT`] and then fails fast (`busy`, 503 when
//! failing closed) instead of building an instance of its own or queueing without bound.
//! A call that never parks finishes within its first poll, so on a worker's single thread
//! permits are only ever contended by parked calls and request-isolated instances.

use super::bindings::Plugin;
use super::bindings::types::{
    Context, RequestAction, RequestHead, ResponseAction, ResponseHead, Settings,
};
use super::limits::{self, Limits, Violation};
use super::loader::LoadedPlugin;
use super::state::StoreState;
use crate::config::Isolation;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Time allowed for instantiation plus `init`, which may parse config or warm a runtime.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a call waits for one of its use's `max_instances` before failing as `busy`: long
/// enough to ride out a burst of parked calls returning, short enough that an overloaded
/// plugin answers fast instead of queueing requests.
pub const ACQUIRE_WAIT: Duration = Duration::from_millis(10);

/// One live instance.
pub struct Instance {
    store: Store<StoreState>,
    bindings: Plugin,
    uses: u64,
}

/// An instance and the permit it counts against `max_instances`, held together: the permit
/// is released exactly when the instance goes back to the pool or is dropped.
pub struct Lease {
    /// The instance.
    pub instance: Instance,
    _permit: OwnedSemaphorePermit,
}

/// The instances of one plugin use.
pub struct InstancePool {
    plugin: Arc<LoadedPlugin>,
    config_json: String,
    limits: Limits,
    settings: Settings,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
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
        let (instance, settings) = instantiate(&plugin, &config_json, &limits).await?;
        let pool = Arc::new(InstancePool {
            permits: Arc::new(Semaphore::new(plugin.max_instances)),
            plugin,
            config_json,
            limits,
            settings,
            idle: Mutex::new(Vec::new()),
        });
        pool.release(instance);
        Ok(pool)
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

    /// An instance for a call, under a permit: a warm one if pooled and available, else a
    /// fresh one. Fails as `busy` when no permit frees within [`ACQUIRE_WAIT`].
    pub async fn acquire(&self) -> Result<Lease, Violation> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                let wait = tokio::time::timeout(ACQUIRE_WAIT, self.permits.clone().acquire_owned());
                match wait.await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(Violation::Busy(self.plugin.max_instances)),
                }
            }
            Err(TryAcquireError::Closed) => return Err(Violation::Busy(self.plugin.max_instances)),
        };
        if self.plugin.isolation == Isolation::Pooled
            && let Some(instance) = self.lock_idle().pop()
        {
            return Ok(Lease {
                instance,
                _permit: permit,
            });
        }
        let (instance, _) = instantiate(&self.plugin, &self.config_json, &self.limits).await?;
        Ok(Lease {
            instance,
            _permit: permit,
        })
    }

    /// Give a leased instance back after a successful call (request isolation drops it); its
    /// permit is released either way.
    pub fn release_lease(&self, lease: Lease) {
        self.release(lease.instance);
    }

    /// Keep an instance warm (or drop it, past `max_uses` or a full pool).
    fn release(&self, instance: Instance) {
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

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // A poisoned lock only means another thread panicked while pushing or popping; the
        // vector itself is still a valid list of instances.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call `on-request` on `instance` within the limits.
    pub async fn on_request(
        &self,
        instance: &mut Instance,
        ctx: Context<'_>,
        head: RequestHead<'_>,
        body: Option<&[u8]>,
    ) -> Result<RequestAction, Violation> {
        let _running = self.plugin.ticker.running();
        let deadline = Instant::now() + self.limits.timeout;
        instance.prepare(deadline, &self.limits, self.plugin.metered, &ctx);
        let call = instance.bindings.gateway_plugin_filter().call_on_request(
            &mut instance.store,
            ctx,
            head,
            body,
        );
        let action = bounded(deadline, call).await;
        let action = instance.finish(action)?;
        limits::check_request_action(&action, &self.limits)?;
        Ok(action)
    }

    /// Call `on-response` on `instance` within the limits.
    pub async fn on_response(
        &self,
        instance: &mut Instance,
        ctx: Context<'_>,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        body: Option<&[u8]>,
    ) -> Result<ResponseAction, Violation> {
        let _running = self.plugin.ticker.running();
        let deadline = Instant::now() + self.limits.timeout;
        instance.prepare(deadline, &self.limits, self.plugin.metered, &ctx);
        let call = instance.bindings.gateway_plugin_filter().call_on_response(
            &mut instance.store,
            ctx,
            request,
            response,
            body,
        );
        let action = bounded(deadline, call).await;
        let action = instance.finish(action)?;
        limits::check_response_action(&action, &self.limits)?;
        Ok(action)
    }
}

/// Run a guest call under a wall-clock bound: the epoch callback stops guest code past the
/// deadline, the timer stops a call parked in an async host function. Most calls never park
/// (no async host call, or one that answers at once) and finish in their first poll, so the
/// timer is only made for a call that parks.
async fn bounded<T>(
    deadline: Instant,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let mut call = pin!(call);
    if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return result;
    }
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::from(Trap::Interrupt)),
    }
}

/// At each epoch tick while guest code runs: stop the call if it is past its deadline
/// (reported as a timeout), else let it run to the next tick.
fn check_deadline(state: &StoreState) -> wasmtime::Result<UpdateDeadline> {
    if Instant::now() >= state.deadline {
        Err(wasmtime::Error::from(Trap::Interrupt))
    } else {
        Ok(UpdateDeadline::Continue(1))
    }
}

impl Instance {
    fn prepare(&mut self, deadline: Instant, limits: &Limits, metered: bool, ctx: &Context<'_>) {
        self.uses += 1;
        let data = self.store.data_mut();
        data.deadline = deadline;
        data.limiter.exceeded = false;
        if *data.route != *ctx.route {
            data.route = Arc::from(ctx.route);
        }
        data.request_id.clear();
        data.request_id.push_str(ctx.request_id);
        self.store.set_epoch_deadline(1);
        if metered {
            // A metered engine always needs fuel; a use without a budget gets plenty.
            let _ = self.store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
    }

    fn finish<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, Violation> {
        result.map_err(|e| Violation::from_call_error(&e, self.store.data().limiter.exceeded))
    }
}

/// A fresh instance with `init` called; returns the settings it declared.
async fn instantiate(
    plugin: &LoadedPlugin,
    config_json: &str,
    limits: &Limits,
) -> Result<(Instance, Settings), Violation> {
    let _running = plugin.ticker.running();
    let mut store = Store::new(
        &plugin.engine,
        StoreState::new(
            plugin.name.clone(),
            limits.memory_bytes,
            plugin.services.clone(),
        ),
    );
    store.limiter(|state| &mut state.limiter);
    store.data_mut().deadline = Instant::now() + INIT_TIMEOUT;
    store.epoch_deadline_callback(|store| check_deadline(store.data()));
    store.set_epoch_deadline(1);
    if plugin.metered {
        let _ = store.set_fuel(u64::MAX);
    }
    let bindings = plugin
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| init_violation(&e, &store, "instantiation failed"))?;
    let settings = bindings
        .gateway_plugin_filter()
        .call_init(&mut store, config_json)
        .await
        .map_err(|e| init_violation(&e, &store, "init trapped"))?
        .map_err(Violation::Init)?;
    Ok((
        Instance {
            store,
            bindings,
            uses: 0,
        },
        settings,
    ))
}

fn init_violation(error: &wasmtime::Error, store: &Store<StoreState>, what: &str) -> Violation {
    let cause = Violation::from_call_error(error, store.data().limiter.exceeded);
    Violation::Init(format!("{what}: {cause}"))
}
