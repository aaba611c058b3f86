//! Samizdat's network layer, shared by the personal node and the bootstrap peer: protocol
//! names, transports, Kademlia/identify/limits construction, the bounded DHT store, wire
//! codecs, DHT record validation, and address helpers. It knows nothing of channels' content,
//! storage or the local API, so the bootstrap peer builds from this crate alone.

pub mod bootstrap_peer;
pub mod dht_store;
pub mod ip_limit;
mod limits;
pub mod os;
pub mod rate_limit;
pub mod records;
pub mod requests;
pub mod scoring;
pub mod web;
pub mod wire;

pub use limits::{Limits, default_listen};
pub use records::{RecordValidator, RecordVerdict, SamizdatRecords, check_record};

/// Kademlia as nodes and bootstrap peers run it: Samizdat's protocol id, over the bounded
/// store of [`dht_store`].
pub type Kademlia = kad::Behaviour<dht_store::DhtStore>;

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, connection_limits, identify, identity,
    kad, memory_connection_limits, noise, tcp, yamux,
};

/// Kademlia protocol id: Samizdat's own DHT, separate from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/samizdat/kad/1.0.0");
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/samizdat/id/1.0.0";
/// Relay v2 hop protocol id, as listed by identify on peers that relay.
pub const RELAY_HOP_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");
/// Largest gossipsub frame accepted (a maximal post plus envelope and gossipsub framing).
pub const MAX_GOSSIP_BYTES: usize = 128 * 1024;

/// Errors building the network stack.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A transport could not be set up.
    #[error("transport setup: {0}")]
    Transport(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A behaviour could not be built.
    #[error("network behaviour: {0}")]
    Behaviour(String),
}

/// Builds the bootstrap peer's swarm: TCP, QUIC and the web transport (WebSocket, plain or in
/// TLS; noise + yamux), DNS, with
/// bandwidth metrics per transport stack in `registry`.
pub async fn build_swarm<B, F>(
    keypair: identity::Keypair,
    idle_timeout: Duration,
    web_config: &web::WebConfig,
    registry: &mut libp2p::metrics::Registry,
    make_behaviour: F,
) -> Result<Swarm<B>, NetError>
where
    B: NetworkBehaviour,
    F: FnOnce(&identity::Keypair) -> Result<B, NetError>,
{
    let mut err = None;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(transport_err)?
        .with_quic()
        .with_other_transport(|key| web_transport(key, web_config))
        .map_err(transport_err)?
        .with_dns()
        .map_err(transport_err)?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| keep_error(make_behaviour(key), &mut err))
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    match err {
        Some(e) => Err(e),
        None => Ok(swarm),
    }
}

/// Builds a personal node's swarm: TCP, QUIC and the web transport (WebSocket, plain or in
/// TLS; noise + yamux), DNS, and the relay
/// client transport (for listening through a relay when not directly reachable).
pub async fn build_node_swarm<B, F>(
    keypair: identity::Keypair,
    idle_timeout: Duration,
    web_config: &web::WebConfig,
    make_behaviour: F,
) -> Result<Swarm<B>, NetError>
where
    B: NetworkBehaviour,
    F: FnOnce(&identity::Keypair, libp2p::relay::client::Behaviour) -> Result<B, NetError>,
{
    let mut err = None;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(transport_err)?
        .with_quic()
        .with_other_transport(|key| web_transport(key, web_config))
        .map_err(transport_err)?
        .with_dns()
        .map_err(transport_err)?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_behaviour(|key, relay| keep_error(make_behaviour(key, relay), &mut err))
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    match err {
        Some(e) => Err(e),
        None => Ok(swarm),
    }
}

/// The web transport with Noise and yamux on top, as on TCP.
fn web_transport(
    key: &identity::Keypair,
    config: &web::WebConfig,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::core::Transport as _;
    Ok(web::WebTransport::new(config)?
        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(20))
        .boxed())
}

fn transport_err(e: impl std::fmt::Display) -> NetError {
    NetError::Transport(e.to_string())
}

/// Keeps a behaviour constructor's typed error (the builder only carries a boxed one).
fn keep_error<B>(
    r: Result<B, NetError>,
    slot: &mut Option<NetError>,
) -> Result<B, Box<dyn std::error::Error + Send + Sync>> {
    r.map_err(|e| {
        let msg = e.to_string();
        *slot = Some(e);
        msg.into()
    })
}

