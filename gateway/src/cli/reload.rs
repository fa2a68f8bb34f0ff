//! Reload: compile the config file again, exactly as `gateway check` does, and serve the
//! result from the next request on — or, if anything in it fails, keep serving the old one and
//! say why. Triggered by SIGHUP and by `POST /config/reload` on the admin listener; one reload
//! runs at a time, in the order asked.
//!
//! What a reload applies: routes, plugin chains and their limits, plugins (modules read and
//! checked again, `sha256` pins included), upstreams, keys, `[state]`, the edge's request
//! rules, the listening addresses (new ones bound before anything changes, so one that cannot
//! be bound fails the reload; removed ones stop accepting and their connections drain), and
//! each TLS block's certificates, keys, CAs and protocol settings (adopted by the running
//! listener, its session cache kept). Settings read once at start (`[server]` timeouts and
//! caps, `[admin]`, `[access_log]`, `[tracing]` export, a TLS block's HSTS, handshake timeout
//! and session settings) are applied at the next restart, and the reload says so.

use crate::admin::{ConfigStatus, ReloadRequest};
use crate::compile::{self, Reuse};
use crate::config;
use crate::plugin::Engines;
use crate::proxy::Live;
use crate::server::{Inherited, Listening};
use crate::telemetry::metrics;
use crate::tls::TlsListener;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Keys of a TLS block that its running listener cannot take over.
const TLS_FIXED: &[&str] = &[
    "hsts_max_age_s",
    "hsts_include_subdomains",
    "handshake_timeout_ms",
    "session_cache",
    "session_tickets",
];

/// Keys of `[server]` a reload applies (the rest are read once, at start).
const SERVER_RELOADED: &[&str] = &[
    "listen",
    "tls",
    "via",
    "max_loops",
    "request_body_timeout_ms",
    "plugin_cache_dir",
];

/// Tables read once, when the gateway starts.
const READ_AT_START: &[&str] = &["admin", "access_log"];

/// Keys of `[tracing]` read once, when the gateway starts.
const TRACING_AT_START: &[&str] = &["otlp_endpoint", "service_name", "queue", "batch_delay_ms"];

