//! Peers: policing offences, pruning peer tables, discovery and dialing.

use super::*;

/// Who this node knows and how it finds them.
pub(crate) struct Peers {
    /// The bootstrap peers of the config.
    pub(super) bootstrap: Vec<Multiaddr>,
    /// Whether listen addresses are announced as this node's own (config).
    pub(super) announce_listen: bool,
    /// When each peer's entry in the peer cache was last written (writes are spaced).
    pub(super) saved: HashMap<PeerId, Instant>,
    /// The peer cache, mirrored in memory (written through to the store).
    pub(super) book: PeerBook,
    /// The DHT bootstrap has started once.
    pub(super) kad_bootstrapped: bool,
    /// Peer exchanges asked.
    pub(super) px_requests: Requests<()>,
    /// Peers whose relayed connection was upgraded to a direct one.
    pub(super) direct_upgrades: HashSet<PeerId>,
}

impl Peers {
    /// Nothing learnt yet beyond the config and the peer cache.
    pub(super) fn new(bootstrap: Vec<Multiaddr>, announce_listen: bool, book: PeerBook) -> Self {
        Self {
            bootstrap,
            announce_listen,
            saved: HashMap::new(),
            book,
            kad_bootstrapped: false,
            px_requests: Requests::default(),
            direct_upgrades: HashSet::new(),
        }
    }
}

/// Bookkeeping of the bounds: what was dropped at them, and when peer tables were pruned.
pub(crate) struct Upkeep {
    /// What the DHT store dropped at its bounds (read from it after each inbound request).
    pub(super) dht_drops: crate::net::dht_store::DhtDrops,
    /// When tables keyed by peers that come and go were last pruned.
    pub(super) last_prune: Instant,
    /// Drops at bounds as last logged, and when.
    pub(super) drops_logged: (crate::node::views::DroppedView, Option<Instant>),
}

impl Upkeep {
    /// Nothing dropped yet; tables pruned as of `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            dht_drops: Default::default(),
            last_prune: now,
            drops_logged: Default::default(),
        }
    }
}

impl EventLoop {
    /// Records an offence of `peer` outside gossip: its gossipsub standing falls with it, and
    /// at [`super::super::reputation::CUT_OFF`] points it is disconnected and refused for a while.
    pub(super) fn penalise(&mut self, peer: PeerId, offence: Offence) {
        let now = Instant::now();
        let actions = self.police.offence(peer, offence, now);
        self.apply_police(actions);
        if !self.police.is_refused(&peer) {
            self.police_peer(peer, now);
        }
    }

    /// Carries out what the police core decided.
    fn apply_police(&mut self, actions: impl IntoIterator<Item = PoliceAction>) {
        let b = self.swarm.behaviour_mut();
        for action in actions {
            match action {
                PoliceAction::Score(peer, score) => {
                    let _ = b.gossipsub.set_application_score(&peer, score);
                }
                PoliceAction::Refuse(peer) => {
                    b.blocked.block_peer(peer);
                }
                PoliceAction::Admit(peer) => {
                    b.blocked.unblock_peer(peer);
                }
            }
        }
    }

