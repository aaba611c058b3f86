//! Private groups as a component: every rule of groups — admission, membership, delivery by
//! gossip, catching up, invitations, removals and how far they reached — as a state machine
//! the event loop feeds and whose actions it carries out. It touches no socket, no clock and
//! writes nothing: the time comes with each input, and publishing, requests, dials, writes and
//! events are returned as [`Action`]s. MLS is computation in memory: the component drives the
//! client, and the loop persists what changed when it executes [`Write::Mls`]. It reads the
//! store (whether a message was seen, the log it serves, the history it shows) through
//! [`Ctx`]; its unit tests run on a real sled store in a temporary directory.

#![warn(clippy::arithmetic_side_effects)]

mod commands;
mod inbound;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, MessageAcceptance, TopicHash};
use samizdat_proto::v1;
use sha2::{Digest, Sha256};

use super::NodeError;
pub(crate) use super::now::Now;
use super::views::{Event, RevokeGroupView};
use crate::dm::held::Limits;
use crate::dm::{DmError, MAX_HOLD_MS};
use crate::group::state::{GroupRecord, GroupState, PendingInvite, Refusal};
use crate::group::{GroupId, GroupView, MAX_GROUP_MESSAGE_BYTES, topic};
use crate::mls::MlsClient;
use crate::store::Store;

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
const EARLY: Limits = Limits {
    per_peer: 64,
    per_peer_bytes: 4 * 1024 * 1024,
    total: 512,
    total_bytes: 16 * 1024 * 1024,
    max_item_bytes: MAX_GROUP_MESSAGE_BYTES,
    ttl: Duration::from_secs(600),
};
/// How often the ciphertext log is pruned.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);
/// How long `group invite` waits for the invitee's KeyPackage before answering.
const INVITE_WAIT: Duration = Duration::from_secs(45);

/// What the component asks of the rest of the node, answered at once from memory.
pub(crate) trait Facts {
    /// Whether a connection to `peer` is open.
    fn connected(&self, peer: &PeerId) -> bool;
    /// Whether `peer` is a device its account revoked.
    fn revoked(&self, peer: &PeerId) -> bool;
}

/// What an input is handled with: who this node is, the MLS client, the store (read only),
/// and the rest of the node's facts.
pub(crate) struct Ctx<'a> {
    /// This node.
    pub me: PeerId,
    /// The MLS client direct messages and groups share.
    pub mls: &'a MlsClient,
    /// Read only: writes are returned as [`Write`]s.
    pub store: &'a dyn Store,
    /// Connections and revocations.
    pub facts: &'a dyn Facts,
}

/// What happens to the group component.
pub(crate) enum Input {
    /// A message on a group's gossip topic, passed on by `via`.
    Gossip {
        /// The topic.
        topic: TopicHash,
        /// The bytes as received.
        data: Vec<u8>,
        /// The neighbour that passed it on.
        via: PeerId,
    },
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
    /// A member answered this node's catch-up request.
    SyncAnswer {
        /// The member.
        peer: PeerId,
        /// The group asked about.
        group: GroupId,
        /// Its answer.
        response: v1::DmResponse,
    },
    /// A catch-up request failed.
    SyncFailed {
        /// The group asked about.
        group: GroupId,
    },
    /// A valid KeyPackage of `peer` arrived, and `peer` is invited to `group` (one input per
    /// group: a write that fails for one must not hold back another's commit).
    KeyPackage {
        /// The group it is invited to.
        group: GroupId,
        /// Its owner.
        peer: PeerId,
        /// The KeyPackage.
        key_package: Vec<u8>,
    },
    /// Once a second.
    Tick,
}

/// What the component asks the event loop to do, in order.
pub(crate) enum Action<R> {
    /// The fate of the gossip message being handled (one per [`Input::Gossip`]).
    Verdict(MessageAcceptance),
    /// A write to the store; when one fails, the actions after it are not carried out.
    Write(Write),
    /// Gossip on a group's topic, once everything written before is on disk (the ratchet
    /// moved for it: a crash must not make this node reuse a message key).
    Publish {
        /// The group's topic.
        topic: TopicHash,
        /// The encoded `GroupWire`.
        data: Vec<u8>,
    },
    /// A catch-up request to a member.
    Ask {
        /// The member.
        peer: PeerId,
        /// The group.
        group: GroupId,
        /// The request.
        query: v1::GroupSync,
    },
    /// A dial, to keep a gossip mesh or reach the owner.
    Dial(PeerId),
    /// Follow a group's topic.
    Subscribe(IdentTopic),
    /// Stop following a group's topic.
    Unsubscribe(IdentTopic),
    /// An event for the node's clients.
    Emit(Event),
    /// An envelope for one peer, delivered like a direct message: a Welcome with its sealed
    /// invitation, or the commit that removes it.
    Envelope {
        /// The recipient.
        peer: PeerId,
        /// When it was made.
        sent_ms: u64,
        /// The MLS message.
        mls_message: Vec<u8>,
        /// The sealed invitation (empty but for a Welcome).
        invite: Vec<u8>,
    },
    /// Look up `peer`'s KeyPackage (an invitation waits for it).
    WantKeyPackage(PeerId),
    /// Fetch a message's attachment ahead of the user.
    Prefetch(v1::Attachment),
    /// The invitations held as requests changed.
    RequestsChanged,
    /// Answer a `group invite`, once everything written before is on disk.
    Answer(R, Result<GroupView, NodeError>),
    /// Delete the group messages that expired; tell the component when the next one does.
    Expire,
}

