//! What this node knows of its private groups, in memory: each group's record, standing,
//! members and catch-up point, the invitations waiting for a KeyPackage, and the messages
//! waiting for their commit. The views and the owner's permissions are decided here, with
//! no I/O; the engine does the MLS operations and the network.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, TopicHash};
use samizdat_proto::v1;

use super::gate::Standing;
use super::{GroupId, GroupView};
use crate::dm::held::{Held, Limits};

/// How far before the newest message held a catch-up starts (messages cross in flight).
pub const SYNC_SLACK_MS: u64 = 60_000;

/// A group as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    /// Its name (sealed in the invitation).
    pub name: String,
    /// The owner's peer id.
    pub owner: String,
    /// When the owner created it.
    pub created_ms: u64,
    /// When this node joined.
    pub joined_ms: u64,
    /// The epoch this node joined in (earlier messages were never meant for it).
    pub join_epoch: u64,
    /// Still a member.
    pub active: bool,
    /// This node's next message number in the group.
    pub next_seq: u64,
    /// An invitation from a peer this node does not know: joined (so that its name can be
    /// shown) but not followed — no topic, no catch-up, nothing fetched — until accepted.
    #[serde(default)]
    pub request: bool,
}

/// A group in memory.
pub struct GroupState {
    /// As stored.
    pub record: GroupRecord,
    /// The owner (the only one who invites and removes).
    pub owner: PeerId,
    /// Its gossip topic.
    pub topic: IdentTopic,
    /// Current members and epoch, refreshed after every commit (the MLS tree is large).
    pub members: HashSet<PeerId>,
    /// The epoch this node is in.
    pub epoch: u64,
    /// Newest message time held, where the next catch-up starts.
    pub synced_ms: u64,
    /// When it last caught up.
    pub last_sync: Option<Instant>,
    /// A catch-up request is out.
    pub sync_in_flight: bool,
    /// The epochs members are known to be in, and the removals followed.
    pub reach: super::reach::Reach,
    /// A commit removed a member and the owner has not yet been told this node has it.
    pub owes_owner_epoch: bool,
}

impl GroupState {
    /// A group as loaded or joined: no members known until MLS says.
    pub fn new(record: GroupRecord, owner: PeerId, topic: IdentTopic) -> Self {
        let synced_ms = record.joined_ms.saturating_sub(SYNC_SLACK_MS);
        Self {
            record,
            owner,
            topic,
            members: HashSet::new(),
            epoch: 0,
            synced_ms,
            last_sync: None,
            sync_in_flight: false,
            reach: super::reach::Reach::default(),
            owes_owner_epoch: false,
        }
    }

    /// A message sent at `sent_ms` is held: catch-up need not go back further than that.
    pub fn held_up_to(&mut self, sent_ms: u64) {
        self.synced_ms = self.synced_ms.max(sent_ms.saturating_sub(SYNC_SLACK_MS));
    }
}

/// An invitation waiting for the invitee's KeyPackage, with whoever waits for its answer.
pub struct PendingInvite<R> {
    /// When it was made.
    pub since: Instant,
    /// The answers promised.
    pub replies: Vec<R>,
}

/// Why the owner's operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such group here.
    #[error("unknown group")]
    Unknown,
    /// This node was removed.
    #[error("this node is no longer a member of the group")]
    Left,
    /// Only the owner may.
    #[error("only the group's owner invites and removes members")]
    NotOwner,
    /// The owner invites itself.
    #[error("the owner is already a member")]
    OwnerIsMember,
    /// The peer is in already.
    #[error("{0} is already a member")]
    AlreadyMember(PeerId),
}

/// Every group of this node; `R` is how an invitation's answer is sent.
pub struct Groups<R> {
    /// By id.
    pub groups: HashMap<GroupId, GroupState>,
    /// Which group a gossip topic is.
    pub topics: HashMap<TopicHash, GroupId>,
    /// Invitations waiting for the invitee's KeyPackage.
    pub invites: HashMap<(GroupId, PeerId), PendingInvite<R>>,
    /// Messages of later epochs than this node's, waiting for their commit.
    pub early: Held<v1::GroupWire>,
    /// Members dialed lately (to keep a gossip mesh).
    pub dialed: HashMap<PeerId, Instant>,
    /// When the next group message expires (None: not known, look).
    pub next_expiry: Option<u64>,
}

