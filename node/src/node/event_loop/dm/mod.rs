//! Direct messages in the event loop: starting conversations from KeyPackage records, sending
//! (straight to the peer, else through mailbox holders), receiving, and holding mail for
//! others. The cryptography is in [`crate::dm::mls`]; this is delivery and bookkeeping.
//!
//! What it keeps (messages, the outbox, conversations, the MLS state) it keeps through
//! [`crate::store::private`], which alone knows the layout.

#![warn(clippy::arithmetic_side_effects)]

mod delivery;
mod inbound;

use crate::net::requests::{Exchange, Requests};
use crate::net::wire::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::{self, QueryId, Quorum, Record};
use libp2p::request_response::{self, ResponseChannel};
use prost::Message as _;
use samizdat_proto::v1;

use super::EventLoop;
use crate::channel::now_ms;
use crate::dm::conversation::Conversation;
use crate::dm::held::{Held, NotHeld};
use crate::dm::mailbox::{Mailbox, check_envelope, envelope_id};
use crate::dm::route::{Route, Step};
use crate::dm::{
    DmError, DmView, MAX_ENVELOPES_PER_REQUEST, MAX_HOLD_MS, MAX_TEXT_BYTES, check_body,
    keypackage_key, mailbox_key, open_keypackage_record, sign_keypackage_record,
};
use crate::mls::{Incoming, MlsClient, MlsError};
use crate::node::NodeError;
use crate::node::views::Event;
use crate::store::private::{MlsState, Outgoing};
use crate::store::{Store, StoreError};

/// Most bytes of envelopes in one delivery (the frame limit is 3 MiB).
const DELIVER_BYTES: usize = 2 * 1024 * 1024;
/// How long an undelivered envelope is kept (and held by mailboxes).
const HOLD_MS: u64 = MAX_HOLD_MS;
/// Mailbox holders an envelope is deposited with.
const HOLDERS: usize = 4;
/// How often a missing KeyPackage is looked up.
const KP_LOOKUP_EVERY: Duration = Duration::from_secs(5);
/// How often the own KeyPackage record is published again.
const KP_PUBLISH_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Longest pause between two visits to this node's mailbox holders.
const COLLECT_EVERY: Duration = Duration::from_secs(60);
/// How often the mailbox holders are looked up anew in the DHT (in between, the holders last
/// found are asked directly).
const COLLECT_LOOKUP_EVERY: Duration = Duration::from_secs(10 * 60);
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
/// How long processed message ids are remembered (longer than any holder keeps mail).
const SEEN_FOR_MS: u64 = HOLD_MS + 24 * 3600 * 1000;

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
    GroupSync(crate::group::GroupId),
    /// This node asks to be linked to an account.
    Link,
    /// This account's device list, pushed.
    Devices,
}

/// What a closest-peers query was for.
#[derive(Debug, Clone, Copy)]
enum MailboxQuery {
    Deposit(PeerId),
    Collect,
}

