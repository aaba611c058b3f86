//! Private groups in the event loop: creating, inviting (the Welcome travels like a direct
//! message, the commit on the group's topic), removing, posting, receiving by gossip and
//! catching up from other members. The cryptography is in [`crate::group::mls`].
//!
//! What it keeps (group records, invitations, messages, the ciphertext log members that
//! missed something are served, expiries) it keeps through [`crate::store::private`].

#![warn(clippy::arithmetic_side_effects)]

mod inbound;
mod sync;

use crate::net::wire::Frame;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use prost::Message as _;
use samizdat_proto::v1;
use sha2::{Digest, Sha256};

use super::EventLoop;
use super::dm::Sent;
use crate::channel::now_ms;
use crate::dm::held::NotHeld;
use crate::dm::{DmError, MAX_HOLD_MS, MAX_TEXT_BYTES, check_body};
use crate::group::state::{GroupRecord, GroupState, PendingInvite, Refusal, SYNC_SLACK_MS};
use crate::group::{
    GroupId, GroupMessageView, GroupView, MAX_GROUP_MESSAGE_BYTES, SYNC_PAGE, SYNC_PAGE_BYTES,
    check_name, open_invite, seal_invite, topic,
};
use crate::mls::group::{GroupIncoming, header};
use crate::node::NodeError;
use crate::node::command::Reply;
use crate::node::views::Event;

/// Members a node tries to stay connected to in each group (gossip needs a mesh).
const WANT_MEMBERS: usize = 3;
/// How often one member is dialed.
const REDIAL_MEMBER_EVERY: Duration = Duration::from_secs(30);
/// How often a group catches up from another member when nothing else prompted it.
const SYNC_EVERY: Duration = Duration::from_secs(60);
/// Shortest pause between two catch-ups of a group.
const SYNC_MIN_GAP: Duration = Duration::from_secs(2);
/// How long the ciphertext log is kept (members away longer rejoin by a new invitation).
const LOG_FOR_MS: u64 = MAX_HOLD_MS;
/// Messages of later epochs waiting for their commit: bounded per peer that handed them over
/// and in all (a commit may be close to 1 MiB in a large group).
const EARLY: crate::dm::held::Limits = crate::dm::held::Limits {
    per_peer: 64,
    per_peer_bytes: 4 * 1024 * 1024,
    total: 512,
    total_bytes: 16 * 1024 * 1024,
    max_item_bytes: MAX_GROUP_MESSAGE_BYTES,
    ttl: Duration::from_secs(600),
};
/// How long `group invite` waits for the invitee's KeyPackage before answering.
const INVITE_WAIT: Duration = Duration::from_secs(45);

/// Private-group state of the event loop (answers to `group invite` wait in it).
pub(crate) type Groups = crate::group::state::Groups<Reply<GroupView>>;

/// No groups yet.
pub(crate) fn no_groups() -> Groups {
    Groups::new(EARLY)
}

fn wire_id(wire: &v1::GroupWire) -> [u8; 32] {
    Sha256::digest(&wire.mls_message).into()
}

/// An owner's operation refused, as the user sees it.
fn refused(group: &GroupId, e: Refusal) -> NodeError {
    match e {
        Refusal::Unknown => NodeError::UnknownGroup(group.to_string()),
        e => NodeError::NotAllowed(e.to_string()),
    }
}

fn dm_err(e: impl Into<DmError>) -> NodeError {
    use crate::mls::MlsError;
    match e.into() {
        DmError::UnknownGroup | DmError::Mls(MlsError::UnknownGroup) => {
            NodeError::UnknownGroup("unknown group".into())
        }
        DmError::NotAllowed(m) | DmError::Mls(MlsError::NotAllowed(m)) => {
            NodeError::NotAllowed(m.into())
        }
        // The node's own store, MLS state or engine: a fault of the node, not of the request.
        e @ (DmError::Store(_)
        | DmError::Internal(_)
        | DmError::Mls(MlsError::CorruptState | MlsError::Openmls(_))) => {
            NodeError::Internal(e.to_string())
        }
        e => NodeError::InvalidInput(e.to_string()),
    }
}

impl EventLoop {
    /// Loads the groups and pending invitations from the store and joins their topics.
    pub(super) fn groups_open(&mut self) -> Result<(), NodeError> {
        for (group, peer) in self.store.private().invites()? {
            self.groups.invites.insert(
                (group, peer),
                PendingInvite {
                    since: Instant::now(),
                    replies: Vec::new(),
                },
            );
            self.dm.need_kp.entry(peer).or_insert(None);
        }
        for (id, record) in self.store.private().groups::<GroupRecord>()? {
            self.install_group(id, record);
        }
        Ok(())
    }

