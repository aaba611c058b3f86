//! Catching up with other members (asking, serving the log, taking the answers) and the
//! periodic group work: staying connected to a few members, telling the owner a removal
//! arrived, answering invitations that waited too long.

use libp2p::PeerId;
use libp2p::gossipsub::TopicHash;
use prost::Message as _;
use samizdat_proto::v1;

use super::inbound::order_key;
use super::{
    Action, Ctx, Groups, INVITE_WAIT, Now, REDIAL_MEMBER_EVERY, SYNC_EVERY, SYNC_MIN_GAP,
    WANT_MEMBERS,
};
use crate::group::{GroupId, SYNC_PAGE, SYNC_PAGE_BYTES};
use crate::node::NodeError;

impl<R> Groups<R> {
    /// Asks `peer` for a group's messages this node may have missed (unless a request is out,
    /// or one went out less than [`SYNC_MIN_GAP`] ago and `force` is not set).
    pub(super) fn ask(
        &mut self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        peer: PeerId,
        force: bool,
        now: Now,
    ) {
        let Some(s) = self.state.groups.get_mut(group) else {
            return;
        };
        if peer == ctx.me
            || !s.record.active
            || s.record.request
            || s.sync_in_flight
            || (!force
                && s.last_sync
                    .is_some_and(|t| now.at.saturating_duration_since(t) < SYNC_MIN_GAP))
        {
            return;
        }
        s.sync_in_flight = true;
        s.last_sync = Some(now.at);
        let query = v1::GroupSync {
            group_id: group.as_bytes().to_vec(),
            since_ms: s.synced_ms,
            epoch: s.epoch,
        };
        self.out.push(Action::Ask {
            peer,
            group: *group,
            query,
        });
    }

    /// A catch-up request was not sent after all (a write before it failed).
    pub(crate) fn ask_skipped(&mut self, group: &GroupId) {
        if let Some(s) = self.state.groups.get_mut(group) {
            s.sync_in_flight = false;
        }
    }

    /// Answers a member's catch-up request from the log (`resp` is filled in).
    pub(crate) fn serve(
        &mut self,
        ctx: &Ctx<'_>,
        peer: &PeerId,
        q: &v1::GroupSync,
        resp: &mut v1::DmResponse,
    ) {
        let Some(group) = GroupId::from_slice(&q.group_id) else {
            resp.error = "unknown group".into();
            return;
        };
        let Some(s) = self.state.groups.get_mut(&group) else {
            resp.error = "unknown group".into();
            return;
        };
        // Only current members are served (even ciphertext tells sizes and times).
        if !s.record.active || !s.members.contains(peer) {
            resp.error = "not a member".into();
            return;
        }
        // The epoch it names tells whether a removal has reached it (its claim, about itself).
        // (No removal this node follows is past its own epoch: a higher claim adds nothing.)
        s.reach.note_epoch(*peer, q.epoch.min(s.epoch), &s.members);
        let Ok(log) = ctx.store.private().group_log(&group, q.since_ms) else {
            resp.error = "store error".into();
            return;
        };
        let mut bytes = 0;
        for w in log {
            bytes = w.encoded_len().saturating_add(bytes);
            if resp.group_messages.len() >= SYNC_PAGE
                || (bytes > SYNC_PAGE_BYTES && !resp.group_messages.is_empty())
            {
                resp.more = true;
                break;
            }
            resp.group_messages.push(w);
        }
        resp.accepted = u32::try_from(resp.group_messages.len()).unwrap_or(u32::MAX);
    }

    /// A member's answer to this node's catch-up request.
    pub(super) fn on_sync_answer(
        &mut self,
        ctx: &Ctx<'_>,
        peer: PeerId,
        group: GroupId,
        resp: v1::DmResponse,
        now: Now,
    ) {
        if let Some(s) = self.state.groups.get_mut(&group) {
            s.sync_in_flight = false;
            if peer == s.owner && resp.error.is_empty() {
                // The owner has heard this node's epoch.
                s.owes_owner_epoch = false;
            }
        }
        if !resp.error.is_empty() {
            tracing::debug!(%peer, "group catch-up refused: {}", resp.error);
            return;
        }
        let mut msgs = resp.group_messages;
        msgs.truncate(SYNC_PAGE);
        let newest = msgs.iter().map(|w| w.sent_ms).max();
        // Commits before the messages of the epochs they open.
        msgs.sort_by_key(order_key);
        let mut got = 0u32;
        for w in msgs {
            match self.receive(ctx, &group, w, peer, now) {
                Ok(true) => got = got.saturating_add(1),
                Ok(false) => {}
                Err(e) if e.is_future_epoch() => {}
                Err(e) => tracing::debug!(%peer, "caught-up group message refused: {e}"),
            }
        }
        if got > 0 {
            tracing::debug!(%peer, got, "group messages caught up");
        }
        // The next page starts at the newest time of this one, never further than now (the
        // serving member's times are claims).
        if resp.more
            && let Some(t) = newest.map(|t| t.min(now.ms))
            && let Some(s) = self.state.groups.get_mut(&group)
            && t > s.synced_ms
        {
            s.synced_ms = t;
            self.ask(ctx, &group, peer, true, now);
        }
    }

