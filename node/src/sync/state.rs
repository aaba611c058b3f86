//! The sync state of one channel, with no I/O: what this node knows of each author's chain,
//! which peer it is syncing with, which ranges are left to ask for, which peers to leave
//! alone, and when to start again. The event loop feeds it answers (already checked by
//! [`super::page`]) and the time, and sends the requests it asks for.
//!
//! Every bound here holds whatever peers claim: a session asks for at most the ranges between
//! what is held and heads that were proven, one request at a time, and a range continues only
//! on pages that carried signed entries.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::ProvenHead;
use crate::node::views::SyncStatus;

/// Sync again with some peer this often, even without a detected gap.
pub const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// Leave a peer that sent an invalid answer alone this long.
pub const BAD_PAGE_PENALTY: Duration = Duration::from_secs(600);
/// Leave a peer that failed, refused, or claimed more than it served alone this long.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(20);
/// How long a gap may last before it is repaired by sync rather than by gossip.
const GAP_GRACE: Duration = Duration::from_secs(3);
/// Newly joined peers are asked at most this often per channel, and only the latest few are
/// kept: in a big mesh every connection brings a subscription, and asking each one would be
/// a session per peer (one newcomer after a partition heals already holds the other side).
const NEWCOMER_EVERY: Duration = Duration::from_secs(2);
const MAX_NEWCOMERS: usize = 4;
/// A peer that has not answered the (small) heads request after this long is given up on for
/// this session, and another asked: one that holds requests without answering must not hold
/// a newcomer's history up for the whole request timeout.
pub const HEADS_DEADLINE: Duration = Duration::from_secs(8);
/// Most peers remembered as ones to leave alone (each entry expires; a flood of fresh
/// identities failing sessions cannot grow it without bound).
const MAX_BAD: usize = 1024;
/// A session that has run this long gives way to another peer when there is one: a peer
/// that feeds one entry per page just inside the request timeout must not hold a channel's
/// sync for the length of its history. (The next session goes on from what is stored.)
pub const SESSION_BUDGET: Duration = Duration::from_secs(120);
/// An empty answer (no heads at all) from a peer counts towards "synced" only once this many
/// different peers gave it, or when nobody else could be asked: an empty answer proves nothing.
const EMPTY_ANSWERS: usize = 2;

/// One range of an author's chain: (author, from, to), inclusive.
pub type Range = ([u8; 32], u64, u64);

/// Counters of a channel's history, kept in memory so progress costs no store scans.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Posts held.
    pub have: u64,
    /// Slots held as expiry proofs.
    pub expired: u64,
    /// Highest sequence number known per author: held, or proven by a signed header.
    pub heads: HashMap<[u8; 32], u64>,
}

impl Counters {
    /// The number of slots known to exist, over all authors.
    pub fn known_slots(&self) -> u64 {
        self.heads
            .values()
            .fold(0u64, |sum, h| sum.saturating_add(*h))
    }

    /// The highest sequence number known for `author` (0: none).
    pub fn head(&self, author: &[u8; 32]) -> u64 {
        self.heads.get(author).copied().unwrap_or(0)
    }

    fn raise_head(&mut self, author: [u8; 32], seq: u64) {
        let head = self.heads.entry(author).or_insert(0);
        *head = (*head).max(seq);
    }
}

#[derive(Debug)]
struct Session<R> {
    peer: PeerId,
    pending: VecDeque<Range>,
    current: Option<Range>,
    request: Option<R>,
    started: Instant,
    /// Ranges the peer's heads promised beyond what this node held.
    promised: bool,
    /// Valid entries it served.
    delivered: u64,
    /// It showed no heads at all, and this node knew of none either.
    empty: bool,
}

/// What to do next in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask the session's peer for this range.
    Request(PeerId, Range),
    /// Nothing left: the session is over (already finished here).
    Done,
}

