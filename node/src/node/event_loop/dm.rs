//! Direct messages in the event loop: starting conversations from KeyPackage records, sending
//! (straight to the peer, else through mailbox holders), receiving, and holding mail for
//! others. The cryptography is in [`crate::dm::mls`]; this is delivery and bookkeeping.
//!
//! Store layout (all values sealed): `Private::Messages` `index(peer) || sent_ms || id` →
//! StoredDm; `Private::Outbox` `E || index(peer) || sent_ms || envelope id` → envelope waiting
//! for delivery, `Q || index(peer) || sent_ms || id` → a message waiting for the peer's
//! KeyPackage, `X || expires_ms || message key` → expiry index; `Private::Mls` `state` →
//! MLS state, `kp` → own KeyPackage record, `c || index(peer)` → conversation.

#![warn(clippy::arithmetic_side_effects)]

use crate::net::wire::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::{self, QueryId, Quorum, Record};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use prost::Message as _;
use samizdat_proto::v1;

use super::EventLoop;
use crate::channel::now_ms;
use crate::dm::held::{Held, NotHeld};
use crate::dm::mailbox::{Mailbox, check_envelope, envelope_id};
use crate::dm::mls::{Incoming, MlsClient};
use crate::dm::{
    DmError, DmView, MAX_ENVELOPES_PER_REQUEST, MAX_HOLD_MS, MAX_TEXT_BYTES, check_body,
    keypackage_key, mailbox_key, open_keypackage_record, sign_keypackage_record,
};
use crate::node::NodeError;
use crate::node::views::Event;
use crate::store::{Private, Store, StoreError};

/// Most bytes of envelopes in one delivery (the frame limit is 3 MiB).
const DELIVER_BYTES: usize = 2 * 1024 * 1024;
/// How long an undelivered envelope is kept (and held by mailboxes).
const HOLD_MS: u64 = MAX_HOLD_MS;
/// Mailbox holders an envelope is deposited with.
const HOLDERS: usize = 4;
/// How long to wait for a direct delivery before depositing with holders.
const DEPOSIT_AFTER: Duration = Duration::from_secs(3);
/// How often envelopes still undelivered are deposited again (holders deduplicate).
const REDEPOSIT_EVERY: Duration = Duration::from_secs(300);
/// How often an offline peer is dialed for direct delivery.
const REDIAL_EVERY: Duration = Duration::from_secs(20);
/// How often a missing KeyPackage is looked up.
const KP_LOOKUP_EVERY: Duration = Duration::from_secs(5);
/// How often the own KeyPackage record is published again.
const KP_PUBLISH_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Longest pause between two visits to this node's mailbox holders.
const COLLECT_EVERY: Duration = Duration::from_secs(60);
/// A conversation's creator renews its keys after this many messages it sent.
const UPDATE_EVERY: u64 = 50;
/// How long this side's key-update proposal may wait for the committer's commit.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages waiting for a Welcome (or a commit) that has not arrived yet: a direct message is
/// a few KiB, and an honest peer has at most a handful on the way before its Welcome.
const EARLY: crate::dm::held::Limits = crate::dm::held::Limits {
    per_peer: 32,
    per_peer_bytes: 512 * 1024,
    total: 256,
    total_bytes: 4 * 1024 * 1024,
    max_item_bytes: 64 * 1024,
    ttl: Duration::from_secs(600),
};
/// How long a sender waits after a peer answered `busy` before delivering to it again.
const BUSY_BACKOFF: Duration = Duration::from_secs(30);
/// How long processed message ids are remembered (longer than any holder keeps mail).
const SEEN_FOR_MS: u64 = HOLD_MS + 24 * 3600 * 1000;

/// A conversation with one peer, as stored.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Conversation {
    peer: String,
    /// Its MLS groups (two when both sides started one at once); the smallest id is the one
    /// both sides send on.
    groups: Vec<Vec<u8>>,
    /// Groups this node created (it is their committer).
    created: Vec<Vec<u8>>,
    next_seq: u64,
    last_sent_ms: u64,
    sent_since_update: u64,
    /// Started by a peer this node does not know (not a contact, never accepted, never
    /// written to): a message request. Its messages are kept but not shown or announced, and
    /// nothing they mention is fetched, until the user accepts.
    #[serde(default)]
    request: bool,
}

impl Conversation {
    fn send_group(&self) -> Option<&Vec<u8>> {
        self.groups.iter().min()
    }
}

/// Delivery state of a peer with envelopes in the outbox.
#[derive(Debug)]
struct Delivery {
    since: Instant,
    in_flight: bool,
    /// No delivery attempt before this (after a failed one).
    retry_at: Option<Instant>,
    last_dial: Option<Instant>,
    last_deposit: Option<Instant>,
}

impl Delivery {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            in_flight: false,
            retry_at: None,
            last_dial: None,
            last_deposit: None,
        }
    }
}

/// What a `/samizdat/dm/1` request in flight was.
#[derive(Debug)]
pub(super) enum Sent {
    Deliver {
        peer: PeerId,
        keys: Vec<Vec<u8>>,
    },
    Deposit,
    Collect,
    /// A private group's catch-up.
    GroupSync(Vec<u8>),
}

/// What a closest-peers query was for.
#[derive(Debug, Clone, Copy)]
enum MailboxQuery {
    Deposit(PeerId),
    Collect,
}

/// Direct-message state of the event loop.
pub(crate) struct Direct {
    pub(super) mls: MlsClient,
    mailbox: Mailbox,
    conversations: HashMap<PeerId, Conversation>,
    /// Peers whose message requests the user accepted (they are known from then on).
    accepted: std::collections::HashSet<PeerId>,
    waiting: HashMap<PeerId, Delivery>,
    /// Peers with messages waiting for their KeyPackage, and when it was last looked up.
    pub(super) need_kp: HashMap<PeerId, Option<Instant>>,
    kp_queries: HashMap<QueryId, PeerId>,
    mailbox_queries: HashMap<QueryId, MailboxQuery>,
    pub(super) requests: HashMap<OutboundRequestId, Sent>,
    /// Messages of conversations this node has not joined yet (their Welcome is on its way)
    /// or of an epoch it has not reached, with their senders.
    early: Held<(PeerId, v1::DmEnvelope)>,
    /// When the own KeyPackage record is next published (None: as soon as the DHT is up).
    next_publish: Option<Instant>,
    publish_query: Option<QueryId>,
    last_collect: Option<Instant>,
    collect_every: Duration,
    last_housekeeping: Instant,
    /// Own key-update proposals waiting for the committer, by peer.
    proposed: HashMap<PeerId, (Vec<u8>, Instant)>,
    /// When the next direct message expires (None: not known, look).
    next_expiry: Option<u64>,
    /// Connected peers that speak `/samizdat/dm/1` (candidate mailbox holders).
    capable: std::collections::HashSet<PeerId>,
    /// Peers asked for this node's mail since it started.
    collected_from: std::collections::HashSet<PeerId>,
    limiter: crate::net::rate_limit::RateLimiter,
}