impl<R> Groups<R> {
    /// No groups; messages ahead of their commit held within `early`.
    pub fn new(early: Limits) -> Self {
        Self {
            groups: HashMap::new(),
            topics: HashMap::new(),
            invites: HashMap::new(),
            early: Held::new(early),
            dialed: HashMap::new(),
            next_expiry: None,
        }
    }

    /// Takes a group in (loaded, created or joined).
    pub fn insert(&mut self, id: GroupId, state: GroupState) {
        self.topics.insert(state.topic.hash(), id);
        self.groups.insert(id, state);
    }

    /// Drops a group (a declined invitation).
    pub fn remove(&mut self, id: &GroupId) {
        if let Some(s) = self.groups.remove(id) {
            self.topics.remove(&s.topic.hash());
        }
        self.early.forget_group(id.as_bytes());
    }

    /// A group as the user sees it (`me`: this node).
    pub fn view(&self, id: &GroupId, me: &PeerId) -> Option<GroupView> {
        let s = self.groups.get(id)?;
        let mut members: Vec<String> = s.members.iter().map(|p| p.to_string()).collect();
        members.sort();
        let mut invited: Vec<String> = self
            .invites
            .keys()
            // A member just added is no longer invited (the invitation is dropped right
            // after the add's event).
            .filter(|(g, p)| g == id && !s.members.contains(p))
            .map(|(_, p)| p.to_string())
            .collect();
        invited.sort();
        Some(GroupView {
            id: id.to_string(),
            name: s.record.name.clone(),
            owner: s.record.owner.clone(),
            role: if s.owner == *me { "owner" } else { "member" }.into(),
            // A removed node no longer knows who is in.
            members: if s.record.active { members } else { Vec::new() },
            invited,
            active: s.record.active,
            epoch: s.epoch,
            joined_at: s.record.joined_ms,
        })
    }

    /// The groups the user follows (not invitations held as requests), oldest joined first.
    pub fn list(&self, me: &PeerId) -> Vec<GroupView> {
        let mut out: Vec<GroupView> = self
            .groups
            .iter()
            .filter(|(_, s)| !s.record.request)
            .filter_map(|(g, _)| self.view(g, me))
            .collect();
        out.sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
        out
    }

    /// A group this node owns and is still in (where it may invite and remove).
    pub fn owned_active(&self, id: &GroupId, me: &PeerId) -> Result<&GroupState, Refusal> {
        let s = self.groups.get(id).ok_or(Refusal::Unknown)?;
        if !s.record.active {
            return Err(Refusal::Left);
        }
        if s.owner != *me {
            return Err(Refusal::NotOwner);
        }
        Ok(s)
    }

    /// Whether `me` may invite `peer` into the group.
    pub fn may_invite(&self, id: &GroupId, peer: &PeerId, me: &PeerId) -> Result<(), Refusal> {
        let s = self.owned_active(id, me)?;
        if peer == me {
            Err(Refusal::OwnerIsMember)
        } else if s.members.contains(peer) {
            Err(Refusal::AlreadyMember(*peer))
        } else {
            Ok(())
        }
    }

    /// Invitations held as requests: (group id, owner, name, when).
    pub fn requests(&self) -> Vec<(GroupId, PeerId, String, u64)> {
        self.groups
            .iter()
            .filter(|(_, s)| s.record.request)
            .map(|(g, s)| (*g, s.owner, s.record.name.clone(), s.record.joined_ms))
            .collect()
    }

    /// The groups whose invitations from `owner` wait as requests.
    pub fn requests_from(&self, owner: &PeerId) -> Vec<GroupId> {
        self.groups
            .iter()
            .filter(|(_, s)| s.record.request && s.owner == *owner)
            .map(|(g, _)| *g)
            .collect()
    }

    /// Whether an invitation waits for `peer`'s KeyPackage.
    pub fn wants_keypackage(&self, peer: &PeerId) -> bool {
        self.invites.keys().any(|(_, p)| p == peer)
    }