/// Direct-message state of the event loop.
pub(crate) struct Direct {
    mailbox: Mailbox,
    pub(super) conversations: HashMap<PeerId, Conversation>,
    /// Peers whose message requests the user accepted (they are known from then on).
    accepted: std::collections::HashSet<PeerId>,
    waiting: HashMap<PeerId, Route>,
    /// Peers with messages waiting for their KeyPackage, and when it was last looked up.
    pub(super) need_kp: HashMap<PeerId, Option<Instant>>,
    kp_queries: HashMap<QueryId, PeerId>,
    mailbox_queries: HashMap<QueryId, MailboxQuery>,
    pub(super) requests: Requests<Sent>,
    /// Messages of conversations this node has not joined yet (their Welcome is on its way)
    /// or of an epoch it has not reached, with their senders.
    early: Held<(PeerId, v1::DmEnvelope)>,
    /// When the own KeyPackage record is next published (None: as soon as the DHT is up).
    next_publish: Option<Instant>,
    publish_query: Option<QueryId>,
    last_collect: Option<Instant>,
    collect_every: Duration,
    /// This node's mailbox holders as last looked up, and when.
    holders: Vec<PeerId>,
    last_holder_lookup: Option<Instant>,
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

/// The MLS client direct conversations and private groups share, and how its state is kept.
pub(crate) struct Mls {
    pub(super) client: MlsClient,
    /// The state is still the single blob of format 2 (`state`): the next save stores it key
    /// by key and removes the blob.
    blob: bool,
}

impl Mls {
    /// Loads the MLS state from the store (entry by entry, or the old single blob).
    pub(crate) fn open(
        store: &std::sync::Arc<dyn Store>,
        key: libp2p::identity::ed25519::Keypair,
    ) -> Result<Self, NodeError> {
        Ok(match store.private().mls_state()? {
            // Stores written before the state was kept key by key (it moves at the next save;
            // until the blob is removed it wins, as the entries are copies of it).
            MlsState::Blob(state) => Self {
                client: MlsClient::new(key, Some(state.as_slice()))
                    .map_err(|e| NodeError::Internal(format!("direct messages: {e}")))?,
                blob: true,
            },
            MlsState::Entries(entries) => Self {
                client: MlsClient::from_entries(key, entries),
                blob: false,
            },
        })
    }
}

impl Direct {
    /// Loads the conversations and outbox from the store.
    pub(crate) fn open(store: &std::sync::Arc<dyn Store>) -> Result<Self, NodeError> {
        let records = store.private();
        let conversations: HashMap<PeerId, Conversation> = records
            .conversations::<Conversation>()?
            .into_iter()
            .filter_map(|c| Some((c.peer.parse::<PeerId>().ok()?, c)))
            .collect();
        let accepted = records.accepted()?.into_iter().collect();
        let waiting = records
            .envelopes(None)?
            .into_iter()
            .filter_map(|o| PeerId::from_bytes(&o.envelope.recipient).ok())
            .map(|peer| (peer, Route::new(Instant::now())))
            .collect();
        let need_kp = records
            .queued(None)?
            .into_iter()
            .filter_map(|q| PeerId::from_bytes(&q.stored.peer).ok())
            .map(|peer| (peer, None))
            .collect();
        Ok(Self {
            mailbox: Mailbox::open(store.clone())?,
            conversations,
            accepted,
            waiting,
            need_kp,
            kp_queries: HashMap::new(),
            mailbox_queries: HashMap::new(),
            requests: Requests::default(),
            early: Held::new(EARLY),
            next_publish: None,
            publish_query: None,
            last_collect: None,
            collect_every: Duration::from_secs(5),
            holders: Vec::new(),
            last_holder_lookup: None,
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

/// The oldest envelopes that fit one request, bounded by count and by bytes (a group's
/// Welcome can be close to a megabyte; a frame over the peer's limit would be refused and
/// counted against this node). At least one, whatever its size.
fn batch(outbox: Vec<Outgoing>) -> Vec<Outgoing> {
    let mut bytes = 0usize;
    outbox
        .into_iter()
        .take(MAX_ENVELOPES_PER_REQUEST)
        .take_while(|o| {
            let len = o.envelope.encoded_len();
            bytes = len.saturating_add(bytes);
            bytes <= DELIVER_BYTES || bytes == len
        })
        .collect()
}

impl EventLoop {
    /// Stores what the last MLS operations changed in its state, all at once (durable with
    /// the next flush: whatever was encrypted with it waits for that).
    pub(super) fn save_mls(&mut self) -> Result<(), NodeError> {
        let changes = self.mls.client.changes();
        if changes.is_empty() && !self.mls.blob {
            return Ok(());
        }
        self.store.private().save_mls(&changes, self.mls.blob)?;
        self.mls.client.persisted(&changes);
        self.mls.blob = false;
        Ok(())
    }

    pub(super) fn save_conversation(&self, peer: &PeerId) -> Result<(), NodeError> {
        if let Some(c) = self.dm.conversations.get(peer) {
            self.store.private().put_conversation(peer, c)?;
        }
        Ok(())
    }

    /// Sends a direct message to a person: to every device of their account (when it is
    /// known; else to the peer named), and a copy to this account's other devices. Each is
    /// stored at once and delivered when a route exists.
    pub(super) fn dm_send(
        &mut self,
        target: PeerId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
    ) -> Result<DmView, NodeError> {
        let me = *self.swarm.local_peer_id();
        if text.trim().is_empty() {
            return Err(NodeError::InvalidInput("empty message".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(NodeError::InvalidInput(format!(
                "message too long: {} bytes (at most {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        let recipients = self.devices.book.recipients(&target);
        let Some(first) = recipients.first().copied() else {
            return Err(NodeError::InvalidInput(
                "a direct message needs another peer".into(),
            ));
        };
        if first == me {
            return Err(NodeError::InvalidInput(
                "a direct message needs another peer".into(),
            ));
        }
        let copies: Vec<PeerId> = self
            .devices
            .book
            .my_other_devices()
            .into_iter()
            .filter(|p| !recipients.contains(p))
            .collect();
        let id = crate::crypto::random_bytes::<16>().to_vec();
        let mut view = None;
        for r in &recipients {
            let v = self.dm_send_one(*r, &id, &text, expires_in, &attachment, Vec::new())?;
            view.get_or_insert(v);
        }
        for o in copies {
            if let Err(e) =
                self.dm_send_one(o, &id, &text, expires_in, &attachment, first.to_bytes())
            {
                tracing::warn!(device = %o, "copy for another device of this account: {e}");
            }
        }
        let mut view = view.ok_or_else(|| NodeError::InvalidInput("bad message".into()))?;
        view.account = self.account_of(&first);
        Ok(view)
    }

    /// The account id (peer-id form) a peer is a device of, when known.
    pub(super) fn account_of(&self, peer: &PeerId) -> Option<String> {
        self.devices
            .book
            .resolve(peer)
            .map(|l| l.account().to_string())
    }

    /// Sends one device its copy of a message (`conversation` set on copies for this
    /// account's own devices).
    fn dm_send_one(
        &mut self,
        peer: PeerId,
        id: &[u8],
        text: &str,
        expires_in: Option<Duration>,
        attachment: &Option<v1::Attachment>,
        conversation: Vec<u8>,
    ) -> Result<DmView, NodeError> {
        let me = *self.swarm.local_peer_id();
        if self.dm.conversations.get(&peer).is_some_and(|c| c.request) {
            // Answering a message request accepts it.
            self.accept_requests(&peer)?;
        }
        let conv = self
            .dm
            .conversations
            .entry(peer)
            .or_insert_with(|| Conversation::new(&peer));
        let (sent_ms, seq) = conv.next_message(now_ms());
        let body = v1::DmBody {
            id: id.to_vec(),
            text: text.to_string(),
            sent_ms,
            seq,
            expires_at_ms: expires_in.map_or(0, |d| {
                sent_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            attachment: attachment.clone(),
            conversation,
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
            self.store.private().queue(&key, &stored)?;
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
        let key = self.store.private().put_message(stored)?;
        let body = stored.body.as_ref().ok_or(StoreError::Corrupt("dm"))?;
        if body.expires_at_ms != 0 {
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
        let ct = match self.mls.client.encrypt(&group, &body.encode_to_vec()) {
            Ok(ct) => ct,
            Err(MlsError::PendingUpdate) => {
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
        let committer = conv.is_committer(&group);
        let update = conv.sealed(&group, self.swarm.is_connected(peer));
        // The ratchet moved: the state must be on disk before the ciphertext leaves, or a
        // crash would make this node reuse a message key.
        self.save_mls()?;
        self.queue_envelope(peer, body.sent_ms, ct, message_key)?;
        if update {
            // Post-compromise security: the conversation's committer renews its keys with a
            // commit; the other member proposes its renewal for the committer to commit (one
            // committer per group, so the two sides never fork it).
            let renewal = if committer {
                self.mls.client.update(&group)
            } else {
                self.mls.client.propose_update(&group)
            };
            match renewal {
                Ok(handshake) => {
                    self.save_mls()?;
                    let t = self.next_sent_ms(peer);
                    self.queue_envelope(peer, t, handshake, b"")?;
                    if let Some(c) = self.dm.conversations.get_mut(peer) {
                        c.renewed();
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
        self.dm
            .conversations
            .entry(*peer)
            .or_insert_with(|| Conversation::new(peer))
            .next_sent_ms(now_ms())
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
        let mut id = [0u8; 8];
        id.copy_from_slice(&envelope_id(&env)[..8]);
        self.store
            .private()
            .put_envelope(peer, id, message_key, &env)?;
        let written = self.store.write_seq();
        self.dm
            .waiting
            .entry(*peer)
            .or_insert_with(|| Route::new(Instant::now()))
            .queued(written);
        Ok(())
    }

    /// Every conversation this node has, the most recently active first: one per person
    /// (all devices of a known account together), never this account's own devices.
    pub(super) fn dm_conversations(&self) -> Result<Vec<crate::dm::DmConversationView>, NodeError> {
        let contacts = self.store.contacts()?;
        let names: HashMap<PeerId, String> = contacts
            .iter()
            .map(|c| (c.peer_id, c.name.clone()))
            .collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut list = Vec::with_capacity(self.dm.conversations.len());
        let mut peers: Vec<PeerId> = self
            .dm
            .conversations
            .iter()
            .filter(|(p, c)| !c.request && !self.devices.book.is_my_device(p))
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        for peer in peers {
            let account = self.account_of(&peer);
            if !seen.insert(account.clone().unwrap_or_else(|| peer.to_string())) {
                continue;
            }
            // Shown under the contact's own peer id when one of the account's devices is one.
            let shown = self
                .devices
                .book
                .conversation_peers(&peer)
                .into_iter()
                .find(|p| names.contains_key(p))
                .unwrap_or(peer);
            let mut history = self.dm_history(&shown)?;
            list.push(crate::dm::DmConversationView {
                peer: shown.to_string(),
                name: names.get(&shown).filter(|n| !n.is_empty()).cloned(),
                count: history.len(),
                last: history.pop(),
                account,
            });
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(0, |m| m.timestamp)));
        Ok(list)
    }

    /// A conversation with a person (an account id or any of its devices), oldest first: the
    /// messages of all its devices, each once.
    pub(super) fn dm_history(&self, target: &PeerId) -> Result<Vec<DmView>, NodeError> {
        let me = *self.swarm.local_peer_id();
        let account = self.account_of(target);
        // Keyed by direction too: a message id is its sender's choice, so an incoming one must
        // never hide (or mark delivered) one of this account's own.
        let mut by_id: HashMap<(bool, String), DmView> = HashMap::new();
        for peer in self.devices.book.conversation_peers(target) {
            for s in self.store.private().messages(&peer)? {
                let Some(mut v) = DmView::of(&me, &s) else {
                    continue;
                };
                v.account = account.clone();
                match by_id.get_mut(&(v.outgoing, v.id.clone())) {
                    // Sent to several devices: delivered once any has it.
                    Some(held) if v.outgoing => held.delivered |= v.delivered,
                    Some(_) => {}
                    None => {
                        by_id.insert((v.outgoing, v.id.clone()), v);
                    }
                }
            }
        }
        let mut out: Vec<DmView> = by_id.into_values().collect();
        out.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
        Ok(out)
    }

    /// Drops what waits to be delivered to `peer` (a revoked device): envelopes and messages
    /// not yet sealed. Holders keep what was deposited with them.
    pub(super) fn dm_forget_outbox(&mut self, peer: &PeerId) {
        self.dm.waiting.remove(peer);
        self.dm.need_kp.remove(peer);
        let records = self.store.private();
        for o in records.envelopes(Some(peer)).unwrap_or_default() {
            let _ = records.take_envelope(&o.key);
        }
        for q in records.queued(Some(peer)).unwrap_or_default() {
            let _ = records.unqueue(&q.key);
        }
    }

    /// Peers this node has a conversation with.
    pub(super) fn conversation_peer_ids(&self) -> Vec<PeerId> {
        self.dm.conversations.keys().copied().collect()
    }

    // ----- delivery -------------------------------------------------------------------------

    /// Peers that direct messages wait to be delivered to (the connection manager keeps them).
    pub(super) fn dm_waiting_peers(&self) -> std::collections::HashSet<PeerId> {
        self.dm.waiting.keys().copied().collect()
    }

    pub(super) fn try_deliver(&mut self, peer: &PeerId) {
        let connected = self.swarm.is_connected(peer);
        let durable = self.store.durable_seq();
        let Some(route) = self.dm.waiting.get_mut(peer) else {
            return;
        };
        let (dial, deposit) = match route.step(Instant::now(), connected, durable) {
            Step::Wait => return,
            Step::AwaitDisk => {
                let peer = *peer;
                self.after_durable(move |el| {
                    if let Some(r) = el.dm.waiting.get_mut(&peer) {
                        r.disk_ready();
                    }
                    el.try_deliver(&peer);
                });
                return;
            }
            Step::Deliver => (false, false),
            Step::Reach { dial, deposit } => (dial, deposit),
        };
        let outbox = self
            .store
            .private()
            .envelopes(Some(peer))
            .unwrap_or_default();
        if outbox.is_empty() {
            self.dm.waiting.remove(peer);
            return;
        }
        if connected {
            let batch = batch(outbox);
            let keys = batch.iter().map(|o| o.key.clone()).collect();
            let envelopes = batch.into_iter().map(|o| o.envelope).collect();
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
            if let Some(r) = self.dm.waiting.get_mut(peer) {
                r.sent();
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

    // ----- the protocol ---------------------------------------------------------------------

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
            self.store.private().put_accepted(peer)?;
        }
        let Some(c) = self.dm.conversations.get_mut(peer).filter(|c| c.request) else {
            return Ok(false);
        };
        c.request = false;
        self.save_conversation(peer)?;
        let me = *self.swarm.local_peer_id();
        for stored in self.store.private().messages(peer)? {
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
        Ok(self.store.private().remove_messages(peer)? > 0)
    }
}
