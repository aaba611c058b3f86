//! Which peers are refused, and until when: offences outside gossip (through [`Reputation`]),
//! malformed request frames, and gossip scores below the graylist each lead to a refusal of
//! [`PENALTY_BOX`]. An I/O-free core: time is passed in, and the event loop applies the
//! [`Action`]s to the swarm.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::reputation::{CUT_OFF, Offence, Reputation};
use crate::net::scoring::{GRAYLIST, PENALTY_BOX};

/// Malformed or oversized request frames a peer may send within [`VIOLATION_WINDOW`].
pub const MAX_VIOLATIONS: u32 = 10;
/// The window malformed frames are counted in.
pub const VIOLATION_WINDOW: Duration = Duration::from_secs(60);

/// What the swarm must do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Set the peer's gossipsub application score.
    Score(PeerId, f64),
    /// Disconnect and refuse the peer.
    Refuse(PeerId),
    /// Let a refused peer back in.
    Admit(PeerId),
}

/// The refusals and what leads to them.
#[derive(Debug, Default)]
pub struct Police {
    reputation: Reputation,
    violations: HashMap<PeerId, (u32, Instant)>,
    refused: HashMap<PeerId, Instant>,
    refused_total: u64,
}

impl Police {
    /// An offence of `peer` outside gossip: its gossip standing falls with it, and at
    /// [`CUT_OFF`] points it is refused.
    pub fn offence(&mut self, peer: PeerId, offence: Offence, now: Instant) -> Vec<Action> {
        let points = self.reputation.offend(peer, offence, now);
        let mut actions = vec![Action::Score(peer, -points)];
        if points >= CUT_OFF && !self.is_refused(&peer) {
            tracing::warn!(%peer, ?offence, "peer refused (repeated offences): disconnected and refused for 10 minutes");
            actions.push(self.refuse(peer, now));
        }
        actions
    }

    /// A request frame that is oversized or not the protocol's message (an honest peer never
    /// sends one): the [`MAX_VIOLATIONS`]th within [`VIOLATION_WINDOW`] refuses the peer.
    pub fn violation(&mut self, peer: PeerId, now: Instant) -> Option<Action> {
        let entry = self.violations.entry(peer).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > VIOLATION_WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        if entry.0 < MAX_VIOLATIONS || self.is_refused(&peer) {
            return None;
        }
        self.violations.remove(&peer);
        tracing::warn!(
            %peer,
            "peer refused ({MAX_VIOLATIONS} malformed or oversized requests): disconnected and \
             refused for 10 minutes"
        );
        Some(self.refuse(peer, now))
    }

    /// A connected peer's gossip score: below the graylist (invalid gossip), it is refused.
    pub fn gossip_score(&mut self, peer: PeerId, score: f64, now: Instant) -> Option<Action> {
        if score >= GRAYLIST || self.is_refused(&peer) {
            return None;
        }
        tracing::warn!(
            %peer,
            score,
            "peer graylisted (invalid gossip): disconnected and refused for 10 minutes"
        );
        Some(self.refuse(peer, now))
    }

