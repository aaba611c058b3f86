//! History sync in the event loop: sessions that ask one topic peer for what this node lacks,
//! page by page; gap detection; serving others; progress.

use crate::net::wire::Frame;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId};
use samizdat_proto::v1;

use super::{ChainCheck, EventLoop, Internal};
use crate::channel::{ChannelId, Post, now_ms};
use crate::node::views::{Event, SyncStatus};
use crate::node::writer::{Origin, WriteRequest};
use crate::sync::{check_page, serve};

/// Sync again with some peer this often, even without a detected gap.
const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// Leave a peer that sent an invalid page alone this long.
const BAD_PAGE_PENALTY: Duration = Duration::from_secs(600);
/// Leave a peer that failed or refused alone this long.
const FAILURE_PENALTY: Duration = Duration::from_secs(20);
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
const HEADS_DEADLINE: Duration = Duration::from_secs(8);
/// Most sequence numbers asked for in one range request.
const MAX_SPAN: u64 = 4096;

/// Counters of a channel's history, kept in memory so progress costs no store scans.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Posts held.
    have: u64,
    /// Slots known to have expired.
    expired: u64,
    /// Highest sequence number known per author (held, expired, or heard of).
    heads: HashMap<[u8; 32], u64>,
}

/// Sync state of one channel.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    counters: Counters,
    session: Option<Session>,
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
}

#[derive(Debug)]
struct Session {
    peer: PeerId,
    pending: VecDeque<([u8; 32], u64, u64)>,
    current: Option<([u8; 32], u64, u64)>,
    request: Option<OutboundRequestId>,
    started: Instant,
}

