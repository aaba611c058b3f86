//! Staying reachable, decided without I/O: AutoNAT's verdict and the DHT role that follows it,
//! which relays to hold a reservation on, and how often to ask a peer for its peers. The event
//! loop tells it what it learns (verdicts, relays, listeners closed) and carries out the
//! [`Action`]s; time and "is this peer connected" are arguments.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, kad};

use crate::config::DhtMode;
use crate::net::{is_loopback, is_relayed, is_unspecified, split_peer_addr};

/// Relays to hold a reservation on when not directly reachable.
pub const WANT_RELAYS: usize = 2;
/// Ask a peer for its peers at most this often.
pub const PX_EVERY: Duration = Duration::from_secs(600);
/// Relays remembered beyond those connected (to come back to).
const RELAYS_KEPT: usize = 32;

/// Reachability as AutoNAT last judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// No verdict yet.
    Unknown,
    /// Peers can dial this node.
    Public,
    /// Behind NAT or a firewall: reachable only through relays.
    Private,
}

impl Reachability {
    /// As `samizdat id` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unknown => "unknown",
        }
    }
}

/// What the loop does for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set Kademlia's mode: a server only when peers can dial this node.
    DhtMode(kad::Mode),
    /// Listen through a relay (a reservation); report the listener with [`Reach::reserving`].
    Reserve {
        /// The relay.
        relay: PeerId,
        /// `<relay address>/p2p/<relay>/p2p-circuit`.
        circuit: Multiaddr,
    },
}

/// The node's reachability and relays.
#[derive(Debug)]
pub struct Reach {
    reachability: Reachability,
    dht_mode: DhtMode,
    use_relays: bool,
    /// Peers that offer relaying, and the addresses they can be reached at.
    relays: HashMap<PeerId, Vec<Multiaddr>>,
    /// Reservations held or being made, by relay.
    reserved: HashMap<PeerId, ListenerId>,
    /// When each peer was last asked for its peers.
    px_asked: HashMap<PeerId, Instant>,
}

impl Reach {
    /// Nothing known yet; `dht_mode` and `use_relays` from the configuration.
    pub fn new(dht_mode: DhtMode, use_relays: bool) -> Self {
        Self {
            reachability: Reachability::Unknown,
            dht_mode,
            use_relays,
            relays: HashMap::new(),
            reserved: HashMap::new(),
            px_asked: HashMap::new(),
        }
    }

    /// The last verdict.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// A verdict (AutoNAT's, or a public listen address).
    pub fn set(&mut self, r: Reachability, connected: impl Fn(&PeerId) -> bool) -> Vec<Action> {
        if self.reachability == r {
            return Vec::new();
        }
        self.reachability = r;
        let mut out = Vec::new();
        // In auto mode the DHT role follows reachability. It is set explicitly because kad's
        // own rule would count relayed addresses as reachable.
        if self.dht_mode == DhtMode::Auto {
            out.push(Action::DhtMode(match r {
                Reachability::Public => kad::Mode::Server,
                _ => kad::Mode::Client,
            }));
        }
        out.extend(self.reservations(connected));
        out
    }

    /// A peer offers relaying at these addresses (identify): remembered, and reserved on if
    /// this node needs relays.
    pub fn note_relay(
        &mut self,
        peer: PeerId,
        addrs: &[Multiaddr],
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<Action> {
        let usable: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| !is_unspecified(a) && !is_relayed(a))
            .cloned()
            .collect();
        if usable.is_empty() {
            return Vec::new();
        }
        self.relays.insert(peer, usable);
        self.reservations(connected)
    }

