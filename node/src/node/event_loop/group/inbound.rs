//! What arrives for groups: gossip validated and received, invitations, leaving.

#![warn(clippy::arithmetic_side_effects)]

use super::*;
use crate::group::gate::{Arrival, Gate, admit, log_time};

impl EventLoop {
    /// Whether a gossip topic is a group's.
    pub(crate) fn is_group_topic(&self, topic: &TopicHash) -> bool {
        self.groups.topics.contains_key(topic)
    }

    /// Decides what happens to a message on a group topic.
    pub(crate) fn validate_group(
        &mut self,
        message: &gossipsub::Message,
        propagation_source: PeerId,
    ) -> MessageAcceptance {
        let Some(group) = self.groups.topics.get(&message.topic).cloned() else {
            return MessageAcceptance::Ignore;
        };
        let Ok(wire) = v1::GroupWire::decode(message.data.as_slice()) else {
            return MessageAcceptance::Reject;
        };
        // One message, one encoding (padded copies would each be new to gossipsub).
        if wire.encode_to_vec() != message.data {
            return MessageAcceptance::Reject;
        }
        match self.receive_group_wire(&group, wire, propagation_source) {
            Ok(true) => MessageAcceptance::Accept,
            Ok(false) => MessageAcceptance::Ignore,
            Err(e) if e.is_future_epoch() => {
                // Its commit did not reach us yet: catch up from the neighbour that passed it
                // on (messages name no publisher; a peer on a group's topic is a member, or
                // one that refuses catch-up to non-members anyway).
                self.group_sync_with(&group, propagation_source, false);
                MessageAcceptance::Ignore
            }
            Err(e) => {
                tracing::debug!(group = %group, via = %propagation_source, "group message rejected: {e}");
                MessageAcceptance::Reject
            }
        }
    }