/// A write the loop applies to the store.
#[derive(Debug)]
pub(crate) enum Write {
    /// The MLS client's changes.
    Mls,
    /// A group's record.
    Group(GroupId, GroupRecord),
    /// A group dropped (a declined invitation).
    RemoveGroup(GroupId),
    /// An invitation waiting for a KeyPackage.
    Invite(GroupId, PeerId),
    /// An invitation answered or withdrawn.
    RemoveInvite(GroupId, PeerId),
    /// A message shown to the user.
    Message(v1::StoredGroupMessage),
    /// A message processed (never again).
    Seen([u8; 32], u64),
    /// A message kept in the ciphertext log, served to members that missed it.
    Log(GroupId, v1::GroupWire, [u8; 32]),
    /// The log cut to what was sent after a time.
    PruneLog(GroupId, u64),
}

impl Write {
    /// Applies the write (everything but [`Write::Mls`], which needs the MLS client).
    pub(crate) fn apply(self, store: &dyn Store) -> Result<(), NodeError> {
        let p = store.private();
        match self {
            Write::Mls => {}
            Write::Group(id, record) => p.put_group(&id, &record)?,
            Write::RemoveGroup(id) => p.remove_group(&id)?,
            Write::Invite(g, peer) => p.put_invite(&g, &peer)?,
            Write::RemoveInvite(g, peer) => p.remove_invite(&g, &peer)?,
            Write::Message(m) => {
                p.put_group_message(&m)?;
            }
            Write::Seen(id, ms) => p.mark_seen(&id, ms)?,
            Write::Log(g, wire, id) => p.log_group_wire(&g, &wire, &id)?,
            Write::PruneLog(g, cutoff) => {
                p.prune_group_log(&g, cutoff)?;
            }
        }
        Ok(())
    }
}

/// The group component; `R` is how an invitation's answer is sent.
pub(crate) struct Groups<R> {
    /// Every group of this node, the invitations out, the messages waiting for their commit.
    pub state: crate::group::state::Groups<R>,
    out: Vec<Action<R>>,
    /// Ids processed since the loop last took the actions (their `Seen` writes are not
    /// applied yet: a page of catch-up may repeat a message).
    marked: HashSet<[u8; 32]>,
    /// When the log was last pruned (None: not yet started).
    housekept: Option<Instant>,
}

impl<R> Default for Groups<R> {
    fn default() -> Self {
        Self {
            state: crate::group::state::Groups::new(EARLY),
            out: Vec::new(),
            marked: HashSet::new(),
            housekept: None,
        }
    }
}

/// A message's id: the hash of its MLS bytes.
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

/// A group or MLS error, as the user sees it.
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

impl<R> Groups<R> {
    /// Handles one input; returns what the loop is to do, in order.
    pub(crate) fn handle(&mut self, ctx: &Ctx<'_>, input: Input, now: Now) -> Vec<Action<R>> {
        match input {
            Input::Gossip { topic, data, via } => {
                let verdict = self.on_gossip(ctx, &topic, &data, via, now);
                self.out.push(Action::Verdict(verdict));
            }
            Input::Subscribed { peer, topic } => self.on_subscribed(ctx, peer, &topic, now),
            Input::SyncAnswer {
                peer,
                group,
                response,
            } => self.on_sync_answer(ctx, peer, group, response, now),
            Input::SyncFailed { group } => {
                if let Some(s) = self.state.groups.get_mut(&group) {
                    s.sync_in_flight = false;
                }
            }
            Input::KeyPackage {
                group,
                peer,
                key_package,
            } => self.keypackage_for(ctx, &group, &peer, &key_package, now),
            Input::Tick => {
                self.tick(ctx, now);
                self.housekeeping(now);
            }
        }
        self.take()
    }

    /// Every [`HOUSEKEEPING_EVERY`]: the ciphertext log keeps [`LOG_FOR_MS`].
    fn housekeeping(&mut self, now: Now) {
        let last = *self.housekept.get_or_insert(now.at);
        if now.at.saturating_duration_since(last) < HOUSEKEEPING_EVERY {
            return;
        }
        self.housekept = Some(now.at);
        let cutoff = now.ms.saturating_sub(LOG_FOR_MS);
        let ids: Vec<GroupId> = self.state.groups.keys().copied().collect();
        for id in ids {
            self.write(Write::PruneLog(id, cutoff));
        }
    }

    /// The actions queued by the last calls, in order.
    pub(crate) fn take(&mut self) -> Vec<Action<R>> {
        self.marked.clear();
        std::mem::take(&mut self.out)
    }

    fn write(&mut self, w: Write) {
        self.out.push(Action::Write(w));
    }

