//! What a plugin instance's store holds: the (empty) WASI context, its resource table, the
//! memory limiter, and who it is for log lines.

use crate::plugin::host::log::CallLog;
use crate::services::Services;
use crate::services::state::Namespace;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state of one plugin instance.
pub struct StoreState {
    /// Built on the plugin's first WASI call: most plugins never make one, and building a
    /// context (random sources, clocks, stdio) was a measurable part of a fresh instance.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    /// Enforces `memory_mb` and records that it did.
    pub limiter: MemoryLimiter,
    /// Plugin name, for log lines.
    pub plugin: Arc<str>,
    /// Route of the current call, for log lines.
    pub route: Arc<str>,
    /// Request id of the current call, for log lines.
    pub request_id: String,
    /// Trace id of the current call (hex; empty without a trace), for log lines.
    pub trace_id: String,
    /// Metrics the instance declared in `init`, by handle (capability `metrics`).
    pub declared_metrics: Vec<crate::telemetry::plugin_metrics::Declared>,
    /// Whether `init` is running (metrics may be declared only then).
    pub initializing: bool,
    /// Time the current call spent in host calls that can wait (state backend, key sets),
    /// so the plugin's own time and its waiting show apart.
    pub host_time: Duration,
    /// Key sets and shared state behind `crypto`, `counters` and `kv`.
    pub services: Arc<Services>,
    /// The plugin's namespace in that shared state, with its quotas.
    pub namespace: Arc<Namespace>,
    /// What the current call has logged, against the plugin's `log` budget.
    pub log: CallLog,
    /// When the current call (or instantiation and `init`) must have finished; checked at
    /// each epoch tick while guest code runs.
    pub deadline: Instant,
    /// Set at each epoch tick the guest ran into; shared with the pool, which moves such a
    /// call to a guest thread.
    pub ticked: Arc<AtomicBool>,
}

impl StoreState {
    /// State for a new instance of `plugin` limited to `memory_bytes` of linear memory.
    ///
    /// The WASI context is empty on purpose: no environment variables, no arguments, no
    /// preopened directories, stdin empty, stdout/stderr discarded, and no socket address
    /// allowed, so even a plugin granted `wasi` reaches nothing outside its sandbox.
    pub fn new(
        plugin: Arc<str>,
        memory_bytes: usize,
        services: Arc<Services>,
        namespace: Arc<Namespace>,
    ) -> Self {
        let log = services.logs.plugin(&plugin);
        StoreState {
            wasi: None,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            plugin,
            route: Arc::from(""),
            request_id: String::new(),
            trace_id: String::new(),
            host_time: Duration::ZERO,
            declared_metrics: Vec::new(),
            initializing: false,
            log: CallLog::new(log),
            services,
            namespace,
            deadline: Instant::now(),
            ticked: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl StoreState {
    /// Count the time since `start` as host-call time of the current call.
    pub fn note_host_time(&mut self, start: Instant) {
        self.host_time += start.elapsed();
    }

    /// The resource table, for the `wasi:io` bindings.
    pub fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// The empty WASI context described at [`StoreState::new`].
fn empty_wasi() -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder.allow_ip_name_lookup(false);
    builder.socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(empty_wasi),
            table: &mut self.table,
        }
    }
}

/// Refuses growth of linear memory past the plugin's `memory_mb` (and of tables past a fixed
/// bound), trapping the guest and remembering why so the failure is reported as `memory`.
pub struct MemoryLimiter {
    memory_bytes: usize,
    /// Set when a grow was refused; cleared before each call.
    pub exceeded: bool,
}

/// Table elements allowed per table: generous for real runtimes, small enough to stop a bomb.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimiter {
    fn new(memory_bytes: usize) -> Self {
        MemoryLimiter {
            memory_bytes,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory limit exceeded: wanted {desired} bytes, limit {} bytes",
                self.memory_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "table limit exceeded: wanted {desired} elements, limit {MAX_TABLE_ELEMENTS}"
            ));
        }
        Ok(true)
    }
}
