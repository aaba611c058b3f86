//! Who this node is connected to, decided without I/O: the open connections and their
//! addresses, and the connection manager that keeps their number between two watermarks.
//!
//! Gossipsub keeps a stream open to every peer that shares a topic, so nothing else ever
//! closes a connection: without a manager every node ends up connected to every other. Above
//! the high watermark the manager closes peers down to the low one, as kubo's does, but never
//! a peer the loop protects (topic mesh, relays, bootstrap peers, exchanges in progress, peers
//! that brought valid posts), nor one connected for less than the grace period. Among the
//! rest it closes first the peers with a negative score, then those crowding one address group
//! (so a censor renting one subnet cannot push honest peers out by numbers), then the lowest
//! scores. The loop reports connections opened and closed, asks [`Connections::trim`] once a
//! tick, and closes what it returns; time is an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::net::{is_loopback, is_relayed};

/// How many connections the manager keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Trimming closes peers down to this many connections.
    pub low: usize,
    /// Trimming starts above this many.
    pub high: usize,
    /// A peer connected for less than this is never closed (it has not had time to prove
    /// useful, and discovery must not see its dial undone at once).
    pub grace: Duration,
}

impl Default for Watermarks {
    fn default() -> Self {
        Self {
            low: 32,
            high: 96,
            grace: Duration::from_secs(20),
        }
    }
}

/// After a trim, the next waits this long (closing takes a moment to show in the counts).
const TRIM_SILENCE: Duration = Duration::from_secs(10);
/// A peer counts as in an exchange (sync, files, direct messages, peer exchange) for this
/// long after it last answered one of this node's requests.
const EXCHANGE_WINDOW: Duration = Duration::from_secs(30);
/// Peers redialed after a wrong peer id, remembered at most.
const REDIALS_KEPT: usize = 1024;

/// How the loop rates a connected peer for trimming.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Standing {
    /// Never closed by the manager.
    Protected,
    /// May be closed; lower scores first (gossipsub's score).
    Score(f64),
}

#[derive(Debug)]
struct Peer {
    conns: Vec<(ConnectionId, Multiaddr)>,
    /// When its first open connection opened.
    since: Instant,
    agent: Option<String>,
    /// When it last answered one of this node's requests.
    exchange: Option<Instant>,
    /// The address this node last reached it at by dialing: known to work from here, which
    /// its own listen addresses may not (a web front, a relay).
    dialed: Option<Multiaddr>,
}

/// The open connections, and what the node remembers about dialing.
#[derive(Debug)]
pub struct Connections {
    marks: Watermarks,
    peers: HashMap<PeerId, Peer>,
    /// Open connections, over all peers.
    open: usize,
    last_trim: Option<Instant>,
    /// Peers closed by trimming since start.
    trimmed: u64,
    /// Most connections open at once since start.
    most: usize,
    /// When each peer was last redialed after a wrong-peer-id failure.
    wrong_peer_redials: HashMap<PeerId, Instant>,
    /// Redialing the network while no connection is open: when last, and the backoff.
    last_redial: Instant,
    redial_backoff: Duration,
    /// Incoming connections refused at a limit since start, and when that was last logged.
    refused: u64,
    last_refusal_log: Option<Instant>,
}

impl Connections {
    /// No connection yet.
    pub fn new(marks: Watermarks, now: Instant) -> Self {
        Self {
            marks,
            peers: HashMap::new(),
            open: 0,
            last_trim: None,
            trimmed: 0,
            most: 0,
            wrong_peer_redials: HashMap::new(),
            last_redial: now,
            redial_backoff: Duration::from_secs(5),
            refused: 0,
            last_refusal_log: None,
        }
    }

    /// A connection opened; whether it is the peer's first.
    pub fn opened(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        addr: Multiaddr,
        now: Instant,
    ) -> bool {
        self.redial_backoff = Duration::from_secs(5);
        let p = self.peers.entry(peer).or_insert_with(|| Peer {
            conns: Vec::new(),
            since: now,
            agent: None,
            exchange: None,
            dialed: None,
        });
        if p.conns.iter().any(|(c, _)| *c == id) {
            return false;
        }
        p.conns.push((id, addr));
        self.open += 1;
        self.most = self.most.max(self.open);
        p.conns.len() == 1
    }

