//! Connection limits and listen defaults, as both daemons configure them.

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Connection limits (see SECURITY.md for why these numbers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Incoming connections still handshaking.
    pub max_pending_incoming: u32,
    /// Incoming connections (handshaking or established) from one IP address.
    pub max_connections_per_ip: u32,
    /// Whether the per-IP limit applies to loopback addresses too (off: local nodes and tests
    /// share 127.0.0.1).
    pub limit_loopback: bool,
    /// Stop accepting connections above this fraction of system memory in use.
    pub max_memory_fraction: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending_incoming: 64,
            max_connections_per_ip: 16,
            limit_loopback: false,
            max_memory_fraction: 0.9,
        }
    }
}

/// TCP and QUIC on all IPv4 interfaces at `port` (0: any free port).
pub fn default_listen(port: u16) -> Vec<Multiaddr> {
    [
        format!("/ip4/0.0.0.0/tcp/{port}"),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}