/// The sync state of one channel. `R` identifies a request in flight.
#[derive(Debug)]
pub struct ChannelSync<R> {
    counters: Counters,
    session: Option<Session<R>>,
    last_session: Option<Instant>,
    synced_once: bool,
    wanted: bool,
    /// A gap was seen at this time: sync if it is still there a moment later (gossip often
    /// fills it: posts overtake each other on different paths).
    gap_since: Option<Instant>,
    bad: HashMap<PeerId, Instant>,
    /// Peers that just joined the topic: asked first, since they may hold what was missed
    /// while apart (after a partition heals, or a node comes back).
    newcomers: VecDeque<PeerId>,
    /// Peers that answered with no heads while this node knew of none.
    empty_answers: Vec<PeerId>,
    /// How many peers could be asked at the last poll.
    candidates: usize,
}

impl<R: Copy + Eq> ChannelSync<R> {
    /// The state of a channel whose history holds what `counters` say. The owner is the
    /// source of its own chain: it has nothing to catch up on at start.
    pub fn new(owner: bool, counters: Counters) -> Self {
        Self {
            counters,
            session: None,
            last_session: None,
            synced_once: owner,
            wanted: false,
            gap_since: None,
            bad: HashMap::new(),
            newcomers: VecDeque::new(),
            empty_answers: Vec::new(),
            candidates: 0,
        }
    }

    /// What is known of the history.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A verified post or header of `author` at `seq` was seen (live or from sync): learn its
    /// author's head, notice gaps.
    pub fn note_seen(&mut self, author: [u8; 32], seq: u64, now: Instant) {
        let head = self.counters.head(&author);
        // A post beyond the next expected one means something in between is missing.
        if seq > head.saturating_add(1) && self.gap_since.is_none() {
            self.gap_since = Some(now);
        }
        self.counters.raise_head(author, seq);
    }

    /// A post was durably stored.
    pub fn note_inserted(&mut self) {
        self.counters.have = self.counters.have.saturating_add(1);
    }

    /// An expiry proof was durably stored for a free slot.
    pub fn note_tombstone(&mut self) {
        self.counters.expired = self.counters.expired.saturating_add(1);
    }

    /// An author's slots after `last_seq` were removed (a revoked admin's).
    pub fn note_retracted(&mut self, author: [u8; 32], last_seq: u64, posts: u64, proofs: u64) {
        self.counters.have = self.counters.have.saturating_sub(posts);
        self.counters.expired = self.counters.expired.saturating_sub(proofs);
        if let Some(h) = self.counters.heads.get_mut(&author) {
            *h = (*h).min(last_seq);
        }
    }

    /// A held post expired here and became its own proof.
    pub fn note_expired(&mut self) {
        self.counters.have = self.counters.have.saturating_sub(1);
        self.counters.expired = self.counters.expired.saturating_add(1);
    }

    /// Sync is wanted: soon (`None`), or with `peer`, which just joined the channel's topic.
    pub fn want(&mut self, from: Option<PeerId>) {
        match from {
            Some(p) if !self.newcomers.contains(&p) => {
                if self.newcomers.len() >= MAX_NEWCOMERS {
                    self.newcomers.pop_front();
                }
                self.newcomers.push_back(p);
            }
            Some(_) => {}
            None => self.wanted = true,
        }
    }

    /// Whether a session is running.
    pub fn syncing(&self) -> bool {
        self.session.is_some()
    }

    /// What clients see.
    pub fn status(&self, channel: String) -> SyncStatus {
        let c = &self.counters;
        let known = c.known_slots().saturating_sub(c.expired);
        let syncing = self.session.is_some();
        SyncStatus {
            channel,
            complete: self.synced_once
                && !syncing
                && c.have.saturating_add(c.expired) >= c.known_slots(),
            have: c.have,
            known: known.max(c.have),
            syncing,
        }
    }

    /// Whether a peer is being left alone.
    pub fn is_bad(&self, peer: &PeerId) -> bool {
        self.bad.contains_key(peer)
    }