    /// A connection closed; whether it was the peer's last.
    pub fn closed(&mut self, peer: &PeerId, id: ConnectionId) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let before = p.conns.len();
        p.conns.retain(|(c, _)| *c != id);
        self.open -= before - p.conns.len();
        if p.conns.is_empty() {
            self.peers.remove(peer);
            return true;
        }
        false
    }

    /// This node dialed the peer at `addr` and got through.
    pub fn dialed(&mut self, peer: &PeerId, addr: Multiaddr) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.dialed = Some(addr);
        }
    }

    /// Where this node last reached a connected peer by dialing, if it did.
    pub fn dialed_addr(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.peers.get(peer)?.dialed.as_ref()
    }

    /// Identify told the peer's agent.
    pub fn identified(&mut self, peer: &PeerId, agent: &str) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.agent = Some(agent.chars().take(128).collect());
        }
    }

    /// The peer answered one of this node's requests: it is in an exchange for a while.
    pub fn exchanged(&mut self, peer: &PeerId, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.exchange = Some(now);
        }
    }

    /// Connected peers with their remote addresses and agent.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, Vec<&Multiaddr>, Option<&str>)> {
        self.peers.iter().map(|(id, p)| {
            (
                id,
                p.conns.iter().map(|(_, a)| a).collect(),
                p.agent.as_deref(),
            )
        })
    }

    /// Whether a connected peer reaches us over loopback (so its loopback addresses are real).
    pub fn over_loopback(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.conns.iter().any(|(_, a)| is_loopback(a)))
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Most connections open at once since start.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Peers closed by the manager since start.
    pub fn trimmed(&self) -> u64 {
        self.trimmed
    }

    /// How many more peers discovery may dial: up to the low watermark, so that what it
    /// opens is not what the next trim closes.
    pub fn room_to_dial(&self) -> usize {
        self.marks.low.saturating_sub(self.open)
    }

    /// Peers [`Self::trim`] may not close yet: (within the grace period, exchanging).
    pub fn held_back(&self, now: Instant) -> (usize, usize) {
        let young = self
            .peers
            .values()
            .filter(|p| now.saturating_duration_since(p.since) < self.marks.grace)
            .count();
        let busy = self
            .peers
            .values()
            .filter(|p| {
                p.exchange
                    .is_some_and(|t| now.saturating_duration_since(t) < EXCHANGE_WINDOW)
            })
            .count();
        (young, busy)
    }

    /// Whether [`Self::trim`] would look at the peers now: above the high watermark, and not
    /// within a few seconds of the last trim (callers skip rating peers otherwise).
    pub fn trim_due(&self, now: Instant) -> bool {
        self.open > self.marks.high
            && self
                .last_trim
                .is_none_or(|t| now.saturating_duration_since(t) >= TRIM_SILENCE)
    }

    /// The peers to close now (none while at or under the high watermark, or within a few
    /// seconds of the last trim). `standing` rates each connected peer.
    pub fn trim(&mut self, now: Instant, standing: impl Fn(&PeerId) -> Standing) -> Vec<PeerId> {
        if !self.trim_due(now) {
            return Vec::new();
        }
        self.last_trim = Some(now);
        let mut candidates: Vec<(PeerId, f64, Option<Group>, usize)> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= self.marks.grace)
            .filter(|(_, p)| {
                p.exchange
                    .is_none_or(|t| now.saturating_duration_since(t) >= EXCHANGE_WINDOW)
            })
            .filter_map(|(id, p)| match standing(id) {
                Standing::Protected => None,
                Standing::Score(s) => Some((*id, s, group(&p.conns), p.conns.len())),
            })
            .collect();
        // Rank each candidate inside its address group, best score first: the first to go are
        // the ones deepest in crowded groups.
        candidates.sort_by(|a, b| a.2.cmp(&b.2).then(b.1.total_cmp(&a.1)));
        let mut ranked: Vec<(PeerId, f64, usize, usize)> = Vec::with_capacity(candidates.len());
        let mut rank = 0;
        for (i, (id, score, g, n)) in candidates.iter().enumerate() {
            rank = match (i, g) {
                (0, _) | (_, None) => 0,
                _ if candidates[i - 1].2 == *g => rank + 1,
                _ => 0,
            };
            ranked.push((*id, *score, rank, *n));
        }
        ranked.sort_by(|a, b| {
            let neg = |s: f64| s < 0.0;
            neg(b.1)
                .cmp(&neg(a.1))
                .then_with(|| {
                    if neg(a.1) && neg(b.1) {
                        a.1.total_cmp(&b.1)
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .then(b.2.cmp(&a.2))
                .then(a.1.total_cmp(&b.1))
        });
        let mut excess = self.open.saturating_sub(self.marks.low);
        let mut close = Vec::new();
        for (id, _, _, n) in ranked {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(n);
            close.push(id);
        }
        self.trimmed += close.len() as u64;
        close
    }

    /// Second connections to the same peer to close (two peers dialing each other at once
    /// both succeed; a relayed connection stays after a direct one replaced it): once every
    /// connection of the peer is past the grace period and no exchange is going on, one is
    /// kept, a direct one before a relayed one, the oldest first.
    pub fn duplicates(&self, now: Instant) -> Vec<ConnectionId> {
        let mut close = Vec::new();
        for p in self.peers.values() {
            if p.conns.len() < 2
                || now.saturating_duration_since(p.since) < self.marks.grace
                || p.exchange
                    .is_some_and(|t| now.saturating_duration_since(t) < EXCHANGE_WINDOW)
            {
                continue;
            }
            let keep = p
                .conns
                .iter()
                .position(|(_, a)| !is_relayed(a))
                .unwrap_or(0);
            close.extend(
                p.conns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, (c, _))| *c),
            );
        }
        close
    }

    /// Whether to redial the cached and bootstrap peers now: only while nothing is connected,
    /// with a backoff doubling to a minute.
    pub fn redial_due(&mut self, now: Instant) -> bool {
        if self.open > 0 || now.saturating_duration_since(self.last_redial) < self.redial_backoff {
            return false;
        }
        self.redial_backoff = (self.redial_backoff * 2).min(Duration::from_secs(60));
        self.last_redial = now;
        true
    }

    /// The network was just dialed (at startup).
    pub fn dialed_network(&mut self, now: Instant) {
        self.last_redial = now;
    }

    /// Whether a peer whose address answered with another key may be redialed now (once a
    /// minute per peer).
    pub fn wrong_peer_redial(&mut self, peer: PeerId, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        if self
            .wrong_peer_redials
            .get(&peer)
            .is_some_and(|t| now.saturating_duration_since(*t) < minute)
        {
            return false;
        }
        if self.wrong_peer_redials.len() >= REDIALS_KEPT {
            self.wrong_peer_redials
                .retain(|_, t| now.saturating_duration_since(*t) < minute);
        }
        if self.wrong_peer_redials.len() >= REDIALS_KEPT {
            return false;
        }
        self.wrong_peer_redials.insert(peer, now);
        true
    }

    /// An incoming connection was refused at a limit; the total when it is time to log it
    /// (at most every 10 s, so a flood cannot flood the log too).
    pub fn refused(&mut self, now: Instant) -> Option<u64> {
        self.refused += 1;
        if self
            .last_refusal_log
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(10))
        {
            return None;
        }
        self.last_refusal_log = Some(now);
        Some(self.refused)
    }

    /// Incoming connections refused at a limit since start.
    pub fn refused_total(&self) -> u64 {
        self.refused
    }
}

