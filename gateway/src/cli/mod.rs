//! The command line: `gateway run`, `gateway check`, `gateway status`, `gateway plugin inspect`.

mod plan;
mod reload;
mod status;
mod systemd;
mod upgrade;
mod watch;

use crate::admin::{self, Admin, ConfigStatus};
use crate::config;
use crate::plugin::{Engines, inspect};
use crate::proxy::Live;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::spans::SpanExport;
use crate::telemetry::{self, LogFormat, metrics};
use crate::{compile, server};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// An API gateway whose policies run as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the config. SIGHUP (or `POST /config/reload`) reloads it; SIGUSR2 upgrades to
    /// the executable now at this one's path, handing over the listening sockets.
    Run {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Also reload when the config file or a file it names changes on disk.
        #[arg(long)]
        watch: bool,
    },
    /// Validate the config (including loading every plugin and calling its init) and exit.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show what replacing a config with `--config` would change: routes, chains, plugin
    /// modules and capability grants (`!`: widened), limits, upstreams. Exit 0: nothing,
    /// 2: changes, 1: a config does not parse.
    Plan {
        /// The new config.
        #[arg(long, short)]
        config: PathBuf,
        /// The config it would replace (offline, for CI and review).
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        against: Option<PathBuf>,
        /// Or a running gateway's admin listener: what a reload to `--config` would change
        /// (its token, if one is required, comes from `GATEWAY_ADMIN_TOKEN`).
        #[arg(long)]
        admin: Option<String>,
    },
    /// Ask a running gateway's admin listener how it is: readiness, config, routes, plugins.
    Status {
        /// The admin listener's address (`[admin] listen`); its token, if one is required,
        /// comes from `GATEWAY_ADMIN_TOKEN`.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        /// Print the admin API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Show a component's imports, exports, required capabilities, size and SHA-256.
    Inspect {
        /// A .wasm component file, or builtin:NAME.
        module: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Parse arguments and run; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Run { config, watch } => run(&config, watch),
        Command::Check { config } => check(&config),
        Command::Plan {
            config,
            against,
            admin,
        } => match (against, admin) {
            (Some(against), _) => plan::offline(&config, &against),
            (None, Some(admin)) => {
                control_runtime().and_then(|rt| rt.block_on(plan::against_admin(&config, &admin)))
            }
            (None, None) => Err(anyhow::anyhow!("give --against FILE or --admin ADDR")),
        },
        Command::Status { admin, json } => {
            control_runtime().and_then(|rt| rt.block_on(status::status(&admin, json)))
        }
        Command::Plugin {
            command: PluginCommand::Inspect { module, json },
        } => plugin_inspect(&module, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The control runtime: loads the config and plugins, waits for signals and runs background
/// tasks. Requests are served by the workers' own runtimes ([`server::bind`]).
fn control_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let engines = Engines::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = control_runtime()?;
    match rt.block_on(compile::compile_file(path, &engines)) {
        Ok(compiled) => {
            for warning in &compiled.server.warnings {
                eprintln!("warning: {warning}");
            }
            let runtime = compiled.runtime;
            println!("{}: OK ({} routes)", path.display(), runtime.router.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(path: &std::path::Path, watch_files: bool) -> anyhow::Result<ExitCode> {
    // Read before anything else: what a predecessor handed over, and this executable's path
    // (once an upgrade replaces the file, the running process no longer names it).
    let mut inherited = server::Inherited::from_env();
    let successor = upgrade::Successor::of_this_process();
    let engines = Engines::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = control_runtime()?;
    rt.block_on(async {
        let compiled = match config::load(path) {
            Ok(loaded) => compile::compile(&loaded, &engines)
                .await
                .map(|compiled| (compiled, loaded.source.text().to_string())),
            Err(errors) => Err(errors),
        };
        let (compiled, text) = match compiled {
            Ok(compiled) => compiled,
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut runtime = compiled.runtime;
        let settings = compiled.server;
        let workers = settings.workers;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(log) = &settings.access_log {
            let started = AccessLog::start(log.destination.clone(), log.sample)
                .with_context(|| format!("cannot open the access log {:?}", log.destination))?;
            runtime.observe.access_log = Some(Arc::new(started));
        }
        if let Some(export) = &settings.span_export {
            let started = SpanExport::start(export)
                .with_context(|| format!("cannot export spans to {}", export.endpoint))?;
            runtime.observe.spans = Some(Arc::new(started));
        }
        if settings.admin.as_ref().is_some_and(|admin| admin.metrics) {
            metrics::enable();
            metrics::metrics()
                .config_loaded
                .set(compiled.view.loaded_at);
        }
        let live = Live::new(Arc::new(runtime));
        let status = Arc::new(ArcSwap::from_pointee(ConfigStatus {
            view: compiled.view,
            last_reload_error: None,
            text: Arc::from(text.as_str()),
            path: path.to_path_buf(),
        }));
        let connections = Arc::new(server::ConnectionSettings::new(&settings));
        let listening = Arc::new(server::Listening::start(
            workers,
            live.clone(),
            connections,
        )?);
        let change = listening.prepare(&settings.listen, &settings.tls, &mut inherited)?;
        for line in listening.commit(change) {
            tracing::info!(workers, "{line}");
            // Tests and scripts read these lines to learn ephemeral ports.
            println!("{line}");
        }
        let mut background = Vec::new();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(8);
        let mut admin_socket = None;
        let mut admin_task = None;
        if let Some(admin) = &settings.admin {
            let listener = match inherited.take_admin(admin.listen) {
                Some(socket) => socket
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(socket)),
                None => tokio::net::TcpListener::bind(admin.listen).await,
            }
            .with_context(|| format!("cannot listen on {} (admin)", admin.listen))?;
            let local = listener.local_addr()?;
            admin_socket = Some(std::os::fd::AsRawFd::as_raw_fd(&listener));
            tracing::info!(address = %local, "admin listening");
            println!("listening on {local} (admin)");
            let served = Admin::new(
                live.clone(),
                status.clone(),
                reload_tx.clone(),
                admin.token.as_deref(),
            );
            let task = tokio::spawn(admin::serve(listener, Arc::new(served)));
            admin_task = Some(task.abort_handle());
            background.push(task);
        }
        let (access_log, spans) = {
            let serving = live.current();
            (
                serving.observe.access_log.clone(),
                serving.observe.spans.clone(),
            )
        };
        if let Some(log) = &access_log {
            background.push(tokio::spawn(reopen_on_user1(log.clone())));
        }
        // Health checks run while the config serves (not for `gateway check`).
        for upstream in compiled.reuse.upstreams() {
            upstream.start_tasks();
        }
        let reloader = reload::Reloader::new(
            path.to_path_buf(),
            &text,
            compiled.reuse,
            &engines,
            live.clone(),
            status,
            (listening.clone(), settings.tls.clone()),
        );
        if watch_files {
            background.push(tokio::spawn(watch::watch(
                path.to_path_buf(),
                reload_tx.clone(),
            )));
        }
        drop(reload_tx);
        let mut successor = successor;
        if let Some(successor) = &mut successor {
            successor.listen();
        }
        // Left over from a predecessor that served more addresses: closed.
        let upgraded = inherited.is_upgrade();
        inherited.announce_ready();
        drop(inherited);
        telemetry::set_ready(true);
        println!("ready");
        if upgraded {
            systemd::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
        } else {
            systemd::notify("READY=1");
        }
        let stop = async {
            let upgrade = async {
                match successor {
                    Some(successor) => {
                        upgrade::on_user2(successor, listening.clone(), admin_socket).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = server::shutdown_signal() => {
                    systemd::notify("STOPPING=1");
                    server::Stop::Signal
                }
                () = upgrade => {
                    // The successor answers the admin listener from now on.
                    if let Some(admin) = &admin_task {
                        admin.abort();
                    }
                    server::Stop::HandedOver
                }
            }
        };
        // The reloader borrows the engines, so it runs here, beside the server, not as a task.
        let served = tokio::select! {
            served = server::serve(
                listening.clone(),
                stop,
                (settings.readiness_grace, settings.shutdown_grace),
            ) => served,
            () = reloader.run(reload_rx) => Ok(()),
        };
        for task in background {
            task.abort();
        }
        if let Some(log) = &access_log {
            log.flush();
        }
        if let Some(spans) = spans {
            // The processor's flush blocks on its export thread.
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
        served?;
        Ok(ExitCode::SUCCESS)
    })
}

/// On SIGUSR1, reopen the access log file (after a rotation tool moved it). The signal is
/// taken when this is called, not when the task first runs: before the gateway says it is
/// ready, SIGUSR1's default action would end the process.
fn reopen_on_user1(log: Arc<AccessLog>) -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let user1 = signal(SignalKind::user_defined1());
    async move {
        let Ok(mut user1) = user1 else { return };
        while user1.recv().await.is_some() {
            log.reopen();
        }
    }
}

fn plugin_inspect(module: &str, json: bool) -> anyhow::Result<ExitCode> {
    let engines = Engines::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = inspect::inspect(module, &engines).map_err(|e| anyhow::anyhow!(e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
