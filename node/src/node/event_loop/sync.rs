//! History sync in the event loop: the I/O around each channel's sync state
//! ([`crate::sync::state`]): sending the requests it asks for, checking answers
//! ([`crate::sync::page`]), handing what they bring to the writer, serving others.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId};

use crate::net::rate_limit::RateLimiter;
use crate::net::requests::{Exchange, Requests};
use prost::Message as _;
use samizdat_proto::v1;

use super::{EventLoop, Internal};
use crate::channel::ChainCheck;
use crate::channel::{AdminCert, ChannelId, Manifest, now_ms};
use crate::net::wire::Frame;
use crate::node::views::{Event, SyncStatus};
use crate::node::writer::{Item, Origin, WriteRequest};
use crate::sync::state::{
    BAD_PAGE_PENALTY, ChannelSync, Counters, FAILURE_PENALTY, Next, Range, continuation,
};
use crate::sync::{Entry, check_heads, check_page, serve};

/// Sync state of one channel, as the event loop holds it.
pub(super) type SyncState = ChannelSync<OutboundRequestId>;

/// History sync's state in the event loop.
pub(super) struct HistorySync {
    /// Each followed channel's.
    pub(super) channels: HashMap<ChannelId, SyncState>,
    /// Requests out, by channel.
    pub(super) requests: Requests<ChannelId>,
    /// Peers' requests to this node, per peer.
    pub(super) limiter: RateLimiter,
}

impl HistorySync {
    pub(super) fn new() -> Self {
        Self {
            channels: HashMap::new(),
            requests: Requests::default(),
            // Per peer: 50 sync requests/s (a page each, up to 256 posts: 12,800 posts/s),
            // bursts of 100.
            limiter: RateLimiter::new(50.0, 100.0),
        }
    }
}

impl EventLoop {
    /// Loads a channel's counters from the store (once per channel per start).
    pub(super) fn sync_init(&mut self, id: &ChannelId, owner: bool) {
        let mut counters = Counters::default();
        match (self.store.count(id), self.store.authors(id)) {
            (Ok(have), Ok(authors)) => {
                counters.have = have;
                for a in authors {
                    counters.expired = counters.expired.saturating_add(a.expired);
                    counters.heads.insert(a.author, a.max_seq);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(channel = %id, "cannot read history counters: {e}")
            }
        }
        self.sync
            .channels
            .insert(*id, ChannelSync::new(owner, counters));
    }

    /// A verified post or header was seen (live or from sync): learn its author's head.
    pub(super) fn note_seen(&mut self, channel: &ChannelId, author: [u8; 32], seq: u64) {
        if let Some(st) = self.sync.channels.get_mut(channel) {
            st.note_seen(author, seq, Instant::now());
        }
    }

    /// A post was durably stored.
    pub(super) fn note_inserted(&mut self, channel: &ChannelId) {
        if let Some(st) = self.sync.channels.get_mut(channel) {
            st.note_inserted();
        }
    }

    /// An expiry proof was durably stored.
    pub(super) fn note_tombstone(&mut self, channel: &ChannelId) {
        if let Some(st) = self.sync.channels.get_mut(channel) {
            st.note_tombstone();
        }
    }

    /// A post expired and was deleted.
    pub(super) fn note_expired(&mut self, channel: &ChannelId) {
        if let Some(st) = self.sync.channels.get_mut(channel) {
            st.note_expired();
        }
    }

    /// A channel wants syncing, or `from` just joined its topic: start now if idle and due.
    pub(super) fn want_sync(&mut self, id: &ChannelId, from: Option<PeerId>) {
        if let Some(st) = self.sync.channels.get_mut(id) {
            st.want(from);
            if !st.syncing() {
                self.sync_tick();
            }
        }
    }

    /// What clients see of a channel's sync.
    pub(crate) fn sync_status(&self, id: &ChannelId) -> Option<SyncStatus> {
        Some(self.sync.channels.get(id)?.status(id.to_string()))
    }

    fn emit_progress(&self, id: &ChannelId) {
        if let Some(status) = self.sync_status(id) {
            let _ = self.events.send(Event::SyncProgress { status });
        }
    }

    /// Starts sessions where due.
    pub(super) fn sync_tick(&mut self) {
        let now = Instant::now();
        let ids: Vec<ChannelId> = self.sync.channels.keys().copied().collect();
        for id in ids {
            let Some(topic) = self.channels.by_id.get(&id).map(|c| c.topic.hash()) else {
                continue;
            };
            let candidates: Vec<PeerId> = self
                .swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&topic))
                .map(|(p, _)| *p)
                .collect();
            let [r0, r1] = crate::crypto::random_bytes::<2>();
            let random = usize::from(u16::from_le_bytes([r0, r1]));
            let Some(st) = self.sync.channels.get_mut(&id) else {
                continue;
            };
            let (gave_up, start) = st.poll(now, &candidates, random);
            if gave_up {
                tracing::debug!(channel = %id, "sync peer did not answer: asking another");
                self.emit_progress(&id);
            }
            if let Some(peer) = start {
                self.start_session(id, peer);
            }
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
        self.sync.requests.insert(rid, id);
        if let Some(st) = self.sync.channels.get_mut(&id) {
            st.started(peer, rid, Instant::now());
        }
        tracing::debug!(channel = %id, %peer, "sync session started");
        self.emit_progress(&id);
    }