    /// Forgets what tables keyed by peer no longer need: a stream of fresh identities must not
    /// grow them without bound. Once a minute.
    pub(super) fn prune_peer_tables(&mut self) {
        let now = Instant::now();
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .prune_expired(now);
        self.peers
            .saved
            .retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(60));
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        self.peers.direct_upgrades.retain(|p| connected.contains(p));
        self.reach.prune(now, &connected);
        self.dm_prune();
    }

    /// Logs what was dropped at the bounds on what peers may make this node keep, as a
    /// warning at most every 10 s (a flood must not flood the log too).
    pub(super) fn log_drops(&mut self) {
        let now = self.dropped();
        let (last, at) = &self.upkeep.drops_logged;
        if now == *last || at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        tracing::warn!(
            dht = now.dht.saturating_sub(last.dht),
            held_messages = now.held_messages.saturating_sub(last.held_messages),
            mail = now.mail.saturating_sub(last.mail),
            "dropped at a bound since the last report (peers sent more than they may make this node keep)"
        );
        self.upkeep.drops_logged = (now, Some(Instant::now()));
    }

    /// Hands gossipsub the decayed points, lets in peers whose refusal has run out, and
    /// disconnects peers whose gossip score fell below the graylist.
    pub(super) fn police_scores(&mut self) {
        let now = Instant::now();
        let actions = self.police.tick(now, &self.user_blocked);
        self.apply_police(actions);
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            self.police_peer(p, now);
        }
    }

    /// A peer sent a request frame that is oversized or not the protocol's message.
    pub(super) fn protocol_violation(&mut self, peer: PeerId, protocol: &str, why: &str) {
        tracing::debug!(%peer, "malformed {protocol} request: {why}");
        let action = self.police.violation(peer, Instant::now());
        self.apply_police(action);
    }

    /// Disconnects and refuses `peer` if its gossip score is below the graylist.
    pub(super) fn police_peer(&mut self, peer: PeerId, now: Instant) {
        let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&peer) else {
            return;
        };
        let action = self.police.gossip_score(peer, score, now);
        self.apply_police(action);
    }

    /// Announces this node as a follower of the channel and looks up the others. Lookups go
    /// on while fewer than two topic peers have brought anything valid lately (Sybils that
    /// subscribe and forward nothing do not make a channel healthy); a node that no topic peer
    /// has ever brought anything tries peers from its cache too (peer exchange), in case every
    /// provider record it finds is hostile.
    pub(super) fn discover(&mut self, id: &ChannelId, now: bool) {
        let Some(state) = self.channels.by_id.get(id) else {
            return;
        };
        let topic = state.topic.hash();
        let topic_peers: Vec<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, t)| t.contains(&&topic))
            .map(|(p, _)| *p)
            .collect();
        let peers = topic_peers.len();
        let useful = state.useful_among(&topic_peers, Instant::now());
        let sparse = peers < WANT_TOPIC_PEERS;
        let lookup_every = if sparse || useful < 2 {
            state.lookup_every
        } else {
            LOOKUP_WHEN_HEALTHY
        };
        let due =
            |t: Option<Instant>, every: Duration| now || t.is_none_or(|t| t.elapsed() >= every);
        let provide_due = due(
            state.last_provide,
            if sparse {
                PROVIDE_WHEN_SPARSE
            } else {
                Duration::from_secs(3600)
            },
        );
        let lookup_due = due(state.last_lookup, lookup_every);
        let fallback_due = !state.ever_useful
            && state.record.role != Role::Owner
            && state.fallback_rounds < FALLBACK_ROUNDS
            && now_ms().saturating_sub(state.record.followed_at_ms) >= 60_000
            && state
                .last_fallback
                .is_none_or(|t| t.elapsed() >= FALLBACK_EVERY);
        let key = channel::provider_key(id);
        let kad = &mut self.swarm.behaviour_mut().kad;
        if provide_due && let Err(e) = kad.start_providing(key.clone()) {
            tracing::debug!("cannot announce: {e}");
        }
        let mut lookup = None;
        if lookup_due
            && !self
                .channels
                .provider_queries
                .values()
                .any(|(c, _)| c == id)
        {
            lookup = Some(kad.get_providers(key));
        }
        if let Some(state) = self.channels.by_id.get_mut(id) {
            if provide_due {
                state.last_provide = Some(Instant::now());
            }
            if lookup_due {
                state.last_lookup = Some(Instant::now());
            }
            if fallback_due {
                state.last_fallback = Some(Instant::now());
                state.fallback_rounds = state.fallback_rounds.saturating_add(1);
            }
        }
        if let Some(q) = lookup {
            self.channels.provider_queries.insert(q, (*id, false));
        }
        if fallback_due {
            self.dial_cached_peers(FALLBACK_DIALS);
        }
    }

    /// Records a peer worth dialing after a restart, in memory and in the store (which
    /// forgets what the bounded book drops).
    pub(super) fn remember_peer(&mut self, rec: PeerRecord) {
        if let Err(e) = self.store.put_peer(&rec) {
            tracing::warn!("peer cache: {e}");
        }
        let gone = self.peers.book.put(rec);
        if !gone.is_empty()
            && let Err(e) = self.store.forget_peers(&gone)
        {
            tracing::warn!("peer cache: {e}");
        }
    }

    /// Dials up to `n` peers of the peer cache that are not connected, at random.
    pub(super) fn dial_cached_peers(&mut self, n: usize) {
        use rand::seq::SliceRandom;
        let me = *self.swarm.local_peer_id();
        let mut cached: Vec<PeerRecord> = self
            .peers
            .book
            .matching(|r| r.peer_id != me && !self.swarm.is_connected(&r.peer_id));
        cached.shuffle(&mut rand::rng());
        for rec in cached.into_iter().take(n) {
            tracing::debug!(peer = %rec.peer_id, "no topic peer has brought anything: trying a cached peer");
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(rec.peer_id)
                .addresses(rec.addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    /// Remembers addresses (from an invite link) as bootstrap addresses and dials them.
    pub(super) fn add_bootstrap_addrs(&mut self, addrs: &[Multiaddr]) {
        let me = *self.swarm.local_peer_id();
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| split_peer_addr(a).0 != Some(me))
            .cloned()
            .collect();
        self.dial_addrs(&addrs);
        for addr in addrs {
            if !self.peers.bootstrap.contains(&addr) {
                self.peers.bootstrap.push(addr);
            }
        }
    }

    /// Dials addresses: one dial per peer carrying all of that peer's addresses, so that a
    /// transport the censor blackholes (a dial that can only time out) races the ones that
    /// work instead of holding them up. Peers already connected or being dialed are skipped;
    /// addresses with a /p2p/ id also go to Kademlia (bootstrap peers serve the DHT).
    pub(super) fn dial_addrs(&mut self, addrs: &[Multiaddr]) {
        use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
        let me = *self.swarm.local_peer_id();
        let mut by_peer: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for addr in addrs {
            match split_peer_addr(addr) {
                (Some(p), _) if p == me => {}
                (Some(p), base) => {
                    self.swarm.behaviour_mut().kad.add_address(&p, base.clone());
                    match by_peer.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) => v.push(base),
                        None => by_peer.push((p, vec![base])),
                    }
                }
                (None, base) => {
                    if let Err(e) = self
                        .swarm
                        .dial(DialOpts::unknown_peer_id().address(base).build())
                    {
                        tracing::debug!(%addr, "not dialing: {e}");
                    }
                }
            }
        }
        for (peer, addrs) in by_peer {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::trace!(%peer, "not dialing: {e}");
            }
        }
    }

    /// Dials a peer again after one of its addresses answered with another peer's key.
    ///
    /// libp2p fails the whole dial on the first wrong peer id (a stale or foreign address
    /// reached somebody else, e.g. a remote peer's `127.0.0.1` reaching ourselves) even while
    /// the peer's other addresses were still being tried. The bad address is forgotten and a
    /// second dial uses the rest; at most once a minute per peer, so it cannot loop.
    pub(super) fn redial_after_wrong_peer(&mut self, peer: PeerId, bad: &Multiaddr) {
        use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
        let (_, bad) = split_peer_addr(bad);
        self.swarm.behaviour_mut().kad.remove_address(&peer, &bad);
        self.peers
            .bootstrap
            .retain(|a| split_peer_addr(a) != (Some(peer), bad.clone()));
        if self.swarm.is_connected(&peer) || !self.conns.wrong_peer_redial(peer, Instant::now()) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if self.swarm.dial(opts).is_ok() {
            tracing::debug!(%peer, "redialing after a wrong peer id");
        }
    }

    /// Whether a connected peer reaches us over loopback (so its loopback addresses are real).
    pub(super) fn over_loopback(&self, peer: &PeerId) -> bool {
        self.conns.over_loopback(peer)
    }

    /// Dials the peer cache and the bootstrap peers: at startup, and with backoff whenever
    /// the node has no connection at all.
    pub(super) fn connect_to_network(&mut self, startup: bool) {
        if startup {
            self.conns.dialed_network(Instant::now());
        } else {
            if !self.conns.redial_due(Instant::now()) {
                return;
            }
            tracing::info!("no connections; redialing cached and bootstrap peers");
        }
        let me = *self.swarm.local_peer_id();
        // The peer cache first: it holds peers that worked before, and survives the bootstrap
        // peers being blocked.
        let mut seen = HashSet::new();
        for rec in self.peers.book.newest(STARTUP_DIALS, |p| *p == me) {
            seen.insert(rec.peer_id);
            for a in &rec.addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&rec.peer_id, a.clone());
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(rec.peer_id)
                .addresses(rec.addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
        let bootstrap: Vec<Multiaddr> = self
            .peers
            .bootstrap
            .iter()
            .filter(|a| split_peer_addr(a).0.is_none_or(|p| !seen.contains(&p)))
            .cloned()
            .collect();
        self.dial_addrs(&bootstrap);
    }
}

