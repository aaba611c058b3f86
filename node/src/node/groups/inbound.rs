//! What arrives for groups: gossip admitted and received, messages of later epochs held for
//! their commit, invitations, and this node's own removal.

use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, TopicHash};
use prost::Message as _;
use samizdat_proto::v1;

use super::{Action, Ctx, Groups, Now, Write, wire_id};
use crate::dm::held::NotHeld;
use crate::dm::{DmError, check_body};
use crate::group::gate::{Arrival, Gate, admit, log_time};
use crate::group::state::{GroupRecord, SYNC_SLACK_MS};
use crate::group::{GroupId, GroupMessageView, MAX_GROUP_MESSAGE_BYTES, open_invite};
use crate::mls::MlsError;
use crate::mls::group::{GroupIncoming, header};
use crate::node::views::Event;

/// Processing order of caught-up messages: by epoch, a commit after its epoch's messages.
pub(super) fn order_key(w: &v1::GroupWire) -> (u64, bool, u64) {
    match header(&w.mls_message) {
        Some(h) => (h.epoch, h.commit, w.sent_ms),
        None => (u64::MAX, true, w.sent_ms),
    }
}

impl<R> Groups<R> {
    /// Decides what happens to a message on a group topic.
    pub(super) fn on_gossip(
        &mut self,
        ctx: &Ctx<'_>,
        topic: &TopicHash,
        data: &[u8],
        via: PeerId,
        now: Now,
    ) -> MessageAcceptance {
        let Some(group) = self.state.topics.get(topic).copied() else {
            return MessageAcceptance::Ignore;
        };
        let Ok(wire) = v1::GroupWire::decode(data) else {
            return MessageAcceptance::Reject;
        };
        // One message, one encoding (padded copies would each be new to gossipsub).
        if wire.encode_to_vec() != data {
            return MessageAcceptance::Reject;
        }
        match self.receive(ctx, &group, wire, via, now) {
            Ok(true) => MessageAcceptance::Accept,
            Ok(false) => MessageAcceptance::Ignore,
            Err(e) if e.is_future_epoch() => {
                // Its commit did not reach us yet: catch up from the neighbour that passed it
                // on (messages name no publisher; a peer on a group's topic is a member, or
                // one that refuses catch-up to non-members anyway).
                self.ask(ctx, &group, via, false, now);
                MessageAcceptance::Ignore
            }
            Err(e) => {
                tracing::debug!(group = %group, %via, "group message rejected: {e}");
                MessageAcceptance::Reject
            }
        }
    }