    /// Reservations to make: while private, on connected relays not yet used, up to
    /// [`WANT_RELAYS`] in all.
    fn reservations(&self, connected: impl Fn(&PeerId) -> bool) -> Vec<Action> {
        if !self.use_relays || self.reachability != Reachability::Private {
            return Vec::new();
        }
        let mut room = WANT_RELAYS.saturating_sub(self.reserved.len());
        let mut candidates: Vec<(&PeerId, &Vec<Multiaddr>)> = self
            .relays
            .iter()
            .filter(|(p, _)| !self.reserved.contains_key(p) && connected(p))
            .collect();
        // (Map order is random: take them in a stable order.)
        candidates.sort_by_key(|(p, _)| **p);
        let mut out = Vec::new();
        for (relay, addrs) in candidates {
            if room == 0 {
                break;
            }
            // Prefer an address the relay is reachable at from anywhere.
            let Some(addr) = addrs
                .iter()
                .find(|a| !is_loopback(a))
                .or_else(|| addrs.first())
            else {
                continue;
            };
            let (_, base) = split_peer_addr(addr);
            out.push(Action::Reserve {
                relay: *relay,
                circuit: base.with(Protocol::P2p(*relay)).with(Protocol::P2pCircuit),
            });
            room = room.saturating_sub(1);
        }
        out
    }

    /// A reservation is being made on `relay` by the listener `id`.
    pub fn reserving(&mut self, relay: PeerId, id: ListenerId) {
        self.reserved.insert(relay, id);
    }

    /// A listener closed (a reservation refused or lost): its slot is free for another relay.
    pub fn listener_closed(&mut self, id: ListenerId) {
        self.reserved.retain(|_, l| *l != id);
    }

    /// Relays a reservation is held (or being made) on.
    pub fn reserved(&self) -> impl Iterator<Item = &PeerId> {
        self.reserved.keys()
    }

    /// Each reserved relay with an address to reach it at (for invite links).
    pub fn reserved_addrs(&self) -> impl Iterator<Item = (PeerId, &Multiaddr)> {
        self.reserved
            .keys()
            .filter_map(|p| Some((*p, self.relays.get(p)?.first()?)))
    }

    /// Whether to ask `peer` for its peers now (at most every [`PX_EVERY`]); notes it if so.
    pub fn ask_peers(&mut self, peer: PeerId, now: Instant) -> bool {
        if self
            .px_asked
            .get(&peer)
            .is_some_and(|t| now.saturating_duration_since(*t) < PX_EVERY)
        {
            return false;
        }
        self.px_asked.insert(peer, now);
        true
    }

