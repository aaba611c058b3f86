//! The bootstrap peer's `config.toml`. Every field has a default; flags override the file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use libp2p::Multiaddr;
use samizdat_net::Limits;
use serde::Deserialize;

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Not valid for this schema.
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
}

/// Bootstrap peer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Listen multiaddrs (TCP and QUIC; put them on public addresses).
    pub listen: Vec<Multiaddr>,
    /// Other bootstrap peers of the same operator, to join into one DHT.
    pub peers: Vec<Multiaddr>,
    /// Address for Prometheus `/metrics` and `/healthz`; unset = no metrics server.
    pub metrics: Option<SocketAddr>,
    /// Connection limits.
    pub limits: Limits,
    /// Relay limits.
    pub relay: RelayLimits,
    /// Close idle connections after this long.
    #[serde(deserialize_with = "duration")]
    pub idle_connection_timeout: Duration,
    /// The certificate served on TLS listen addresses (`/tls/ws`); self-signed if unset.
    pub tls: samizdat_net::web::WebConfig,
}

/// Relay v2 limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayLimits {
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Circuits open at once.
    pub max_circuits: usize,
    /// Bytes per circuit before it is closed (relays are for signalling and hole punching,
    /// not bulk transfer).
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 512,
            max_circuits: 256,
            max_circuit_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            listen: samizdat_net::default_listen(4001),
            peers: Vec::new(),
            metrics: None,
            limits: Limits {
                max_connections: 4096,
                max_connections_per_peer: 4,
                max_pending_incoming: 256,
                // Many users share a CGNAT or office address; 64 still keeps one host from
                // taking the peer's 4,096 slots.
                max_connections_per_ip: 64,
                limit_loopback: false,
                max_memory_fraction: 0.9,
            },
            relay: RelayLimits::default(),
            idle_connection_timeout: Duration::from_secs(120),
            tls: samizdat_net::web::WebConfig::default(),
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime_parse(&s).map_err(serde::de::Error::custom)
}

fn humantime_parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (use s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

impl BootstrapConfig {
    /// Reads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(t) => {
                toml::from_str(&t).map_err(|e| ConfigError::Parse(path.display().to_string(), e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError::Io(path.display().to_string(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let text = include_str!("../deploy/config.toml");
        let c: BootstrapConfig = toml::from_str(text).expect("example config parses");
        assert!(!c.listen.is_empty());
        assert_eq!(c.idle_connection_timeout, Duration::from_secs(120));
        assert!(toml::from_str::<BootstrapConfig>("unknown = 1").is_err());
    }
}