    /// A peer subscribed to a topic: if it is a member of that group, catch up with it.
    pub(super) fn on_subscribed(
        &mut self,
        ctx: &Ctx<'_>,
        peer: PeerId,
        topic: &TopicHash,
        now: Now,
    ) {
        if let Some(group) = self.state.topics.get(topic).copied()
            && self
                .state
                .groups
                .get(&group)
                .is_some_and(|s| s.members.contains(&peer))
        {
            self.ask(ctx, &group, peer, false, now);
        }
    }

    /// Once a second: stay connected to a few members of each group, tell the owner of a
    /// removal that arrived, catch up now and then, answer invitations that waited too long,
    /// expire messages.
    pub(super) fn tick(&mut self, ctx: &Ctx<'_>, now: Now) {
        let aged = self.state.early.expire(now.at);
        if aged > 0 {
            tracing::debug!(
                aged,
                "group messages that waited too long for their commit dropped"
            );
        }
        let me = ctx.me;
        let since = |t: &std::time::Instant| now.at.saturating_duration_since(*t);
        // A dial older than the pause between dials no longer holds anything back.
        self.state
            .dialed
            .retain(|_, t| since(t) < REDIAL_MEMBER_EVERY);
        let ids: Vec<GroupId> = self.state.groups.keys().copied().collect();
        for id in ids {
            let Some(s) = self.state.groups.get(&id) else {
                continue;
            };
            if !s.record.active || s.record.request {
                continue;
            }
            let connected: Vec<PeerId> = s
                .members
                .iter()
                .filter(|p| **p != me && ctx.facts.connected(p))
                .copied()
                .collect();
            let mut dials = Vec::new();
            if connected.len() < WANT_MEMBERS {
                let mut candidates: Vec<PeerId> = s
                    .members
                    .iter()
                    .filter(|p| **p != me && !ctx.facts.connected(p))
                    .filter(|p| {
                        self.state
                            .dialed
                            .get(*p)
                            .is_none_or(|t| since(t) >= REDIAL_MEMBER_EVERY)
                    })
                    .copied()
                    .collect();
                // The owner first (it holds everything), then the others in random order.
                use rand::seq::SliceRandom;
                candidates.shuffle(&mut rand::rng());
                candidates.sort_by_key(|p| *p != s.owner);
                dials.extend(
                    candidates
                        .into_iter()
                        .take(WANT_MEMBERS.saturating_sub(connected.len())),
                );
            }
            let (owner, owes, in_flight) = (s.owner, s.owes_owner_epoch, s.sync_in_flight);
            let due = s.last_sync.is_none_or(|t| since(&t) >= SYNC_EVERY);
            for p in dials {
                self.state.dialed.insert(p, now.at);
                self.out.push(Action::Dial(p));
            }
            if owes && owner != me {
                // A removal reached this node: the owner is told (asked again after a failed
                // or refused request, at most every SYNC_MIN_GAP; dialed if away).
                if connected.contains(&owner) {
                    if !in_flight {
                        self.ask(ctx, &id, owner, false, now);
                        continue;
                    }
                } else if self
                    .state
                    .dialed
                    .get(&owner)
                    .is_none_or(|t| since(t) >= REDIAL_MEMBER_EVERY)
                {
                    self.state.dialed.insert(owner, now.at);
                    self.out.push(Action::Dial(owner));
                }
            }
            if due && !connected.is_empty() {
                let pick = connected
                    .get(
                        (rand::random::<u32>() as usize)
                            .checked_rem(connected.len())
                            .unwrap_or(0),
                    )
                    .copied()
                    .unwrap_or(owner);
                self.ask(ctx, &id, pick, true, now);
            }
        }
        let stale: Vec<(GroupId, PeerId)> = self
            .state
            .invites
            .iter()
            .filter(|(_, p)| {
                !p.replies.is_empty() && now.at.saturating_duration_since(p.since) >= INVITE_WAIT
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            let Some(p) = self.state.invites.get_mut(&k) else {
                continue;
            };
            for r in p.replies.drain(..).collect::<Vec<_>>() {
                self.out.push(Action::Answer(
                    r,
                    Err(NodeError::InvalidInput(format!(
                        "{}'s key package was not found yet (is it online, or was it ever?); \
                         the invitation stays pending and goes out when it is found",
                        k.1
                    ))),
                ));
            }
        }
        if self.state.next_expiry.is_none_or(|t| t <= now.ms) {
            self.out.push(Action::Expire);
        }
    }
}