    /// Forgets what a stream of fresh identities could otherwise grow without bound: old
    /// asking times, and relays beyond those connected and [`RELAYS_KEPT`] others.
    pub fn prune(&mut self, now: Instant, connected: &HashSet<PeerId>) {
        self.px_asked
            .retain(|_, t| now.saturating_duration_since(*t) < PX_EVERY);
        if self.relays.len() > RELAYS_KEPT.saturating_mul(2) {
            let mut away: Vec<PeerId> = self
                .relays
                .keys()
                .filter(|p| !connected.contains(p) && !self.reserved.contains_key(p))
                .copied()
                .collect();
            away.sort();
            for p in away.into_iter().skip(RELAYS_KEPT) {
                self.relays.remove(&p);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    fn reserves(actions: &[Action]) -> Vec<PeerId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reserve { relay, .. } => Some(*relay),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_private_node_becomes_a_dht_client_and_reserves_two_connected_relays() {
        let mut r = Reach::new(DhtMode::Auto, true);
        let relays: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let away = relays[3];
        for p in &relays {
            let a = [
                addr("/ip4/127.0.0.1/tcp/4001"),
                addr("/ip4/203.0.113.7/tcp/4001"),
            ];
            // Learned before the verdict: nothing to do yet.
            assert!(r.note_relay(*p, &a, |_| true).is_empty());
        }
        let actions = r.set(Reachability::Private, |p| *p != away);
        assert_eq!(actions[0], Action::DhtMode(kad::Mode::Client));
        let chosen = reserves(&actions);
        assert_eq!(chosen.len(), WANT_RELAYS);
        assert!(!chosen.contains(&away), "only connected relays");
        // The routable address is preferred, and the circuit names the relay.
        let Some(Action::Reserve { relay, circuit }) = actions.get(1) else {
            panic!("no reservation: {actions:?}");
        };
        assert_eq!(
            circuit,
            &addr(&format!(
                "/ip4/203.0.113.7/tcp/4001/p2p/{relay}/p2p-circuit"
            ))
        );
        // The same verdict again asks nothing.
        assert!(r.set(Reachability::Private, |_| true).is_empty());
    }

    #[test]
    fn a_lost_reservation_frees_its_slot_and_a_public_node_reserves_nothing() {
        let mut r = Reach::new(DhtMode::Auto, true);
        r.set(Reachability::Private, |_| true);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let at = [addr("/ip4/198.51.100.1/tcp/1")];
        let (la, lb) = (ListenerId::next(), ListenerId::next());
        assert_eq!(reserves(&r.note_relay(a, &at, |_| true)), vec![a]);
        r.reserving(a, la);
        assert_eq!(reserves(&r.note_relay(b, &at, |_| true)), vec![b]);
        r.reserving(b, lb);
        // Full: a third relay waits.
        assert!(reserves(&r.note_relay(c, &at, |_| true)).is_empty());
        r.listener_closed(la);
        let again = reserves(&r.note_relay(c, &at, |_| true));
        assert_eq!(again.len(), 1, "one slot is free again: {again:?}");
        // Relayed and unspecified addresses are no way to reach a relay.
        let d = PeerId::random();
        let bad = [
            addr("/ip4/0.0.0.0/tcp/1"),
            addr(&format!("/ip4/198.51.100.1/tcp/1/p2p/{a}/p2p-circuit")),
        ];
        assert!(r.note_relay(d, &bad, |_| true).is_empty());
        // Public: a DHT server, no new reservations.
        let mut p = Reach::new(DhtMode::Auto, true);
        p.note_relay(a, &at, |_| true);
        assert_eq!(
            p.set(Reachability::Public, |_| true),
            vec![Action::DhtMode(kad::Mode::Server)]
        );
    }

    #[test]
    fn configuration_overrides_the_verdict() {
        let at = [addr("/ip4/198.51.100.1/tcp/1")];
        // A fixed DHT mode is left alone; relays off means no reservation, ever.
        let mut r = Reach::new(DhtMode::Server, false);
        r.note_relay(PeerId::random(), &at, |_| true);
        assert!(r.set(Reachability::Private, |_| true).is_empty());
        assert_eq!(r.reachability(), Reachability::Private);
        assert_eq!(r.reachability().as_str(), "private");
    }

    #[test]
    fn peers_are_asked_at_most_every_ten_minutes_and_tables_stay_bounded() {
        let t0 = Instant::now();
        let mut r = Reach::new(DhtMode::Auto, true);
        let p = PeerId::random();
        assert!(r.ask_peers(p, t0));
        assert!(!r.ask_peers(p, t0 + Duration::from_secs(599)));
        assert!(r.ask_peers(p, t0 + PX_EVERY));
        // 10,000 fresh identities asked, then pruned after the window.
        for _ in 0..10_000 {
            r.ask_peers(PeerId::random(), t0);
        }
        r.prune(t0 + PX_EVERY + PX_EVERY, &HashSet::new());
        assert!(r.px_asked.is_empty());
        // 1,000 relays announced by fresh identities: the connected ones and 32 others stay.
        let at = [addr("/ip4/198.51.100.1/tcp/1")];
        let connected: HashSet<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for p in &connected {
            r.note_relay(*p, &at, |_| true);
        }
        for _ in 0..1_000 {
            r.note_relay(PeerId::random(), &at, |_| false);
        }
        r.prune(t0, &connected);
        assert_eq!(r.relays.len(), connected.len() + RELAYS_KEPT);
        assert!(connected.iter().all(|p| r.relays.contains_key(p)));
    }
}