    /// Housekeeping and scheduling. `candidates` are the channel's topic peers now; `random`
    /// picks among them. Returns true if the current session was given up on (its peer did
    /// not answer its heads request in time while someone else could be asked), and the peer
    /// to start a session with now, if one is due.
    pub fn poll(
        &mut self,
        now: Instant,
        candidates: &[PeerId],
        random: usize,
    ) -> (bool, Option<PeerId>) {
        let mut gave_up = false;
        self.candidates = candidates.len();
        if let Some(s) = &self.session {
            let age = now.saturating_duration_since(s.started);
            let silent = (s.current.is_none() && age >= HEADS_DEADLINE) || age >= SESSION_BUDGET;
            // Given up on only when someone else could be asked: a lone slow peer is waited for.
            let slow = s.peer;
            if silent
                && candidates
                    .iter()
                    .any(|p| *p != slow && !self.bad.contains_key(p))
            {
                self.finish(false, Some(FAILURE_PENALTY), now);
                gave_up = true;
            }
        }
        self.bad.retain(|_, until| *until > now);
        if self.session.is_some() {
            return (gave_up, None);
        }
        // A gap that outlived the grace period: is it still a gap?
        if self
            .gap_since
            .is_some_and(|t| now.saturating_duration_since(t) >= GAP_GRACE)
        {
            self.gap_since = None;
            let c = &self.counters;
            self.wanted |= c.have.saturating_add(c.expired) < c.known_slots();
        }
        let since_last = self.last_session.map(|t| now.saturating_duration_since(t));
        let due = self.wanted
            || !self.synced_once
            || (!self.newcomers.is_empty() && since_last.is_none_or(|e| e >= NEWCOMER_EVERY))
            || since_last.is_none_or(|e| e >= RESYNC_EVERY);
        if !due {
            return (gave_up, None);
        }
        let mut usable: Vec<PeerId> = candidates
            .iter()
            .filter(|p| !self.bad.contains_key(p))
            .copied()
            .collect();
        // After empty answers, ask someone else (when there is someone else).
        if usable.iter().any(|p| !self.empty_answers.contains(p)) {
            usable.retain(|p| !self.empty_answers.contains(p));
        }
        if usable.is_empty() {
            return (gave_up, None);
        }
        while let Some(p) = self.newcomers.pop_front() {
            if usable.contains(&p) {
                return (gave_up, Some(p));
            }
        }
        let i = random.checked_rem(usable.len()).unwrap_or(0);
        (gave_up, usable.get(i).copied())
    }

    /// A session with `peer` started: its heads request is `request`.
    pub fn started(&mut self, peer: PeerId, request: R, now: Instant) {
        self.wanted = false;
        self.last_session = Some(now);
        self.session = Some(Session {
            peer,
            pending: VecDeque::new(),
            current: None,
            request: Some(request),
            started: now,
            promised: false,
            delivered: 0,
            empty: false,
        });
    }

    /// If `request` from `peer` is the current session's, the range it asked for (`None`
    /// for the heads request). Answers to abandoned requests are `None` here (ignored).
    pub fn current(&self, request: R, peer: &PeerId) -> Option<Option<Range>> {
        let s = self.session.as_ref()?;
        (s.request == Some(request) && s.peer == *peer).then_some(s.current)
    }

    /// The checked heads of the session's peer arrived. Learns the proven heads, queues the
    /// ranges this node lacks up to each head (`missing(author, upto)` lists them from the
    /// store), and says what to ask first.
    pub fn on_heads(
        &mut self,
        heads: Vec<ProvenHead>,
        mut missing: impl FnMut(&[u8; 32], u64) -> Vec<(u64, u64)>,
        now: Instant,
    ) -> Next {
        let mut pending = VecDeque::new();
        let mut promised = false;
        let empty = heads.is_empty() && self.counters.heads.is_empty();
        for h in heads {
            if h.proof.is_some() {
                // Proven: a slot this node did not know of exists.
                self.counters.raise_head(h.author, h.max_seq);
                promised = true;
            }
            for (from, to) in missing(&h.author, h.max_seq) {
                pending.push_back((h.author, from, to));
            }
        }
        match self.session.as_mut() {
            Some(s) => {
                s.pending = pending;
                s.promised = promised;
                s.empty = empty;
            }
            None => return Next::Done,
        }
        self.next_range(now)
    }