    fn emit_changed(&mut self, ctx: &Ctx<'_>, group: &GroupId) {
        if let Some(view) = self.state.view(group, &ctx.me) {
            self.out
                .push(Action::Emit(Event::GroupChanged { group: view }));
        }
    }

    fn save_group(&mut self, group: &GroupId) {
        if let Some(s) = self.state.groups.get(group) {
            let record = s.record.clone();
            self.write(Write::Group(*group, record));
        }
    }

    /// Takes a group in (loaded, created or joined) and follows its topic unless it is a
    /// request or this node left.
    fn install(&mut self, ctx: &Ctx<'_>, id: GroupId, record: GroupRecord) {
        let Ok(owner) = record.owner.parse::<PeerId>() else {
            return;
        };
        let topic = topic(&id);
        if record.active && !record.request {
            self.out.push(Action::Subscribe(topic.clone()));
        }
        let mut state = GroupState::new(record, owner, topic);
        if let Ok((members, epoch, _)) = ctx.mls.group_state(id.as_bytes()) {
            state.members = members.into_iter().collect();
            state.epoch = epoch;
        }
        // The newest message held is where catching up starts.
        if let Ok(Some(t)) = ctx.store.private().group_log_newest(&id) {
            state.held_up_to(t);
        }
        self.state.insert(id, state);
    }

    /// Loads the groups and pending invitations from the store and follows their topics.
    pub(crate) fn open(&mut self, ctx: &Ctx<'_>, now: Now) -> Result<(), NodeError> {
        for (group, peer) in ctx.store.private().invites()? {
            self.state.invites.insert(
                (group, peer),
                PendingInvite {
                    since: now.at,
                    replies: Vec::new(),
                },
            );
            self.out.push(Action::WantKeyPackage(peer));
        }
        for (id, record) in ctx.store.private().groups::<GroupRecord>()? {
            self.install(ctx, id, record);
        }
        Ok(())
    }

    /// Members and epoch from MLS after a commit; returns whether a member left.
    fn refresh_members(&mut self, ctx: &Ctx<'_>, group: &GroupId) -> bool {
        let Ok((members, epoch, _)) = ctx.mls.group_state(group.as_bytes()) else {
            return false;
        };
        let Some(s) = self.state.groups.get_mut(group) else {
            return false;
        };
        let members: HashSet<PeerId> = members.into_iter().collect();
        let left = s.members.iter().any(|p| !members.contains(p));
        s.members = members;
        s.epoch = epoch;
        s.reach.members_changed(&s.members, epoch);
        left
    }

    /// Whether a gossip topic is a group's.
    pub(crate) fn is_topic(&self, topic: &TopicHash) -> bool {
        self.state.topics.contains_key(topic)
    }

    /// The group of this node an MLS message belongs to, if any (it must not be taken as a
    /// direct message).
    pub(crate) fn group_of_message(&self, mls_message: &[u8]) -> Option<GroupId> {
        MlsClient::group_of(mls_message)
            .and_then(|g| GroupId::from_slice(&g))
            .filter(|g| self.state.groups.contains_key(g))
    }

    /// Whether `peer`'s KeyPackage is still wanted by an invitation.
    pub(crate) fn wants_keypackage(&self, peer: &PeerId) -> bool {
        self.state.wants_keypackage(peer)
    }

    /// Group messages dropped while waiting for their commit, since start.
    pub(crate) fn early_dropped(&self) -> u64 {
        self.state.early.dropped()
    }

    /// The loop deleted expired messages; `next` is when the next one expires.
    pub(crate) fn expired(&mut self, next: Option<u64>) {
        self.state.next_expiry = next;
    }

    /// This node follows the removal of `device` from `group` (a device its account revoked).
    pub(crate) fn follow_removal(&mut self, me: &PeerId, group: &GroupId, device: PeerId) {
        if let Some(s) = self.state.groups.get_mut(group) {
            let epoch = (!s.members.contains(&device)).then_some(s.epoch);
            s.reach.removing(device, epoch, &s.members, me);
        }
    }

    /// How far the removal of `device` from `group` has gone, if this node follows it.
    pub(crate) fn removal(
        &self,
        group: &GroupId,
        device: &PeerId,
        me: &PeerId,
    ) -> Option<RevokeGroupView> {
        let s = self.state.groups.get(group)?;
        let r = s.reach.of(device, &s.members, me)?;
        Some(RevokeGroupView::of(group, &r, s.owner == *me))
    }

    /// Every removal this node follows in the groups it is still in.
    pub(crate) fn removals(&self, me: &PeerId) -> Vec<RevokeGroupView> {
        let mut out: Vec<RevokeGroupView> = self
            .state
            .groups
            .iter()
            .filter(|(_, s)| s.record.active)
            .flat_map(|(g, s)| {
                s.reach
                    .report(&s.members, me)
                    .into_iter()
                    .map(move |r| RevokeGroupView::of(g, &r, s.owner == *me))
            })
            .collect();
        out.sort_by(|a, b| (&a.group, &a.device).cmp(&(&b.group, &b.device)));
        out
    }
}
