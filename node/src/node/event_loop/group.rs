//! Private groups in the event loop: what arrives is handed to the group component
//! ([`crate::node::groups`]) with the time, and the actions it returns are carried out here —
//! writes, publishing once on disk, catch-up requests, dials, envelopes, events.

use std::time::Duration;

use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::{PeerId, Swarm};
use samizdat_proto::v1;

use super::EventLoop;
use super::dm::Sent;
use crate::account::book::Accounts;
use crate::dm::DmError;
use crate::group::{GroupId, GroupMessageView, GroupView};
use crate::net::node_behaviour::NodeBehaviour;
use crate::node::NodeError;
use crate::node::command::Reply;
use crate::node::groups::{Action, Facts, Input, Now, Write};

/// Private-group state of the event loop (answers to `group invite` wait in it).
pub(crate) type Groups = crate::node::groups::Groups<Reply<GroupView>>;

/// What the group component asks of the rest of the node.
struct LoopFacts<'a> {
    swarm: &'a Swarm<NodeBehaviour>,
    book: &'a Accounts,
}

impl Facts for LoopFacts<'_> {
    fn connected(&self, peer: &PeerId) -> bool {
        self.swarm.is_connected(peer)
    }

    fn revoked(&self, peer: &PeerId) -> bool {
        self.book.is_revoked(peer)
    }
}

/// Calls the group component with its context (built from disjoint fields of the loop, so
/// that the component itself can be borrowed mutably beside them).
macro_rules! with_groups {
    ($self:ident, |$g:ident, $ctx:ident| $body:expr) => {{
        let facts = LoopFacts {
            swarm: &$self.swarm,
            book: &$self.devices.book,
        };
        let $ctx = crate::node::groups::Ctx {
            me: *$self.swarm.local_peer_id(),
            mls: &$self.mls.client,
            store: &*$self.store,
            facts: &facts,
        };
        let $g = &mut $self.groups;
        $body
    }};
}

impl EventLoop {
    /// Hands the group component one input and carries out what it returns; the verdict on a
    /// gossip message, if the input was one.
    fn group_input(&mut self, input: Input) -> Option<MessageAcceptance> {
        let now = Now::current();
        let actions = with_groups!(self, |g, ctx| g.handle(&ctx, input, now));
        self.run_group_actions(actions, true).unwrap_or_else(|e| {
            tracing::warn!("group work not done: {e}");
            None
        })
    }