impl EventLoop {
    /// Loads a channel's counters from the store (once per channel per start).
    pub(super) fn sync_init(&mut self, id: &ChannelId, owner: bool) {
        let mut st = SyncState {
            // The owner is the source of its own chain: nothing to catch up on at start.
            synced_once: owner,
            ..Default::default()
        };
        match (self.store.count(id), self.store.authors(id)) {
            (Ok(have), Ok(authors)) => {
                st.counters.have = have;
                for a in authors {
                    st.counters.expired += a.expired;
                    st.counters.heads.insert(a.author, a.max_seq);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(channel = %id, "cannot read history counters: {e}")
            }
        }
        self.sync.insert(*id, st);
    }

    /// A verified post was seen (live or from sync): learn its author's head, notice gaps.
    pub(super) fn note_post_seen(&mut self, post: &Post) {
        let Some(st) = self.sync.get_mut(&post.channel) else {
            return;
        };
        let head = st
            .counters
            .heads
            .entry(post.author_key.to_bytes())
            .or_insert(0);
        // A post beyond the next expected one means something in between is missing.
        if post.seq > *head + 1 && st.gap_since.is_none() {
            st.gap_since = Some(Instant::now());
        }
        *head = (*head).max(post.seq);
    }

    /// A post was durably stored.
    pub(super) fn note_inserted(&mut self, post: &Post) {
        if let Some(st) = self.sync.get_mut(&post.channel) {
            st.counters.have += 1;
        }
    }

    /// A post expired and was deleted.
    pub(super) fn note_expired(&mut self, channel: &ChannelId) {
        if let Some(st) = self.sync.get_mut(channel) {
            st.counters.have = st.counters.have.saturating_sub(1);
            st.counters.expired += 1;
        }
    }

    /// A channel wants syncing, or `from` just joined its topic: start now if idle and due.
    pub(super) fn want_sync(&mut self, id: &ChannelId, from: Option<PeerId>) {
        if let Some(st) = self.sync.get_mut(id) {
            match from {
                Some(p) if !st.newcomers.contains(&p) => {
                    if st.newcomers.len() >= MAX_NEWCOMERS {
                        st.newcomers.pop_front();
                    }
                    st.newcomers.push_back(p);
                }
                Some(_) => {}
                None => st.wanted = true,
            }
            if st.session.is_none() {
                self.sync_tick();
            }
        }
    }

    /// What clients see of a channel's sync.
    pub(super) fn sync_status(&self, id: &ChannelId) -> Option<SyncStatus> {
        let st = self.sync.get(id)?;
        let known_slots: u64 = st.counters.heads.values().sum();
        let known = known_slots.saturating_sub(st.counters.expired);
        let syncing = st.session.is_some();
        Some(SyncStatus {
            channel: id.to_string(),
            complete: st.synced_once && !syncing && st.counters.have >= known,
            have: st.counters.have,
            known: known.max(st.counters.have),
            syncing,
        })
    }

    fn emit_progress(&self, id: &ChannelId) {
        if let Some(status) = self.sync_status(id) {
            let _ = self.events.send(Event::SyncProgress { status });
        }
    }

    /// Starts sessions where due.
    pub(super) fn sync_tick(&mut self) {
        let now = Instant::now();
        let ids: Vec<ChannelId> = self.sync.keys().copied().collect();
        for id in ids {
            let silent = self
                .sync
                .get(&id)
                .and_then(|st| st.session.as_ref())
                .filter(|s| s.current.is_none() && now.duration_since(s.started) >= HEADS_DEADLINE)
                .map(|s| s.peer);
            // Given up on only when someone else could be asked: a lone slow peer is waited for.
            let other = silent.is_some_and(|slow| {
                let bad = self.sync.get(&id).map(|st| &st.bad);
                self.channels.get(&id).is_some_and(|c| {
                    let topic = c.topic.hash();
                    self.swarm
                        .behaviour()
                        .gossipsub
                        .all_peers()
                        .any(|(p, topics)| {
                            *p != slow
                                && topics.contains(&&topic)
                                && !bad.is_some_and(|b| b.contains_key(p))
                        })
                })
            });
            if other {
                tracing::debug!(channel = %id, "sync peer did not answer: asking another");
                self.finish_session(&id, false, Some(FAILURE_PENALTY));
            }
            let Some(st) = self.sync.get_mut(&id) else {
                continue;
            };
            st.bad.retain(|_, until| *until > now);
            if st.session.is_some() {
                continue;
            }
            // A gap that outlived the grace period: is it still a gap?
            if st.gap_since.is_some_and(|t| t.elapsed() >= GAP_GRACE) {
                st.gap_since = None;
                let have_all = st.counters.have + st.counters.expired
                    >= st.counters.heads.values().sum::<u64>();
                st.wanted |= !have_all;
            }
            let since_last = st.last_session.map(|t| t.elapsed());
            let due = st.wanted
                || !st.synced_once
                || (!st.newcomers.is_empty() && since_last.is_none_or(|e| e >= NEWCOMER_EVERY))
                || since_last.is_none_or(|e| e >= RESYNC_EVERY);
            if !due {
                continue;
            }
            let Some(topic) = self.channels.get(&id).map(|c| c.topic.hash()) else {
                continue;
            };
            let bad = &st.bad;
            let candidates: Vec<PeerId> = self
                .swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(p, topics)| topics.contains(&&topic) && !bad.contains_key(p))
                .map(|(p, _)| *p)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let peer = loop {
                match st.newcomers.pop_front() {
                    Some(p) if candidates.contains(&p) => break p,
                    Some(_) => continue,
                    None => {
                        let [r] = crate::crypto::random_bytes::<1>();
                        break candidates[usize::from(r) % candidates.len()];
                    }
                }
            };
            self.start_session(id, peer);
        }
    }

