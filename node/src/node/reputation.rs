//! Standing of peers for what gossipsub does not see: bad sync answers, floods of undeliverable
//! direct messages, mail over quota. Each offence costs points that decay with time; the
//! points become gossipsub's application-specific score (so a peer that misbehaves outside
//! gossip also loses its place in the mesh), and a peer at [`CUT_OFF`] points is disconnected
//! and refused like a graylisted one.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Points at which a peer is cut off (the same as gossipsub's graylist, −80).
pub const CUT_OFF: f64 = 80.0;
/// Points halve in this time.
const HALF_LIFE: Duration = Duration::from_secs(60);
/// Peers remembered at most (entries decay to nothing and are dropped first).
const MAX_PEERS: usize = 4096;

/// Something a peer did that an honest peer does not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A sync answer that fails verification (forged posts or headers, unproven heads,
    /// broken chains, a continuation without entries): always deliberate.
    BadSyncAnswer,
    /// More direct or group messages waiting for a Welcome or commit than a peer may have.
    HeldOverQuota,
    /// Mail deposited beyond the sender's quota.
    MailOverQuota,
}

impl Offence {
    /// What it costs.
    pub fn points(self) -> f64 {
        match self {
            // Signed data cannot be wrong by accident: one lie cuts a peer off.
            Offence::BadSyncAnswer => CUT_OFF,
            // Floods: an honest peer never gets here, but a burst should not cut it off at
            // once; eight in a minute do.
            Offence::HeldOverQuota | Offence::MailOverQuota => 12.0,
        }
    }
}

/// Points per peer, decaying.
#[derive(Debug, Default)]
pub struct Reputation {
    points: HashMap<PeerId, (f64, Instant)>,
}

impl Reputation {
    /// Records an offence; returns the peer's points now.
    pub fn offend(&mut self, peer: PeerId, offence: Offence, now: Instant) -> f64 {
        if self.points.len() >= MAX_PEERS && !self.points.contains_key(&peer) {
            self.prune(now);
            if self.points.len() >= MAX_PEERS {
                // Full of recent offenders: forget the one with the fewest points.
                if let Some(p) = self
                    .points
                    .iter()
                    .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
                    .map(|(p, _)| *p)
                {
                    self.points.remove(&p);
                }
            }
        }
        let entry = self.points.entry(peer).or_insert((0.0, now));
        let decayed = decay(entry.0, now.saturating_duration_since(entry.1));
        *entry = (decayed + offence.points(), now);
        entry.0
    }

    /// A peer's points now.
    #[cfg(test)]
    pub fn points(&self, peer: &PeerId, now: Instant) -> f64 {
        self.points
            .get(peer)
            .map_or(0.0, |(p, t)| decay(*p, now.saturating_duration_since(*t)))
    }

    /// Every peer with points, and its points now.
    pub fn all(&self, now: Instant) -> Vec<(PeerId, f64)> {
        self.points
            .iter()
            .map(|(p, (pts, t))| (*p, decay(*pts, now.saturating_duration_since(*t))))
            .collect()
    }

    /// Forgets peers whose points have decayed to almost nothing.
    pub fn prune(&mut self, now: Instant) {
        self.points
            .retain(|_, (p, t)| decay(*p, now.saturating_duration_since(*t)) >= 0.5);
    }
}

fn decay(points: f64, elapsed: Duration) -> f64 {
    points * 0.5f64.powf(elapsed.as_secs_f64() / HALF_LIFE.as_secs_f64())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn offences_add_up_decay_and_stay_bounded() {
        let t0 = Instant::now();
        let mut r = Reputation::default();
        let p = PeerId::random();
        assert!(r.offend(p, Offence::BadSyncAnswer, t0) >= CUT_OFF);
        let later = t0 + HALF_LIFE;
        assert!((r.points(&p, later) - CUT_OFF / 2.0).abs() < 1e-6);
        // A burst of floods cuts off only once it is sustained.
        let q = PeerId::random();
        for _ in 0..6 {
            r.offend(q, Offence::HeldOverQuota, t0);
        }
        assert!(r.points(&q, t0) < CUT_OFF);
        for _ in 0..2 {
            r.offend(q, Offence::HeldOverQuota, t0);
        }
        assert!(r.points(&q, t0) >= CUT_OFF);
        // Thousands of fresh identities cannot grow the table.
        for _ in 0..(MAX_PEERS * 2) {
            r.offend(PeerId::random(), Offence::MailOverQuota, t0);
        }
        assert!(r.points.len() <= MAX_PEERS);
        r.prune(t0 + HALF_LIFE * 10);
        assert!(r.points.is_empty());
    }
}
