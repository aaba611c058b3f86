//! Group history exchange with members, and the periodic group work.

#![warn(clippy::arithmetic_side_effects)]

use super::*;

impl EventLoop {
    /// Asks `peer` for a group's messages this node may have missed.
    pub(crate) fn group_sync_with(&mut self, group: &GroupId, peer: PeerId, force: bool) {
        let me = *self.swarm.local_peer_id();
        let Some(s) = self.groups.groups.get_mut(group) else {
            return;
        };
        if peer == me
            || !s.record.active
            || s.record.request
            || s.sync_in_flight
            || (!force && s.last_sync.is_some_and(|t| t.elapsed() < SYNC_MIN_GAP))
        {
            return;
        }
        s.sync_in_flight = true;
        s.last_sync = Some(Instant::now());
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::GroupSync(v1::GroupSync {
                group_id: group.as_bytes().to_vec(),
                since_ms: s.synced_ms,
                epoch: s.epoch,
            })),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(&peer, Frame::Valid(req));
        self.dm.requests.insert(id, Sent::GroupSync(*group));
    }

    /// Answers a member's catch-up request from the log.
    pub(crate) fn answer_group_sync(
        &mut self,
        peer: &PeerId,
        q: &v1::GroupSync,
        resp: &mut v1::DmResponse,
    ) {
        let Some(group) = GroupId::from_slice(&q.group_id) else {
            resp.error = "unknown group".into();
            return;
        };
        let Some(s) = self.groups.groups.get_mut(&group) else {
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
        let Ok(log) = self.store.private().group_log(&group, q.since_ms) else {
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
        resp.accepted = resp.group_messages.len() as u32;
    }

    /// A member's answer to this node's catch-up request.
    pub(crate) fn on_group_sync(&mut self, peer: PeerId, group: GroupId, resp: v1::DmResponse) {
        if let Some(s) = self.groups.groups.get_mut(&group) {
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
            match self.receive_group_wire(&group, w, peer) {
                Ok(true) => got = got.saturating_add(1),
                Ok(false) => {}
                Err(e) if e.is_future_epoch() => {}
                Err(e) => tracing::debug!(%peer, "caught-up group message refused: {e}"),
            }
        }
        if got > 0 {
            tracing::debug!(%peer, got, "group messages caught up");
        }
        if resp.more
            && let Some(t) = newest
            && let Some(s) = self.groups.groups.get_mut(&group)
            && t > s.synced_ms
        {
            s.synced_ms = t;
            self.group_sync_with(&group, peer, true);
        }
    }

    /// The request failed: another member is asked next time.
    pub(crate) fn on_group_sync_failed(&mut self, group: &GroupId) {
        if let Some(s) = self.groups.groups.get_mut(group) {
            s.sync_in_flight = false;
        }
    }

    /// A peer subscribed to a group's topic: it is a member (or says so); catch up with it.
    pub(crate) fn group_on_subscribed(&mut self, peer: PeerId, topic: &TopicHash) {
        if let Some(group) = self.groups.topics.get(topic).cloned()
            && self
                .groups
                .groups
                .get(&group)
                .is_some_and(|s| s.members.contains(&peer))
        {
            self.group_sync_with(&group, peer, false);
        }
    }

    /// Housekeeping, once a second: stay connected to a few members of each group, catch up
    /// now and then, answer invitations that waited too long, expire messages.
    pub(crate) fn group_tick(&mut self) {
        let aged = self.groups.early.expire(Instant::now());
        if aged > 0 {
            tracing::debug!(
                aged,
                "group messages that waited too long for their commit dropped"
            );
        }
        let me = *self.swarm.local_peer_id();
        let ids: Vec<GroupId> = self.groups.groups.keys().copied().collect();
        for id in ids {
            let Some(s) = self.groups.groups.get(&id) else {
                continue;
            };
            if !s.record.active || s.record.request {
                continue;
            }
            let connected: Vec<PeerId> = s
                .members
                .iter()
                .filter(|p| **p != me && self.swarm.is_connected(p))
                .copied()
                .collect();
            if connected.len() < WANT_MEMBERS {
                let mut candidates: Vec<PeerId> = s
                    .members
                    .iter()
                    .filter(|p| **p != me && !self.swarm.is_connected(p))
                    .filter(|p| {
                        self.groups
                            .dialed
                            .get(*p)
                            .is_none_or(|t| t.elapsed() >= REDIAL_MEMBER_EVERY)
                    })
                    .copied()
                    .collect();
                // The owner first (it holds everything), then the others in random order.
                use rand::seq::SliceRandom;
                candidates.shuffle(&mut rand::rng());
                candidates.sort_by_key(|p| *p != s.owner);
                for p in candidates
                    .into_iter()
                    .take(WANT_MEMBERS.saturating_sub(connected.len()))
                {
                    self.groups.dialed.insert(p, Instant::now());
                    let _ = self.swarm.dial(p);
                }
            }
            if s.owes_owner_epoch && s.owner != me {
                // A removal reached this node: the owner is told (asked again after a failed
                // or refused request, at most every SYNC_MIN_GAP; dialed if away).
                let owner = s.owner;
                if connected.contains(&owner) {
                    if !s.sync_in_flight {
                        self.group_sync_with(&id, owner, false);
                        continue;
                    }
                } else if self
                    .groups
                    .dialed
                    .get(&owner)
                    .is_none_or(|t| t.elapsed() >= REDIAL_MEMBER_EVERY)
                {
                    self.groups.dialed.insert(owner, Instant::now());
                    let _ = self.swarm.dial(owner);
                }
            }
            let due = s.last_sync.is_none_or(|t| t.elapsed() >= SYNC_EVERY);
            if due && let Some(p) = connected.first().copied() {
                let pick = connected
                    .get(
                        (rand::random::<u32>() as usize)
                            .checked_rem(connected.len())
                            .unwrap_or(0),
                    )
                    .copied()
                    .unwrap_or(p);
                self.group_sync_with(&id, pick, true);
            }
        }
        let stale: Vec<(GroupId, PeerId)> = self
            .groups
            .invites
            .iter()
            .filter(|(_, p)| !p.replies.is_empty() && p.since.elapsed() >= INVITE_WAIT)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(p) = self.groups.invites.get_mut(&k) {
                for r in p.replies.drain(..) {
                    let _ = r.send(Err(NodeError::InvalidInput(format!(
                        "{}'s key package was not found yet (is it online, or was it ever?); \
                         the invitation stays pending and goes out when it is found",
                        k.1
                    ))));
                }
            }
        }
        self.expire_group_messages();
    }

    /// Every ten minutes: the ciphertext log keeps a week.
    pub(crate) fn group_housekeeping(&mut self) {
        let cutoff = now_ms().saturating_sub(LOG_FOR_MS);
        let ids: Vec<GroupId> = self.groups.groups.keys().copied().collect();
        for id in ids {
            if let Err(e) = self.store.private().prune_group_log(&id, cutoff) {
                tracing::warn!("cannot prune a group's log: {e}");
            }
        }
    }

    pub(crate) fn expire_group_messages(&mut self) {
        let now = now_ms();
        if self.groups.next_expiry.is_some_and(|t| t > now) {
            return;
        }
        self.groups.next_expiry = self.sweep_expired(true, now);
    }

    /// Group messages dropped while waiting for their commit, since start.
    pub(crate) fn groups_early_dropped(&self) -> u64 {
        self.groups.early.dropped()
    }
}
