//! `config.toml`: the node's settings. Every field has a default; flags override the file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

pub use samizdat_net::{Limits, default_listen};

/// The local API's default address (documented in README.md).
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7420";

/// Errors reading `config.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        source: toml::de::Error,
    },
    /// A setting that parses but cannot be used.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Whether this node serves the DHT to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DhtMode {
    /// Serve when reachable (AutoNAT or a public address says so), else only ask.
    #[default]
    Auto,
    /// Always serve DHT requests.
    Server,
    /// Only make requests (behind NAT, on a phone, on metered links).
    Client,
}

/// Node settings, as stored in `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Multiaddrs to listen on. `samizdat init` picks one random port for TCP and QUIC, so the
    /// node keeps its address across restarts and peers' caches stay valid.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers: full multiaddrs ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses to announce besides the listen addresses (e.g. a port-forwarded public one).
    pub external_addresses: Vec<Multiaddr>,
    /// Announce listen addresses with public IPs as reachable at once; others (private, LAN,
    /// loopback) only once AutoNAT confirms that peers can dial them.
    pub announce_listen_addresses: bool,
    /// Find peers on the local network by mDNS (works with no internet at all).
    pub mdns: bool,
    /// Reserve a slot on relays when not directly reachable, so others can still connect.
    pub use_relays: bool,
    /// Local API address (loopback only).
    pub api: SocketAddr,
    /// DHT role.
    pub dht_mode: DhtMode,
    /// Connection limits.
    pub limits: Limits,
    /// How many connections the node keeps open (the connection manager's watermarks).
    pub connections: ConnectionManager,
    /// Close connections idle for this long.
    #[serde(with = "humantime_serde_compat")]
    pub idle_connection_timeout: Duration,
    /// Largest file this node adds or fetches, in bytes.
    pub max_file_bytes: u64,
    /// Disk this node may fill with attachments it fetches by itself (from accepted
    /// conversations and groups, before anyone opens them), in bytes.
    pub max_prefetch_bytes: u64,
    /// The certificate served on TLS listen addresses (`/tls/ws`).
    pub tls: samizdat_net::web::WebConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(0),
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            announce_listen_addresses: true,
            mdns: true,
            use_relays: true,
            // Parsing a constant; covered by a unit test.
            #[allow(clippy::expect_used)]
            api: DEFAULT_API_ADDR.parse().expect("valid default API address"),
            dht_mode: DhtMode::default(),
            limits: Limits::default(),
            connections: ConnectionManager::default(),
            idle_connection_timeout: Duration::from_secs(60),
            max_file_bytes: 4 * 1024 * 1024 * 1024,
            max_prefetch_bytes: 1024 * 1024 * 1024,
            tls: samizdat_net::web::WebConfig::default(),
        }
    }
}

/// The connection manager's settings: above `high` connections the node closes the least
/// useful peers down to `low`, sparing any connected for less than `grace`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionManager {
    /// Trimming closes peers down to this many connections.
    pub low: u32,
    /// Trimming starts above this many connections.
    pub high: u32,
    /// A peer connected for less than this is never closed.
    #[serde(with = "humantime_serde_compat")]
    pub grace: Duration,
}