    fn install_group(&mut self, id: GroupId, record: GroupRecord) {
        let Ok(owner) = record.owner.parse::<PeerId>() else {
            return;
        };
        let topic = topic(&id);
        if record.active && !record.request {
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                tracing::warn!("cannot subscribe to a group topic: {e:?}");
            }
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .set_topic_params(topic.clone(), crate::net::scoring::topic_params());
        }
        let mut state = GroupState::new(record, owner, topic);
        if let Ok((members, epoch, _)) = self.mls.client.group_state(id.as_bytes()) {
            state.members = members.into_iter().collect();
            state.epoch = epoch;
        }
        // The newest message held is where catching up starts.
        if let Ok(Some(t)) = self.store.private().group_log_newest(&id) {
            state.held_up_to(t);
        }
        self.groups.insert(id, state);
    }

    fn save_group(&self, group: &GroupId) -> Result<(), NodeError> {
        if let Some(s) = self.groups.groups.get(group) {
            self.store.private().put_group(group, &s.record)?;
        }
        Ok(())
    }

    fn refresh_members(&mut self, group: &GroupId) {
        if let Ok((members, epoch, _)) = self.mls.client.group_state(group.as_bytes())
            && let Some(s) = self.groups.groups.get_mut(group)
        {
            s.members = members.into_iter().collect();
            s.epoch = epoch;
            s.reach.members_changed(&s.members, epoch);
        }
    }

    fn group_view(&self, group: &GroupId) -> Result<GroupView, NodeError> {
        self.groups
            .view(group, self.swarm.local_peer_id())
            .ok_or_else(|| NodeError::UnknownGroup(group.to_string()))
    }

    /// `group create`.
    pub(super) fn group_create(&mut self, name: String) -> Result<GroupView, NodeError> {
        check_name(&name).map_err(dm_err)?;
        let id = self.mls.client.group_create().map_err(dm_err)?;
        let id = GroupId::from_slice(&id)
            .ok_or_else(|| NodeError::Internal("MLS made a group id of another length".into()))?;
        self.save_mls()?;
        let now = now_ms();
        let record = GroupRecord {
            name: name.trim().to_string(),
            owner: self.swarm.local_peer_id().to_string(),
            created_ms: now,
            joined_ms: now,
            join_epoch: 0,
            active: true,
            next_seq: 1,
            request: false,
        };
        self.install_group(id, record);
        self.save_group(&id)?;
        tracing::info!(group = %id, "group created");
        if let Ok(view) = self.group_view(&id) {
            let _ = self.events.send(Event::GroupChanged { group: view });
        }
        self.group_view(&id)
    }

    /// `group list`.
    pub(super) fn group_list(&self) -> Vec<GroupView> {
        self.groups.list(self.swarm.local_peer_id())
    }

    fn owned_active(&self, group: &GroupId) -> Result<&GroupState, NodeError> {
        self.groups
            .owned_active(group, self.swarm.local_peer_id())
            .map_err(|e| refused(group, e))
    }

    /// `group invite`: answered once the member is added (the invitee's KeyPackage found).
    pub(super) fn group_invite(&mut self, group: GroupId, peer: PeerId, reply: Reply<GroupView>) {
        if let Err(e) = self
            .groups
            .may_invite(&group, &peer, self.swarm.local_peer_id())
        {
            let _ = reply.send(Err(refused(&group, e)));
            return;
        }
        if let Err(e) = self.store.private().put_invite(&group, &peer) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let group_id = group;
        self.groups
            .invites
            .entry((group, peer))
            .or_insert_with(|| PendingInvite {
                since: Instant::now(),
                replies: Vec::new(),
            })
            .replies
            .push(reply);
        if let Ok(group) = self.group_view(&group_id) {
            let _ = self.events.send(Event::GroupChanged { group });
        }
        // Looked up at once (and every few seconds until found).
        self.dm.need_kp.insert(peer, None);
        self.lookup_keypackages();
    }

    /// A valid KeyPackage of `peer` arrived: add it to the groups it is invited to.
    pub(super) fn groups_on_keypackage(&mut self, peer: &PeerId, key_package: &[u8]) {
        let groups: Vec<GroupId> = self
            .groups
            .invites
            .keys()
            .filter(|(_, p)| p == peer)
            .map(|(g, _)| *g)
            .collect();
        for group in groups {
            let result = self.add_member(&group, peer, key_package);
            if let Err(e) = &result {
                tracing::warn!(%peer, "cannot add to the group: {e}");
            }
            let _ = self.store.private().remove_invite(&group, peer);
            if let Some(p) = self.groups.invites.remove(&(group, *peer)) {
                for r in p.replies {
                    let answer = match &result {
                        Ok(()) => self.group_view(&group),
                        Err(e) => Err(NodeError::InvalidInput(e.to_string())),
                    };
                    // The new member and the commit are promised: on disk first.
                    self.after_durable(move |_| {
                        let _ = r.send(answer);
                    });
                }
            }
        }
    }

    /// Whether `peer`'s KeyPackage is still wanted by an invitation.
    pub(super) fn group_wants_keypackage(&self, peer: &PeerId) -> bool {
        self.groups.wants_keypackage(peer)
    }

    fn add_member(
        &mut self,
        group: &GroupId,
        peer: &PeerId,
        key_package: &[u8],
    ) -> Result<(), NodeError> {
        let (name, created_ms) = {
            let s = self.owned_active(group)?;
            (s.record.name.clone(), s.record.created_ms)
        };
        let crate::mls::group::Added {
            commit,
            welcome,
            invite_key,
        } = self
            .mls
            .client
            .group_add(group.as_bytes(), peer, key_package)
            .map_err(dm_err)?;
        // The new epoch is on disk before anything leaves (no key reuse after a crash).
        self.save_mls()?;
        self.refresh_members(group);
        let me = *self.swarm.local_peer_id();
        self.send_group_wire(group, commit)?;
        let invite = v1::GroupInvite {
            name,
            owner: me.to_bytes(),
            created_ms,
        };
        let sealed = seal_invite(&invite_key, group.as_bytes(), &invite).map_err(dm_err)?;
        self.queue_envelope_with(peer, now_ms(), welcome, b"", sealed)?;
        self.try_deliver(peer);
        tracing::info!(group = %group, %peer, "member added");
        let _ = self.events.send(Event::GroupChanged {
            group: self.group_view(group)?,
        });
        Ok(())
    }

    /// `group remove`.
    pub(super) fn group_remove(
        &mut self,
        group: GroupId,
        peer: PeerId,
    ) -> Result<GroupView, NodeError> {
        let s = self.owned_active(&group)?;
        if !s.members.contains(&peer) {
            // Perhaps only invited: withdraw the invitation.
            if let Some(p) = self.groups.invites.remove(&(group, peer)) {
                self.store.private().remove_invite(&group, &peer)?;
                for r in p.replies {
                    let _ = r.send(Err(NodeError::NotAllowed("invitation withdrawn".into())));
                }
                let view = self.group_view(&group)?;
                let _ = self.events.send(Event::GroupChanged {
                    group: view.clone(),
                });
                return Ok(view);
            }
            return Err(NodeError::NotAllowed(format!(
                "{peer} is not a member of the group"
            )));
        }
        let commit = self
            .mls
            .client
            .group_remove(group.as_bytes(), &peer)
            .map_err(dm_err)?;
        self.save_mls()?;
        self.refresh_members(&group);
        self.send_group_wire(&group, commit.clone())?;
        // The removed member is no longer served by catch-up: it learns of its removal from
        // the commit sent to it directly (or held for it), like a direct message.
        self.queue_envelope_with(&peer, now_ms(), commit, b"", Vec::new())?;
        self.try_deliver(&peer);
        tracing::info!(group = %group, %peer, "member removed");
        let view = self.group_view(&group)?;
        let _ = self.events.send(Event::GroupChanged {
            group: view.clone(),
        });
        Ok(view)
    }

    /// `group post`.
    pub(super) fn group_post(
        &mut self,
        group: GroupId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
    ) -> Result<GroupMessageView, NodeError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(NodeError::InvalidInput(format!(
                "message too long: {} bytes (at most {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        let s = self
            .groups
            .groups
            .get_mut(&group)
            .ok_or_else(|| NodeError::UnknownGroup(group.to_string()))?;
        if !s.record.active {
            return Err(NodeError::NotAllowed(
                "this node is no longer a member of the group".into(),
            ));
        }
        if s.record.request {
            return Err(NodeError::NotAllowed(
                "accept the invitation first (`samizdat requests accept`)".into(),
            ));
        }
        let now = now_ms();
        let seq = s.record.next_seq.max(1);
        s.record.next_seq = seq.saturating_add(1);
        let body = v1::DmBody {
            id: crate::crypto::random_bytes::<16>().to_vec(),
            text,
            sent_ms: now,
            seq,
            expires_at_ms: expires_in.map_or(0, |d| {
                now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            attachment,
            conversation: Vec::new(),
        };
        let mls = self
            .mls
            .client
            .encrypt(group.as_bytes(), &body.encode_to_vec())
            .map_err(dm_err)?;
        self.save_mls()?;
        self.save_group(&group)?;
        let me = *self.swarm.local_peer_id();
        let stored = v1::StoredGroupMessage {
            group_id: group.as_bytes().to_vec(),
            author: me.to_bytes(),
            body: Some(body),
            received_ms: now,
        };
        self.store_group_message(&stored)?;
        let wire = v1::GroupWire {
            sent_ms: now,
            mls_message: mls,
        };
        self.log_and_publish(&group, &wire)?;
        let view = GroupMessageView::of(&me, &stored)
            .ok_or_else(|| NodeError::InvalidInput("bad message".into()))?;
        let _ = self.events.send(Event::GroupMessage {
            message: view.clone(),
        });
        Ok(view)
    }

    /// `group history`, oldest first.
    pub(super) fn group_history(
        &self,
        group: &GroupId,
    ) -> Result<Vec<GroupMessageView>, NodeError> {
        if !self.groups.groups.contains_key(group) {
            return Err(NodeError::UnknownGroup(group.to_string()));
        }
        let me = *self.swarm.local_peer_id();
        let now = now_ms();
        Ok(self
            .store
            .private()
            .group_messages(group)?
            .iter()
            .filter_map(|s| GroupMessageView::of(&me, s))
            .filter(|v| v.expires_at.is_none_or(|t| t > now))
            .collect())
    }

    pub(super) fn store_group_message(
        &mut self,
        stored: &v1::StoredGroupMessage,
    ) -> Result<(), NodeError> {
        if self.store.private().put_group_message(stored)? {
            // (None: the next pass looks at every expiry.)
            self.groups.next_expiry = None;
        }
        Ok(())
    }

    /// A commit of this node (the owner): logged, then published.
    fn send_group_wire(&mut self, group: &GroupId, mls_message: Vec<u8>) -> Result<(), NodeError> {
        let wire = v1::GroupWire {
            sent_ms: now_ms(),
            mls_message,
        };
        self.log_and_publish(group, &wire)
    }

    /// Keeps a group message in the log (for members that missed it) and gossips it; one too
    /// large for gossip reaches members when they catch up.
    fn log_and_publish(&mut self, group: &GroupId, wire: &v1::GroupWire) -> Result<(), NodeError> {
        let id = wire_id(wire);
        self.store.private().mark_seen(&id, now_ms())?;
        self.log_wire(group, wire, &id)?;
        let bytes = wire.encode_to_vec();
        if bytes.len() > crate::net::MAX_GOSSIP_BYTES - 1024 {
            tracing::debug!(
                len = bytes.len(),
                "group message too large for gossip: members fetch it"
            );
            return Ok(());
        }
        let Some(topic) = self.groups.groups.get(group).map(|s| s.topic.clone()) else {
            return Ok(());
        };
        // The ratchet moved for this message: its state must be on disk before the
        // ciphertext leaves, or a crash would make this node reuse a message key.
        self.after_durable(move |el| {
            if let Err(e) = el.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                // No member connected: they catch up from the log.
                tracing::debug!("group message not gossiped: {e:?}");
            }
        });
        Ok(())
    }

    fn log_wire(
        &mut self,
        group: &GroupId,
        wire: &v1::GroupWire,
        id: &[u8; 32],
    ) -> Result<(), NodeError> {
        self.store.private().log_group_wire(group, wire, id)?;
        if let Some(s) = self.groups.groups.get_mut(group) {
            s.held_up_to(wire.sent_ms);
        }
        Ok(())
    }

    /// Group invitations held as requests: (group id, owner, name, when).
    pub(super) fn group_requests(&self) -> Vec<(GroupId, PeerId, String, u64)> {
        self.groups.requests()
    }

    /// Accepts the group invitations `owner` sent: the groups are followed from now on.
    pub(super) fn accept_group_requests(&mut self, owner: &PeerId) -> Result<usize, NodeError> {
        let ids = self.groups.requests_from(owner);
        for id in &ids {
            let Some(s) = self.groups.groups.get_mut(id) else {
                continue;
            };
            s.record.request = false;
            let topic = s.topic.clone();
            self.save_group(id)?;
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                tracing::warn!("cannot subscribe to a group topic: {e:?}");
            }
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .set_topic_params(topic, crate::net::scoring::topic_params());
            if let Ok(view) = self.group_view(id) {
                let _ = self.events.send(Event::GroupChanged { group: view });
            }
            self.group_sync_with(id, *owner, true);
        }
        Ok(ids.len())
    }

    /// Declines the group invitations `owner` sent: their state and record are dropped.
    pub(super) fn decline_group_requests(&mut self, owner: &PeerId) -> Result<usize, NodeError> {
        let ids = self.groups.requests_from(owner);
        for id in &ids {
            self.groups.remove(id);
            if self.mls.client.forget(id.as_bytes()).is_ok() {
                self.save_mls()?;
            }
            self.store.private().remove_group(id)?;
        }
        Ok(ids.len())
    }
}

/// Processing order of caught-up messages: by epoch, a commit after its epoch's messages.
fn order_key(w: &v1::GroupWire) -> (u64, bool, u64) {
    match header(&w.mls_message) {
        Some(h) => (h.epoch, h.commit, w.sent_ms),
        None => (u64::MAX, true, w.sent_ms),
    }
}