    /// Ends the session; `penalty` keeps a misbehaving or failing peer out of the next ones.
    fn finish_session(&mut self, id: &ChannelId, ok: bool, penalty: Option<std::time::Duration>) {
        if let Some(st) = self.sync.channels.get_mut(id) {
            if let Some(peer) = st.peer() {
                tracing::debug!(channel = %id, %peer, ok, "sync session finished");
            }
            st.finish(ok, penalty, Instant::now());
        }
        self.emit_progress(id);
    }

    /// A peer answered with something a follower must never be sent: the session ends, the
    /// peer is left alone, and its standing falls.
    fn sync_fault(&mut self, id: &ChannelId, peer: PeerId, why: &str) {
        tracing::warn!(channel = %id, %peer, "invalid sync answer refused: {why}");
        self.finish_session(id, false, Some(BAD_PAGE_PENALTY));
        self.penalise(peer, super::Offence::BadSyncAnswer);
    }

    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<Frame<v1::SyncRequest>, v1::SyncResponse>,
    ) {
        match self.sync.requests.on_event(event) {
            Exchange::Malformed { peer, why } => self.protocol_violation(peer, "sync", &why),
            Exchange::Request {
                peer,
                request,
                channel,
            } => {
                if !self.sync.limiter.allow(peer, Instant::now()) {
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
            Exchange::Response {
                peer,
                id: request_id,
                response,
                context: id,
            } => self.on_sync_response(peer, request_id, id, response),
            Exchange::Failed {
                peer,
                id: request_id,
                context: id,
                error,
            } => {
                tracing::debug!(channel = %id, %peer, "sync request failed: {error}");
                // Only if it is the current session's: one given up on may fail late.
                let current = self
                    .sync
                    .channels
                    .get(&id)
                    .and_then(|s| s.current(request_id, &peer))
                    .is_some();
                if current {
                    self.finish_session(&id, false, Some(FAILURE_PENALTY));
                }
            }
            Exchange::InboundFailed { peer, error } => {
                tracing::debug!(%peer, "inbound sync request failed: {error}");
            }
            Exchange::Nothing => {}
        }
    }

    fn on_sync_response(
        &mut self,
        peer: PeerId,
        rid: OutboundRequestId,
        id: ChannelId,
        resp: v1::SyncResponse,
    ) {
        let Some(current) = self
            .sync
            .channels
            .get(&id)
            .and_then(|s| s.current(rid, &peer))
        else {
            return;
        };
        match (resp.kind, current) {
            (Some(v1::sync_response::Kind::Heads(h)), None) => self.on_heads(&id, peer, h),
            (Some(v1::sync_response::Kind::Range(page)), Some(range)) => {
                self.on_page(&id, peer, range, page)
            }
            (Some(v1::sync_response::Kind::Error(e)), _) => {
                tracing::debug!(channel = %id, %peer, "peer refused sync: {e}");
                // Being told to slow down is not misbehaviour: resume on the next tick (the
                // new session starts where the store says this node is).
                let penalty = (e != "rate limited").then_some(FAILURE_PENALTY);
                self.finish_session(&id, false, penalty);
            }
            _ => self.sync_fault(&id, peer, "answer of the wrong kind"),
        }
    }

    fn on_heads(&mut self, id: &ChannelId, peer: PeerId, heads: v1::SyncHeadsResponse) {
        if let Err(why) = self.learn_channel_meta(
            id,
            heads.manifest.as_ref(),
            &heads.certs,
            &heads.revocations,
        ) {
            return self.sync_fault(id, peer, why);
        }
        let Some(st) = self.sync.channels.get(id) else {
            return;
        };
        let counters = st.counters();
        let proven = match check_heads(id, &heads, |a| counters.head(a), now_ms()) {
            Ok(p) => p,
            Err(e) => return self.sync_fault(id, peer, &e.to_string()),
        };
        // A revoked admin's chain ends where the owner said (the peer may not know yet).
        let proven: Vec<_> = proven
            .into_iter()
            .map(|mut h| {
                if let Some(last) = self.channels.by_id.get(id).and_then(|s| {
                    s.admins
                        .refuses(&h.author, h.max_seq)
                        .then(|| s.admins.revocation(&h.author).map(|r| r.last_seq))
                        .flatten()
                }) {
                    h.max_seq = last;
                    h.proof = None;
                }
                h
            })
            .filter(|h| h.max_seq > 0)
            .collect();
        let store = self.store.clone();
        let Some(st) = self.sync.channels.get_mut(id) else {
            return;
        };
        let next = st.on_heads(
            proven,
            |author, upto| {
                store.missing(id, author, upto).unwrap_or_else(|e| {
                    tracing::warn!("store: {e}");
                    Vec::new()
                })
            },
            Instant::now(),
        );
        self.follow_next(id, next);
    }

    fn follow_next(&mut self, id: &ChannelId, next: Next) {
        match next {
            Next::Request(peer, range) => self.request_range(id, peer, range),
            Next::Done => self.emit_progress(id),
        }
    }

    fn request_range(&mut self, id: &ChannelId, peer: PeerId, range: Range) {
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
        self.sync.requests.insert(rid, *id);
        if let Some(st) = self.sync.channels.get_mut(id) {
            st.requested(range, rid);
        }
    }

    fn on_page(&mut self, id: &ChannelId, peer: PeerId, range: Range, page: v1::SyncRangeResponse) {
        let (author, from, to) = range;
        tracing::trace!(channel = %id, %peer, from, to, posts = page.posts.len(), "sync page");
        // Ask for the next page before checking this one, so that the peer's reading and the
        // network overlap with the verification here. If this page is bad, the session ends
        // and the answer to that request is dropped.
        let continued = continuation(range, page.next_seq);
        if let Some(next) = continued {
            self.request_range(id, peer, next);
        }
        let known = self
            .channels
            .by_id
            .get(id)
            .and_then(|s| s.admins.cert(&author));
        let entries = match check_page(id, &author, from, to, &page, now_ms(), known) {
            Ok(v) => v,
            Err(e) => return self.sync_fault(id, peer, &e.to_string()),
        };
        let mut new = 0u64;
        let served = entries.len() as u64;
        for entry in entries {
            if self.revoked_post(id, &author, entry.seq()) {
                continue;
            }
            match self.chain_check(id, &author, entry.seq(), entry.id(), entry.prev()) {
                Ok(ChainCheck::New) => {}
                Ok(ChainCheck::Duplicate) => continue,
                Ok(ChainCheck::Conflict) => {
                    tracing::warn!(channel = %id, %peer, seq = entry.seq(), "sync page conflicts with held history");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("store: {e}");
                    continue;
                }
            }
            new = new.saturating_add(1);
            self.note_seen(id, author, entry.seq());
            let key = (*id, author, entry.seq());
            let pid = entry.id();
            let item = match entry {
                Entry::Post(p) => Item::Post(p),
                Entry::Expired(h) => Item::Tombstone(h),
            };
            if self
                .writer
                .submit(WriteRequest {
                    item,
                    origin: Origin::Remote,
                })
                .is_err()
            {
                // Writer saturated: stop here; the next session resumes from the gap.
                self.finish_session(id, false, None);
                return;
            }
            self.channels.in_flight.insert(key, pid);
        }
        let now = Instant::now();
        if new > 0
            && let Some(state) = self.channels.by_id.get_mut(id)
        {
            state.note_useful(peer, now);
        }
        if let Some(st) = self.sync.channels.get_mut(id) {
            st.delivered(served);
            if continued.is_none() {
                let next = st.next_range(now);
                self.follow_next(id, next);
            }
        }
        self.emit_progress(id);
    }

    /// Adopts a newer manifest and unknown admin certificates a peer holds (each verified).
    /// A manifest or certificate that does not verify is the peer's lie: an error.
    fn learn_channel_meta(
        &mut self,
        id: &ChannelId,
        manifest: Option<&v1::ChannelManifest>,
        certs: &[v1::AdminCert],
        revocations: &[v1::AdminRevocation],
    ) -> Result<(), &'static str> {
        if certs.len() > crate::sync::MAX_CERTS || revocations.len() > crate::sync::MAX_CERTS {
            return Err("too many certificates or revocations");
        }
        // Revocations first: a certificate they withdraw is then no news.
        for r in revocations {
            if self.revocation_is_news(id, r) {
                let r = crate::channel::AdminRevocation::verify(r.clone(), id)
                    .map_err(|_| "a forged admin revocation")?;
                self.adopt_revocation(r);
            }
        }
        if let Some(m) = manifest
            && self.manifest_is_news(id, m)
        {
            match Manifest::verify(m.clone()) {
                Ok(m) if m.channel == *id => {
                    self.adopt_manifest(m);
                }
                _ => return Err("a forged channel manifest"),
            }
        }
        for c in certs {
            if self.cert_is_news(id, c) {
                let cert =
                    AdminCert::verify(c.clone(), id).map_err(|_| "a forged admin certificate")?;
                self.adopt_cert(cert);
            }
        }
        Ok(())
    }

    /// Whether an encoded manifest differs from the one held (worth verifying).
    pub(super) fn manifest_is_news(&self, id: &ChannelId, m: &v1::ChannelManifest) -> bool {
        self.channels.by_id.get(id).is_some_and(|s| {
            s.manifest
                .as_ref()
                .is_none_or(|held| held.signed.encode_to_vec() != m.encode_to_vec())
        })
    }
}
