//! The bootstrap peer's core: a DHT server and relay that helps nodes find each other. It joins
//! no topics and stores no messages. `samizdat-bootstrap` wraps it with config, identity and
//! metrics; `samizdat demo` and the tests run it in-process.

// The NetworkBehaviour derive generates an event enum without doc comments.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::metrics::{Metrics, Recorder, Registry};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, identify, identity, kad, memory_connection_limits,
    ping, relay,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    Limits, NetError, SamizdatRecords, accept_inbound_kad, build_swarm, learn_from_identify,
    split_peer_addr,
};

/// What a bootstrap peer speaks.
#[derive(NetworkBehaviour)]
pub struct BootstrapBehaviour {
    /// Connection-count limits.
    pub limits: connection_limits::Behaviour,
    /// Connections per IP address.
    pub ip_limit: super::ip_limit::Behaviour,
    /// Refuse connections under memory pressure.
    pub memory: memory_connection_limits::Behaviour,
    /// Addresses and protocol lists.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// DHT server.
    pub kad: super::Kademlia,
    /// Relay v2 server for nodes behind NAT (carries only end-to-end encrypted streams).
    pub relay: relay::Behaviour,
    /// AutoNAT: dials back nodes that ask whether they are reachable.
    pub autonat: libp2p::autonat::Behaviour,
}

/// Settings of a bootstrap peer.
#[derive(Debug, Clone)]
pub struct BootstrapPeerConfig {
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Other bootstrap peers to connect to (full multiaddrs with /p2p/).
    pub peers: Vec<Multiaddr>,
    /// Connection limits.
    pub limits: Limits,
    /// Relay reservations held at once.
    pub max_reservations: usize,
    /// Relayed circuits open at once.
    pub max_circuits: usize,
    /// Bytes relayed per circuit before it is closed.
    pub max_circuit_bytes: u64,
    /// Close idle connections after this long.
    pub idle_timeout: Duration,
    /// The certificate TLS listeners serve (`/tls/ws` addresses).
    pub web: crate::web::WebConfig,
}

impl Default for BootstrapPeerConfig {
    fn default() -> Self {
        Self {
            listen: crate::default_listen(0),
            peers: Vec::new(),
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
            max_reservations: 512,
            max_circuits: 256,
            max_circuit_bytes: 8 * 1024 * 1024,
            idle_timeout: Duration::from_secs(120),
            web: crate::web::WebConfig::default(),
        }
    }
}

/// Live counters for health checks and metrics.
#[derive(Debug, Default)]
pub struct BootstrapStats {
    /// Peers with at least one connection.
    pub connected_peers: AtomicUsize,
    /// Peers in the DHT routing table.
    pub routing_table_peers: AtomicUsize,
    /// DHT value records held.
    pub dht_records: AtomicUsize,
    /// Provider records received from others (a counter: its rate is the announce load).
    pub dht_provider_adds: AtomicUsize,
    /// Provider records held for others.
    pub dht_providers: AtomicUsize,
    /// DHT records and provider records refused or evicted at the store's per-source and
    /// total bounds (a counter: a rising rate means someone is stuffing the DHT).
    pub dht_dropped: AtomicUsize,
    /// Relay reservations held.
    pub relay_reservations: AtomicUsize,
    /// Relayed circuits open.
    pub relay_circuits: AtomicUsize,
    /// Incoming connections refused at a limit (total, per peer, per IP, handshaking, memory).
    pub refused_connections: AtomicUsize,
}

/// A running bootstrap peer.
#[derive(Debug)]
pub struct BootstrapPeer {
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Full listen multiaddrs, each ending in /p2p/<peer id>.
    pub listen_addrs: Vec<Multiaddr>,
    /// Live counters.
    pub stats: Arc<BootstrapStats>,
    task: JoinHandle<()>,
}