/// Where a connection comes from, coarsely: an IPv4 /16 or IPv6 /32 (what one operator
/// rents cheaply), or the relay a relayed connection goes through. `None` for loopback and
/// addresses without an IP (each counts alone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Group {
    Net(IpAddr),
    Relay(Multiaddr),
}

fn group(conns: &[(ConnectionId, Multiaddr)]) -> Option<Group> {
    let (_, addr) = conns.first()?;
    if is_relayed(addr) {
        let relay: Multiaddr = addr
            .iter()
            .take_while(|p| !matches!(p, Protocol::P2pCircuit))
            .collect();
        return Some(Group::Relay(relay));
    }
    match addr.iter().next()? {
        Protocol::Ip4(ip) if !ip.is_loopback() => {
            let o = ip.octets();
            Some(Group::Net(IpAddr::from([o[0], o[1], 0, 0])))
        }
        Protocol::Ip6(ip) if !ip.is_loopback() => {
            let mut s = ip.segments();
            s[2..].fill(0);
            Some(Group::Net(IpAddr::from(s)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("test address")
    }

    fn marks() -> Watermarks {
        Watermarks {
            low: 4,
            high: 8,
            grace: Duration::from_secs(20),
        }
    }

    /// Opens one connection per address at `at`; returns the peers in order.
    fn open(c: &mut Connections, addrs: &[String], at: Instant) -> Vec<PeerId> {
        addrs
            .iter()
            .map(|a| {
                let p = PeerId::random();
                let id = ConnectionId::new_unchecked(c.open + 1000 * c.most + 1);
                c.opened(p, id, addr(a), at);
                p
            })
            .collect()
    }

    #[test]
    fn counts_connections_and_peers() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let p = PeerId::random();
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert!(c.opened(p, a, addr("/ip4/10.0.0.1/tcp/1"), t0));
        assert!(!c.opened(p, b, addr("/ip4/127.0.0.1/tcp/1"), t0));
        assert!(
            !c.opened(p, b, addr("/ip4/127.0.0.1/tcp/1"), t0),
            "counted once"
        );
        assert_eq!((c.open(), c.peers.len()), (2, 1));
        assert!(c.over_loopback(&p));
        assert!(!c.closed(&p, a));
        assert!(c.closed(&p, b));
        assert!(!c.closed(&p, b), "a second close of the same connection");
        assert_eq!((c.open(), c.peers.len(), c.most()), (0, 0, 2));
    }

    #[test]
    fn trims_to_the_low_watermark_sparing_the_protected_and_the_new() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let addrs: Vec<String> = (0..10).map(|i| format!("/ip4/10.{i}.0.1/tcp/1")).collect();
        let old = open(&mut c, &addrs[..8], t0);
        let young = open(&mut c, &addrs[8..], t0 + Duration::from_secs(15));
        let now = t0 + Duration::from_secs(21);
        assert!(
            c.trim(t0 + Duration::from_secs(19), |_| Standing::Score(0.0))
                .is_empty(),
            "everyone is in the grace period"
        );
        let protected = old[0];
        c.last_trim = None;
        let closed = c.trim(now, |p| {
            if *p == protected {
                Standing::Protected
            } else {
                Standing::Score(0.0)
            }
        });
        assert_eq!(closed.len(), 10 - 4);
        assert!(!closed.contains(&protected));
        assert!(closed.iter().all(|p| !young.contains(p)));
        assert_eq!(c.trimmed(), 6);
        // Nothing more while the closes take effect, and nothing at or under high.
        assert!(c.trim(now, |_| Standing::Score(0.0)).is_empty());
        for p in &closed {
            c.peers.remove(p);
        }
        c.open = c.peers.len();
        assert!(
            c.trim(now + TRIM_SILENCE, |_| Standing::Score(0.0))
                .is_empty()
        );
    }

    #[test]
    fn an_exchange_in_progress_is_spared() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let addrs: Vec<String> = (0..9).map(|i| format!("/ip4/10.{i}.0.1/tcp/1")).collect();
        let peers = open(&mut c, &addrs, t0);
        let now = t0 + Duration::from_secs(60);
        c.exchanged(&peers[3], now - Duration::from_secs(5));
        let closed = c.trim(now, |_| Standing::Score(0.0));
        assert_eq!(closed.len(), 5);
        assert!(!closed.contains(&peers[3]));
        assert_eq!(c.held_back(now), (0, 1));
    }

    #[test]
    fn a_trim_is_due_only_above_the_high_mark_and_not_right_after_one() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let addrs: Vec<String> = (0..9).map(|i| format!("/ip4/10.{i}.0.1/tcp/1")).collect();
        open(&mut c, &addrs[..8], t0);
        let now = t0 + Duration::from_secs(60);
        assert!(!c.trim_due(now), "at the high mark, not above it");
        assert_eq!(c.held_back(t0), (8, 0), "all young at first");
        open(&mut c, &addrs[8..], t0);
        assert!(c.trim_due(now));
        assert_eq!(c.trim(now, |_| Standing::Score(0.0)).len(), 5);
        open(&mut c, &addrs[..5], now);
        assert!(c.open() > 8);
        assert!(
            !c.trim_due(now + Duration::from_secs(1)),
            "silence after a trim"
        );
        assert!(c.trim_due(now + TRIM_SILENCE));
    }

    #[test]
    fn a_crowded_subnet_goes_before_honest_peers_and_bad_scores_first() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        // 40 Sybils in one /16, each scoring a little more than the honest peers (time in
        // the mesh), and three honest peers on their own networks.
        let sybil_addrs: Vec<String> = (0..40)
            .map(|i| format!("/ip4/203.0.{i}.7/tcp/4001"))
            .collect();
        let sybils = open(&mut c, &sybil_addrs, t0);
        let honest = open(
            &mut c,
            &[
                "/ip4/81.2.3.4/tcp/1".into(),
                "/ip6/2a01:4f8::1/tcp/1".into(),
                "/ip4/5.6.7.8/tcp/1".into(),
            ],
            t0,
        );
        let rude = open(&mut c, &["/ip4/9.9.9.9/tcp/1".into()], t0)[0];
        let now = t0 + Duration::from_secs(30);
        let closed = c.trim(now, |p| {
            if *p == rude {
                Standing::Score(-50.0)
            } else if honest.contains(p) {
                Standing::Score(0.0)
            } else {
                Standing::Score(1.0)
            }
        });
        assert_eq!(closed.len(), 44 - 4);
        assert_eq!(closed[0], rude, "a negative score goes first");
        assert!(honest.iter().all(|p| !closed.contains(p)), "{closed:?}");
        // The best-ranked Sybil of the crowded group is kept, like one honest peer would be.
        assert_eq!(sybils.iter().filter(|p| !closed.contains(p)).count(), 1);
    }

    #[test]
    fn loopback_peers_are_ranked_by_score() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let addrs: Vec<String> = (0..12).map(|i| format!("/ip4/127.0.0.1/tcp/{i}")).collect();
        let peers = open(&mut c, &addrs, t0);
        let score = |p: &PeerId| peers.iter().position(|q| q == p).unwrap_or(0) as f64;
        let closed = c.trim(t0 + Duration::from_secs(30), |p| Standing::Score(score(p)));
        let mut got: Vec<f64> = closed.iter().map(score).collect();
        got.sort_by(f64::total_cmp);
        assert_eq!(got, (0..8).map(f64::from).collect::<Vec<_>>());
        assert_eq!(c.room_to_dial(), 0);
    }

    #[test]
    fn a_second_connection_goes_once_settled_keeping_a_direct_one() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        let (p, q) = (PeerId::random(), PeerId::random());
        let id = ConnectionId::new_unchecked;
        c.opened(p, id(1), addr("/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"), t0);
        c.opened(
            p,
            id(2),
            addr("/ip4/5.6.7.8/tcp/1"),
            t0 + Duration::from_secs(5),
        );
        c.opened(q, id(3), addr("/ip4/9.9.9.9/tcp/1"), t0);
        assert!(
            c.duplicates(t0 + Duration::from_secs(19)).is_empty(),
            "grace"
        );
        assert_eq!(c.duplicates(t0 + Duration::from_secs(20)), vec![id(1)]);
        c.exchanged(&p, t0 + Duration::from_secs(20));
        assert!(
            c.duplicates(t0 + Duration::from_secs(21)).is_empty(),
            "exchange"
        );
    }

    #[test]
    fn redials_back_off_and_are_bounded() {
        let t0 = Instant::now();
        let mut c = Connections::new(marks(), t0);
        assert!(!c.redial_due(t0 + Duration::from_secs(4)));
        assert!(c.redial_due(t0 + Duration::from_secs(5)));
        assert!(
            !c.redial_due(t0 + Duration::from_secs(14)),
            "backoff doubled"
        );
        assert!(c.redial_due(t0 + Duration::from_secs(15)));
        let p = PeerId::random();
        c.opened(
            p,
            ConnectionId::new_unchecked(1),
            addr("/ip4/1.2.3.4/tcp/1"),
            t0,
        );
        assert!(!c.redial_due(t0 + Duration::from_secs(600)), "connected");
        let q = PeerId::random();
        assert!(c.wrong_peer_redial(q, t0));
        assert!(!c.wrong_peer_redial(q, t0 + Duration::from_secs(59)));
        assert!(c.wrong_peer_redial(q, t0 + Duration::from_secs(60)));
        for _ in 0..5000 {
            c.wrong_peer_redial(PeerId::random(), t0 + Duration::from_secs(61));
        }
        assert!(c.wrong_peer_redials.len() <= REDIALS_KEPT);
        assert_eq!(c.refused(t0), Some(1));
        assert_eq!(c.refused(t0 + Duration::from_secs(9)), None);
        assert_eq!(c.refused(t0 + Duration::from_secs(10)), Some(3));
    }
}