    /// The next range to ask the session's peer for, or the end of the session.
    pub fn next_range(&mut self, now: Instant) -> Next {
        let Some(s) = self.session.as_mut() else {
            return Next::Done;
        };
        match s.pending.pop_front() {
            Some(range) => Next::Request(s.peer, range),
            None => {
                // A peer that proved heads beyond ours and then served nothing of them holds
                // what it showed back (or lacks it): someone else is asked soon.
                let withheld = s.promised && s.delivered == 0;
                let penalty = withheld.then_some(FAILURE_PENALTY);
                self.finish(!withheld, penalty, now);
                Next::Done
            }
        }
    }

    /// The range `range` was asked for with `request`.
    pub fn requested(&mut self, range: Range, request: R) {
        if let Some(s) = self.session.as_mut() {
            s.current = Some(range);
            s.request = Some(request);
        }
    }

    /// Valid entries the session's peer served in a page (new here or not: a peer that
    /// serves what gossip brought first is no less honest).
    pub fn delivered(&mut self, n: u64) {
        if let Some(s) = self.session.as_mut() {
            s.delivered = s.delivered.saturating_add(n);
        }
    }

    /// Ends the session; `penalty` keeps a misbehaving or failing peer out of the next ones.
    pub fn finish(&mut self, ok: bool, penalty: Option<Duration>, now: Instant) {
        let Some(s) = self.session.take() else {
            return;
        };
        if let Some(p) = penalty {
            if self.bad.len() >= MAX_BAD {
                self.bad.retain(|_, until| *until > now);
            }
            if self.bad.len() < MAX_BAD {
                self.bad.insert(s.peer, now.checked_add(p).unwrap_or(now));
            }
        }
        if !ok {
            self.wanted = true;
        } else if s.empty {
            if !self.empty_answers.contains(&s.peer) && self.empty_answers.len() < 8 {
                self.empty_answers.push(s.peer);
            }
            if self.empty_answers.len() >= EMPTY_ANSWERS || self.candidates <= 1 {
                self.synced_once = true;
            } else {
                self.wanted = true;
            }
        } else {
            self.synced_once = true;
        }
    }

    /// The session's peer, if one is running.
    pub fn peer(&self) -> Option<PeerId> {
        self.session.as_ref().map(|s| s.peer)
    }
}