impl BootstrapPeer {
    /// Starts listening and serving; returns once every listener has an address.
    pub async fn spawn(
        keypair: identity::Keypair,
        config: BootstrapPeerConfig,
        registry: Option<&mut Registry>,
        shutdown: CancellationToken,
    ) -> Result<Self, NetError> {
        let peer_id = keypair.public().to_peer_id();
        let mut scratch = Registry::default();
        let registry = registry.unwrap_or(&mut scratch);
        let cfg = config.clone();
        let mut swarm = build_swarm(
            keypair,
            config.idle_timeout,
            &config.web,
            registry,
            move |key| {
                let relay_cfg = relay::Config {
                    max_reservations: cfg.max_reservations,
                    max_circuits: cfg.max_circuits,
                    max_circuit_bytes: cfg.max_circuit_bytes,
                    ..Default::default()
                };
                Ok(BootstrapBehaviour {
                    limits: super::connection_limits(&cfg.limits),
                    ip_limit: super::ip_limit(&cfg.limits),
                    memory: super::memory_limits(&cfg.limits),
                    identify: super::identify(
                        key,
                        &format!("samizdat-bootstrap/{}", env!("CARGO_PKG_VERSION")),
                    ),
                    ping: ping::Behaviour::default(),
                    kad: super::kademlia(peer_id, Some(kad::Mode::Server)),
                    autonat: super::autonat(peer_id, false),
                    relay: relay::Behaviour::new(peer_id, relay_cfg),
                })
            },
        )
        .await?;
        let metrics = Some(Metrics::new(registry));
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let listen_addrs = wait_for_listeners(&mut swarm, config.listen.len()).await?;
        // A bootstrap peer is reachable by what it is for: its addresses are confirmed at once
        // rather than after AutoNAT rounds, so the relay offers its hop protocol from the
        // first connection (libp2p's relay advertises it only with a confirmed address). Nodes
        // behind a censor that reach it only through a web front cannot dial it back, and a
        // minute of waiting for others to is a minute without a relay slot.
        for a in &listen_addrs {
            if !crate::is_loopback(a) && !crate::is_unspecified(a) {
                swarm.add_external_address(a.clone());
            }
        }
        for addr in &config.peers {
            if let (Some(p), base) = split_peer_addr(addr) {
                if p == peer_id {
                    continue;
                }
                swarm.behaviour_mut().kad.add_address(&p, base);
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "cannot dial peer bootstrap: {e}");
            }
        }
        let stats = Arc::new(BootstrapStats::default());
        let task = tokio::spawn(run(swarm, metrics, stats.clone(), shutdown));
        Ok(Self {
            peer_id,
            listen_addrs: listen_addrs
                .into_iter()
                .map(|a| a.with(Protocol::P2p(peer_id)))
                .collect(),
            stats,
            task,
        })
    }

    /// Waits until the peer has stopped (after its shutdown token fires).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Waits for `n` listeners to report an address each (wildcards expand to several).
pub async fn wait_for_listeners<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    n: usize,
) -> Result<Vec<Multiaddr>, NetError> {
    let mut addrs = Vec::new();
    let mut listeners = std::collections::HashSet::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while listeners.len() < n {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    listeners.insert(listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerError { error, .. } | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(NetError::Listen { addr: Multiaddr::empty(), reason: error.to_string() });
                }
                _ => {}
            },
            _ = &mut deadline => {
                return Err(NetError::Listen { addr: Multiaddr::empty(), reason: "listeners did not start within 10 s".into() });
            }
        }
    }
    // Let wildcard listeners report their other interfaces, which arrive right after.
    let settle = tokio::time::sleep(Duration::from_millis(50));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => if let SwarmEvent::NewListenAddr { address, .. } = ev {
                addrs.push(address);
            },
            _ = &mut settle => break,
        }
    }
    Ok(addrs)
}