    /// This node's standing in a group, for the admission gate.
    pub fn standing(&self, id: &GroupId) -> Option<Standing> {
        self.groups.get(id).map(|s| Standing {
            active: s.record.active,
            join_epoch: s.record.join_epoch,
            epoch: s.epoch,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_peer: 4,
        per_peer_bytes: 1024,
        total: 8,
        total_bytes: 4096,
        max_item_bytes: 512,
        ttl: std::time::Duration::from_secs(60),
    };

    fn record(owner: &PeerId, joined_ms: u64, request: bool) -> GroupRecord {
        GroupRecord {
            name: "friends".into(),
            owner: owner.to_string(),
            created_ms: 1,
            joined_ms,
            join_epoch: 0,
            active: true,
            next_seq: 1,
            request,
        }
    }

    fn group(
        groups: &mut Groups<()>,
        n: u8,
        owner: &PeerId,
        joined_ms: u64,
        request: bool,
    ) -> GroupId {
        let id = GroupId([n; 16]);
        let state = GroupState::new(
            record(owner, joined_ms, request),
            *owner,
            super::super::topic(&id),
        );
        groups.insert(id, state);
        id
    }

    #[test]
    fn only_the_owner_still_in_the_group_invites_and_not_twice() {
        let (me, other, friend) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut g = Groups::<()>::new(LIMITS);
        let mine = group(&mut g, 1, &me, 10, false);
        let theirs = group(&mut g, 2, &other, 20, false);
        assert_eq!(g.may_invite(&mine, &friend, &me), Ok(()));
        assert_eq!(g.may_invite(&theirs, &friend, &me), Err(Refusal::NotOwner));
        assert_eq!(
            g.may_invite(&GroupId([9; 16]), &friend, &me),
            Err(Refusal::Unknown)
        );
        assert_eq!(g.may_invite(&mine, &me, &me), Err(Refusal::OwnerIsMember));
        g.groups.get_mut(&mine).unwrap().members.insert(friend);
        assert_eq!(
            g.may_invite(&mine, &friend, &me),
            Err(Refusal::AlreadyMember(friend))
        );
        g.groups.get_mut(&mine).unwrap().record.active = false;
        assert_eq!(
            g.may_invite(&mine, &PeerId::random(), &me),
            Err(Refusal::Left)
        );
    }

    #[test]
    fn views_hide_requests_and_a_removed_node_sees_no_members() {
        let (me, stranger, friend) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut g = Groups::<()>::new(LIMITS);
        let later = group(&mut g, 1, &me, 30, false);
        let earlier = group(&mut g, 2, &me, 10, false);
        let request = group(&mut g, 3, &stranger, 20, true);
        let list: Vec<String> = g.list(&me).into_iter().map(|v| v.id).collect();
        assert_eq!(
            list,
            [earlier.to_string(), later.to_string()],
            "oldest first, no requests"
        );
        assert_eq!(g.requests_from(&stranger), [request]);
        assert_eq!(g.requests().len(), 1);
        assert_eq!(g.view(&request, &me).unwrap().role, "member");

        let invited = PeerId::random();
        g.invites.insert(
            (later, invited),
            PendingInvite {
                since: Instant::now(),
                replies: vec![],
            },
        );
        g.invites.insert(
            (later, friend),
            PendingInvite {
                since: Instant::now(),
                replies: vec![],
            },
        );
        g.groups
            .get_mut(&later)
            .unwrap()
            .members
            .extend([me, friend]);
        let v = g.view(&later, &me).unwrap();
        assert_eq!((v.role.as_str(), v.members.len()), ("owner", 2));
        assert_eq!(
            v.invited,
            [invited.to_string()],
            "a member is no longer invited"
        );
        assert!(g.wants_keypackage(&invited) && !g.wants_keypackage(&stranger));
        g.groups.get_mut(&later).unwrap().record.active = false;
        assert!(g.view(&later, &me).unwrap().members.is_empty());
        assert!(!g.standing(&later).unwrap().active);

        g.remove(&request);
        assert!(g.view(&request, &me).is_none() && g.topics.len() == 2);
    }

    #[test]
    fn catch_up_starts_a_little_before_the_newest_message_held() {
        let me = PeerId::random();
        let mut s = GroupState::new(
            record(&me, 100_000, false),
            me,
            super::super::topic(&GroupId([1; 16])),
        );
        assert_eq!(s.synced_ms, 100_000 - SYNC_SLACK_MS);
        s.held_up_to(200_000);
        s.held_up_to(150_000);
        assert_eq!(s.synced_ms, 200_000 - SYNC_SLACK_MS, "never moves back");
        s.held_up_to(5);
        assert_eq!(s.synced_ms, 200_000 - SYNC_SLACK_MS);
    }
}
