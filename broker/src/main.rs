//! `sluice`: runs one broker node until SIGTERM or ctrl-c, then shuts down in order.
//!
//! Owns the process: flags, configuration loading, logging, signals and exit codes. Knows
//! nothing about frames or channels; the [`Server`] does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use sluice_broker::config::{BrokerConfig, Overrides};
use sluice_broker::exporter::MetricsEndpoint;
use sluice_broker::server::Server;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Exit code for a configuration that cannot be loaded.
const EXIT_CONFIG: u8 = 2;

/// Command-line flags; they override the config file and `SLUICE_*` environment variables.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Sluice message broker node")]
struct Flags {
    /// Configuration file (default: config/sluice.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding the partitions' logs.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address the protocol listener binds.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl Flags {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            metrics_listen: self.metrics_listen,
        }
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match BrokerConfig::load(flags.config.as_deref(), &flags.overrides()) {
        Ok(config) => config,
        Err(error) => return fail(&error, EXIT_CONFIG),
    };
    if flags.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&format!("{error:#}"), 1),
    }
}

/// One line on stderr, then the exit code.
fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("sluice: {error}");
    ExitCode::from(code)
}

fn init_logging(config: &BrokerConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// Binds, serves until a stop signal, and shuts down.
async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let stop = stop_signal(shutdown.clone())?;
    // Before the server opens partitions: they cache their metric handles.
    let metrics = MetricsEndpoint::bind(config.metrics_listen)
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.metrics_listen))?;
    let server = Server::bind(&config).await?;
    tracing::info!(
        listen = %server.local_addr(),
        metrics = %metrics.local_addr(),
        data_dir = %config.data_dir.display(),
        fsync = ?config.channel_defaults.fsync,
        "sluice listening"
    );
    let metrics_shutdown = CancellationToken::new();
    let metrics = metrics.spawn(metrics_shutdown.clone());
    server.run(shutdown).await;
    metrics_shutdown.cancel();
    let _ = metrics.await;
    stop.abort();
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT (ctrl-c).
///
/// # Errors
/// When the signal handlers cannot be installed.
fn stop_signal(shutdown: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        shutdown.cancel();
    }))
}