impl Default for ConnectionManager {
    fn default() -> Self {
        Self {
            low: 32,
            high: 96,
            grace: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let config = Self::parse(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?;
                if let Some(reason) = config.tls.problem() {
                    return Err(ConfigError::Invalid {
                        path: path.display().to_string(),
                        reason: reason.into(),
                    });
                }
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The commented TOML that `samizdat init` writes.
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[Multiaddr]| {
            v.iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            r#"# Samizdat node settings. Every key is optional; flags given to `samizdat run` win.

# Where to accept connections (TCP and QUIC). A fixed port keeps this node's address stable
# across restarts, so that other nodes' peer caches still find it.
listen = [{listen}]

# Bootstrap peers: full multiaddrs ending in /p2p/<peer id>. Used together with the peer cache.
bootstrap = [{bootstrap}]

# Extra addresses to announce (a port-forwarded public address, for example).
external_addresses = [{external}]

# Announce listen addresses with public IPs as reachable at once (others wait for AutoNAT
# to confirm that peers can dial them). Turn off on a host that nobody can dial.
announce_listen_addresses = {announce}

# Find other nodes on the local network by mDNS: a LAN keeps working with no internet at all.
mdns = {mdns}

# Hold a slot on relays (bootstrap peers) when not directly reachable, so that others can
# still connect; connections through a relay are upgraded to direct ones when NATs allow.
use_relays = {use_relays}

# The local API (HTTP + JSON). Keep it on loopback: it is guarded by api.token only.
api = "{api}"

# "auto" serves the DHT when reachable and only asks when not; "server" always serves;
# "client" only asks (metered links).
dht_mode = "{dht}"

# Idle connections are closed after this long.
idle_connection_timeout = "{idle}"

# Largest file this node adds or fetches, in bytes.
max_file_bytes = {max_file}

# Disk that attachments fetched by themselves (up to 64 MiB each, from accepted conversations
# and groups, before anyone opens them) may take in all, in bytes. Beyond it they wait until
# opened. Requests from strangers fetch nothing.
max_prefetch_bytes = {max_prefetch}

[limits]
max_connections = {mc}
max_connections_per_peer = {mcp}
max_pending_incoming = {mpi}
# Incoming connections from one IP address; loopback is exempt unless limit_loopback.
max_connections_per_ip = {mcip}
limit_loopback = {lol}
max_memory_fraction = {mmf}

# The connection manager: above `high` connections the node closes the least useful peers
# down to `low` (never topic mesh peers, relays, bootstrap peers, exchanges in progress, or
# peers connected for less than `grace`).
[connections]
low = {cml}
high = {cmh}
grace = "{cmg}"

# The certificate served on TLS listen addresses (/tcp/443/tls/ws, or with a secret path
# /tcp/443/tls/x-parity-ws/%2Fsome%2Fpath). It does not authenticate this node (Noise inside
# does); without cert and key a self-signed certificate for `name` is made at each start.
[tls]
{tls}
"#,
            listen = list(&self.listen),
            bootstrap = list(&self.bootstrap),
            external = list(&self.external_addresses),
            announce = self.announce_listen_addresses,
            api = self.api,
            dht = match self.dht_mode {
                DhtMode::Auto => "auto",
                DhtMode::Server => "server",
                DhtMode::Client => "client",
            },
            mdns = self.mdns,
            use_relays = self.use_relays,
            idle = humantime::format_duration(self.idle_connection_timeout),
            max_file = self.max_file_bytes,
            max_prefetch = self.max_prefetch_bytes,
            mc = self.limits.max_connections,
            mcp = self.limits.max_connections_per_peer,
            mpi = self.limits.max_pending_incoming,
            mcip = self.limits.max_connections_per_ip,
            lol = self.limits.limit_loopback,
            mmf = self.limits.max_memory_fraction,
            cml = self.connections.low,
            cmh = self.connections.high,
            cmg = humantime::format_duration(self.connections.grace),
            tls = [
                (
                    "cert",
                    self.tls.cert.as_ref().map(|p| p.display().to_string())
                ),
                (
                    "key",
                    self.tls.key.as_ref().map(|p| p.display().to_string())
                ),
                ("name", self.tls.name.clone()),
            ]
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} = {}", toml::Value::String(v.clone())),
                None => format!("# {k} = \"\""),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        )
    }
}

/// Durations in TOML as human strings ("60s", "5m").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_template_parses_back_to_the_same_config() {
        let mut c = Config {
            listen: default_listen(4242),
            ..Config::default()
        };
        c.bootstrap.push(
            "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .expect("addr"),
        );
        let back = Config::parse(&c.to_commented_toml()).expect("parse");
        assert_eq!(back.listen, c.listen);
        assert_eq!(back.bootstrap, c.bootstrap);
        assert_eq!(back.api, c.api);
        assert_eq!(back.idle_connection_timeout, c.idle_connection_timeout);
        assert_eq!(back.connections, c.connections);
        assert_eq!(back.tls, c.tls);
        c.tls = samizdat_net::web::WebConfig {
            cert: Some("/etc/ssl/front.pem".into()),
            key: Some("/etc/ssl/front \"key\".pem".into()),
            name: Some("news.example".into()),
        };
        let back = Config::parse(&c.to_commented_toml()).expect("parse with tls");
        assert_eq!(back.tls, c.tls);
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[tls]\ncert = \"/etc/ssl/front.pem\"\n").expect("write");
        let err = Config::load(&path).expect_err("half a certificate");
        assert!(err.to_string().contains("both `cert` and `key`"), "{err}");
    }

    #[test]
    fn empty_file_is_defaults_and_typos_are_errors() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.api.to_string(), DEFAULT_API_ADDR);
        assert!(Config::parse("lisen = []").is_err());
        assert!(Config::parse("listen = [\"not an addr\"]").is_err());
    }
}
