//! The wasmtime engines, narrowed to what the gateway needs, and the epoch ticker.
//!
//! Engines differ in two settings. Fuel metering instruments every compiled function (≈ +50%
//! on hot loops), so only plugins that ask for a `fuel` budget are compiled with it. And
//! plugins with `isolation = "request"` get a fresh instance per request, so their engine
//! allocates instances from wasmtime's pooling allocator: linear memories, tables and fiber
//! stacks live in address space reserved once, and a finished instance's memory is reset in
//! place (copy-on-write image, `madvise`) instead of `mmap`/`munmap` per request — the
//! profile of a fresh-instance call was mostly those system calls, TLB shootdowns and page
//! faults. Pooling-allocator engines are built on first use, so a gateway without request isolation
//! reserves nothing.
//!
//! Every engine uses epoch interruption for wall-clock timeouts, advanced by the
//! [`Ticker`](super::ticker::Ticker) while guest code may run.
//!
//! With `GATEWAY_PERFMAP` set in its environment, the gateway writes `/tmp/perf-PID.map` for
//! compiled plugin code, so `perf report` names plugin functions (from the module's name
//! section: build plugins without `strip` to see them) instead of bare addresses.

use super::ticker::Ticker;
use crate::config::Isolation;
use std::sync::{Arc, OnceLock};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// Environment variable that turns on the perf map of compiled plugin code.
const PERFMAP_ENV: &str = "GATEWAY_PERFMAP";

/// Guest stack allowed per instance.
const MAX_WASM_STACK: usize = 512 << 10;

/// Instances of request-isolated plugins alive at once, over all such plugins. Each plugin's
/// `max_instances` bounds its own share; past this total, instantiation fails and the call
/// fails by the plugin's `on_error`.
pub const POOL_INSTANCES: u32 = 1_000;

/// Memory of a finished pooling-allocator instance that is reset in place rather than released.
const KEEP_RESIDENT: usize = 4 << 20;

/// The gateway's engines and their ticker; the ticker stops when this is dropped.
pub struct Engines {
    inner: Arc<Inner>,
    ticker: Ticker,
}

/// Named by how each engine allocates instances, not by isolation mode: `isolation = "pooled"`
/// (warm instances, kept) runs on the on-demand engines; `isolation = "request"` (a fresh
/// instance per request) on the pooling-allocator engines.
struct Inner {
    on_demand_plain: Engine,
    on_demand_fueled: Engine,
    pooling_allocator: OnceLock<Engine>,
    pooling_allocator_fueled: OnceLock<Engine>,
}

impl Inner {
    fn increment_epochs(&self) {
        self.on_demand_plain.increment_epoch();
        self.on_demand_fueled.increment_epoch();
        for pooling in [&self.pooling_allocator, &self.pooling_allocator_fueled] {
            if let Some(engine) = pooling.get() {
                engine.increment_epoch();
            }
        }
    }
}

impl Engines {
    /// Build the on-demand engines and start the epoch ticker (asleep until a call).
    pub fn new() -> wasmtime::Result<Self> {
        let inner = Arc::new(Inner {
            on_demand_plain: Engine::new(&config(false))?,
            on_demand_fueled: Engine::new(&config(true))?,
            pooling_allocator: OnceLock::new(),
            pooling_allocator_fueled: OnceLock::new(),
        });
        let epochs = inner.clone();
        let ticker = Ticker::start(move || epochs.increment_epochs())
            .map_err(|e| wasmtime::format_err!("cannot start epoch ticker: {e}"))?;
        Ok(Engines { inner, ticker })
    }

    /// The ticker every guest call must hold a [`Running`](super::ticker::Running) guard of.
    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    /// The engine for a plugin, by whether it meters fuel and how it isolates requests.
    pub fn engine(&self, fuel: bool, isolation: Isolation) -> &Engine {
        let inner = &*self.inner;
        let on_demand = if fuel {
            &inner.on_demand_fueled
        } else {
            &inner.on_demand_plain
        };
        if isolation != Isolation::Request {
            return on_demand;
        }
        let pooling = if fuel {
            &inner.pooling_allocator_fueled
        } else {
            &inner.pooling_allocator
        };
        pooling.get_or_init(|| {
            let build = |pagemap| Engine::new(config(fuel).allocation_strategy(pool(pagemap)));
            match build(true).or_else(|_| build(false)) {
                Ok(engine) => engine,
                Err(e) => {
                    // Only address space is at stake (e.g. a `ulimit -v`): run on demand.
                    tracing::warn!(
                        "cannot reserve the instance pool ({e:#}); \
                         request-isolated plugins allocate per request"
                    );
                    on_demand.clone()
                }
            }
        })
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

fn config(fuel: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(MAX_WASM_STACK);
    if std::env::var_os(PERFMAP_ENV).is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// The instance pool of request-isolated plugins. Sizes are per pool slot, generous enough
/// for components built by componentize-py (an embedded CPython: several core instances and
/// large tables); memory growth is still capped per plugin by `memory_mb` (the store's
/// limiter), the pool only bounds the address space reserved.
///
/// With `pagemap` (Linux ≥ 6.7's `PAGEMAP_SCAN`), a finished instance's memory is reset by
/// rewriting just the pages it dirtied, up to [`KEEP_RESIDENT`]; pages stay mapped, so the
/// next instance neither page-faults nor triggers a TLB shootdown. Without it, memory is
/// released with `madvise` (resetting a resident region blindly would `memset` all of it).
fn pool(pagemap: bool) -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::new();
    // Slots keep the memory of the plugin they last held; bound how many idle ones do.
    pool.max_unused_warm_slots(16);
    if pagemap {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(MAX_WASM_STACK);
    }
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .total_stacks(POOL_INSTANCES)
        .max_tables_per_module(4)
        .table_elements(65_536)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20);
    InstanceAllocationStrategy::Pooling(pool)
}