    /// Periodic work: hands gossipsub the decayed points (it keeps a score as it was set),
    /// lets in peers whose refusal has run out (unless the user blocked them), and forgets
    /// what has decayed.
    pub fn tick(&mut self, now: Instant, user_blocked: &HashSet<PeerId>) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .reputation
            .all(now)
            .into_iter()
            .map(|(peer, points)| Action::Score(peer, if points < 0.5 { 0.0 } else { -points }))
            .collect();
        let released: Vec<PeerId> = self
            .refused
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        self.reputation.prune(now);
        for p in released {
            self.refused.remove(&p);
            if !user_blocked.contains(&p) {
                tracing::info!(peer = %p, "graylisted peer let back in");
                actions.push(Action::Admit(p));
            }
        }
        actions
    }

    /// Forgets violation counts whose window has passed (one bad frame per fresh identity
    /// must not grow the table without bound).
    pub fn prune(&mut self, now: Instant) {
        self.violations
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= VIOLATION_WINDOW);
    }

    /// Whether `peer` is refused now.
    pub fn is_refused(&self, peer: &PeerId) -> bool {
        self.refused.contains_key(peer)
    }

    /// Peers refused since start.
    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }

    fn refuse(&mut self, peer: PeerId, now: Instant) -> Action {
        self.refused
            .insert(peer, now.checked_add(PENALTY_BOX).unwrap_or(now));
        self.refused_total = self.refused_total.saturating_add(1);
        Action::Refuse(peer)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn refusals(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Refuse(_)))
            .count()
    }

    #[test]
    fn the_tenth_malformed_frame_in_a_minute_refuses() {
        let (mut p, t0, peer) = (Police::default(), Instant::now(), PeerId::random());
        for i in 0..MAX_VIOLATIONS - 1 {
            assert_eq!(
                p.violation(peer, t0 + Duration::from_secs(u64::from(i))),
                None
            );
        }
        // A window later, the count starts again.
        let later = t0 + VIOLATION_WINDOW + Duration::from_secs(10);
        assert_eq!(p.violation(peer, later), None);
        for _ in 1..MAX_VIOLATIONS - 1 {
            assert_eq!(p.violation(peer, later), None);
        }
        assert_eq!(p.violation(peer, later), Some(Action::Refuse(peer)));
        // Refused once, counted once.
        for _ in 0..2 * MAX_VIOLATIONS {
            assert_eq!(p.violation(peer, later), None);
        }
        assert_eq!(p.refused_total(), 1);
    }

    #[test]
    fn one_forged_sync_answer_refuses_floods_take_several() {
        let (mut p, now) = (Police::default(), Instant::now());
        let liar = PeerId::random();
        assert_eq!(refusals(&p.offence(liar, Offence::BadSyncAnswer, now)), 1);
        let flooder = PeerId::random();
        for _ in 0..6 {
            assert_eq!(
                refusals(&p.offence(flooder, Offence::MailOverQuota, now)),
                0
            );
        }
        let last = p.offence(flooder, Offence::MailOverQuota, now);
        assert_eq!(refusals(&last), 1);
        assert!(matches!(last[0], Action::Score(q, s) if q == flooder && s <= -CUT_OFF));
        // The same flood spread over an hour decays and never refuses.
        let slow = PeerId::random();
        for i in 0..60u64 {
            let at = now + Duration::from_secs(60 * i);
            assert_eq!(refusals(&p.offence(slow, Offence::HeldOverQuota, at)), 0);
        }
    }

    #[test]
    fn refusals_run_out_except_for_peers_the_user_blocked() {
        let (mut p, now) = (Police::default(), Instant::now());
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(p.gossip_score(a, GRAYLIST + 1.0, now), None);
        assert_eq!(
            p.gossip_score(a, GRAYLIST - 1.0, now),
            Some(Action::Refuse(a))
        );
        assert_eq!(p.gossip_score(b, -1000.0, now), Some(Action::Refuse(b)));
        let blocked: HashSet<PeerId> = [b].into();
        assert!(
            !p.tick(now + Duration::from_secs(1), &blocked)
                .iter()
                .any(|x| matches!(x, Action::Admit(_)))
        );
        let after = p.tick(now + PENALTY_BOX, &blocked);
        assert!(after.contains(&Action::Admit(a)));
        assert!(!after.contains(&Action::Admit(b)));
        assert!(!p.is_refused(&a) && !p.is_refused(&b));
    }

    #[test]
    fn fresh_identities_leave_no_trace_after_the_window() {
        let (mut p, now) = (Police::default(), Instant::now());
        for _ in 0..10_000 {
            assert_eq!(p.violation(PeerId::random(), now), None);
        }
        p.prune(now + VIOLATION_WINDOW + Duration::from_secs(1));
        assert!(p.violations.is_empty());
    }
}