impl Direct {
    /// Loads the MLS state, conversations and outbox from the store.
    pub(crate) fn open(
        store: &std::sync::Arc<dyn Store>,
        key: libp2p::identity::ed25519::Keypair,
    ) -> Result<Self, NodeError> {
        // The plaintext state holds private keys: wiped once the client has parsed it.
        let state = store
            .private_get(Private::Mls, b"state")?
            .map(zeroize::Zeroizing::new);
        let mls = MlsClient::new(key, state.as_ref().map(|s| s.as_slice()))
            .map_err(|e| NodeError::InvalidInput(format!("direct messages: {e}")))?;
        let mut conversations = HashMap::new();
        for (_, v) in store.private_scan(Private::Mls, b"c")? {
            let c: Conversation =
                serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt("conversations"))?;
            if let Ok(peer) = c.peer.parse::<PeerId>() {
                conversations.insert(peer, c);
            }
        }
        let mut accepted = std::collections::HashSet::new();
        for (_, v) in store.private_scan(Private::Mls, b"a")? {
            if let Ok(peer) = PeerId::from_bytes(&v) {
                accepted.insert(peer);
            }
        }
        let mut waiting = HashMap::new();
        for (_, v) in store.private_scan(Private::Outbox, b"E")? {
            if let Some((_, env)) = decode_outgoing(&v)
                && let Ok(peer) = PeerId::from_bytes(&env.recipient)
            {
                waiting.insert(peer, Delivery::new());
            }
        }
        let mut need_kp = HashMap::new();
        for (_, v) in store.private_scan(Private::Outbox, b"Q")? {
            if let Ok(s) = v1::StoredDm::decode(v.as_slice())
                && let Ok(peer) = PeerId::from_bytes(&s.peer)
            {
                need_kp.insert(peer, None);
            }
        }
        Ok(Self {
            mls,
            mailbox: Mailbox::open(store.clone())?,
            conversations,
            accepted,
            waiting,
            need_kp,
            kp_queries: HashMap::new(),
            mailbox_queries: HashMap::new(),
            requests: HashMap::new(),
            early: Held::new(EARLY),
            next_publish: None,
            publish_query: None,
            last_collect: None,
            collect_every: Duration::from_secs(5),
            last_housekeeping: Instant::now(),
            proposed: HashMap::new(),
            next_expiry: None,
            capable: Default::default(),
            collected_from: Default::default(),
            // Per peer: 20 requests/s, bursts of 60 (each carries at most 64 envelopes).
            limiter: crate::net::rate_limit::RateLimiter::new(20.0, 60.0),
        })
    }
}

/// An outbox envelope's value: the key of the message it carries (empty for a Welcome or a
/// commit), then the envelope.
fn encode_outgoing(message_key: &[u8], env: &v1::DmEnvelope) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        message_key
            .len()
            .saturating_add(env.encoded_len())
            .saturating_add(2),
    );
    v.extend_from_slice(&(message_key.len() as u16).to_be_bytes());
    v.extend_from_slice(message_key);
    env.encode(&mut v).ok();
    v
}

fn decode_outgoing(v: &[u8]) -> Option<(Vec<u8>, v1::DmEnvelope)> {
    let len = u16::from_be_bytes(v.get(..2)?.try_into().ok()?) as usize;
    let end = len.checked_add(2)?;
    let key = v.get(2..end)?.to_vec();
    let env = v1::DmEnvelope::decode(v.get(end..)?).ok()?;
    Some((key, env))
}

impl EventLoop {
    pub(super) fn dm_index(&self, peer: &PeerId) -> [u8; 16] {
        self.store.index(b"dm", &peer.to_bytes())
    }

    pub(super) fn save_mls(&self) -> Result<(), NodeError> {
        self.store
            .private_put(Private::Mls, b"state", &self.dm.mls.export())?;
        Ok(())
    }

    pub(super) fn save_conversation(&self, peer: &PeerId) -> Result<(), NodeError> {
        if let Some(c) = self.dm.conversations.get(peer) {
            let mut k = b"c".to_vec();
            k.extend_from_slice(&self.dm_index(peer));
            let v = serde_json::to_vec(c).map_err(|e| NodeError::Internal(e.to_string()))?;
            self.store.private_put(Private::Mls, &k, &v)?;
        }
        Ok(())
    }

