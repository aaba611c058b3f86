//! The `samizdat-bootstrap` binary: parses flags and config, starts the daemon, prints its
//! listen addresses (one full multiaddr per line on stdout), and stops on SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use libp2p::Multiaddr;
use samizdat_bootstrap::{Bootstrap, BootstrapConfig};
use tokio_util::sync::CancellationToken;

/// Samizdat bootstrap peer: helps nodes find each other and relays for nodes behind NAT.
#[derive(Debug, Parser)]
#[command(name = "samizdat-bootstrap", version, about)]
struct Cli {
    /// Directory for the identity key (created if missing).
    #[arg(long, env = "SAMIZDAT_BOOTSTRAP_HOME", value_name = "DIR")]
    home: PathBuf,
    /// Config file (default: HOME/config.toml; missing file = defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address (repeatable); replaces `listen` from the config file.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Another bootstrap peer to join (repeatable), added to `peers` from the config file.
    #[arg(long, value_name = "MULTIADDR")]
    peer: Vec<Multiaddr>,
    /// Serve Prometheus /metrics and /healthz on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // Thousands of connections need thousands of descriptors (the unit sets LimitNOFILE too).
    match samizdat_net::os::raise_open_files_limit() {
        Ok(n) => tracing::debug!(limit = n, "open files"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| cli.home.join("config.toml"));
    let mut config = BootstrapConfig::load(&config_path)?;
    if !cli.listen.is_empty() {
        config.listen = cli.listen.clone();
    }
    config.peers.extend(cli.peer.iter().cloned());
    if cli.metrics.is_some() {
        config.metrics = cli.metrics;
    }
    let shutdown = CancellationToken::new();
    let daemon = Bootstrap::spawn(&cli.home, &config, shutdown.clone())
        .await
        .context("starting the bootstrap peer")?;
    {
        let mut out = std::io::stdout().lock();
        for addr in daemon.listen_addrs() {
            writeln!(out, "{addr}")?;
        }
        out.flush()?;
    }
    tracing::info!(peer_id = %daemon.peer.peer_id, metrics = ?daemon.metrics_addr, "bootstrap peer running");
    samizdat_net::os::termination_signal().await;
    tracing::info!("stopping");
    shutdown.cancel();
    daemon.stopped().await;
    Ok(())
}
