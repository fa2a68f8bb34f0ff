//! The command line: `gateway run`, `gateway check`, `gateway plugin inspect`.

use crate::plugin::{Engines, inspect};
use crate::telemetry::{self, LogFormat};
use crate::{compile, server};
use anyhow::Context as _;
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
    /// Serve the config.
    Run {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config (including loading every plugin and calling its init) and exit.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
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
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
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

fn run(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let engines = Engines::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = control_runtime()?;
    rt.block_on(async {
        let compiled = match compile::compile_file(path, &engines).await {
            Ok(compiled) => compiled,
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let runtime = Arc::new(compiled.runtime);
        let settings = compiled.server;
        let workers = settings.workers;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let listeners = server::bind(&settings.listen, &settings.tls, workers)?;
        for (local, listener) in &listeners.addresses {
            let serves = listener.describe();
            tracing::info!(address = %local, serves, workers, "listening");
            // Tests and scripts read these lines to learn ephemeral ports.
            println!("listening on {local} ({serves})");
        }
        println!("ready");
        let connections = Arc::new(server::ConnectionSettings::new(&settings));
        server::serve(listeners, runtime, connections, settings.shutdown_grace).await?;
        Ok(ExitCode::SUCCESS)
    })
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