    /// Sends a direct message: stored at once, delivered when a route exists.
    pub(super) fn dm_send(
        &mut self,
        peer: PeerId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
    ) -> Result<DmView, NodeError> {
        let me = *self.swarm.local_peer_id();
        if peer == me {
            return Err(NodeError::InvalidInput(
                "a direct message needs another peer".into(),
            ));
        }
        if text.trim().is_empty() {
            return Err(NodeError::InvalidInput("empty message".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(NodeError::InvalidInput(format!(
                "message too long: {} bytes (at most {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        if self.dm.conversations.get(&peer).is_some_and(|c| c.request) {
            // Answering a message request accepts it.
            self.accept_requests(&peer)?;
        }
        let conv = self
            .dm
            .conversations
            .entry(peer)
            .or_insert_with(|| Conversation {
                peer: peer.to_string(),
                ..Default::default()
            });
        let sent_ms = now_ms().max(conv.last_sent_ms.saturating_add(1));
        conv.last_sent_ms = sent_ms;
        conv.next_seq = conv.next_seq.saturating_add(1);
        let body = v1::DmBody {
            id: crate::crypto::random_bytes::<16>().to_vec(),
            text,
            sent_ms,
            seq: conv.next_seq,
            expires_at_ms: expires_in.map_or(0, |d| {
                sent_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            attachment,
        };
        let has_group = conv.send_group().is_some();
        self.save_conversation(&peer)?;
        let stored = v1::StoredDm {
            peer: peer.to_bytes(),
            outgoing: true,
            body: Some(body.clone()),
            received_ms: 0,
        };
        let key = self.store_dm(&stored)?;
        if !has_group || !self.encrypt_and_queue(&peer, &body, &key)? {
            let mut q = b"Q".to_vec();
            q.extend_from_slice(&key);
            self.store
                .private_put(Private::Outbox, &q, &stored.encode_to_vec())?;
            if !has_group {
                self.dm.need_kp.entry(peer).or_insert(None);
                self.lookup_keypackages();
            }
        }
        self.try_deliver(&peer);
        DmView::of(&me, &stored).ok_or_else(|| NodeError::InvalidInput("bad message".into()))
    }

    /// Stores a message (either direction); returns its key.
    fn store_dm(&mut self, stored: &v1::StoredDm) -> Result<Vec<u8>, NodeError> {
        let peer = PeerId::from_bytes(&stored.peer)
            .map_err(|_| NodeError::InvalidInput("bad peer".into()))?;
        let body = stored.body.as_ref().ok_or(StoreError::Corrupt("dm"))?;
        let mut key = self.dm_index(&peer).to_vec();
        key.extend_from_slice(&body.sent_ms.to_be_bytes());
        key.extend_from_slice(&body.id);
        self.store
            .private_put(Private::Messages, &key, &stored.encode_to_vec())?;
        if body.expires_at_ms != 0 {
            let mut x = b"X".to_vec();
            x.extend_from_slice(&body.expires_at_ms.to_be_bytes());
            x.extend_from_slice(&key);
            self.store.private_put(Private::Outbox, &x, b"")?;
            // (None means "not known yet": the next pass looks at every entry anyway.)
            if let Some(next) = self.dm.next_expiry
                && body.expires_at_ms < next
            {
                self.dm.next_expiry = Some(body.expires_at_ms);
            }
        }
        Ok(key)
    }

    /// Encrypts a message into the outbox; false when it must wait (queued by the caller).
    fn encrypt_and_queue(
        &mut self,
        peer: &PeerId,
        body: &v1::DmBody,
        message_key: &[u8],
    ) -> Result<bool, NodeError> {
        let Some(conv) = self.dm.conversations.get_mut(peer) else {
            return Ok(false);
        };
        let Some(group) = conv.send_group().cloned() else {
            return Ok(false);
        };
        let ct = match self.dm.mls.encrypt(&group, &body.encode_to_vec()) {
            Ok(ct) => ct,
            Err(DmError::PendingUpdate) => {
                // (After a restart the proposal's time is unknown: it gets a fresh timeout.)
                self.dm
                    .proposed
                    .entry(*peer)
                    .or_insert_with(|| (group.clone(), Instant::now()));
                return Ok(false);
            }
            Err(e) => return Err(NodeError::InvalidInput(format!("encrypt: {e}"))),
        };
        let Some(conv) = self.dm.conversations.get_mut(peer) else {
            return Ok(false);
        };
        conv.sent_since_update = conv.sent_since_update.saturating_add(1);
        let committer = conv.created.contains(&group);
        // The other side proposes only while the committer is there to commit at once: its
        // own messages wait until the commit arrives (MLS sends nothing over a proposal).
        let update =
            conv.sent_since_update >= UPDATE_EVERY && (committer || self.swarm.is_connected(peer));
        // The ratchet moved: the state must be on disk before the ciphertext leaves, or a
        // crash would make this node reuse a message key.
        self.save_mls()?;
        self.queue_envelope(peer, body.sent_ms, ct, message_key)?;
        if update {
            // Post-compromise security: the conversation's committer renews its keys with a
            // commit; the other member proposes its renewal for the committer to commit (one
            // committer per group, so the two sides never fork it).
            let renewal = if committer {
                self.dm.mls.update(&group)
            } else {
                self.dm.mls.propose_update(&group)
            };
            match renewal {
                Ok(handshake) => {
                    self.save_mls()?;
                    let t = self.next_sent_ms(peer);
                    self.queue_envelope(peer, t, handshake, b"")?;
                    if let Some(c) = self.dm.conversations.get_mut(peer) {
                        c.sent_since_update = 0;
                    }
                    if !committer {
                        self.dm
                            .proposed
                            .insert(*peer, (group.clone(), Instant::now()));
                    }
                }
                Err(e) => tracing::warn!("key update: {e}"),
            }
        }
        self.save_conversation(peer)?;
        Ok(true)
    }

    fn next_sent_ms(&mut self, peer: &PeerId) -> u64 {
        let c = self.dm.conversations.entry(*peer).or_default();
        c.last_sent_ms = now_ms().max(c.last_sent_ms.saturating_add(1));
        c.last_sent_ms
    }

    fn queue_envelope(
        &mut self,
        peer: &PeerId,
        sent_ms: u64,
        mls_message: Vec<u8>,
        message_key: &[u8],
    ) -> Result<(), NodeError> {
        self.queue_envelope_with(peer, sent_ms, mls_message, message_key, Vec::new())
    }

    /// Queues an envelope for `peer`; `group_invite` is set on a private group's Welcome.
    pub(super) fn queue_envelope_with(
        &mut self,
        peer: &PeerId,
        sent_ms: u64,
        mls_message: Vec<u8>,
        message_key: &[u8],
        group_invite: Vec<u8>,
    ) -> Result<(), NodeError> {
        let env = v1::DmEnvelope {
            sender: self.swarm.local_peer_id().to_bytes(),
            recipient: peer.to_bytes(),
            sent_ms,
            expires_ms: sent_ms.saturating_add(HOLD_MS),
            mls_message,
            group_invite,
        };
        let mut k = b"E".to_vec();
        k.extend_from_slice(&self.dm_index(peer));
        k.extend_from_slice(&sent_ms.to_be_bytes());
        k.extend_from_slice(&envelope_id(&env)[..8]);
        self.store
            .private_put(Private::Outbox, &k, &encode_outgoing(message_key, &env))?;
        self.dm.waiting.entry(*peer).or_insert_with(Delivery::new);
        Ok(())
    }

    /// Every conversation this node has, the most recently active first.
    pub(super) fn dm_conversations(&self) -> Result<Vec<crate::dm::DmConversationView>, NodeError> {
        let names: HashMap<PeerId, String> = self
            .store
            .contacts()?
            .into_iter()
            .map(|c| (c.peer_id, c.name))
            .collect();
        let mut list = Vec::with_capacity(self.dm.conversations.len());
        for (peer, _) in self.dm.conversations.iter().filter(|(_, c)| !c.request) {
            let mut history = self.dm_history(peer)?;
            list.push(crate::dm::DmConversationView {
                peer: peer.to_string(),
                name: names.get(peer).filter(|n| !n.is_empty()).cloned(),
                count: history.len(),
                last: history.pop(),
            });
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(0, |m| m.timestamp)));
        Ok(list)
    }

    /// A page of a conversation, oldest first.
    pub(super) fn dm_history(&self, peer: &PeerId) -> Result<Vec<DmView>, NodeError> {
        let me = *self.swarm.local_peer_id();
        Ok(self
            .store
            .private_scan(Private::Messages, &self.dm_index(peer))?
            .into_iter()
            .filter_map(|(_, v)| v1::StoredDm::decode(v.as_slice()).ok())
            .filter_map(|s| DmView::of(&me, &s))
            .collect())
    }

    // ----- delivery -------------------------------------------------------------------------

    fn outbox_for(&self, peer: &PeerId) -> Vec<(Vec<u8>, Vec<u8>, v1::DmEnvelope)> {
        let mut prefix = b"E".to_vec();
        prefix.extend_from_slice(&self.dm_index(peer));
        self.store
            .private_scan(Private::Outbox, &prefix)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| decode_outgoing(&v).map(|(mk, env)| (k, mk, env)))
            .collect()
    }

    pub(super) fn try_deliver(&mut self, peer: &PeerId) {
        let connected = self.swarm.is_connected(peer);
        let Some(d) = self.dm.waiting.get_mut(peer) else {
            return;
        };
        if d.in_flight || d.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let due = |t: Option<Instant>, every: Duration| t.is_none_or(|t| t.elapsed() >= every);
        let dial = !connected && due(d.last_dial, REDIAL_EVERY);
        let deposit = d.since.elapsed() >= DEPOSIT_AFTER && due(d.last_deposit, REDEPOSIT_EVERY);
        if dial {
            d.last_dial = Some(Instant::now());
        }
        if deposit {
            d.last_deposit = Some(Instant::now());
        }
        if !connected && !dial && !deposit {
            return;
        }
        let outbox = self.outbox_for(peer);
        if outbox.is_empty() {
            self.dm.waiting.remove(peer);
            return;
        }
        if connected {
            // Bounded by count and by bytes (a group's Welcome can be close to a megabyte).
            let mut bytes = 0;
            let batch: Vec<_> = outbox
                .into_iter()
                .take(MAX_ENVELOPES_PER_REQUEST)
                .take_while(|(_, _, e)| {
                    bytes = e.encoded_len().saturating_add(bytes);
                    bytes <= DELIVER_BYTES || bytes == e.encoded_len()
                })
                .collect();
            let keys = batch.iter().map(|(k, _, _)| k.clone()).collect();
            let envelopes = batch.into_iter().map(|(_, _, e)| e).collect();
            let req = v1::DmRequest {
                kind: Some(v1::dm_request::Kind::Deliver(v1::DmDeliver { envelopes })),
            };
            let id = self
                .swarm
                .behaviour_mut()
                .dm
                .send_request(peer, Frame::Valid(req));
            self.dm
                .requests
                .insert(id, Sent::Deliver { peer: *peer, keys });
            if let Some(d) = self.dm.waiting.get_mut(peer) {
                d.in_flight = true;
            }
            return;
        }
        if dial {
            // Addresses come from the contact card, the DHT and the peer cache.
            let _ = self.swarm.dial(*peer);
        }
        if deposit {
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(mailbox_key(peer));
            self.dm
                .mailbox_queries
                .insert(q, MailboxQuery::Deposit(*peer));
        }
    }

    pub(super) fn lookup_keypackages(&mut self) {
        let due: Vec<PeerId> = self
            .dm
            .need_kp
            .iter()
            .filter(|(_, t)| t.is_none_or(|t| t.elapsed() >= KP_LOOKUP_EVERY))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.dm.kp_queries.values().any(|p| *p == peer) {
                continue;
            }
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_record(keypackage_key(&peer));
            self.dm.kp_queries.insert(q, peer);
            self.dm.need_kp.insert(peer, Some(Instant::now()));
        }
    }

    /// Housekeeping, once a second.
    pub(super) fn dm_tick(&mut self) {
        let aged = self.dm.early.expire(Instant::now());
        if aged > 0 {
            tracing::debug!(
                aged,
                "messages that waited too long for their Welcome dropped"
            );
        }
        let peers: Vec<PeerId> = self.dm.waiting.keys().copied().collect();
        for p in peers {
            self.try_deliver(&p);
        }
        self.lookup_keypackages();
        // A proposal the committer did not commit in time is withdrawn, so this side can send
        // again (it proposes anew later).
        let stale: Vec<(PeerId, Vec<u8>)> = self
            .dm
            .proposed
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= PROPOSAL_TIMEOUT)
            .map(|(p, (g, _))| (*p, g.clone()))
            .collect();
        for (peer, group) in stale {
            self.dm.proposed.remove(&peer);
            if self.dm.mls.clear_proposals(&group).is_ok() && self.save_mls().is_ok() {
                tracing::debug!(%peer, "key update withdrawn: the committer did not answer");
                let _ = self.flush_queued(&peer);
            }
        }
        if self.kad_bootstrapped {
            if self.dm.next_publish.is_none_or(|t| t <= Instant::now()) {
                self.publish_keypackage();
            }
            if self
                .dm
                .last_collect
                .is_none_or(|t| t.elapsed() >= self.dm.collect_every)
            {
                self.collect_mail();
            }
        }
        self.expire_dms();
        if self.dm.last_housekeeping.elapsed() >= Duration::from_secs(600) {
            self.dm.last_housekeeping = Instant::now();
            self.group_housekeeping();
            let now = now_ms();
            let dropped = self.dm.mailbox.expire(now);
            if dropped > 0 {
                tracing::debug!(dropped, "expired mail dropped");
            }
            for (k, v) in self
                .store
                .private_scan(Private::Seen, &[])
                .unwrap_or_default()
            {
                let at = v.try_into().map(u64::from_be_bytes).unwrap_or(0);
                if at.saturating_add(SEEN_FOR_MS) < now {
                    let _ = self.store.private_remove(Private::Seen, &k);
                }
            }
        }
    }

    /// A connection to `peer` opened: deliver what waits for it.
    pub(super) fn dm_on_connected(&mut self, peer: &PeerId) {
        if let Some(d) = self.dm.waiting.get_mut(peer) {
            d.last_dial = None;
            d.retry_at = None;
            self.try_deliver(peer);
        }
    }

    /// A peer told what it speaks: a Samizdat node may hold mail for this one.
    pub(super) fn dm_on_identified(&mut self, peer: PeerId, protocols: &[libp2p::StreamProtocol]) {
        if !protocols.contains(&crate::net::wire::DM_PROTOCOL) {
            return;
        }
        self.dm.capable.insert(peer);
        // Coming back online: ask each peer met for mail once, without waiting for the DHT.
        if self.dm.collected_from.insert(peer) {
            self.send_collect(peer);
        }
    }

    pub(super) fn dm_on_disconnected(&mut self, peer: &PeerId) {
        self.dm.capable.remove(peer);
    }

    fn send_collect(&mut self, peer: PeerId) {
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Collect(v1::DmCollect {})),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(&peer, Frame::Valid(req));
        self.dm.requests.insert(id, Sent::Collect);
    }

    /// Where mail for `recipient` is left or looked for: the DHT peers closest to its mailbox
    /// key (which both sides find alike), then connected Samizdat peers (in a small network
    /// the DHT may not list them yet).
    fn holders(&self, closest: Vec<PeerId>, recipient: &PeerId, max: usize) -> Vec<PeerId> {
        let me = *self.swarm.local_peer_id();
        let mut out: Vec<PeerId> = Vec::new();
        let mut connected: Vec<PeerId> = self.dm.capable.iter().copied().collect();
        connected.sort();
        for p in closest.into_iter().chain(connected) {
            if p != me && p != *recipient && !out.contains(&p) && out.len() < max {
                out.push(p);
            }
        }
        out
    }

    fn publish_keypackage(&mut self) {
        // Retried soon if this attempt fails; pushed back on success.
        self.dm.next_publish = Instant::now().checked_add(Duration::from_secs(30));
        let record = match self.store.private_get(Private::Mls, b"kp") {
            Ok(Some(r)) => r,
            _ => {
                let kp = match self.dm.mls.key_package() {
                    Ok(kp) => kp,
                    Err(e) => {
                        tracing::warn!("key package: {e}");
                        return;
                    }
                };
                if self.save_mls().is_err() {
                    return;
                }
                let r = sign_keypackage_record(self.identity.signing(), kp);
                let _ = self.store.private_put(Private::Mls, b"kp", &r);
                r
            }
        };
        let me = *self.swarm.local_peer_id();
        let mut rec = Record::new(keypackage_key(&me), record);
        rec.publisher = Some(me);
        match self.swarm.behaviour_mut().kad.put_record(rec, Quorum::One) {
            Ok(q) => self.dm.publish_query = Some(q),
            Err(e) => tracing::debug!("cannot publish key package: {e}"),
        }
    }

    fn collect_mail(&mut self) {
        self.dm.last_collect = Some(Instant::now());
        self.dm.collect_every = self.dm.collect_every.saturating_mul(2).min(COLLECT_EVERY);
        let me = *self.swarm.local_peer_id();
        let q = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_peers(mailbox_key(&me));
        self.dm.mailbox_queries.insert(q, MailboxQuery::Collect);
    }

    fn expire_dms(&mut self) {
        let now = now_ms();
        if self.dm.next_expiry.is_some_and(|t| t > now) {
            return;
        }
        self.dm.next_expiry = self.sweep_expired(b'X', Private::Messages, now);
    }

    /// Deletes the messages of `tree` whose expiry keys (`tag || expires_ms || message key` in
    /// the outbox tree) are due; returns when the next one is due.
    pub(super) fn sweep_expired(&self, tag: u8, tree: Private, now: u64) -> Option<u64> {
        let items = self.store.private_scan(Private::Outbox, &[tag]).ok()?;
        for (k, _) in items {
            let Some(at) = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            if at > now {
                return Some(at); // keys are in expiry order
            }
            let _ = self.store.private_remove(tree, &k[9..]);
            let _ = self.store.private_remove(Private::Outbox, &k);
            tracing::debug!(tree = tree.name(), "message expired and deleted");
        }
        Some(u64::MAX)
    }

    /// A KeyPackage record or a closest-peers answer for direct messages.
    pub(super) fn dm_on_kad(&mut self, id: QueryId, result: &kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                if let Some(peer) = self.dm.kp_queries.get(&id).copied() {
                    self.adopt_keypackage(&peer, &found.record);
                }
            }
            kad::QueryResult::PutRecord(r) if self.dm.publish_query == Some(id) => {
                self.dm.publish_query = None;
                match r {
                    Ok(_) => {
                        tracing::info!("key package published");
                        self.dm.next_publish = Instant::now().checked_add(KP_PUBLISH_EVERY);
                    }
                    Err(e) => tracing::debug!("key package not published yet: {e}"),
                }
            }
            kad::QueryResult::GetClosestPeers(Ok(ok)) => {
                if let Some(q) = self.dm.mailbox_queries.remove(&id) {
                    let peers: Vec<PeerId> = ok.peers.iter().map(|p| p.peer_id).collect();
                    self.on_mailbox_holders(q, peers);
                }
            }
            kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                peers,
                ..
            })) => {
                if let Some(q) = self.dm.mailbox_queries.remove(&id) {
                    let peers: Vec<PeerId> = peers.iter().map(|p| p.peer_id).collect();
                    self.on_mailbox_holders(q, peers);
                }
            }
            _ => {}
        }
        if last {
            self.dm.kp_queries.remove(&id);
            self.dm.mailbox_queries.remove(&id);
        }
    }

    pub(super) fn dm_owns_query(&self, id: &QueryId) -> bool {
        self.dm.kp_queries.contains_key(id)
            || self.dm.mailbox_queries.contains_key(id)
            || self.dm.publish_query == Some(*id)
    }

    fn adopt_keypackage(&mut self, peer: &PeerId, record: &Record) {
        if !self.dm.need_kp.contains_key(peer) {
            return;
        }
        let wanted_by_groups = self.group_wants_keypackage(peer);
        let kp = match open_keypackage_record(&record.key, &record.value) {
            Ok(r) if r.peer == *peer => r,
            Ok(_) | Err(_) => {
                tracing::debug!(%peer, "invalid key package record ignored");
                return;
            }
        };
        if wanted_by_groups {
            self.groups_on_keypackage(peer, &kp.key_package);
        }
        // Only direct messages waiting for the peer start a conversation with it.
        if !self.dm_queued_for(peer) {
            self.dm.need_kp.remove(peer);
            return;
        }
        if let Err(e) = self.start_conversation(peer, &kp.key_package) {
            tracing::warn!(%peer, "cannot start a conversation: {e}");
        }
    }

    fn dm_queued_for(&self, peer: &PeerId) -> bool {
        let mut prefix = b"Q".to_vec();
        prefix.extend_from_slice(&self.dm_index(peer));
        self.store
            .private_scan(Private::Outbox, &prefix)
            .is_ok_and(|q| !q.is_empty())
    }

    fn start_conversation(&mut self, peer: &PeerId, key_package: &[u8]) -> Result<(), NodeError> {
        let have_group = self
            .dm
            .conversations
            .get(peer)
            .is_some_and(|c| c.send_group().is_some());
        if !have_group {
            let (group, welcome) = self
                .dm
                .mls
                .start(peer, key_package)
                .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
            self.save_mls()?;
            let conv = self.dm.conversations.entry(*peer).or_default();
            conv.peer = peer.to_string();
            conv.groups.push(group.clone());
            conv.created.push(group);
            self.save_conversation(peer)?;
            // The Welcome goes first (envelopes go out and are read in sent_ms order): before
            // the messages that waited for this KeyPackage, which keep their own times.
            let mut prefix = b"Q".to_vec();
            prefix.extend_from_slice(&self.dm_index(peer));
            let first_queued = self
                .store
                .private_scan(Private::Outbox, &prefix)?
                .iter()
                .filter_map(|(k, _)| k.get(17..25)?.try_into().ok().map(u64::from_be_bytes))
                .min();
            let t = self.next_sent_ms(peer);
            let t = first_queued.map_or(t, |q| q.saturating_sub(1).min(t));
            self.queue_envelope(peer, t, welcome, b"")?;
            tracing::info!(%peer, "conversation started");
        }
        self.dm.need_kp.remove(peer);
        let mut prefix = b"Q".to_vec();
        prefix.extend_from_slice(&self.dm_index(peer));
        self.flush_queued(peer)
    }

    /// Encrypts and sends the messages that waited (for a KeyPackage, or for a key update to be
    /// committed), oldest first; stops at the first that must wait again.
    fn flush_queued(&mut self, peer: &PeerId) -> Result<(), NodeError> {
        let mut prefix = b"Q".to_vec();
        prefix.extend_from_slice(&self.dm_index(peer));
        for (k, v) in self.store.private_scan(Private::Outbox, &prefix)? {
            if let Ok(s) = v1::StoredDm::decode(v.as_slice())
                && let Some(body) = s.body
                && !self.encrypt_and_queue(peer, &body, &k[1..])?
            {
                break;
            }
            self.store.private_remove(Private::Outbox, &k)?;
        }
        self.try_deliver(peer);
        Ok(())
    }

    fn on_mailbox_holders(&mut self, q: MailboxQuery, peers: Vec<PeerId>) {
        let me = *self.swarm.local_peer_id();
        match q {
            MailboxQuery::Deposit(recipient) => {
                // Bounded by count and by bytes, like a delivery: a frame over the holder's
                // limit would be refused (and counted against this node).
                let mut bytes = 0;
                let envelopes: Vec<v1::DmEnvelope> = self
                    .outbox_for(&recipient)
                    .into_iter()
                    .take(MAX_ENVELOPES_PER_REQUEST)
                    .take_while(|(_, _, e)| {
                        bytes = e.encoded_len().saturating_add(bytes);
                        bytes <= DELIVER_BYTES || bytes == e.encoded_len()
                    })
                    .map(|(_, _, e)| e)
                    .collect();
                if envelopes.is_empty() {
                    return;
                }
                let holders = self.holders(peers, &recipient, HOLDERS + 2);
                for p in &holders {
                    let req = v1::DmRequest {
                        kind: Some(v1::dm_request::Kind::Deposit(v1::DmDeposit {
                            envelopes: envelopes.clone(),
                        })),
                    };
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .dm
                        .send_request(p, Frame::Valid(req));
                    self.dm.requests.insert(id, Sent::Deposit);
                }
                tracing::debug!(%recipient, holders = holders.len(), "mail deposited for an offline peer");
            }
            MailboxQuery::Collect => {
                for p in self.holders(peers, &me, HOLDERS * 2) {
                    self.dm.collected_from.insert(p);
                    self.send_collect(p);
                }
            }
        }
    }

    // ----- the protocol ---------------------------------------------------------------------

    pub(super) fn on_dm_event(
        &mut self,
        event: request_response::Event<Frame<v1::DmRequest>, v1::DmResponse>,
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
            } => self.protocol_violation(peer, "direct-message", &why),
            E::Message {
                peer,
                message:
                    M::Request {
                        request: Frame::Valid(request),
                        channel,
                        ..
                    },
                ..
            } => self.answer_dm(peer, request, channel),
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_dm_response(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "direct-message request failed: {error}");
                match self.dm.requests.remove(&request_id) {
                    Some(Sent::Deliver { peer, .. }) => {
                        if let Some(d) = self.dm.waiting.get_mut(&peer) {
                            d.in_flight = false;
                            d.retry_at = Instant::now().checked_add(Duration::from_secs(10));
                        }
                    }
                    Some(Sent::GroupSync(group)) => self.on_group_sync_failed(&group),
                    _ => {}
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "direct-message request from peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn answer_dm(
        &mut self,
        peer: PeerId,
        request: v1::DmRequest,
        channel: ResponseChannel<v1::DmResponse>,
    ) {
        let mut resp = v1::DmResponse::default();
        if !self.dm.limiter.allow(peer, Instant::now()) {
            resp.error = "rate limited".into();
            let _ = self.swarm.behaviour_mut().dm.send_response(channel, resp);
            return;
        }
        let now = now_ms();
        let me = *self.swarm.local_peer_id();
        match request.kind {
            Some(v1::dm_request::Kind::Deliver(d)) => {
                for env in d.envelopes.into_iter().take(MAX_ENVELOPES_PER_REQUEST) {
                    match check_envelope(&env, now) {
                        Ok((sender, recipient)) if sender == peer && recipient == me => {
                            match self.receive_envelope(&peer, &peer, env) {
                                // Not taken: the sender keeps it (and the rest) and tries
                                // again later. `accepted` counts a prefix.
                                Err(DmError::Busy) => {
                                    resp.error = DmError::Busy.to_string();
                                    break;
                                }
                                Err(e) => {
                                    tracing::debug!(%peer, "direct message refused: {e}");
                                    resp.error = e.to_string();
                                }
                                Ok(()) => {}
                            }
                        }
                        Ok(_) => resp.error = "envelope not from this peer to this node".into(),
                        Err(e) => resp.error = e.to_string(),
                    }
                    resp.accepted = resp.accepted.saturating_add(1);
                }
            }
            Some(v1::dm_request::Kind::Deposit(d)) => {
                let mut over_quota = false;
                for env in d.envelopes.iter().take(MAX_ENVELOPES_PER_REQUEST) {
                    match self.dm.mailbox.deposit(&peer, env, now) {
                        Ok(()) => resp.accepted = resp.accepted.saturating_add(1),
                        Err(e) => {
                            over_quota |= e == crate::dm::mailbox::Refused::SenderQuota;
                            resp.error = e.to_string();
                        }
                    }
                }
                // An honest sender re-deposits its outbox every few minutes and may meet its
                // quota now and then; one that keeps pushing past it is flooding.
                if over_quota {
                    self.penalise(peer, super::Offence::MailOverQuota);
                }
                if resp.accepted > 0 {
                    let (envelopes, bytes) = self.dm.mailbox.totals();
                    tracing::debug!(%peer, accepted = resp.accepted, envelopes, bytes, "mail held for an offline peer");
                }
            }
            Some(v1::dm_request::Kind::GroupSync(q)) => {
                self.answer_group_sync(&peer, &q, &mut resp)
            }
            Some(v1::dm_request::Kind::Collect(_)) => {
                resp.envelopes = self.dm.mailbox.collect(&peer, now);
                resp.accepted = resp.envelopes.len() as u32;
                if resp.accepted > 0 {
                    tracing::debug!(%peer, envelopes = resp.accepted, "mail handed over");
                }
            }
            None => resp.error = "empty request".into(),
        }
        let _ = self.swarm.behaviour_mut().dm.send_response(channel, resp);
    }

    fn on_dm_response(&mut self, peer: PeerId, id: OutboundRequestId, resp: v1::DmResponse) {
        match self.dm.requests.remove(&id) {
            Some(Sent::Deliver { peer, keys }) => {
                let taken = (resp.accepted as usize).min(keys.len());
                for k in &keys[..taken] {
                    if let Ok(Some(v)) = self.store.private_get(Private::Outbox, k)
                        && let Some((mk, _)) = decode_outgoing(&v)
                    {
                        self.mark_delivered(&mk);
                    }
                    let _ = self.store.private_remove(Private::Outbox, k);
                }
                if !resp.error.is_empty() {
                    tracing::debug!(%peer, "peer refused part of a delivery: {}", resp.error);
                }
                if let Some(d) = self.dm.waiting.get_mut(&peer) {
                    d.in_flight = false;
                    d.since = Instant::now();
                    d.last_deposit = None;
                    // Too much of ours waits there for a Welcome: give it time.
                    if resp.error == DmError::Busy.to_string() {
                        d.retry_at = Instant::now().checked_add(BUSY_BACKOFF);
                    }
                }
                if taken > 0 {
                    self.try_deliver(&peer);
                }
            }
            Some(Sent::GroupSync(group)) => self.on_group_sync(peer, group, resp),
            Some(Sent::Deposit) => {
                tracing::debug!(%peer, accepted = resp.accepted, error = %resp.error, "deposit answered");
            }
            Some(Sent::Collect) => {
                let me = *self.swarm.local_peer_id();
                let mut envs = resp.envelopes;
                envs.truncate(4 * MAX_ENVELOPES_PER_REQUEST);
                envs.sort_by_key(|e| e.sent_ms);
                let now = now_ms();
                let mut got = 0u32;
                for env in envs {
                    match check_envelope(&env, now) {
                        Ok((sender, recipient)) if recipient == me => {
                            match self.receive_envelope(&sender, &peer, env) {
                                Ok(()) => got = got.saturating_add(1),
                                Err(e) => tracing::debug!("collected mail refused: {e}"),
                            }
                        }
                        _ => tracing::debug!(%peer, "holder returned an envelope not for us"),
                    }
                }
                if got > 0 {
                    tracing::debug!(%peer, got, "mail collected");
                }
            }
            None => {}
        }
    }

    fn mark_delivered(&mut self, message_key: &[u8]) {
        if message_key.is_empty() {
            return;
        }
        if let Ok(Some(v)) = self.store.private_get(Private::Messages, message_key)
            && let Ok(mut s) = v1::StoredDm::decode(v.as_slice())
        {
            s.received_ms = now_ms();
            let _ = self
                .store
                .private_put(Private::Messages, message_key, &s.encode_to_vec());
            if let Some(view) = DmView::of(self.swarm.local_peer_id(), &s) {
                let _ = self.events.send(Event::DirectMessage { message: view });
            }
        }
    }

    /// Processes one envelope from `from` (already checked for form), handed over by `via`
    /// (`from` itself, or a mail holder): once, even if it comes again directly and from
    /// several holders. `DmError::Busy`: `via` has too much waiting already; not taken.
    fn receive_envelope(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        env: v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let id = envelope_id(&env);
        if matches!(
            self.store.private_get(Private::Seen, &id[..16]),
            Ok(Some(_))
        ) {
            return Ok(());
        }
        if !env.group_invite.is_empty() {
            self.receive_group_invite(from, &env)?;
            let _ = self
                .store
                .private_put(Private::Seen, &id[..16], &now_ms().to_be_bytes());
            return Ok(());
        }
        if let Some(group) = self.group_of_message(&env.mls_message) {
            // A group's message sent straight to one member (the commit that removes it):
            // processed as the group's, never as a direct message.
            let wire = v1::GroupWire {
                sent_ms: env.sent_ms,
                mls_message: env.mls_message,
            };
            return self.receive_group_wire(&group, wire, *via).map(|_| ());
        }
        let incoming = match self.dm.mls.receive(from, &env.mls_message) {
            Err(DmError::UnknownGroup) => return self.hold_early(from, via, id, env),
            other => other?,
        };
        let _ = self.save_mls();
        let _ = self
            .store
            .private_put(Private::Seen, &id[..16], &now_ms().to_be_bytes());
        match incoming {
            Incoming::Joined { group } => {
                let stranger = !self.is_known_peer(from);
                let conv = self.dm.conversations.entry(*from).or_default();
                if conv.groups.is_empty() && conv.next_seq == 0 && stranger {
                    conv.request = true;
                }
                conv.peer = from.to_string();
                if !conv.groups.contains(&group) {
                    conv.groups.push(group.clone());
                }
                let _ = self.save_conversation(from);
                tracing::info!(peer = %from, "joined a conversation");
                // Messages that came before their Welcome.
                for (via, (p, e)) in self.dm.early.release(&group, u64::MAX) {
                    let _ = self.receive_envelope(&p, &via, e);
                }
                // Messages queued here for this peer can now go in the shared group.
                if self.dm.need_kp.contains_key(from) {
                    let _ = self.start_conversation(from, &[]);
                }
            }
            Incoming::Application { plaintext, .. } => {
                let body =
                    v1::DmBody::decode(plaintext.as_slice()).map_err(|_| DmError::Malformed)?;
                check_body(&body)?;
                let stored = v1::StoredDm {
                    peer: from.to_bytes(),
                    outgoing: false,
                    body: Some(body),
                    received_ms: now_ms(),
                };
                self.store_dm(&stored)
                    .map_err(|e| DmError::Mls(format!("store: {e}")))?;
                if self.dm.conversations.get(from).is_some_and(|c| c.request) {
                    // A message request: kept, not announced, nothing fetched.
                    self.requests_changed();
                    return Ok(());
                }
                if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.as_ref()) {
                    self.prefetch_attachment(a);
                }
                if let Some(view) = DmView::of(self.swarm.local_peer_id(), &stored) {
                    let _ = self.events.send(Event::DirectMessage { message: view });
                }
            }
            Incoming::Commit { group } => {
                tracing::debug!(peer = %from, "conversation keys renewed");
                if self.dm.proposed.remove(from).is_some() {
                    let _ = self.flush_queued(from);
                }
                // Messages of the new epoch that came before its commit (only those).
                if let Ok((_, epoch, _)) = self.dm.mls.group_state(&group) {
                    for (via, (p, e)) in self.dm.early.release(&group, epoch) {
                        let _ = self.receive_envelope(&p, &via, e);
                    }
                }
            }
            Incoming::UpdateProposal { group } => {
                let creator = self
                    .dm
                    .conversations
                    .get(from)
                    .is_some_and(|c| c.created.contains(&group));
                if creator {
                    match self.dm.mls.commit_pending(&group) {
                        Ok(commit) => {
                            self.save_mls()
                                .map_err(|e| DmError::Mls(format!("store: {e}")))?;
                            let t = self.next_sent_ms(from);
                            self.queue_envelope(from, t, commit, b"")
                                .map_err(|e| DmError::Mls(format!("store: {e}")))?;
                            self.try_deliver(from);
                            tracing::debug!(peer = %from, "peer's key update committed");
                        }
                        Err(e) => tracing::warn!("cannot commit the peer's key update: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps a message of a conversation (or epoch) this node has not reached yet, within the
    /// bounds of the waiting room; a peer with too much waiting is refused and penalised.
    fn hold_early(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        id: [u8; 32],
        env: v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let header = crate::group::mls::header(&env.mls_message).ok_or(DmError::Malformed)?;
        let len = env.mls_message.len();
        // Charged to the sender the envelope names (for a direct delivery, the peer itself), not
        // to a mail holder that carries it for many senders.
        match self.dm.early.hold(
            *from,
            header.group,
            header.epoch,
            id,
            len,
            (*from, env),
            Instant::now(),
        ) {
            Ok(()) => Ok(()),
            Err(NotHeld::PeerQuota) => {
                tracing::debug!(peer = %from, "too many direct messages waiting for a Welcome");
                // One offence per delivery (`busy` ends it); an honest sender backs off.
                if from == via {
                    self.penalise(*via, super::Offence::HeldOverQuota);
                }
                Err(DmError::Busy)
            }
            Err(NotHeld::TooLarge) => Err(DmError::NotAllowed(
                "a message of an unknown conversation is too large to wait for its Welcome",
            )),
        }
    }

    /// Direct and group messages dropped while waiting, since start.
    pub(super) fn held_dropped(&self) -> u64 {
        self.dm
            .early
            .dropped()
            .saturating_add(self.groups_early_dropped())
    }

    /// Mail held for others that made room for other mail or expired, since start.
    pub(super) fn dm_mail_evicted(&self) -> u64 {
        self.dm.mailbox.evicted()
    }

    /// Bounds the set of peers asked for mail since start (asking one again is harmless).
    pub(super) fn dm_prune(&mut self) {
        if self.dm.collected_from.len() > 4096 {
            self.dm.collected_from.clear();
        }
    }

    /// Whether `peer` is someone this node knows: a contact, a peer whose request the user
    /// accepted, or one it has written to.
    pub(super) fn is_known_peer(&self, peer: &PeerId) -> bool {
        self.dm.accepted.contains(peer)
            || self
                .dm
                .conversations
                .get(peer)
                .is_some_and(|c| c.next_seq > 0 && !c.request)
            || self
                .store
                .contacts()
                .map(|cs| cs.iter().any(|c| c.peer_id == *peer))
                .unwrap_or(false)
    }

    /// Direct conversations held as requests: (peer, newest message, when it arrived).
    pub(super) fn dm_requests(&self) -> Vec<(PeerId, Option<DmView>, u64)> {
        self.dm
            .conversations
            .iter()
            .filter(|(_, c)| c.request)
            .filter_map(|(p, _)| {
                // A declined request keeps its conversation, empty, until the peer writes again.
                let last = self.dm_history(p).ok().and_then(|mut h| h.pop())?;
                let at = last.timestamp;
                Some((*p, Some(last), at))
            })
            .collect()
    }

    /// Remembers that the user accepted `peer` (it is known from now on) and shows what its
    /// request held: its messages are announced and their attachments fetched.
    pub(super) fn accept_dm_requests(&mut self, peer: &PeerId) -> Result<bool, NodeError> {
        if self.dm.accepted.insert(*peer) {
            let mut k = b"a".to_vec();
            k.extend_from_slice(&self.dm_index(peer));
            self.store.private_put(Private::Mls, &k, &peer.to_bytes())?;
        }
        let Some(c) = self.dm.conversations.get_mut(peer).filter(|c| c.request) else {
            return Ok(false);
        };
        c.request = false;
        self.save_conversation(peer)?;
        let me = *self.swarm.local_peer_id();
        for (_, v) in self
            .store
            .private_scan(Private::Messages, &self.dm_index(peer))?
        {
            let Ok(stored) = v1::StoredDm::decode(v.as_slice()) else {
                continue;
            };
            if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.as_ref()) {
                self.prefetch_attachment(a);
            }
            if let Some(view) = DmView::of(&me, &stored) {
                let _ = self.events.send(Event::DirectMessage { message: view });
            }
        }
        Ok(true)
    }

    /// Declines `peer`'s direct-message request: its messages go. The conversation's keys
    /// stay (hidden), so that if the peer writes again its message is readable and asks
    /// again, as a new request.
    pub(super) fn decline_dm_requests(&mut self, peer: &PeerId) -> Result<bool, NodeError> {
        if !self.dm.conversations.get(peer).is_some_and(|c| c.request) {
            return Ok(false);
        }
        let mut dropped = false;
        for (k, _) in self
            .store
            .private_scan(Private::Messages, &self.dm_index(peer))?
        {
            self.store.private_remove(Private::Messages, &k)?;
            dropped = true;
        }
        Ok(dropped)
    }
}