/// AutoNAT (v1, client and server): learns whether this peer's addresses are reachable by
/// asking others to dial back, and dials back for others. Private addresses count too (LANs,
/// test networks); servers throttle clients.
pub fn autonat(peer_id: PeerId, probe_soon: bool) -> libp2p::autonat::Behaviour {
    libp2p::autonat::Behaviour::new(
        peer_id,
        libp2p::autonat::Config {
            boot_delay: if probe_soon {
                Duration::from_secs(2)
            } else {
                Duration::from_secs(15)
            },
            retry_interval: Duration::from_secs(20),
            refresh_interval: Duration::from_secs(5 * 60),
            throttle_server_period: Duration::from_secs(5),
            confidence_max: 2,
            only_global_ips: false,
            ..Default::default()
        },
    )
}

/// Kademlia with Samizdat's protocol id and record filtering on (records are checked by
/// a [`RecordValidator`] before they are stored, and only kept within per-source and total
/// bounds: [`dht_store::DhtStore`]).
pub fn kademlia(peer_id: PeerId, mode: Option<kad::Mode>) -> Kademlia {
    let mut cfg = kad::Config::new(KAD_PROTOCOL);
    cfg.set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_query_timeout(Duration::from_secs(30))
        .set_provider_record_ttl(Some(Duration::from_secs(24 * 3600)))
        .set_provider_publication_interval(Some(Duration::from_secs(3600)))
        // Kubo's routing-table refresh: each round is a lookup per bucket, and every 5 min
        // (the default) made lookups a leading cause of connection churn in a large mesh.
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(600)))
        // Lookups follow several disjoint paths, so a few hostile peers on one path cannot
        // hide a record or the honest providers of a key (S/Kademlia).
        .disjoint_query_paths(true);
    let store = dht_store::DhtStore::new(peer_id, dht_store::DhtLimits::default());
    let mut kad = kad::Behaviour::with_config(peer_id, store, cfg);
    // Bootstrap peers set Server explicitly: kad's automatic mode waits for confirmed external
    // addresses, which a bootstrap peer may never get. Nodes follow their reachability.
    kad.set_mode(mode);
    kad
}

/// Identify, announcing Samizdat's protocol version and the given agent.
pub fn identify(key: &identity::Keypair, agent: &str) -> identify::Behaviour {
    identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_string(), key.public())
            .with_agent_version(agent.to_string())
            .with_push_listen_addr_updates(true)
            .with_interval(Duration::from_secs(5 * 60))
            // Identify's own address cache would hand every listen address a peer announces,
            // loopback included, to every later dial; Kademlia gets them filtered instead
            // (`learn_from_identify`).
            .with_cache_size(0),
    )
}

/// Connection-count limits.
pub fn connection_limits(l: &Limits) -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(l.max_connections))
            .with_max_established_per_peer(Some(l.max_connections_per_peer))
            .with_max_pending_incoming(Some(l.max_pending_incoming))
            .with_max_pending_outgoing(Some(l.max_pending_incoming)),
    )
}

/// Why a behaviour refused a connection: the limit's own message (the wrapper's Display only
/// says "connection denied").
pub fn denial_reason(cause: &libp2p::swarm::ConnectionDenied) -> String {
    std::error::Error::source(cause).map_or_else(|| cause.to_string(), |e| e.to_string())
}

/// Refuse incoming connections from an IP that holds too many already.
pub fn ip_limit(l: &Limits) -> ip_limit::Behaviour {
    ip_limit::Behaviour::new(l.max_connections_per_ip.max(1), l.limit_loopback)
}

/// Refuse new connections when system memory use is above the configured fraction.
pub fn memory_limits(l: &Limits) -> memory_connection_limits::Behaviour {
    memory_connection_limits::Behaviour::with_max_percentage(l.max_memory_fraction.clamp(0.1, 1.0))
}

/// Splits `/.../p2p/<id>` into the peer id and the address without it. Tolerates a repeated
/// trailing `/p2p/<id>` (as happens when a user appends it to an address that had it).
pub fn split_peer_addr(addr: &Multiaddr) -> (Option<PeerId>, Multiaddr) {
    let mut base = addr.clone();
    let mut peer = None;
    while let Some(Protocol::P2p(p)) = base.iter().last() {
        if peer.is_some_and(|q| q != p) {
            break;
        }
        peer = Some(p);
        base.pop();
    }
    (peer, base)
}

/// Whether an address points at this host only (loopback).
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether an address is publicly routable (not private, loopback, link-local or shared).
pub fn is_global(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => {
            let o = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        Protocol::Ip6(ip) => {
            let s = ip.segments();
            !(ip.is_loopback()
                || ip.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => true,
        _ => false,
    })
}

/// Whether an address goes through a relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The transport an address uses, as the API names it: `relay`, `tls-ws` (WebSocket inside
/// TLS), `ws`, `quic`, `tcp`, or `other`.
pub fn transport_name(addr: &Multiaddr) -> &'static str {
    if is_relayed(addr) {
        "relay"
    } else if web::is_web(addr) && web::is_tls(addr) {
        "tls-ws"
    } else if web::is_web(addr) {
        "ws"
    } else if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
        "quic"
    } else if addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
        "tcp"
    } else {
        "other"
    }
}