    /// Carries out the group component's actions in order. A failed write stops the rest
    /// (nothing goes out that what was not stored would have to back), and its error is
    /// returned; invitations waiting for an answer get it.
    fn run_group_actions(
        &mut self,
        actions: Vec<Action<Reply<GroupView>>>,
        lookup_now: bool,
    ) -> Result<Option<MessageAcceptance>, NodeError> {
        let mut verdict = None;
        let mut failed: Option<String> = None;
        for action in actions {
            if let Some(e) = &failed {
                // Only answers still go out, with the fault; a catch-up request not sent is
                // not waited for.
                match action {
                    Action::Answer(r, _) => {
                        let _ = r.send(Err(NodeError::Internal(e.clone())));
                    }
                    Action::Ask { group, .. } => self.groups.ask_skipped(&group),
                    _ => {}
                }
                continue;
            }
            match action {
                Action::Verdict(v) => verdict = Some(v),
                Action::Write(w) => {
                    let result = match w {
                        Write::Mls => self.save_mls(),
                        w => w.apply(&*self.store),
                    };
                    if let Err(e) = result {
                        tracing::warn!("a group write failed: {e}");
                        failed = Some(e.to_string());
                    }
                }
                Action::Publish { topic, data } => {
                    // The ratchet moved for this message: its state must be on disk before
                    // the ciphertext leaves, or a crash would make this node reuse a key.
                    self.after_durable(move |el| {
                        if let Err(e) = el.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                            // No member connected: they catch up from the log.
                            tracing::debug!("group message not gossiped: {e:?}");
                        }
                    });
                }
                Action::Ask { peer, group, query } => {
                    let req = v1::DmRequest {
                        kind: Some(v1::dm_request::Kind::GroupSync(query)),
                    };
                    self.send_dm_request(&peer, req, Sent::GroupSync(group));
                }
                Action::Dial(p) => {
                    let _ = self.swarm.dial(p);
                }
                Action::Subscribe(topic) => {
                    let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                    if let Err(e) = gossip.subscribe(&topic) {
                        tracing::warn!("cannot subscribe to a group topic: {e:?}");
                    }
                    let _ = gossip.set_topic_params(topic, crate::net::scoring::topic_params());
                }
                Action::Unsubscribe(topic) => {
                    self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
                }
                Action::Emit(event) => {
                    let _ = self.events.send(event);
                }
                Action::Envelope {
                    peer,
                    sent_ms,
                    mls_message,
                    invite,
                } => match self.queue_group_envelope(&peer, sent_ms, mls_message, invite) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!("a group envelope not queued: {e}");
                        failed = Some(e.to_string());
                    }
                },
                Action::WantKeyPackage(p) => {
                    if lookup_now {
                        self.want_keypackage(p);
                    } else {
                        self.dm.want_keypackage_later(p);
                    }
                }
                Action::Prefetch(a) => self.prefetch_attachment(&a),
                Action::RequestsChanged => self.requests_changed(),
                Action::Answer(r, result) => self.after_durable(move |_| {
                    let _ = r.send(result);
                }),
                Action::Expire => {
                    let next = self
                        .store
                        .private()
                        .expire_due(true, crate::channel::now_ms());
                    self.groups.expired(next);
                }
            }
        }
        match failed {
            Some(e) => Err(NodeError::Internal(e)),
            None => Ok(verdict),
        }
    }

    /// Runs a command of the group component and carries out its actions; a failed write
    /// makes the command fail.
    fn group_command<T>(
        &mut self,
        f: impl FnOnce(&mut Groups, &crate::node::groups::Ctx<'_>, Now) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let now = Now::current();
        let result = with_groups!(self, |g, ctx| f(g, &ctx, now));
        let actions = self.groups.take();
        self.run_group_actions(actions, true)?;
        result
    }

    /// Loads the groups and pending invitations from the store and joins their topics.
    pub(super) fn groups_open(&mut self) -> Result<(), NodeError> {
        let now = Now::current();
        let opened = with_groups!(self, |g, ctx| g.open(&ctx, now));
        let actions = self.groups.take();
        self.run_group_actions(actions, false)?;
        opened
    }

    /// `group create`.
    pub(crate) fn group_create(&mut self, name: String) -> Result<GroupView, NodeError> {
        self.group_command(|g, ctx, now| g.create(ctx, name, now))
    }

    /// `group list`.
    pub(crate) fn group_list(&self) -> Vec<GroupView> {
        self.groups.list(self.swarm.local_peer_id())
    }

    /// `group invite`: answered once the member is added (the invitee's KeyPackage found).
    pub(super) fn group_invite(&mut self, group: GroupId, peer: PeerId, reply: Reply<GroupView>) {
        let written = self.group_command(|g, ctx, now| {
            g.invite(ctx, group, peer, reply, now);
            Ok(())
        });
        if let Err(e) = written {
            // Not stored: the invitation is withdrawn, and whoever waits for it told why.
            for r in self.groups.withdraw(&group, &peer) {
                let _ = r.send(Err(NodeError::Internal(e.to_string())));
            }
        }
    }

    /// `group remove`.
    pub(crate) fn group_remove(
        &mut self,
        group: GroupId,
        peer: PeerId,
    ) -> Result<GroupView, NodeError> {
        self.group_command(|g, ctx, now| g.remove(ctx, group, peer, now))
    }

    /// `group post`.
    pub(crate) fn group_post(
        &mut self,
        group: GroupId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
    ) -> Result<GroupMessageView, NodeError> {
        self.group_command(|g, ctx, now| g.post(ctx, group, text, expires_in, attachment, now))
    }

    /// `group history`, oldest first.
    pub(crate) fn group_history(
        &mut self,
        group: &GroupId,
    ) -> Result<Vec<GroupMessageView>, NodeError> {
        self.group_command(|g, ctx, now| g.history(ctx, group, now))
    }

    /// Group invitations held as requests: (group id, owner, name, when).
    pub(super) fn group_requests(&self) -> Vec<(GroupId, PeerId, String, u64)> {
        self.groups.requests()
    }

    /// Accepts the group invitations `owner` sent: the groups are followed from now on.
    pub(super) fn accept_group_requests(&mut self, owner: &PeerId) -> Result<usize, NodeError> {
        self.group_command(|g, ctx, now| Ok(g.accept_from(ctx, owner, now)))
    }

    /// Declines the group invitations `owner` sent: their state and record are dropped.
    pub(super) fn decline_group_requests(&mut self, owner: &PeerId) -> Result<usize, NodeError> {
        self.group_command(|g, ctx, _| Ok(g.decline_from(ctx, owner)))
    }

    /// This node follows the removal of a revoked `device` from `group`.
    pub(super) fn group_follow_removal(&mut self, group: &GroupId, device: PeerId) {
        let me = *self.swarm.local_peer_id();
        self.groups.follow_removal(&me, group, device);
    }

    /// A group message granted by another device of this account.
    pub(super) fn store_granted_group_message(
        &mut self,
        stored: v1::StoredGroupMessage,
    ) -> Result<(), NodeError> {
        self.group_command(|g, _, _| {
            g.store_message(stored);
            Ok(())
        })
    }

    // ----- what arrives -----------------------------------------------------------------------

    /// Whether a gossip topic is a group's.
    pub(crate) fn is_group_topic(&self, topic: &TopicHash) -> bool {
        self.groups.is_topic(topic)
    }

    /// Decides what happens to a message on a group topic.
    pub(crate) fn validate_group(
        &mut self,
        message: &gossipsub::Message,
        via: PeerId,
    ) -> MessageAcceptance {
        self.group_input(Input::Gossip {
            topic: message.topic.clone(),
            data: message.data.clone(),
            via,
        })
        .unwrap_or(MessageAcceptance::Ignore)
    }

    /// A group's message sent straight to this node (the commit that removes it).
    pub(crate) fn receive_group_direct(
        &mut self,
        group: &GroupId,
        wire: v1::GroupWire,
        via: PeerId,
    ) -> Result<(), DmError> {
        let now = Now::current();
        let result = with_groups!(self, |g, ctx| g.receive_direct(&ctx, group, wire, via, now));
        let written = self.group_actions_after_receive();
        result.and(written)
    }

    /// A Welcome into a group, with its sealed invitation, from `from`.
    pub(crate) fn receive_group_invite(
        &mut self,
        from: &PeerId,
        env: &v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let now = Now::current();
        let known = self.is_known_peer(from);
        let result = with_groups!(self, |g, ctx| g.invite_arrived(&ctx, from, env, known, now));
        let written = self.group_actions_after_receive();
        result.and(written)
    }

    /// Carries out what an envelope's processing asked; a failed write is the envelope's
    /// failure (it is not marked seen, and the peer that handed it over hears of it).
    fn group_actions_after_receive(&mut self) -> Result<(), DmError> {
        let actions = self.groups.take();
        self.run_group_actions(actions, true)
            .map(|_| ())
            .map_err(|e| DmError::Store(e.to_string()))
    }

    /// Answers a member's catch-up request from the log.
    pub(crate) fn answer_group_sync(
        &mut self,
        peer: &PeerId,
        q: &v1::GroupSync,
        resp: &mut v1::DmResponse,
    ) {
        with_groups!(self, |g, ctx| g.serve(&ctx, peer, q, resp));
    }

    /// A member's answer to this node's catch-up request.
    pub(crate) fn on_group_sync(&mut self, peer: PeerId, group: GroupId, response: v1::DmResponse) {
        self.group_input(Input::SyncAnswer {
            peer,
            group,
            response,
        });
    }

    /// The request failed: another member is asked next time.
    pub(crate) fn on_group_sync_failed(&mut self, group: &GroupId) {
        self.group_input(Input::SyncFailed { group: *group });
    }

    /// A peer subscribed to a group's topic: it is a member (or says so); catch up with it.
    pub(crate) fn group_on_subscribed(&mut self, peer: PeerId, topic: &TopicHash) {
        if self.groups.is_topic(topic) {
            self.group_input(Input::Subscribed {
                peer,
                topic: topic.clone(),
            });
        }
    }

    /// A valid KeyPackage of `peer` arrived: add it to the groups it is invited to.
    pub(super) fn groups_on_keypackage(&mut self, peer: &PeerId, key_package: &[u8]) {
        // One group at a time: a write that fails for one must not hold back another's
        // commit and Welcome, whose epoch has moved.
        for group in self.groups.invited_to(peer) {
            self.group_input(Input::KeyPackage {
                group,
                peer: *peer,
                key_package: key_package.to_vec(),
            });
        }
    }

    /// Whether `peer`'s KeyPackage is still wanted by an invitation.
    pub(super) fn group_wants_keypackage(&self, peer: &PeerId) -> bool {
        self.groups.wants_keypackage(peer)
    }

    /// Housekeeping, once a second.
    pub(crate) fn group_tick(&mut self) {
        self.group_input(Input::Tick);
    }

    /// Group messages dropped while waiting for their commit, since start.
    pub(crate) fn groups_early_dropped(&self) -> u64 {
        self.groups.early_dropped()
    }
}
