//! Direct messages as a component: conversations started from KeyPackage records, messages
//! sealed and routed (straight to the peer, else through mailbox holders), envelopes
//! received or held for their Welcome, and mail held for others. It owns its state and
//! decides; the event loop hands it inputs with the time and carries out the actions it
//! returns (requests, dials, DHT queries, events, penalties). It writes what it keeps
//! through the store's typed methods ([`crate::store::private`], no fsync: durable with the
//! writer's next flush, and what must wait for that waits by [`Action::WhenDurable`]).

#![warn(clippy::arithmetic_side_effects)]

mod delivery;
mod inbound;
pub(crate) use inbound::{DeliveryAnswer, Taken, collected};
mod send;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use samizdat_proto::v1;

use super::NodeError;
pub(crate) use super::now::Now;
use super::reputation::Offence;
use super::views::Event;
use crate::account::book::Accounts;
use crate::dm::MAX_HOLD_MS;
use crate::dm::conversation::Conversation;
use crate::dm::held::Held;
use crate::dm::mailbox::Mailbox;
use crate::dm::route::Route;
use crate::group::GroupId;
use crate::identity::Identity;
use crate::mls::MlsClient;
use crate::store::Store;
use crate::store::private::MlsState;

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
/// How often expired mail and old message ids are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// The MLS client direct conversations and private groups share, and how its state is kept.
pub(crate) struct Mls {
    /// The client.
    pub client: MlsClient,
    /// The state is still the single blob of format 2 (`state`): the next save stores it key
    /// by key and removes the blob.
    blob: bool,
}

impl Mls {
    /// Loads the MLS state from the store (entry by entry, or the old single blob).
    pub(crate) fn open(
        store: &dyn Store,
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

    /// Stores what the last MLS operations changed in its state, all at once (durable with
    /// the next flush: whatever was encrypted with it waits for that).
    pub(crate) fn save(&mut self, store: &dyn Store) -> Result<(), NodeError> {
        let changes = self.client.changes();
        if changes.is_empty() && !self.blob {
            return Ok(());
        }
        store.private().save_mls(&changes, self.blob)?;
        self.client.persisted(&changes);
        self.blob = false;
        Ok(())
    }
}

/// What the component asks of the rest of the node, answered at once from memory.
pub(crate) trait Facts {
    /// Whether a connection to `peer` is open.
    fn connected(&self, peer: &PeerId) -> bool;
    /// The private group of this node an MLS message belongs to, if any.
    fn group_of(&self, mls_message: &[u8]) -> Option<GroupId>;
}

/// What an input is handled with.
pub(crate) struct Ctx<'a> {
    /// This node.
    pub me: PeerId,
    /// The MLS client and its persistence.
    pub mls: &'a mut Mls,
    /// Where conversations, messages and the outbox are kept.
    pub store: &'a dyn Store,
    /// Accounts and their devices (this one's and contacts').
    pub book: &'a Accounts,
    /// This node's keys (the KeyPackage record is signed with them).
    pub identity: &'a Identity,
    /// Whether the DHT has peers (publishing and mailbox lookups wait for it).
    pub dht_ready: bool,
    /// Connections and groups.
    pub facts: &'a dyn Facts,
}

impl Ctx<'_> {
    /// What reading needs of it.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader {
            me: self.me,
            book: self.book,
            store: self.store,
        }
    }
}

/// What reading conversations needs: who this node is, the accounts, the store.
pub(crate) struct Reader<'a> {
    /// This node.
    pub me: PeerId,
    /// Accounts and their devices.
    pub book: &'a Accounts,
    /// Where conversations and messages are kept.
    pub store: &'a dyn Store,
}

/// What a DHT query of the component is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MailboxQuery {
    /// Holders to deposit mail for this peer with.
    Deposit(PeerId),
    /// Holders of this node's own mail.
    Collect,
}

/// What a `/samizdat/dm/1` request of the component was.
#[derive(Debug)]
pub(crate) enum Sent {
    /// Envelopes to their recipient, by outbox key.
    Deliver {
        /// The recipient.
        peer: PeerId,
        /// The outbox keys, in order.
        keys: Vec<Vec<u8>>,
    },
    /// Envelopes left with a holder.
    Deposit,
    /// This node's mail asked of a holder.
    Collect,
}

/// Where an envelope goes once the component has checked it.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Taken here (or a duplicate).
    Done,
    /// A Welcome into a private group, with its sealed invitation: for the group component
    /// (the envelope's id is marked seen once it is taken).
    Invite([u8; 32], v1::DmEnvelope),
    /// A private group's message sent straight to this node (the commit that removes it).
    Group(GroupId, v1::GroupWire),
}