    /// Processes one message of a group, once, handed over by `via` (the gossip neighbour,
    /// the member that answered a catch-up, or the envelope's sender). `Ok(true)`: new and
    /// valid; `Ok(false)`: a duplicate or one this node cannot read by design (sent before it
    /// joined, or too far ahead of it).
    pub(super) fn receive(
        &mut self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        mut wire: v1::GroupWire,
        via: PeerId,
        now: Now,
    ) -> Result<bool, DmError> {
        wire.sent_ms = log_time(wire.sent_ms, now.ms);
        // Cheapest first, as the gate decides: a message refused for its size is neither
        // hashed nor parsed, a duplicate is not parsed.
        let fits = wire.mls_message.len() <= MAX_GROUP_MESSAGE_BYTES;
        let id = fits.then(|| wire_id(&wire));
        let seen = id.is_some_and(|id| {
            self.marked.contains(&id) || matches!(ctx.store.private().seen(&id), Ok(true))
        });
        let h = if fits && !seen {
            header(&wire.mls_message)
        } else {
            None
        };
        let arrival = Arrival {
            group,
            len: wire.mls_message.len(),
            seen,
            standing: self.state.standing(group),
            header: h.as_ref(),
        };
        match admit(&arrival) {
            Gate::Process => {}
            Gate::Drop => return Ok(false),
            Gate::Refuse(e) => return Err(e),
        }
        // (Processed only when it fits, is new and parsed: all three are there.)
        let (Some(id), Some(owner), Some(h)) =
            (id, self.state.groups.get(group).map(|s| s.owner), h)
        else {
            return Err(DmError::UnknownGroup);
        };
        let incoming = match ctx
            .mls
            .group_receive(group.as_bytes(), &owner, &wire.mls_message)
        {
            Err(MlsError::FutureEpoch) => {
                let len = wire.mls_message.len();
                // Charged to the peer that handed it over (gossip neighbour, catch-up server),
                // but not held against it: honest members relay whole epochs this node has not
                // reached. The bound is what protects the node.
                if let Err(NotHeld::PeerQuota) = self.state.early.hold(
                    via,
                    group.as_bytes().to_vec(),
                    h.epoch,
                    id,
                    len,
                    wire,
                    now.at,
                ) {
                    tracing::debug!(peer = %via, "too many group messages waiting for a commit");
                }
                return Err(DmError::FutureEpoch);
            }
            other => other?,
        };
        self.marked.insert(id);
        self.write(Write::Mls);
        self.write(Write::Seen(id, now.ms));
        if let Some(s) = self.state.groups.get_mut(group) {
            s.held_up_to(wire.sent_ms);
        }
        self.write(Write::Log(*group, wire, id));
        match incoming {
            GroupIncoming::Application { author, plaintext } => {
                if let Some(s) = self.state.groups.get_mut(group) {
                    // It wrote in this epoch: any removal before it has reached it.
                    s.reach.note_epoch(author, h.epoch, &s.members);
                }
                if ctx.facts.revoked(&author) {
                    // Its account revoked it: taken off the wire, never shown (the group's
                    // owner removes it from the group when it learns).
                    tracing::debug!(group = %group, %author, "group message of a revoked device dropped");
                    return Ok(true);
                }
                let body =
                    v1::DmBody::decode(plaintext.as_slice()).map_err(|_| DmError::Malformed)?;
                check_body(&body)?;
                if body.expires_at_ms != 0 && body.expires_at_ms <= now.ms {
                    return Ok(true);
                }
                let stored = v1::StoredGroupMessage {
                    group_id: group.as_bytes().to_vec(),
                    author: author.to_bytes(),
                    body: Some(body),
                    received_ms: now.ms,
                };
                self.store_message(stored.clone());
                if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.clone()) {
                    self.out.push(Action::Prefetch(a));
                }
                if let Some(view) = GroupMessageView::of(&ctx.me, &stored) {
                    self.out
                        .push(Action::Emit(Event::GroupMessage { message: view }));
                }
            }
            GroupIncoming::Commit { removed_me } => {
                let left = self.refresh_members(ctx, group);
                if removed_me {
                    self.leave(ctx, group);
                } else {
                    tracing::debug!(group = %group, "group moved to a new epoch");
                    self.retry_early(ctx, group, now);
                    // A removal: tell the owner it reached this node (a catch-up request names
                    // the epoch), so that whoever revoked a device can know.
                    if left && owner != ctx.me {
                        if let Some(s) = self.state.groups.get_mut(group) {
                            // Until the owner answers (the tick asks again, and dials it).
                            s.owes_owner_epoch = true;
                        }
                        if ctx.facts.connected(&owner) {
                            self.ask(ctx, group, owner, true, now);
                        }
                    }
                }
                self.emit_changed(ctx, group);
            }
        }
        Ok(true)
    }

    /// A message for the user: stored, and the next expiry looked for again if it expires.
    pub(crate) fn store_message(&mut self, stored: v1::StoredGroupMessage) {
        if stored.body.as_ref().is_some_and(|b| b.expires_at_ms != 0) {
            // (None: the next pass looks at every expiry.)
            self.state.next_expiry = None;
        }
        self.write(Write::Message(stored));
    }

    /// Processes the held messages of the epochs a group has now reached.
    fn retry_early(&mut self, ctx: &Ctx<'_>, group: &GroupId, now: Now) {
        let epoch = self.state.groups.get(group).map_or(0, |s| s.epoch);
        let mut mine = self.state.early.release(group.as_bytes(), epoch);
        mine.sort_by_key(|(_, w)| order_key(w));
        for (via, w) in mine {
            let _ = self.receive(ctx, group, w, via, now);
        }
    }

    /// This node was removed: it stops following the group and keeps what it had read.
    fn leave(&mut self, ctx: &Ctx<'_>, group: &GroupId) {
        let Some(s) = self.state.groups.get_mut(group) else {
            return;
        };
        s.record.active = false;
        let topic = s.topic.clone();
        self.out.push(Action::Unsubscribe(topic));
        self.state.early.forget_group(group.as_bytes());
        // Its MLS state can read nothing new; dropping it also lets a later invitation in.
        if ctx.mls.forget(group.as_bytes()).is_ok() {
            self.write(Write::Mls);
        }
        self.save_group(group);
        tracing::info!(group = %group, "removed from the group");
    }

    /// A group's message sent straight to this node (the commit that removes it), by `via`.
    pub(crate) fn receive_direct(
        &mut self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        wire: v1::GroupWire,
        via: PeerId,
        now: Now,
    ) -> Result<(), DmError> {
        self.receive(ctx, group, wire, via, now).map(|_| ())
    }

    /// A Welcome into a group, with its sealed invitation, from `from`; `known`: whether the
    /// user knows the sender (otherwise the invitation waits as a request).
    pub(crate) fn invite_arrived(
        &mut self,
        ctx: &Ctx<'_>,
        from: &PeerId,
        env: &v1::DmEnvelope,
        known: bool,
        now: Now,
    ) -> Result<(), DmError> {
        let (group_bytes, key) = ctx.mls.group_join(from, &env.mls_message)?;
        let invite = match GroupId::from_slice(&group_bytes)
            .ok_or(DmError::NotAllowed("a group id is 16 bytes"))
            .and_then(|_| open_invite(&key, &group_bytes, &env.group_invite))
            .and_then(|i| {
                let owner = PeerId::from_bytes(&i.owner).map_err(|_| DmError::Malformed)?;
                if owner != *from {
                    return Err(DmError::NotAllowed("only the group's owner invites"));
                }
                crate::group::check_name(&i.name)?;
                Ok(i)
            }) {
            Ok(i) => i,
            Err(e) => {
                let _ = ctx.mls.forget(&group_bytes);
                return Err(e);
            }
        };
        let group = GroupId::from_slice(&group_bytes).ok_or(DmError::Malformed)?;
        self.write(Write::Mls);
        let (_, epoch, _) = ctx.mls.group_state(group.as_bytes())?;
        let record = GroupRecord {
            name: invite.name,
            owner: from.to_string(),
            created_ms: invite.created_ms,
            joined_ms: now.ms,
            join_epoch: epoch,
            active: true,
            next_seq: 1,
            request: !known,
        };
        // Catch up from the invitation's time: what was sent since is readable.
        let since = env.sent_ms.saturating_sub(SYNC_SLACK_MS);
        self.install(ctx, group, record);
        if let Some(s) = self.state.groups.get_mut(&group) {
            s.synced_ms = since;
        }
        self.save_group(&group);
        if !known {
            tracing::info!(group = %group, owner = %from, "group invitation from a stranger held as a request");
            self.out.push(Action::RequestsChanged);
            return Ok(());
        }
        tracing::info!(group = %group, owner = %from, "joined a group");
        self.emit_changed(ctx, &group);
        self.ask(ctx, &group, *from, true, now);
        Ok(())
    }
}
