//! The Redis backend: one round trip per decision, bounded by `[state] timeout_ms`.
//!
//! - Counters: one Lua script bumps every counter of a call atomically, reads each previous
//!   window, and computes windows from Redis `TIME` — one clock for every gateway. Every key
//!   it writes carries a TTL of two windows (the previous window is read by sliding limits).
//! - Connection: a `ConnectionManager`, made lazily (a gateway starts while Redis is down)
//!   and reconnecting by itself. While down, connection attempts are spaced out so requests
//!   fail fast instead of queueing behind connects.
//! - Outages are logged once when they start and once when they end, never per request.

use super::{Count, Increment, StateError};
use crate::config::StateConfig;
use crate::telemetry::metrics;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Least time between two connection attempts while Redis is unreachable.
const RECONNECT_SPACING: Duration = Duration::from_millis(250);

const INCREMENT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local w = tonumber(ARGV[2 * i - 1])
  local d = tonumber(ARGV[2 * i])
  local idx = math.floor(now / w)
  local k = KEYS[i] .. ':' .. string.format('%d', idx)
  local c
  if d > 0 then
    c = redis.call('INCRBY', k, d)
    if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, 2 * w) end
  else
    c = tonumber(redis.call('GET', k) or '0')
  end
  local p = tonumber(redis.call('GET', KEYS[i] .. ':' .. string.format('%d', idx - 1)) or '0')
  out[#out + 1] = c
  out[#out + 1] = p
  out[#out + 1] = now - idx * w
end
return out
";

/// Counters and kv in Redis.
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    connection: RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    last_connect_attempt: Mutex<Option<Instant>>,
    outage: Outage,
}

impl RedisStore {
    pub(super) fn new(config: &StateConfig) -> Result<Self, String> {
        let url = config.url.as_deref().unwrap_or_default();
        let client = redis::Client::open(url).map_err(|e| format!("`{url}`: {e}"))?;
        Ok(RedisStore {
            client,
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            script: redis::Script::new(INCREMENT_SCRIPT),
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            last_connect_attempt: Mutex::new(None),
            outage: Outage::default(),
        })
    }

    pub(super) async fn increment(
        &self,
        ns: &str,
        counters: &[Increment],
    ) -> Result<Vec<Count>, StateError> {
        let mut invocation = self.script.prepare_invoke();
        for c in counters {
            invocation
                .key(format!(
                    "{}:ctr:{ns}:{}:{}",
                    self.prefix, c.key, c.window_ms
                ))
                .arg(c.window_ms)
                .arg(c.delta);
        }
        let mut conn = self.connection().await?;
        let values: Vec<u64> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(values
            .chunks_exact(3)
            .map(|v| Count {
                current: v[0],
                previous: v[1],
                elapsed_ms: v[2],
            })
            .collect())
    }

    pub(super) async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.kv_key(ns, key));
        self.bounded(cmd.query_async(&mut conn)).await
    }

    pub(super) async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), StateError> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(ns, key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms);
        self.bounded(cmd.query_async(&mut conn)).await
    }

    pub(super) async fn delete(&self, ns: &str, key: &str) -> Result<bool, StateError> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.kv_key(ns, key));
        let removed: u64 = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(removed > 0)
    }

    fn kv_key(&self, ns: &str, key: &str) -> String {
        format!("{}:kv:{ns}:{key}", self.prefix)
    }

    /// Run one Redis call within the timeout, tracking outages.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, call).await;
        if metrics::enabled() {
            let m = metrics::metrics();
            m.state_duration.observe(started.elapsed().as_secs_f64());
            let outcome = if matches!(result, Ok(Ok(_))) {
                "ok"
            } else {
                "error"
            };
            m.state_calls.with_label_values(&[outcome]).inc();
        }
        match result {
            Ok(Ok(value)) => {
                self.outage.ended();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.outage.started(&e.to_string());
                Err(StateError::Unavailable)
            }
            Err(_) => {
                self.outage
                    .started(&format!("no answer within {:?}", self.timeout));
                Err(StateError::Unavailable)
            }
        }
    }

    /// The shared connection, connecting first if there is none (at most one attempt per
    /// `RECONNECT_SPACING`; callers in between fail fast).
    async fn connection(&self) -> Result<ConnectionManager, StateError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        // Waiters queue for at most one bounded connect attempt.
        let _guard = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        {
            let Ok(mut last) = self.last_connect_attempt.lock() else {
                return Err(StateError::Unavailable);
            };
            if last.is_some_and(|at| at.elapsed() < RECONNECT_SPACING) {
                return Err(StateError::Unavailable);
            }
            *last = Some(Instant::now());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connect = self.client.get_connection_manager_with_config(config);
        let conn = self.bounded(connect).await?;
        if let Ok(mut slot) = self.connection.write() {
            *slot = Some(conn.clone());
        }
        Ok(conn)
    }

    /// Connect now, so the first requests do not pay for it; failure is not fatal.
    pub(super) async fn warm_up(&self) {
        let _ = self.connection().await;
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.connection.read().ok().and_then(|c| c.clone())
    }
}

/// Logs an outage once when it starts and once when it ends, and counts them.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    since_ms: AtomicU64,
    count: AtomicU64,
}

impl Outage {
    fn started(&self, reason: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            let outages = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            let m = metrics::metrics();
            m.state_outages.inc();
            m.state_up.set(0);
            self.since_ms.store(super::now_ms(), Ordering::Relaxed);
            tracing::warn!(
                outages,
                "state backend (redis) unavailable: {reason}; applying on_unavailable until it answers again"
            );
        }
    }

    fn ended(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            let lasted_ms = super::now_ms().saturating_sub(self.since_ms.load(Ordering::Relaxed));
            metrics::metrics().state_up.set(1);
            tracing::info!(lasted_ms, "state backend (redis) available again");
        }
    }
}