/// Where a page continues: `Some(range)` when its `next_seq` lies after `from` and within the
/// range (a checked page guarantees more: past its last entry).
pub fn continuation(range: Range, next_seq: u64) -> Option<Range> {
    let (author, from, to) = range;
    (next_seq > from && next_seq <= to).then_some((author, next_seq, to))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::{ChannelId, Post, PostDraft};
    use libp2p::identity::ed25519;

    fn header(k: &ed25519::Keypair, seq: u64) -> crate::channel::PostHeader {
        let id = ChannelId::from_key(&k.public());
        let prev = (seq > 1).then_some(crate::channel::PostId([1; 32]));
        Post::sign(
            &id,
            k,
            None,
            seq,
            prev,
            1,
            PostDraft {
                text: "x".into(),
                ..Default::default()
            },
        )
        .expect("sign")
        .header()
    }

    #[test]
    fn a_proven_head_of_u64_max_costs_one_range_and_ends() {
        let k = ed25519::Keypair::generate();
        let author = k.public().to_bytes();
        let t0 = Instant::now();
        let peer = PeerId::random();
        let mut s: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        let (_, start) = s.poll(t0, &[peer], 0);
        assert_eq!(start, Some(peer));
        s.started(peer, 1, t0);
        // Even a head at u64::MAX (signed by the author itself) is one pending range, asked
        // for whole: the peer pages through what it holds, not through the number space.
        let heads = vec![ProvenHead {
            author,
            max_seq: u64::MAX,
            proof: Some(header(&k, u64::MAX)),
        }];
        let next = s.on_heads(heads, |_, upto| vec![(1, upto)], t0);
        assert_eq!(next, Next::Request(peer, (author, 1, u64::MAX)));
        s.requested((author, 1, u64::MAX), 2);
        assert_eq!(s.current(2, &peer), Some(Some((author, 1, u64::MAX))));
        assert_eq!(
            s.current(1, &peer),
            None,
            "the heads request is no longer current"
        );
        // The peer served nothing of what it proved: the session ends, the peer is left
        // alone a while and another one is wanted.
        assert_eq!(s.next_range(t0), Next::Done);
        assert!(s.is_bad(&peer));
        let st = s.status("c".into());
        assert!(!st.complete);
        assert_eq!(st.known, u64::MAX);
        assert_eq!(
            continuation((author, 1, u64::MAX), u64::MAX),
            Some((author, u64::MAX, u64::MAX))
        );
        assert_eq!(continuation((author, 5, 9), 5), None);
        assert_eq!(continuation((author, 5, 9), 10), None);
    }

    #[test]
    fn complete_counts_only_what_is_held_or_proven() {
        let k = ed25519::Keypair::generate();
        let author = k.public().to_bytes();
        let t0 = Instant::now();
        let peer = PeerId::random();
        let mut s: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        s.started(peer, 1, t0);
        let heads = vec![ProvenHead {
            author,
            max_seq: 3,
            proof: Some(header(&k, 3)),
        }];
        assert!(matches!(
            s.on_heads(heads, |_, upto| vec![(1, upto)], t0),
            Next::Request(..)
        ));
        s.delivered(2);
        s.note_inserted();
        s.note_inserted();
        assert_eq!(s.next_range(t0), Next::Done);
        // Two of three held: not complete, whatever the peer said of the third.
        assert!(!s.status("c".into()).complete);
        s.note_tombstone();
        let st = s.status("c".into());
        assert!(st.complete);
        assert_eq!((st.have, st.known), (2, 2));
    }

    #[test]
    fn one_empty_answer_proves_nothing() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        assert_eq!(s.poll(t0, &[a, b], 0).1, Some(a));
        s.started(a, 1, t0);
        assert_eq!(s.on_heads(Vec::new(), |_, _| Vec::new(), t0), Next::Done);
        assert!(!s.status("c".into()).complete, "one peer said nothing");
        // The next session goes to the other peer; its empty answer confirms.
        assert_eq!(s.poll(t0, &[a, b], 0).1, Some(b));
        s.started(b, 2, t0);
        s.on_heads(Vec::new(), |_, _| Vec::new(), t0);
        assert!(s.status("c".into()).complete);
        // With a single peer to ask, its empty answer is all there is.
        let mut lone: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        assert_eq!(lone.poll(t0, &[a], 0).1, Some(a));
        lone.started(a, 1, t0);
        lone.on_heads(Vec::new(), |_, _| Vec::new(), t0);
        assert!(lone.status("c".into()).complete);
    }

    #[test]
    fn a_session_gives_way_after_its_budget() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        s.started(a, 1, t0);
        s.requested(([0; 32], 1, 10), 2);
        assert_eq!(
            s.poll(t0 + HEADS_DEADLINE, &[a, b], 0),
            (false, None),
            "pages flow"
        );
        assert_eq!(s.poll(t0 + SESSION_BUDGET, &[a, b], 0), (true, Some(b)));
    }

    #[test]
    fn a_silent_peer_is_given_up_only_when_another_can_be_asked() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s: ChannelSync<u32> = ChannelSync::new(false, Counters::default());
        s.started(a, 1, t0);
        let later = t0 + HEADS_DEADLINE;
        assert_eq!(
            s.poll(later, &[a], 0),
            (false, None),
            "a lone slow peer is waited for"
        );
        assert_eq!(s.poll(later, &[a, b], 0), (true, Some(b)));
        assert!(s.is_bad(&a));
    }
}