/// Whether an address is an unspecified (`0.0.0.0`, `::`) wildcard.
pub fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether another peer's advertised address is worth dialing or passing on, given whether
/// that peer reaches us over loopback (`peer_is_local`).
///
/// A remote peer's `127.0.0.1` is our own machine: dialing it reaches ourselves (or a
/// stranger), and libp2p then fails the *whole* dial with a wrong peer id, even when another
/// of the peer's addresses would have worked.
pub fn worth_dialing(addr: &Multiaddr, peer_is_local: bool) -> bool {
    !is_unspecified(addr) && (peer_is_local || !is_loopback(addr))
}

/// Feeds Kademlia the addresses of an identified peer, if it serves Samizdat's DHT.
/// Only peers that list the Kademlia protocol go into the routing table (clients don't).
pub fn learn_from_identify(kad: &mut Kademlia, peer: &PeerId, info: &identify::Info) -> bool {
    if !info.protocols.contains(&KAD_PROTOCOL) {
        return false;
    }
    // The peer saw us at a loopback address only if it is on this machine.
    let local = is_loopback(&info.observed_addr);
    for addr in &info.listen_addrs {
        if worth_dialing(addr, local) {
            kad.add_address(peer, addr.clone());
        }
    }
    true
}

/// Whether this peer is among the `k` closest it knows of to `key` (only those are asked to
/// store a record, so a peer further away is being stuffed).
fn among_closest(kad: &mut Kademlia, key: &kad::RecordKey) -> bool {
    const K: usize = 20;
    let target = kad::KBucketKey::new(key.clone());
    let me = kad::KBucketKey::from(kad.store_mut().local());
    let mine = me.distance(&target);
    kad.get_closest_local_peers(&target)
        .take(K)
        .filter(|p| p.distance(&target) < mine)
        .count()
        < K
}

/// Stores what another peer asked us to keep in the DHT, after checking it: records of the
/// types `records` accepts (Samizdat's: [`SamizdatRecords`]), for keys this peer is among the
/// closest to, within the store's per-source and total bounds.
pub fn accept_inbound_kad(
    kad: &mut Kademlia,
    request: kad::InboundRequest,
    records: &impl RecordValidator,
) {
    use kad::store::RecordStore;
    match request {
        kad::InboundRequest::PutRecord {
            source,
            record: Some(record),
            ..
        } => {
            if !among_closest(kad, &record.key) {
                tracing::debug!(%source, "DHT record refused: this peer is not among the closest");
                return;
            }
            let existing = kad.store_mut().get(&record.key).map(|r| r.into_owned());
            match records.check(&record, existing.as_ref()) {
                RecordVerdict::Store => {
                    if let Err(e) = kad.store_mut().put_from(source, record) {
                        tracing::debug!(%source, "DHT record not stored: {e}");
                    }
                }
                RecordVerdict::Stale => {}
                RecordVerdict::Invalid(why) => {
                    tracing::debug!(%source, "DHT record refused: {why}");
                }
            }
        }
        kad::InboundRequest::AddProvider {
            record: Some(record),
        } => {
            if !among_closest(kad, &record.key) {
                tracing::debug!(provider = %record.provider, "provider record refused: not among the closest");
                return;
            }
            if let Err(e) = kad.store_mut().add_provider(record) {
                tracing::debug!("provider record not stored: {e}");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        for (a, g) in [
            ("/ip4/8.8.8.8/tcp/1", true),
            ("/ip4/10.1.2.3/tcp/1", false),
            ("/ip4/192.168.1.1/tcp/1", false),
            ("/ip4/127.0.0.1/tcp/1", false),
            ("/ip4/100.64.0.1/tcp/1", false),
            ("/ip6/2001:4860::8888/tcp/1", true),
            ("/ip6/fd00::1/tcp/1", false),
            ("/dns4/boot.example.org/tcp/443/ws", true),
        ] {
            assert_eq!(is_global(&a.parse().expect("addr")), g, "{a}");
        }
    }

    #[test]
    fn split_peer_addr_handles_missing_and_doubled_ids() {
        let id = PeerId::random();
        let base: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("addr");
        assert_eq!(split_peer_addr(&base), (None, base.clone()));
        let full = base.clone().with(Protocol::P2p(id));
        assert_eq!(split_peer_addr(&full), (Some(id), base.clone()));
        let doubled = full.clone().with(Protocol::P2p(id));
        assert_eq!(split_peer_addr(&doubled), (Some(id), base.clone()));
        let other = full.with(Protocol::P2p(PeerId::random()));
        assert_eq!(split_peer_addr(&other).0.map(|p| p != id), Some(true));
    }
}