    /// Processes one message of a group, once, handed over by `via` (the gossip neighbour,
    /// the member that answered a catch-up, or the envelope's sender). `Ok(true)`: new and
    /// valid; `Ok(false)`: a duplicate or one this node cannot read by design (sent before it
    /// joined, or too far ahead of it).
    pub(crate) fn receive_group_wire(
        &mut self,
        group: &GroupId,
        mut wire: v1::GroupWire,
        via: PeerId,
    ) -> Result<bool, DmError> {
        wire.sent_ms = log_time(wire.sent_ms, now_ms());
        // Cheapest first, as the gate decides: a message refused for its size is neither
        // hashed nor parsed, a duplicate is not parsed.
        let fits = wire.mls_message.len() <= MAX_GROUP_MESSAGE_BYTES;
        let id = fits.then(|| wire_id(&wire));
        let seen = id.is_some_and(|id| matches!(self.store.private().seen(&id), Ok(true)));
        let h = if fits && !seen {
            header(&wire.mls_message)
        } else {
            None
        };
        let arrival = Arrival {
            group,
            len: wire.mls_message.len(),
            seen,
            standing: self.groups.standing(group),
            header: h.as_ref(),
        };
        match admit(&arrival) {
            Gate::Process => {}
            Gate::Drop => return Ok(false),
            Gate::Refuse(e) => return Err(e),
        }
        // (Processed only when it fits, is new and parsed: all three are there.)
        let (Some(id), Some(owner), Some(h)) =
            (id, self.groups.groups.get(group).map(|s| s.owner), h)
        else {
            return Err(DmError::UnknownGroup);
        };
        let incoming = match self.mls.client.group_receive(
            group.as_bytes(),
            &owner,
            &wire.mls_message,
        ) {
            Err(crate::mls::MlsError::FutureEpoch) => {
                let len = wire.mls_message.len();
                // Charged to the peer that handed it over (gossip neighbour, catch-up server),
                // but not held against it: honest members relay whole epochs this node has not
                // reached. The bound is what protects the node.
                if let Err(NotHeld::PeerQuota) = self.groups.early.hold(
                    via,
                    group.as_bytes().to_vec(),
                    h.epoch,
                    id,
                    len,
                    wire,
                    Instant::now(),
                ) {
                    tracing::debug!(peer = %via, "too many group messages waiting for a commit");
                }
                return Err(DmError::FutureEpoch);
            }
            other => other?,
        };
        let store = |e: NodeError| DmError::Store(e.to_string());
        self.save_mls().map_err(store)?;
        self.store
            .private()
            .mark_seen(&id, now_ms())
            .map_err(|e| store(e.into()))?;
        self.log_wire(group, &wire, &id).map_err(store)?;
        match incoming {
            GroupIncoming::Application { author, plaintext } => {
                if let Some(s) = self.groups.groups.get_mut(group) {
                    // It wrote in this epoch: any removal before it has reached it.
                    s.reach.note_epoch(author, h.epoch, &s.members);
                }
                if self.is_revoked_device(&author) {
                    // Its account revoked it: taken off the wire, never shown (the group's
                    // owner removes it from the group when it learns).
                    tracing::debug!(group = %group, %author, "group message of a revoked device dropped");
                    return Ok(true);
                }
                let body =
                    v1::DmBody::decode(plaintext.as_slice()).map_err(|_| DmError::Malformed)?;
                check_body(&body)?;
                if body.expires_at_ms != 0 && body.expires_at_ms <= now_ms() {
                    return Ok(true);
                }
                let stored = v1::StoredGroupMessage {
                    group_id: group.as_bytes().to_vec(),
                    author: author.to_bytes(),
                    body: Some(body),
                    received_ms: now_ms(),
                };
                self.store_group_message(&stored).map_err(store)?;
                if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.as_ref()) {
                    self.prefetch_attachment(a);
                }
                if let Some(view) = GroupMessageView::of(self.swarm.local_peer_id(), &stored) {
                    let _ = self.events.send(Event::GroupMessage { message: view });
                }
            }
            GroupIncoming::Commit { removed_me } => {
                let before = self.groups.groups.get(group).map(|s| s.members.clone());
                self.refresh_members(group);
                if removed_me {
                    self.leave_group(group);
                } else {
                    tracing::debug!(group = %group, "group moved to a new epoch");
                    self.retry_early(group);
                    // A removal: tell the owner it reached this node (a catch-up request names
                    // the epoch), so that whoever revoked a device can know.
                    let me = *self.swarm.local_peer_id();
                    if let Some(s) = self.groups.groups.get_mut(group)
                        && before.is_some_and(|b| b.iter().any(|p| !s.members.contains(p)))
                        && s.owner != me
                    {
                        // Until the owner answers (group_tick asks again, and dials it).
                        s.owes_owner_epoch = true;
                        if self.swarm.is_connected(&owner) {
                            self.group_sync_with(group, owner, true);
                        }
                    }
                }
                if let Ok(view) = self.group_view(group) {
                    let _ = self.events.send(Event::GroupChanged { group: view });
                }
            }
        }
        Ok(true)
    }

    /// Processes the held messages of the epochs a group has now reached.
    pub(crate) fn retry_early(&mut self, group: &GroupId) {
        let epoch = self.groups.groups.get(group).map_or(0, |s| s.epoch);
        let mut mine = self.groups.early.release(group.as_bytes(), epoch);
        mine.sort_by_key(|(_, w)| order_key(w));
        for (via, w) in mine {
            let _ = self.receive_group_wire(group, w, via);
        }
    }

    /// This node was removed: it stops following the group and keeps what it had read.
    pub(crate) fn leave_group(&mut self, group: &GroupId) {
        let Some(s) = self.groups.groups.get_mut(group) else {
            return;
        };
        s.record.active = false;
        let topic = s.topic.clone();
        self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
        self.groups.early.forget_group(group.as_bytes());
        // Its MLS state can read nothing new; dropping it also lets a later invitation in.
        if self.mls.client.forget(group.as_bytes()).is_ok() {
            let _ = self.save_mls();
        }
        let _ = self.save_group(group);
        tracing::info!(group = %group, "removed from the group");
    }

    /// A Welcome into a group, with its sealed invitation, from `from`.
    pub(crate) fn receive_group_invite(
        &mut self,
        from: &PeerId,
        env: &v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let (group_bytes, key) = self.mls.client.group_join(from, &env.mls_message)?;
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
                let _ = self.mls.client.forget(&group_bytes);
                return Err(e);
            }
        };
        let group = GroupId::from_slice(&group_bytes).ok_or(DmError::Malformed)?;
        let store = |e: NodeError| DmError::Store(e.to_string());
        self.save_mls().map_err(store)?;
        let (_, epoch, _) = self.mls.client.group_state(group.as_bytes())?;
        let record = GroupRecord {
            name: invite.name,
            owner: from.to_string(),
            created_ms: invite.created_ms,
            joined_ms: now_ms(),
            join_epoch: epoch,
            active: true,
            next_seq: 1,
            request: !self.is_known_peer(from),
        };
        let request = record.request;
        // Catch up from the invitation's time: what was sent since is readable.
        let since = env.sent_ms.saturating_sub(SYNC_SLACK_MS);
        self.install_group(group, record);
        if let Some(s) = self.groups.groups.get_mut(&group) {
            s.synced_ms = since;
        }
        self.save_group(&group).map_err(store)?;
        if request {
            tracing::info!(group = %group, owner = %from, "group invitation from a stranger held as a request");
            self.requests_changed();
            return Ok(());
        }
        tracing::info!(group = %group, owner = %from, "joined a group");
        if let Ok(view) = self.group_view(&group) {
            let _ = self.events.send(Event::GroupChanged { group: view });
        }
        self.group_sync_with(&group, *from, true);
        Ok(())
    }

    /// The group of this node an MLS message belongs to, if any (it must not be taken as a
    /// direct message).
    pub(crate) fn group_of_message(&self, mls_message: &[u8]) -> Option<GroupId> {
        crate::mls::MlsClient::group_of(mls_message)
            .and_then(|g| GroupId::from_slice(&g))
            .filter(|g| self.groups.groups.contains_key(g))
    }
}