/// What happens to the direct-message component.
pub(crate) enum Input {
    /// Once a second.
    Tick,
    /// A connection to a peer opened.
    Connected(PeerId),
    /// A peer told what it speaks; `dm`: it speaks `/samizdat/dm/1`.
    Identified {
        /// The peer.
        peer: PeerId,
        /// Whether it speaks the protocol.
        dm: bool,
    },
    /// A connection closed (the last one to the peer).
    Disconnected(PeerId),
    /// A verified KeyPackage of `peer` arrived.
    KeyPackage {
        /// Its owner.
        peer: PeerId,
        /// The KeyPackage.
        key_package: Vec<u8>,
    },
    /// The own KeyPackage record was stored in the DHT (or not).
    Published(bool),
    /// The peers closest to a mailbox key.
    Holders {
        /// What they were looked up for.
        query: MailboxQuery,
        /// The peers.
        peers: Vec<PeerId>,
    },
    /// A request of the component was answered.
    Response {
        /// Who answered.
        peer: PeerId,
        /// What was asked.
        sent: Sent,
        /// The answer.
        response: v1::DmResponse,
    },
    /// A request of the component failed.
    Failed {
        /// Who was asked.
        peer: PeerId,
        /// What was asked.
        sent: Sent,
    },
    /// What waits for `peer` is on disk now.
    DiskReady(PeerId),
}

/// What the component asks the event loop to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// A `/samizdat/dm/1` request.
    Request {
        /// To whom.
        peer: PeerId,
        /// The request.
        request: v1::DmRequest,
        /// What it was, handed back with the answer.
        sent: Sent,
    },
    /// A dial.
    Dial(PeerId),
    /// Look up a peer's KeyPackage record in the DHT.
    LookupKeyPackage(PeerId),
    /// Look up the peers closest to a mailbox key.
    FindHolders(MailboxQuery),
    /// Store this node's KeyPackage record in the DHT.
    PublishKeyPackage(Vec<u8>),
    /// Hand [`Input::DiskReady`] back once everything written so far is on disk.
    WhenDurable(PeerId),
    /// An event for the node's clients.
    Emit(Event),
    /// Fetch an attachment ahead of the user.
    Prefetch(v1::Attachment),
    /// The requests waiting for the user changed.
    RequestsChanged,
    /// A peer broke the rules.
    Penalise(PeerId, Offence),
    /// The user answered `peer`'s message request by writing to it: its other requests
    /// (group invitations) are accepted and it becomes a contact.
    Accepted(PeerId),
    /// An envelope released from waiting that is a group's (see [`Routed`]).
    Route {
        /// Its sender.
        from: PeerId,
        /// Who handed it over.
        via: PeerId,
        /// Where it goes.
        routed: Routed,
    },
}

/// Direct-message state.
pub(crate) struct Direct {
    mailbox: Mailbox,
    conversations: HashMap<PeerId, Conversation>,
    /// Peers whose message requests the user accepted (they are known from then on).
    accepted: HashSet<PeerId>,
    waiting: HashMap<PeerId, Route>,
    /// Peers with messages (or invitations) waiting for their KeyPackage, and when it was
    /// last looked up.
    need_kp: HashMap<PeerId, Option<Instant>>,
    /// Messages of conversations this node has not joined yet (their Welcome is on its way)
    /// or of an epoch it has not reached, with their senders.
    early: Held<(PeerId, v1::DmEnvelope)>,
    /// When the own KeyPackage record is next published (None: as soon as the DHT is up).
    next_publish: Option<Instant>,
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
    capable: HashSet<PeerId>,
    /// Peers asked for this node's mail since it started.
    collected_from: HashSet<PeerId>,
    limiter: crate::net::rate_limit::RateLimiter,
    /// KeyPackage lookups in flight.
    looking_up: HashSet<PeerId>,
    out: Vec<Action>,
}

