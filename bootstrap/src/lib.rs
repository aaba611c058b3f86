//! `samizdat-bootstrap`: a small, hardened daemon that helps Samizdat nodes find each other
//! (Kademlia server) and relays for nodes behind NAT. It joins no topics and stores no
//! messages: what it relays is end-to-end encrypted and signed by others.

mod config;
mod identity;
mod metrics;

pub use config::{BootstrapConfig, ConfigError};
pub use identity::{IdentityError, load_or_create_identity};

use std::net::SocketAddr;
use std::path::Path;

use libp2p::Multiaddr;
use libp2p::metrics::Registry;
use samizdat_net::bootstrap_peer::{BootstrapPeer, BootstrapPeerConfig};
use tokio_util::sync::CancellationToken;

/// Errors starting a bootstrap peer.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Identity file problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Network problem.
    #[error(transparent)]
    Net(#[from] samizdat_net::NetError),
    /// The metrics address could not be bound.
    #[error("cannot bind metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The home directory could not be created.
    #[error("home directory {0}: {1}")]
    Home(String, std::io::Error),
}

/// A running bootstrap daemon.
#[derive(Debug)]
pub struct Bootstrap {
    /// The libp2p core.
    pub peer: BootstrapPeer,
    /// Where metrics are served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl Bootstrap {
    /// Starts the bootstrap peer from `home` (identity) and `config`, until `shutdown` fires.
    pub async fn spawn(
        home: &Path,
        config: &BootstrapConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, BootstrapError> {
        std::fs::create_dir_all(home)
            .map_err(|e| BootstrapError::Home(home.display().to_string(), e))?;
        let keypair = load_or_create_identity(&home.join("identity.key"))?;
        let mut registry = Registry::with_prefix("samizdat_bootstrap");
        let peer = BootstrapPeer::spawn(
            keypair,
            BootstrapPeerConfig {
                listen: config.listen.clone(),
                peers: config.peers.clone(),
                limits: config.limits.clone(),
                max_reservations: config.relay.max_reservations,
                max_circuits: config.relay.max_circuits,
                max_circuit_bytes: config.relay.max_circuit_bytes,
                idle_timeout: config.idle_connection_timeout,
                web: config.tls.clone(),
            },
            Some(&mut registry),
            shutdown.clone(),
        )
        .await?;
        let (metrics_addr, metrics_task) = match config.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| BootstrapError::Metrics { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| BootstrapError::Metrics { addr, source })?;
                let task = tokio::spawn(metrics::serve(
                    listener,
                    registry,
                    peer.stats.clone(),
                    peer.peer_id,
                    shutdown,
                ));
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        Ok(Self {
            peer,
            metrics_addr,
            metrics_task,
        })
    }

    /// Full listen multiaddrs, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.peer.listen_addrs
    }

    /// Waits until stopped.
    pub async fn stopped(self) {
        if let Some(t) = self.metrics_task {
            let _ = t.await;
        }
        self.peer.stopped().await;
    }
}
