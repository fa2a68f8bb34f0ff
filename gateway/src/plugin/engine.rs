//! The wasmtime engines, narrowed to what the gateway needs, and the epoch ticker.
//!
//! Two engines share one configuration but for fuel: fuel metering instruments every compiled
//! function (≈ +50% on hot loops), so only plugins that ask for a `fuel` budget are compiled
//! with it. Both engines use epoch interruption for wall-clock timeouts; one background thread
//! advances their epoch every [`TICK`], so a `timeout_ms` deadline is `timeout_ms` ticks away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, OptLevel};

/// One epoch tick.
pub const TICK: Duration = Duration::from_millis(1);

/// Guest stack allowed per instance.
const MAX_WASM_STACK: usize = 512 << 10;

/// The gateway's engines and their ticker; the ticker stops when this is dropped.
pub struct Engines {
    plain: Engine,
    fueled: Engine,
    stop: Arc<AtomicBool>,
}

impl Engines {
    /// Build both engines and start the epoch ticker.
    pub fn new() -> wasmtime::Result<Self> {
        let plain = Engine::new(&config(false))?;
        let fueled = Engine::new(&config(true))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (plain.clone(), fueled.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                let (plain, fueled, stop) = ticker;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    plain.increment_epoch();
                    fueled.increment_epoch();
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start epoch ticker: {e}"))?;
        Ok(Engines {
            plain,
            fueled,
            stop,
        })
    }

    /// The engine for a plugin, by whether it meters fuel.
    pub fn engine(&self, fuel: bool) -> &Engine {
        if fuel { &self.fueled } else { &self.plain }
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    config
}
