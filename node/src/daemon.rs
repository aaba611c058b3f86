//! `samizdat run`: the node plus its local API, until SIGINT/SIGTERM.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::home::{Home, write_private};
use crate::node::{Node, NodeError, NodeOptions};

/// Resolves when the process receives SIGINT or SIGTERM.
pub use samizdat_net::os::termination_signal;

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The node failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The API address is not a loopback address.
    #[error("the API must listen on a loopback address (127.0.0.1 or ::1), not {0}")]
    ApiNotLoopback(SocketAddr),
    /// The API address could not be bound.
    #[error("cannot bind the API on {addr}: {source} (pass --api 127.0.0.1:0 for any free port)")]
    ApiBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Writing api.addr or api.token failed.
    #[error("writing API files: {0}")]
    Io(#[from] std::io::Error),
}

/// A running daemon: node and API.
#[derive(Debug)]
pub struct Daemon {
    /// The node.
    pub node: Node,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
    home: Home,
}

impl Daemon {
    /// Starts the node and the API; writes `api.addr` and a fresh `api.token` into the home.
    pub async fn start(
        home: &Home,
        opts: NodeOptions,
        api: Option<SocketAddr>,
        shutdown: CancellationToken,
    ) -> Result<Self, DaemonError> {
        match crate::os::raise_open_files_limit() {
            Ok(n) => tracing::debug!(limit = n, "open files"),
            Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
        }
        let node = Node::start(home, opts, shutdown.clone()).await?;
        let api = api.unwrap_or(node.config().api);
        if !api.ip().is_loopback() {
            shutdown.cancel();
            return Err(DaemonError::ApiNotLoopback(api));
        }
        let listener = match TcpListener::bind(api).await {
            Ok(l) => l,
            Err(source) => {
                shutdown.cancel();
                return Err(DaemonError::ApiBind { addr: api, source });
            }
        };
        let api_addr = listener.local_addr()?;
        // A new token on every start: a leaked token dies with the process that issued it.
        let token = data_encoding::BASE32_NOPAD
            .encode(&crate::crypto::random_bytes::<20>())
            .to_ascii_lowercase();
        write_private(&home.api_token_file(), token.as_bytes())?;
        write_private(&home.api_addr_file(), api_addr.to_string().as_bytes())?;
        let handle = node.handle();
        let token_for_server = token.clone();
        let api_task = tokio::spawn(async move {
            crate::api::serve(listener, handle, &token_for_server, shutdown).await
        });
        Ok(Self {
            node,
            api_addr,
            api: api_task,
            home: home.clone(),
        })
    }

    /// Waits for shutdown, then stops the API and the node and removes `api.addr`.
    pub async fn stopped(self) {
        match self.api.await {
            Ok(Err(e)) => tracing::error!("API server: {e}"),
            Err(e) => tracing::error!("API task: {e}"),
            Ok(Ok(())) => {}
        }
        self.node.stopped().await;
        let _ = std::fs::remove_file(self.home.api_addr_file());
    }
}