impl Direct {
    /// Loads the conversations and outbox from the store.
    pub(crate) fn open(store: &std::sync::Arc<dyn Store>, now: Now) -> Result<Self, NodeError> {
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
            .map(|peer| (peer, Route::new(now.at)))
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
            early: Held::new(EARLY),
            next_publish: None,
            last_collect: None,
            collect_every: Duration::from_secs(5),
            holders: Vec::new(),
            last_holder_lookup: None,
            last_housekeeping: now.at,
            proposed: HashMap::new(),
            next_expiry: None,
            capable: HashSet::new(),
            collected_from: HashSet::new(),
            // Per peer: 20 requests/s, bursts of 60 (each carries at most 64 envelopes).
            limiter: crate::net::rate_limit::RateLimiter::new(20.0, 60.0),
            looking_up: HashSet::new(),
            out: Vec::new(),
        })
    }

    /// Handles one input; returns what the loop is to do, in order.
    pub(crate) fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input, now: Now) -> Vec<Action> {
        match input {
            Input::Tick => self.tick(ctx, now),
            Input::Connected(peer) => {
                if let Some(r) = self.waiting.get_mut(&peer) {
                    r.connected();
                    self.try_deliver(ctx, &peer, now);
                }
            }
            Input::Identified { peer, dm } => {
                if dm {
                    self.capable.insert(peer);
                    // Coming back online: ask each peer met for mail once, without waiting
                    // for the DHT.
                    if self.collected_from.insert(peer) {
                        self.send_collect(peer);
                    }
                }
            }
            Input::Disconnected(peer) => {
                self.capable.remove(&peer);
            }
            // (The lookup stays in flight until its query ends: `lookup_ended`.)
            Input::KeyPackage { peer, key_package } => {
                self.on_keypackage(ctx, &peer, &key_package, now)
            }
            Input::Published(ok) => {
                if ok {
                    tracing::info!("key package published");
                    self.next_publish = now.at.checked_add(KP_PUBLISH_EVERY);
                } else {
                    tracing::debug!("key package not published yet");
                }
            }
            Input::Holders { query, peers } => self.on_holders(ctx, query, peers),
            Input::Response {
                peer,
                sent,
                response,
            } => self.on_response(ctx, peer, sent, response, now),
            Input::Failed { peer, sent } => match sent {
                Sent::Deliver { peer, .. } => {
                    if let Some(r) = self.waiting.get_mut(&peer) {
                        r.failed(now.at);
                    }
                }
                // A holder that went away is not asked again; with fewer than two left, the
                // next round looks the holders up anew.
                Sent::Collect => self.holders.retain(|h| *h != peer),
                Sent::Deposit => {}
            },
            Input::DiskReady(peer) => {
                if let Some(r) = self.waiting.get_mut(&peer) {
                    r.disk_ready();
                }
                self.try_deliver(ctx, &peer, now);
            }
        }
        self.take()
    }

    /// The actions queued by the last calls, in order.
    pub(crate) fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// A KeyPackage lookup for `peer` ended without a record.
    pub(crate) fn lookup_ended(&mut self, peer: &PeerId) {
        self.looking_up.remove(peer);
    }

    /// Whether a KeyPackage of `peer` is wanted (by a message or an invitation).
    pub(crate) fn needs_keypackage(&self, peer: &PeerId) -> bool {
        self.need_kp.contains_key(peer)
    }

    /// Looks `peer`'s KeyPackage up at once (and every few seconds until found).
    pub(crate) fn want_keypackage(&mut self, peer: PeerId) {
        self.need_kp.insert(peer, None);
    }

    /// Whether a request from `peer` is within its rate.
    pub(crate) fn allow(&mut self, peer: PeerId, now: Now) -> bool {
        self.limiter.allow(peer, now.at)
    }

    /// Peers this node has a conversation with.
    pub(crate) fn conversation_peer_ids(&self) -> Vec<PeerId> {
        self.conversations.keys().copied().collect()
    }

    /// Peers that direct messages wait to be delivered to (the connection manager keeps them).
    pub(crate) fn waiting_peers(&self) -> HashSet<PeerId> {
        self.waiting.keys().copied().collect()
    }

    /// Direct messages dropped while waiting for their Welcome, since start.
    pub(crate) fn held_dropped(&self) -> u64 {
        self.early.dropped()
    }

    /// Mail held for others that made room for other mail or expired, since start.
    pub(crate) fn mail_evicted(&self) -> u64 {
        self.mailbox.evicted()
    }

    /// Bounds the set of peers asked for mail since start (asking one again is harmless).
    pub(crate) fn prune(&mut self) {
        if self.collected_from.len() > 4096 {
            self.collected_from.clear();
        }
    }

    /// Whether `peer` is someone this node knows: a device of a held account, a contact, a
    /// peer whose request the user accepted, or one it has written to.
    pub(crate) fn is_known(&self, book: &Accounts, store: &dyn Store, peer: &PeerId) -> bool {
        known(book, store, &self.accepted, &self.conversations, peer)
    }

    /// A direct message granted by another device of this account (checked by the caller).
    pub(crate) fn granted(&mut self, ctx: &Ctx<'_>, m: &v1::StoredDm) {
        if let Ok(p) = PeerId::from_bytes(&m.peer) {
            self.conversations
                .entry(p)
                .or_insert_with(|| Conversation::new(&p));
            let _ = self.save_conversation(ctx, &p);
        }
        let _ = ctx.store.private().put_message(m);
    }

    fn save_conversation(&self, ctx: &Ctx<'_>, peer: &PeerId) -> Result<(), NodeError> {
        if let Some(c) = self.conversations.get(peer) {
            ctx.store.private().put_conversation(peer, c)?;
        }
        Ok(())
    }
}

/// Whether `peer` is known (see [`Direct::is_known`]).
fn known(
    book: &Accounts,
    store: &dyn Store,
    accepted: &HashSet<PeerId>,
    conversations: &HashMap<PeerId, Conversation>,
    peer: &PeerId,
) -> bool {
    // A device of a held account (this one's, or a contact's) is known: adding someone's new
    // device needs no new contact exchange.
    (book.resolve(peer).is_some() && !book.is_revoked(peer))
        || accepted.contains(peer)
        || conversations
            .get(peer)
            .is_some_and(Conversation::written_to)
        || store
            .contacts()
            .map(|cs| cs.iter().any(|c| c.peer_id == *peer))
            .unwrap_or(false)
}