async fn run(
    mut swarm: Swarm<BootstrapBehaviour>,
    mut metrics: Option<Metrics>,
    stats: Arc<BootstrapStats>,
    shutdown: CancellationToken,
) {
    let mut last_refusal_log: Option<std::time::Instant> = None;
    // Expired DHT entries are dropped by Kademlia only when asked for; this bounds the rest.
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = prune.tick() => {
                swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .prune_expired(std::time::Instant::now());
                continue;
            }
            ev = swarm.select_next_some() => ev,
        };
        if let Some(m) = metrics.as_mut() {
            m.record(&event);
        }
        match event {
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Identify(ev)) => {
                if let Some(m) = metrics.as_mut() {
                    m.record(&ev);
                }
                if let identify::Event::Received { peer_id, info, .. } = ev
                    && learn_from_identify(&mut swarm.behaviour_mut().kad, &peer_id, &info)
                {
                    let n = swarm
                        .behaviour_mut()
                        .kad
                        .kbuckets()
                        .map(|b| b.num_entries())
                        .sum();
                    stats.routing_table_peers.store(n, Ordering::Relaxed);
                }
            }
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Kad(ev)) => {
                if let Some(m) = metrics.as_mut() {
                    m.record(&ev);
                }
                if let kad::Event::InboundRequest { request } = ev {
                    if matches!(request, kad::InboundRequest::AddProvider { .. }) {
                        stats.dht_provider_adds.fetch_add(1, Ordering::Relaxed);
                    }
                    accept_inbound_kad(&mut swarm.behaviour_mut().kad, request, &SamizdatRecords);
                    let store = swarm.behaviour_mut().kad.store_mut();
                    let (records, providers) = store.held();
                    let drops = store.drops();
                    stats.dht_records.store(records, Ordering::Relaxed);
                    stats.dht_providers.store(providers, Ordering::Relaxed);
                    let dropped = drops.records.saturating_add(drops.providers);
                    stats.dht_dropped.store(
                        usize::try_from(dropped).unwrap_or(usize::MAX),
                        Ordering::Relaxed,
                    );
                }
            }
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Relay(ev)) => {
                if let Some(m) = metrics.as_mut() {
                    m.record(&ev);
                }
                let (res, circ) = (&stats.relay_reservations, &stats.relay_circuits);
                match &ev {
                    relay::Event::ReservationReqAccepted { renewed: false, .. } => {
                        res.fetch_add(1, Ordering::Relaxed);
                    }
                    relay::Event::ReservationTimedOut { .. } => {
                        let _ = res.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            v.checked_sub(1)
                        });
                    }
                    relay::Event::CircuitReqAccepted { .. } => {
                        circ.fetch_add(1, Ordering::Relaxed);
                    }
                    relay::Event::CircuitClosed { .. } => {
                        let _ = circ.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            v.checked_sub(1)
                        });
                    }
                    _ => {}
                }
                tracing::debug!(?ev, "relay");
            }
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Autonat(ev)) => {
                tracing::debug!(?ev, "autonat");
            }
            SwarmEvent::Behaviour(BootstrapBehaviourEvent::Ping(ev)) => {
                if let Some(m) = metrics.as_mut() {
                    m.record(&ev);
                }
            }
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                stats
                    .connected_peers
                    .store(swarm.connected_peers().count(), Ordering::Relaxed);
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !crate::is_loopback(&address) && !crate::is_unspecified(&address) {
                    swarm.add_external_address(address);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if let libp2p::swarm::ListenError::Denied { cause } = &error {
                    // Counted always, logged at most every 10 s: a flood must not flood the log.
                    let n = stats.refused_connections.fetch_add(1, Ordering::Relaxed) + 1;
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_refusal_log = Some(std::time::Instant::now());
                        tracing::warn!(
                            refused_total = n,
                            "incoming connection refused at a limit: {}",
                            super::denial_reason(cause)
                        );
                    }
                } else {
                    tracing::debug!("incoming connection failed: {error}");
                }
            }
            _ => {}
        }
    }
    tracing::info!("bootstrap peer stopped");
}
