//! Direct messages in the event loop: what arrives on `/samizdat/dm/1` and from the DHT is
//! handed to the direct-message component ([`crate::node::direct`]) with the time, and the
//! actions it returns are carried out here. The protocol's requests are shared: private
//! groups' catch-up and device linking and lists ride on it too, and are routed to them.

use std::collections::HashMap;

use libp2p::kad::{self, QueryId, Quorum, Record};
use libp2p::request_response::{self, ResponseChannel};
use libp2p::{PeerId, Swarm};
use samizdat_proto::v1;

use super::EventLoop;
use crate::dm::{DmError, DmView, keypackage_key, mailbox_key, open_keypackage_record};
use crate::group::GroupId;
use crate::net::node_behaviour::NodeBehaviour;
use crate::net::requests::{Exchange, Requests};
use crate::net::wire::Frame;
use crate::node::NodeError;
use crate::node::direct::{self, Action, Direct, Facts, Input, MailboxQuery, Now, Reader, Routed};

pub(crate) use crate::node::direct::Mls;

/// What a `/samizdat/dm/1` request in flight was.
#[derive(Debug)]
pub(super) enum Sent {
    /// One of the direct-message component's.
    Direct(direct::Sent),
    /// A private group's catch-up.
    GroupSync(GroupId),
    /// This node asks to be linked to an account.
    Link,
    /// This account's device list, pushed.
    Devices,
}

/// Direct messages in the loop: the component, the protocol's requests in flight, and the
/// DHT queries made for it.
pub(crate) struct Dm {
    core: Direct,
    pub(super) requests: Requests<Sent>,
    kp_queries: HashMap<QueryId, PeerId>,
    mailbox_queries: HashMap<QueryId, MailboxQuery>,
    publish_query: Option<QueryId>,
}

impl Dm {
    /// An invitation waits for `peer`'s KeyPackage: looked up with the next lookups.
    pub(super) fn want_keypackage_later(&mut self, peer: PeerId) {
        self.core.want_keypackage(peer);
    }

    /// Loads the conversations and outbox from the store.
    pub(crate) fn open(store: &std::sync::Arc<dyn crate::store::Store>) -> Result<Self, NodeError> {
        Ok(Self {
            core: Direct::open(store, Now::current())?,
            requests: Requests::default(),
            kp_queries: HashMap::new(),
            mailbox_queries: HashMap::new(),
            publish_query: None,
        })
    }
}

/// What the component asks of the rest of the node.
struct LoopFacts<'a> {
    swarm: &'a Swarm<NodeBehaviour>,
    groups: &'a super::group::Groups,
}

impl Facts for LoopFacts<'_> {
    fn connected(&self, peer: &PeerId) -> bool {
        self.swarm.is_connected(peer)
    }

    fn group_of(&self, mls_message: &[u8]) -> Option<GroupId> {
        self.groups.group_of_message(mls_message)
    }
}

/// Calls the direct-message component with its context (built from disjoint fields of the
/// loop, so that the component itself can be borrowed mutably beside them).
macro_rules! with_direct {
    ($self:ident, |$d:ident, $ctx:ident| $body:expr) => {{
        let facts = LoopFacts {
            swarm: &$self.swarm,
            groups: &$self.groups,
        };
        let mut $ctx = crate::node::direct::Ctx {
            me: *$self.swarm.local_peer_id(),
            mls: &mut $self.mls,
            store: &*$self.store,
            book: &$self.devices.book,
            identity: &$self.identity,
            dht_ready: $self.peers.kad_bootstrapped,
            facts: &facts,
        };
        let $d = &mut $self.dm.core;
        $body
    }};
}

impl EventLoop {
    /// Hands the component one input and carries out what it returns.
    fn dm_input(&mut self, input: Input) {
        let now = Now::current();
        let actions = with_direct!(self, |d, ctx| d.handle(&mut ctx, input, now));
        if let Err(e) = self.run_dm_actions(actions) {
            tracing::warn!("direct-message work not done: {e}");
        }
    }