    fn start_session(&mut self, id: ChannelId, peer: PeerId) {
        let req = v1::SyncRequest {
            kind: Some(v1::sync_request::Kind::Heads(v1::SyncHeadsRequest {
                channel: id.as_bytes().to_vec(),
            })),
        };
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Frame::Valid(req));
        self.sync_requests.insert(rid, id);
        if let Some(st) = self.sync.get_mut(&id) {
            st.wanted = false;
            st.last_session = Some(Instant::now());
            st.session = Some(Session {
                peer,
                pending: VecDeque::new(),
                current: None,
                request: Some(rid),
                started: Instant::now(),
            });
        }
        tracing::debug!(channel = %id, %peer, "sync session started");
        self.emit_progress(&id);
    }

    /// Ends a session; `penalty` keeps a misbehaving or failing peer out of the next ones.
    fn finish_session(&mut self, id: &ChannelId, ok: bool, penalty: Option<Duration>) {
        let Some(st) = self.sync.get_mut(id) else {
            return;
        };
        if let Some(s) = st.session.take() {
            if let Some(p) = penalty {
                st.bad.insert(s.peer, Instant::now() + p);
            }
            if ok {
                st.synced_once = true;
            } else {
                st.wanted = true;
            }
            tracing::debug!(channel = %id, peer = %s.peer, ok, "sync session finished");
        }
        self.emit_progress(id);
    }

    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<Frame<v1::SyncRequest>, v1::SyncResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message:
                    M::Request {
                        request: Frame::Invalid(why),
                        ..
                    },
                ..
            } => self.protocol_violation(peer, "sync", &why),
            E::Message {
                peer,
                message:
                    M::Request {
                        request: Frame::Valid(request),
                        channel,
                        ..
                    },
                ..
            } => {
                if !self.sync_limiter.allow(peer, Instant::now()) {
                    tracing::debug!(%peer, "sync request rate limited");
                    let _ = self.swarm.behaviour_mut().sync.send_response(
                        channel,
                        v1::SyncResponse {
                            kind: Some(v1::sync_response::Kind::Error("rate limited".into())),
                        },
                    );
                    return;
                }
                let store = self.store.clone();
                let tx = self.internal_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let resp = serve(store.as_ref(), request, now_ms()).unwrap_or_else(|e| {
                        tracing::warn!("serving sync request: {e}");
                        v1::SyncResponse {
                            kind: Some(v1::sync_response::Kind::Error("internal error".into())),
                        }
                    });
                    let _ = tx.send(Internal::SyncRespond(channel, resp));
                });
            }
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_sync_response(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(id) = self.sync_requests.remove(&request_id) {
                    tracing::debug!(channel = %id, %peer, "sync request failed: {error}");
                    // Only if it is the current session's: one given up on may fail late.
                    let current = self
                        .sync
                        .get(&id)
                        .and_then(|s| s.session.as_ref())
                        .is_some_and(|s| s.request == Some(request_id));
                    if current {
                        self.finish_session(&id, false, Some(FAILURE_PENALTY));
                    }
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound sync request failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, rid: OutboundRequestId, resp: v1::SyncResponse) {
        let Some(id) = self.sync_requests.remove(&rid) else {
            return;
        };
        let current = match self.sync.get(&id).and_then(|s| s.session.as_ref()) {
            Some(s) if s.request == Some(rid) && s.peer == peer => s.current,
            _ => return,
        };
        match resp.kind {
            Some(v1::sync_response::Kind::Heads(h)) if current.is_none() => self.on_heads(&id, h),
            Some(v1::sync_response::Kind::Range(page)) => match current {
                Some(range) => self.on_page(&id, peer, range, page),
                None => self.finish_session(&id, false, Some(BAD_PAGE_PENALTY)),
            },
            Some(v1::sync_response::Kind::Error(e)) => {
                tracing::debug!(channel = %id, %peer, "peer refused sync: {e}");
                // Being told to slow down is not misbehaviour: resume on the next tick (the
                // new session starts where the store says this node is).
                let penalty = (e != "rate limited").then_some(FAILURE_PENALTY);
                self.finish_session(&id, false, penalty);
            }
            _ => self.finish_session(&id, false, Some(BAD_PAGE_PENALTY)),
        }
    }

    fn on_heads(&mut self, id: &ChannelId, heads: v1::SyncHeadsResponse) {
        let mut pending = VecDeque::new();
        for h in heads.authors.iter().take(crate::sync::MAX_AUTHORS) {
            let Ok(author) = <[u8; 32]>::try_from(h.author.as_slice()) else {
                continue;
            };
            if h.max_seq == 0 {
                continue;
            }
            let missing = match self.store.missing(id, &author, h.max_seq) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("store: {e}");
                    continue;
                }
            };
            for (from, to) in missing {
                let mut start = from;
                while start <= to {
                    let end = to.min(start.saturating_add(MAX_SPAN - 1));
                    pending.push_back((author, start, end));
                    start = end + 1;
                }
            }
        }
        // Claimed heads count as known only once a page proves them (a peer could lie).
        let Some(st) = self.sync.get_mut(id) else {
            return;
        };
        let Some(session) = st.session.as_mut() else {
            return;
        };
        session.pending = pending;
        self.next_range(id);
    }

    fn next_range(&mut self, id: &ChannelId) {
        let next = self
            .sync
            .get_mut(id)
            .and_then(|st| st.session.as_mut())
            .map(|s| (s.peer, s.pending.pop_front()));
        match next {
            Some((peer, Some(range))) => self.request_range(id, peer, range),
            Some((_, None)) => self.finish_session(id, true, None),
            None => {}
        }
    }

    fn request_range(&mut self, id: &ChannelId, peer: PeerId, range: ([u8; 32], u64, u64)) {
        let (author, from, to) = range;
        let req = v1::SyncRequest {
            kind: Some(v1::sync_request::Kind::Range(v1::SyncRangeRequest {
                channel: id.as_bytes().to_vec(),
                author: author.to_vec(),
                from_seq: from,
                to_seq: to,
            })),
        };
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Frame::Valid(req));
        self.sync_requests.insert(rid, *id);
        if let Some(s) = self.sync.get_mut(id).and_then(|st| st.session.as_mut()) {
            s.current = Some(range);
            s.request = Some(rid);
        }
    }

    fn on_page(
        &mut self,
        id: &ChannelId,
        peer: PeerId,
        range: ([u8; 32], u64, u64),
        page: v1::SyncRangeResponse,
    ) {
        let (author, from, to) = range;
        tracing::trace!(channel = %id, %peer, from, to, posts = page.posts.len(), "sync page");
        // Ask for the next page before checking this one, so that the peer's reading and the
        // network overlap with the verification here. If this page is bad, the session ends
        // and the answer to that request is dropped.
        let continued = page.next_seq > from && page.next_seq <= to;
        if continued {
            self.request_range(id, peer, (author, page.next_seq, to));
        }
        let (posts, expired) = match check_page(id, &author, from, to, &page, now_ms()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(channel = %id, %peer, "invalid sync page refused: {e}");
                self.finish_session(id, false, Some(BAD_PAGE_PENALTY));
                return;
            }
        };
        if !expired.is_empty() {
            match self.store.insert_expired(id, &author, &expired) {
                Ok(()) => {
                    if let Some(st) = self.sync.get_mut(id) {
                        st.counters.expired += expired.len() as u64;
                        let head = st.counters.heads.entry(author).or_insert(0);
                        *head = (*head).max(expired.iter().copied().max().unwrap_or(0));
                    }
                }
                Err(e) => tracing::warn!("store: {e}"),
            }
        }
        for post in posts {
            match self.chain_check(&post) {
                Ok(ChainCheck::New) => {}
                Ok(ChainCheck::Duplicate) => continue,
                Ok(ChainCheck::Conflict) => {
                    tracing::warn!(channel = %id, %peer, seq = post.seq, "sync page conflicts with held history");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("store: {e}");
                    continue;
                }
            }
            self.note_post_seen(&post);
            let key = (post.channel, post.author_key.to_bytes(), post.seq);
            let pid = post.id;
            if self
                .writer
                .submit(WriteRequest {
                    post,
                    origin: Origin::Remote,
                })
                .is_err()
            {
                // Writer saturated: stop here; the next session resumes from the gap.
                self.finish_session(id, false, None);
                return;
            }
            self.in_flight.insert(key, pid);
        }
        if !continued {
            self.next_range(id);
        }
        self.emit_progress(id);
    }
}