impl EventLoop {
    /// Closes the peers the connection manager picks when above its high watermark. Topic
    /// mesh peers, relays held, bootstrap peers, the few peers that brought each channel
    /// something valid most recently (the only honest peer of an eclipsed channel among them) and peers direct
    /// messages wait for are never picked; the rest go by gossipsub score and crowding (see
    /// `connections.rs`).
    pub(super) fn trim_connections(&mut self) {
        let now = Instant::now();
        for c in self.conns.duplicates(now) {
            self.swarm.close_connection(c);
        }
        if !self.conns.trim_due(now) {
            return;
        }
        let gossip = &self.swarm.behaviour().gossipsub;
        let mesh: HashSet<PeerId> = gossip.all_mesh_peers().copied().collect();
        let relays: HashSet<PeerId> = self.reach.reserved().copied().collect();
        let bootstrap: HashSet<PeerId> = self
            .peers
            .bootstrap
            .iter()
            .filter_map(|a| split_peer_addr(a).0)
            .collect();
        let useful: HashSet<PeerId> = self
            .channels
            .by_id
            .values()
            .flat_map(|c| c.most_useful(KEEP_USEFUL, now))
            .collect();
        let dm_waiting = self.dm_waiting_peers();
        let close = self.conns.trim(now, |p| {
            if mesh.contains(p)
                || relays.contains(p)
                || bootstrap.contains(p)
                || useful.contains(p)
                || dm_waiting.contains(p)
            {
                Standing::Protected
            } else {
                Standing::Score(gossip.peer_score(p).unwrap_or(0.0))
            }
        });
        if close.is_empty() {
            tracing::debug!(
                open = self.conns.open(),
                mesh = mesh.len(),
                useful = useful.len(),
                dm_waiting = dm_waiting.len(),
                held_back = ?self.conns.held_back(now),
                "above the high watermark, but nothing may be closed"
            );
            return;
        }
        tracing::debug!(
            closing = close.len(),
            open = self.conns.open(),
            "above the connection manager's high watermark"
        );
        for p in close {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }
}

/// Per channel, the peers that brought something valid most recently and are never trimmed
/// (not all of them: in a busy channel every peer brings something, and the manager must
/// still be able to close most).
const KEEP_USEFUL: usize = 4;

/// The configured watermarks, made consistent (low at most high, high at least one).
pub(super) fn watermarks(c: &crate::config::ConnectionManager) -> Watermarks {
    let high = c.high.max(1) as usize;
    Watermarks {
        low: (c.low as usize).min(high),
        high,
        grace: c.grace,
    }
}

pub(super) fn with_port_zero(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(0),
            Protocol::Udp(_) => Protocol::Udp(0),
            other => other,
        })
        .collect()
}