    /// Runs a command of the component and carries out its actions.
    fn dm_command<T>(&mut self, f: impl FnOnce(&mut Direct, &mut direct::Ctx<'_>, Now) -> T) -> T {
        let (result, done) = self.dm_command_checked(f);
        if let Err(e) = done {
            tracing::warn!("direct-message work not done: {e}");
        }
        result
    }

    /// Like [`EventLoop::dm_command`], with the error of carrying out its actions.
    fn dm_command_checked<T>(
        &mut self,
        f: impl FnOnce(&mut Direct, &mut direct::Ctx<'_>, Now) -> T,
    ) -> (T, Result<(), NodeError>) {
        let now = Now::current();
        let result = with_direct!(self, |d, ctx| f(d, &mut ctx, now));
        let actions = self.dm.core.take();
        let done = self.run_dm_actions(actions);
        (result, done)
    }

    /// Carries out the component's actions in order; the error of accepting a request by
    /// writing, if that failed.
    fn run_dm_actions(&mut self, actions: Vec<Action>) -> Result<(), NodeError> {
        let mut result = Ok(());
        for action in actions {
            match action {
                Action::Request {
                    peer,
                    request,
                    sent,
                } => self.send_dm_request(&peer, request, Sent::Direct(sent)),
                Action::Dial(p) => {
                    let _ = self.swarm.dial(p);
                }
                Action::LookupKeyPackage(peer) => {
                    let q = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .get_record(keypackage_key(&peer));
                    self.dm.kp_queries.insert(q, peer);
                }
                Action::FindHolders(query) => {
                    let key = match query {
                        MailboxQuery::Deposit(peer) => mailbox_key(&peer),
                        MailboxQuery::Collect => mailbox_key(self.swarm.local_peer_id()),
                    };
                    let q = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                    self.dm.mailbox_queries.insert(q, query);
                }
                Action::PublishKeyPackage(record) => {
                    let me = *self.swarm.local_peer_id();
                    let mut rec = Record::new(keypackage_key(&me), record);
                    rec.publisher = Some(me);
                    match self.swarm.behaviour_mut().kad.put_record(rec, Quorum::One) {
                        Ok(q) => self.dm.publish_query = Some(q),
                        Err(e) => tracing::debug!("cannot publish key package: {e}"),
                    }
                }
                Action::WhenDurable(peer) => {
                    self.after_durable(move |el| el.dm_input(Input::DiskReady(peer)))
                }
                Action::Emit(event) => {
                    let _ = self.events.send(event);
                }
                Action::Prefetch(a) => self.prefetch_attachment(&a),
                Action::RequestsChanged => self.requests_changed(),
                Action::Penalise(peer, offence) => self.penalise(peer, offence),
                Action::Accepted(peer) => {
                    if let Err(e) = self.accepted_by_writing(&peer) {
                        tracing::warn!(%peer, "request not accepted in full: {e}");
                        result = Err(e);
                    }
                }
                Action::Route { from, via, routed } => {
                    if let Err(e) = self.route_envelope(&from, &via, routed) {
                        tracing::debug!(%from, "group envelope refused: {e}");
                    }
                }
            }
        }
        result
    }

    /// Sends a request on `/samizdat/dm/1`; its answer is routed by what it was.
    pub(super) fn send_dm_request(&mut self, peer: &PeerId, request: v1::DmRequest, sent: Sent) {
        let id = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(peer, Frame::Valid(request));
        self.dm.requests.insert(id, sent);
    }

    /// Stores what the last MLS operations changed in its state.
    pub(super) fn save_mls(&mut self) -> Result<(), NodeError> {
        self.mls.save(&*self.store)
    }

    // ----- commands -----------------------------------------------------------------------------

    /// `dm send`.
    pub(crate) fn dm_send(
        &mut self,
        target: PeerId,
        text: String,
        expires_in: Option<std::time::Duration>,
        attachment: Option<v1::Attachment>,
    ) -> Result<DmView, NodeError> {
        // (Writing to a peer whose request waited accepts it: a failure there fails the send.)
        let (sent, accepted) = self.dm_command_checked(|d, ctx, now| {
            d.send(ctx, target, text, expires_in, attachment, now)
        });
        let view = sent?;
        accepted.map(|()| view)
    }

    fn dm_reader(&self) -> Reader<'_> {
        Reader {
            me: *self.swarm.local_peer_id(),
            book: &self.devices.book,
            store: &*self.store,
        }
    }

    /// `dm history`.
    pub(crate) fn dm_history(&self, target: &PeerId) -> Result<Vec<DmView>, NodeError> {
        self.dm.core.history(&self.dm_reader(), target)
    }

    /// `dm list`.
    pub(crate) fn dm_conversations(&self) -> Result<Vec<crate::dm::DmConversationView>, NodeError> {
        self.dm.core.conversations(&self.dm_reader())
    }

    /// Direct conversations held as requests: (peer, newest message, when it arrived).
    pub(super) fn dm_requests(&self) -> Vec<(PeerId, Option<DmView>, u64)> {
        self.dm.core.requests(&self.dm_reader())
    }

    /// Accepts `peer`'s direct-message request.
    pub(super) fn accept_dm_requests(&mut self, peer: &PeerId) -> Result<bool, NodeError> {
        self.dm_command(|d, ctx, _| d.accept(ctx, peer))
    }

    /// Declines `peer`'s direct-message request.
    pub(super) fn decline_dm_requests(&mut self, peer: &PeerId) -> Result<bool, NodeError> {
        self.dm_command(|d, ctx, _| d.decline(ctx, peer))
    }

    /// Drops what waits to be delivered to `peer` (a revoked device).
    pub(super) fn dm_forget_outbox(&mut self, peer: &PeerId) {
        self.dm_command(|d, ctx, _| d.forget_outbox(ctx, peer));
    }

    /// A direct message granted by another device of this account.
    pub(super) fn store_granted_dm(&mut self, m: &v1::StoredDm) {
        self.dm_command(|d, ctx, _| d.granted(ctx, m));
    }

    /// An envelope of a private group (a Welcome, or the commit that removes a member),
    /// queued for `peer` and delivered like a direct message.
    pub(super) fn queue_group_envelope(
        &mut self,
        peer: &PeerId,
        sent_ms: u64,
        mls_message: Vec<u8>,
        invite: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.dm_command(|d, ctx, now| {
            d.queue_envelope(ctx, peer, sent_ms, mls_message, b"", invite, now)?;
            d.try_deliver(ctx, peer, now);
            Ok(())
        })
    }

    /// Looks `peer`'s KeyPackage up at once (an invitation waits for it).
    pub(super) fn want_keypackage(&mut self, peer: PeerId) {
        self.dm.core.want_keypackage(peer);
        self.dm_command(|d, _, now| d.lookup_keypackages(now));
    }

    // ----- facts --------------------------------------------------------------------------------

    /// Whether `peer` is someone this node knows.
    pub(crate) fn is_known_peer(&self, peer: &PeerId) -> bool {
        self.dm
            .core
            .is_known(&self.devices.book, &*self.store, peer)
    }

    /// Peers this node has a conversation with.
    pub(super) fn conversation_peer_ids(&self) -> Vec<PeerId> {
        self.dm.core.conversation_peer_ids()
    }

    /// Peers that direct messages wait to be delivered to (the connection manager keeps them).
    pub(super) fn dm_waiting_peers(&self) -> std::collections::HashSet<PeerId> {
        self.dm.core.waiting_peers()
    }

    /// Direct and group messages dropped while waiting, since start.
    pub(crate) fn held_dropped(&self) -> u64 {
        self.dm
            .core
            .held_dropped()
            .saturating_add(self.groups_early_dropped())
    }

    /// Mail held for others that made room for other mail or expired, since start.
    pub(crate) fn dm_mail_evicted(&self) -> u64 {
        self.dm.core.mail_evicted()
    }

    /// Bounds the set of peers asked for mail since start.
    pub(crate) fn dm_prune(&mut self) {
        self.dm.core.prune();
    }

    // ----- what arrives -------------------------------------------------------------------------

    /// Once a second.
    pub(crate) fn dm_tick(&mut self) {
        self.dm_input(Input::Tick);
    }

    /// A connection to `peer` opened: deliver what waits for it.
    pub(crate) fn dm_on_connected(&mut self, peer: &PeerId) {
        self.dm_input(Input::Connected(*peer));
    }

    /// A peer told what it speaks: a Samizdat node may hold mail for this one.
    pub(crate) fn dm_on_identified(&mut self, peer: PeerId, protocols: &[libp2p::StreamProtocol]) {
        let dm = protocols.contains(&crate::net::wire::DM_PROTOCOL);
        self.dm_input(Input::Identified { peer, dm });
    }

    pub(crate) fn dm_on_disconnected(&mut self, peer: &PeerId) {
        self.dm_input(Input::Disconnected(*peer));
    }

    /// Whether a DHT query is one made for direct messages.
    pub(crate) fn dm_owns_query(&self, id: &QueryId) -> bool {
        self.dm.kp_queries.contains_key(id)
            || self.dm.mailbox_queries.contains_key(id)
            || self.dm.publish_query == Some(*id)
    }

    /// A KeyPackage record or a closest-peers answer for direct messages.
    pub(crate) fn dm_on_kad(&mut self, id: QueryId, result: &kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                if let Some(peer) = self.dm.kp_queries.get(&id).copied() {
                    self.adopt_keypackage(&peer, &found.record);
                }
            }
            kad::QueryResult::PutRecord(r) if self.dm.publish_query == Some(id) => {
                self.dm.publish_query = None;
                if let Err(e) = r {
                    tracing::debug!("key package not published yet: {e}");
                }
                self.dm_input(Input::Published(r.is_ok()));
            }
            kad::QueryResult::GetClosestPeers(Ok(ok)) => {
                if let Some(query) = self.dm.mailbox_queries.remove(&id) {
                    let peers = ok.peers.iter().map(|p| p.peer_id).collect();
                    self.dm_input(Input::Holders { query, peers });
                }
            }
            kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                peers,
                ..
            })) => {
                if let Some(query) = self.dm.mailbox_queries.remove(&id) {
                    let peers = peers.iter().map(|p| p.peer_id).collect();
                    self.dm_input(Input::Holders { query, peers });
                }
            }
            _ => {}
        }
        if last {
            if let Some(peer) = self.dm.kp_queries.remove(&id) {
                self.dm.core.lookup_ended(&peer);
            }
            self.dm.mailbox_queries.remove(&id);
        }
    }

    /// A KeyPackage record found: checked, then handed to the groups that invite its owner
    /// and to the conversation waiting for it.
    fn adopt_keypackage(&mut self, peer: &PeerId, record: &Record) {
        if !self.dm.core.needs_keypackage(peer) {
            return;
        }
        let kp = match open_keypackage_record(&record.key, &record.value) {
            Ok(r) if r.peer == *peer => r,
            Ok(_) | Err(_) => {
                tracing::debug!(%peer, "invalid key package record ignored");
                return;
            }
        };
        if self.group_wants_keypackage(peer) {
            self.groups_on_keypackage(peer, &kp.key_package);
        }
        self.dm_input(Input::KeyPackage {
            peer: *peer,
            key_package: kp.key_package,
        });
    }

    /// An event of the `/samizdat/dm/1` protocol.
    pub(crate) fn on_dm_event(
        &mut self,
        event: request_response::Event<Frame<v1::DmRequest>, v1::DmResponse>,
    ) {
        match self.dm.requests.on_event(event) {
            Exchange::Malformed { peer, why } => {
                self.protocol_violation(peer, "direct-message", &why)
            }
            Exchange::Request {
                peer,
                request,
                channel,
            } => self.answer_dm(peer, request, channel),
            Exchange::Response {
                peer,
                response,
                context,
                ..
            } => match context {
                Sent::Direct(direct::Sent::Collect) => self.on_collected(peer, response),
                Sent::Direct(sent) => self.dm_input(Input::Response {
                    peer,
                    sent,
                    response,
                }),
                Sent::GroupSync(group) => self.on_group_sync(peer, group, response),
                Sent::Link => self.on_link_answer(peer, response),
                Sent::Devices => {
                    if !response.error.is_empty() {
                        tracing::debug!(%peer, "device list refused: {}", response.error);
                        if response.error == "rate limited" {
                            self.device_push_failed(&peer);
                        }
                    }
                }
            },
            Exchange::Failed {
                peer,
                context,
                error,
                ..
            } => {
                tracing::debug!(%peer, "direct-message request failed: {error}");
                match context {
                    Sent::Direct(sent) => self.dm_input(Input::Failed { peer, sent }),
                    Sent::GroupSync(group) => self.on_group_sync_failed(&group),
                    Sent::Link => self.on_link_answer(
                        peer,
                        v1::DmResponse {
                            error: error.to_string(),
                            ..Default::default()
                        },
                    ),
                    Sent::Devices => self.device_push_failed(&peer),
                }
            }
            Exchange::InboundFailed { peer, error } => {
                tracing::debug!(%peer, "direct-message request from peer failed: {error}");
            }
            Exchange::Nothing => {}
        }
    }

    /// Answers a peer's request on `/samizdat/dm/1`.
    fn answer_dm(
        &mut self,
        peer: PeerId,
        request: v1::DmRequest,
        channel: ResponseChannel<v1::DmResponse>,
    ) {
        let mut resp = v1::DmResponse::default();
        let now = Now::current();
        if !self.dm.core.allow(peer, now) {
            resp.error = "rate limited".into();
            let _ = self.swarm.behaviour_mut().dm.send_response(channel, resp);
            return;
        }
        match request.kind {
            Some(v1::dm_request::Kind::Deliver(d)) => self.answer_deliver(peer, d, &mut resp),
            Some(v1::dm_request::Kind::Deposit(d)) => {
                self.dm_command(|c, _, now| c.answer_deposit(peer, &d, &mut resp, now))
            }
            Some(v1::dm_request::Kind::GroupSync(q)) => {
                self.answer_group_sync(&peer, &q, &mut resp)
            }
            Some(v1::dm_request::Kind::Link(req)) => match self.answer_link(peer, req) {
                Ok(grant) => resp.link = Some(grant),
                Err(e) => {
                    tracing::info!(%peer, "device link refused: {e}");
                    resp.error = e;
                }
            },
            Some(v1::dm_request::Kind::Devices(push)) => {
                resp.error = self.answer_devices(peer, push)
            }
            Some(v1::dm_request::Kind::Collect(_)) => {
                self.dm_command(|c, _, now| c.answer_collect(peer, &mut resp, now))
            }
            None => resp.error = "empty request".into(),
        }
        // `accepted` hands the envelopes over (the sender or holder forgets them), and group
        // logs served may hold this node's newest ciphertexts: only once on disk.
        self.after_durable(move |el| {
            let _ = el.swarm.behaviour_mut().dm.send_response(channel, resp);
        });
    }

    /// A peer delivers its own envelopes to this node: each checked and taken (or refused)
    /// in order. `accepted` counts a prefix: what follows a `busy` is kept by the sender.
    fn answer_deliver(&mut self, peer: PeerId, d: v1::DmDeliver, resp: &mut v1::DmResponse) {
        let mut answer = direct::DeliveryAnswer::new(peer, *self.swarm.local_peer_id());
        for env in d.envelopes.into_iter().take(direct::DeliveryAnswer::MAX) {
            let taken = match answer.admit(&env, Now::current()) {
                Err(why) => direct::Taken::Refused(why),
                Ok(()) => match self.receive_envelope(&peer, &peer, env) {
                    Ok(()) => direct::Taken::Yes,
                    Err(DmError::Busy) => direct::Taken::Busy,
                    Err(e) => direct::Taken::Refused(e.to_string()),
                },
            };
            if !answer.record(taken) {
                break;
            }
        }
        *resp = answer.finish();
    }

    /// A holder handed over this node's mail: each envelope taken in turn (a group's reaches
    /// the group component before the next is looked at).
    fn on_collected(&mut self, holder: PeerId, response: v1::DmResponse) {
        let me = *self.swarm.local_peer_id();
        let mut got = 0u32;
        for (sender, env) in direct::collected(&me, &holder, response, Now::current()) {
            match self.receive_envelope(&sender, &holder, env) {
                Ok(()) => got = got.saturating_add(1),
                Err(e) => tracing::debug!("collected mail refused: {e}"),
            }
        }
        if got > 0 {
            tracing::debug!(%holder, got, "mail collected");
        }
    }

    /// Processes one envelope from `from`, handed over by `via`: by the component, or by the
    /// group component when it is a group's.
    fn receive_envelope(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        env: v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let routed = self.dm_command(|d, ctx, now| d.receive(ctx, from, via, env, now))?;
        self.route_envelope(from, via, routed)
    }

    /// An envelope the component found to be a group's, handed to the group component.
    fn route_envelope(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        routed: Routed,
    ) -> Result<(), DmError> {
        match routed {
            Routed::Done => Ok(()),
            Routed::Invite(id, env) => {
                self.receive_group_invite(from, &env)?;
                let _ = self
                    .store
                    .private()
                    .mark_seen(&id, crate::channel::now_ms());
                Ok(())
            }
            Routed::Group(group, wire) => self.receive_group_direct(&group, wire, *via),
        }
    }

    /// The user wrote to a peer whose direct-message request waited: its group invitations
    /// are accepted too, and it becomes a contact.
    fn accepted_by_writing(&mut self, peer: &PeerId) -> Result<(), NodeError> {
        self.accept_group_requests(peer)?;
        self.add_contact_if_new(peer)
    }
}