/// Applies reloads to the running gateway.
pub struct Reloader<'a> {
    path: PathBuf,
    engines: &'a Engines,
    live: Arc<Live>,
    status: Arc<ArcSwap<ConfigStatus>>,
    /// The listening addresses, which a reload binds and closes.
    listening: Arc<Listening>,
    /// The running TLS blocks, by block index.
    tls: Vec<Arc<TlsListener>>,
    /// The serving config's TOML, to see what a new one changes.
    serving: toml::Table,
    /// What the serving config's successor may keep of it.
    reuse: Reuse,
    /// SIGHUP, registered when the reloader is made (before the gateway says it is ready),
    /// so no hangup arrives while the signal's default action would end the process.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl<'a> Reloader<'a> {
    /// A reloader of the config at `path` (whose `text` serves now, and `reuse` is what a
    /// reload may keep of it) for the gateway serving `live` on `listening` with TLS blocks
    /// `tls` (by block index).
    pub fn new(
        path: PathBuf,
        text: &str,
        reuse: Reuse,
        engines: &'a Engines,
        live: Arc<Live>,
        status: Arc<ArcSwap<ConfigStatus>>,
        (listening, tls): (Arc<Listening>, Vec<Arc<TlsListener>>),
    ) -> Self {
        Reloader {
            path,
            engines,
            live,
            status,
            listening,
            tls,
            serving: toml::from_str(text).unwrap_or_default(),
            reuse,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Reload on each SIGHUP and each request from the admin listener; never returns (when
    /// neither can come any more, it waits forever).
    pub async fn run(mut self, mut requests: mpsc::Receiver<ReloadRequest>) {
        #[cfg(unix)]
        let mut hangup = self.hangup.take();
        let mut admin_open = true;
        loop {
            #[cfg(unix)]
            let hung_up = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hung_up = std::future::pending::<Option<()>>();
            let reply = tokio::select! {
                request = requests.recv(), if admin_open => match request {
                    Some(request) => Some(request.reply),
                    None => {
                        admin_open = false;
                        continue;
                    }
                },
                signal = hung_up => match signal {
                    Some(()) => None,
                    None => std::future::pending().await,
                },
            };
            let outcome = self.reload().await;
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// One reload: the new config's SHA-256, or the diagnostics of why the old one serves on.
    pub async fn reload(&mut self) -> Result<String, String> {
        let started = Instant::now();
        let outcome = self.compile_and_apply().await;
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::metrics()
            .config_reloads
            .with_label_values(&[result])
            .inc();
        let mut status = ConfigStatus::clone(&self.status.load());
        match &outcome {
            Ok(applied) => {
                tracing::info!(
                    sha256 = %applied.view.sha256,
                    took_ms = started.elapsed().as_millis() as u64,
                    "config reloaded; {}",
                    applied.kept
                );
                for note in &applied.notes {
                    tracing::warn!("{note}");
                }
                metrics::metrics().config_loaded.set(applied.view.loaded_at);
                status.view = applied.view.clone();
                status.last_reload_error = None;
                status.text = applied.text.clone();
            }
            Err(errors) => {
                tracing::error!("config not reloaded, the old config keeps serving:\n{errors}");
                status.last_reload_error = Some(errors.clone());
            }
        }
        self.status.store(Arc::new(status));
        outcome.map(|applied| applied.view.sha256)
    }

    async fn compile_and_apply(&mut self) -> Result<Applied, String> {
        let loaded = config::load(&self.path).map_err(|errors| errors.to_string())?;
        let new: toml::Table = toml::from_str(loaded.source.text()).unwrap_or_default();
        let compiled = compile::compile_reusing(&loaded, self.engines, Some(&self.reuse))
            .await
            .map_err(|errors| errors.to_string())?;
        let notes = self.changes_needing_restart(&new);
        // A running TLS block takes over its successor's settings (its session cache kept); a
        // block the old config did not have serves as built.
        let blocks: Vec<Arc<TlsListener>> = compiled
            .server
            .tls
            .iter()
            .enumerate()
            .map(|(i, built)| self.tls.get(i).unwrap_or(built).clone())
            .collect();
        // Bound before anything changes, so an address that cannot be bound fails the reload.
        let addresses = self
            .listening
            .prepare(&compiled.server.listen, &blocks, &mut Inherited::none())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        for (running, built) in self.tls.iter().zip(&compiled.server.tls) {
            running.adopt(built).map_err(|e| {
                format!(
                    "server.tls[{}]: certificates changed while reloading: {e}",
                    running.index
                )
            })?;
        }
        let mut runtime = compiled.runtime;
        let serving = self.live.current();
        // The writer thread and the exporter started with the gateway go on.
        runtime.observe.access_log = serving.observe.access_log.clone();
        runtime.observe.spans = serving.observe.spans.clone();
        drop(serving);
        self.live.replace(Arc::new(runtime));
        for line in self.listening.commit(addresses) {
            tracing::info!("{line}");
            // Tests and scripts read these lines to learn ephemeral ports.
            println!("{line}");
        }
        self.tls = blocks;
        for old in self.reuse.upstreams() {
            if !compiled.reuse.upstreams().any(|new| Arc::ptr_eq(new, old)) {
                old.retire();
            }
        }
        for upstream in compiled.reuse.upstreams() {
            // Kept upstreams' checks run on; new ones' start.
            upstream.start_tasks();
        }
        self.serving = new;
        self.reuse = compiled.reuse;
        Ok(Applied {
            text: Arc::from(loaded.source.text()),
            view: compiled.view,
            kept: compiled.kept,
            notes,
        })
    }

    /// The settings that changed but are read only at start.
    fn changes_needing_restart(&self, new: &toml::Table) -> Vec<String> {
        let old = &self.serving;
        let table = |t: &toml::Table, key: &str| t.get(key).cloned();
        let server = |t: &toml::Table| {
            t.get("server")
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default()
        };
        let (old_server, new_server) = (server(old), server(new));
        let blocks = |s: &toml::Table| {
            s.get("tls")
                .and_then(toml::Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (old_tls, new_tls) = (blocks(&old_server), blocks(&new_server));
        let mut notes = Vec::new();
        for key in old_server.keys().chain(new_server.keys()) {
            if !SERVER_RELOADED.contains(&key.as_str())
                && old_server.get(key) != new_server.get(key)
                && !notes
                    .iter()
                    .any(|n: &String| n.contains(&format!("server.{key}")))
            {
                notes.push(format!(
                    "server.{key} changed: it applies at the next restart"
                ));
            }
        }
        for (i, (a, b)) in old_tls.iter().zip(&new_tls).enumerate() {
            for key in TLS_FIXED {
                if a.get(key) != b.get(key) {
                    notes.push(format!(
                        "server.tls[{i}].{key} changed: it applies at the next restart"
                    ));
                }
            }
        }
        for key in READ_AT_START {
            if table(old, key) != table(new, key) {
                notes.push(format!("[{key}] changed: it applies at the next restart"));
            }
        }
        let tracing_of = |t: &toml::Table, key: &str| {
            t.get("tracing")
                .and_then(|tracing| tracing.get(key))
                .cloned()
        };
        for key in TRACING_AT_START {
            if tracing_of(old, key) != tracing_of(new, key) {
                notes.push(format!(
                    "tracing.{key} changed: it applies at the next restart"
                ));
            }
        }
        notes
    }
}

/// A reload that took effect.
struct Applied {
    /// The config file's text.
    text: Arc<str>,
    view: compile::ConfigView,
    /// What it kept of the config it replaced.
    kept: compile::Kept,
    /// What changed but applies only at the next restart.
    notes: Vec<String>,
}
