//! `samizdat run`: the node in the foreground.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Args;
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

use super::{Cli, passphrase};
use crate::home::Home;
use crate::node::NodeOptions;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// Listen address (repeatable); replaces `listen` from config.toml.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer (repeatable), added to `bootstrap` from config.toml.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Local API address (default from config.toml: 127.0.0.1:7420; use 127.0.0.1:0 for any).
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
}

pub(super) async fn run(cli: &Cli, home: &Home, args: &RunArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    let opts = NodeOptions {
        passphrase: passphrase(cli)?,
        listen: args.listen.clone(),
        bootstrap: args.bootstrap.clone(),
        init_if_missing: true,
        mdns: None,
    };
    let daemon = crate::daemon::Daemon::start(home, opts, args.api, shutdown.clone()).await?;
    let info = daemon.node.info().clone();
    println!("samizdat node {}", info.peer_id);
    for a in &info.addrs {
        println!("listening on {a}");
    }
    println!("api on http://{}", daemon.api_addr);
    tracing::info!(peer_id = %info.peer_id, api = %daemon.api_addr, home = %home.path().display(), "node running");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::daemon::termination_signal().await;
        tracing::info!("stopping");
        stop.cancel();
    });
    daemon.stopped().await;
    Ok(())
}
