//! What the user does with groups: create, invite (answered once the invitee's KeyPackage is
//! found), remove, post, read, and answer invitations held as requests.

use std::time::Duration;

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;

use super::{Action, Ctx, Groups, Now, Write, dm_err, refused, wire_id};
use crate::group::state::{GroupRecord, PendingInvite};
use crate::group::{GroupId, GroupMessageView, GroupView, check_name, seal_invite};
use crate::node::NodeError;
use crate::node::views::Event;

impl<R> Groups<R> {
    /// A group as the user sees it.
    pub(crate) fn view(&self, ctx: &Ctx<'_>, group: &GroupId) -> Result<GroupView, NodeError> {
        self.state
            .view(group, &ctx.me)
            .ok_or_else(|| NodeError::UnknownGroup(group.to_string()))
    }

    /// `group list`.
    pub(crate) fn list(&self, me: &PeerId) -> Vec<GroupView> {
        self.state.list(me)
    }

    /// `group create`.
    pub(crate) fn create(
        &mut self,
        ctx: &Ctx<'_>,
        name: String,
        now: Now,
    ) -> Result<GroupView, NodeError> {
        check_name(&name).map_err(dm_err)?;
        let id = ctx.mls.group_create().map_err(dm_err)?;
        let id = GroupId::from_slice(&id)
            .ok_or_else(|| NodeError::Internal("MLS made a group id of another length".into()))?;
        self.write(Write::Mls);
        let record = GroupRecord {
            name: name.trim().to_string(),
            owner: ctx.me.to_string(),
            created_ms: now.ms,
            joined_ms: now.ms,
            join_epoch: 0,
            active: true,
            next_seq: 1,
            request: false,
        };
        self.install(ctx, id, record);
        self.save_group(&id);
        tracing::info!(group = %id, "group created");
        self.emit_changed(ctx, &id);
        self.view(ctx, &id)
    }

    /// `group invite`: answered (an [`Action::Answer`]) once the member is added, or refused
    /// at once.
    pub(crate) fn invite(
        &mut self,
        ctx: &Ctx<'_>,
        group: GroupId,
        peer: PeerId,
        reply: R,
        now: Now,
    ) {
        if let Err(e) = self.state.may_invite(&group, &peer, &ctx.me) {
            self.out
                .push(Action::Answer(reply, Err(refused(&group, e))));
            return;
        }
        self.write(Write::Invite(group, peer));
        self.state
            .invites
            .entry((group, peer))
            .or_insert_with(|| PendingInvite {
                since: now.at,
                replies: Vec::new(),
            })
            .replies
            .push(reply);
        self.emit_changed(ctx, &group);
        // Looked up at once (and every few seconds until found).
        self.out.push(Action::WantKeyPackage(peer));
    }

    /// The groups `peer` is invited to (waiting for its KeyPackage).
    pub(crate) fn invited_to(&self, peer: &PeerId) -> Vec<GroupId> {
        self.state
            .invites
            .keys()
            .filter(|(_, p)| p == peer)
            .map(|(g, _)| *g)
            .collect()
    }

    /// Adds `peer` to one group it is invited to, with its KeyPackage, and answers the
    /// invitation.
    pub(crate) fn keypackage_for(
        &mut self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        peer: &PeerId,
        key_package: &[u8],
        now: Now,
    ) {
        if !self.state.invites.contains_key(&(*group, *peer)) {
            return;
        }
        let result = self.add_member(ctx, group, peer, key_package, now);
        if let Err(e) = &result {
            tracing::warn!(%peer, "cannot add to the group: {e}");
        }
        self.write(Write::RemoveInvite(*group, *peer));
        if let Some(p) = self.state.invites.remove(&(*group, *peer)) {
            for r in p.replies {
                let answer = match &result {
                    Ok(()) => self.view(ctx, group),
                    Err(e) => Err(NodeError::InvalidInput(e.to_string())),
                };
                // The new member and the commit are promised: on disk first.
                self.out.push(Action::Answer(r, answer));
            }
        }
    }

    /// An invitation that could not be stored: dropped; returns who waited for it.
    pub(crate) fn withdraw(&mut self, group: &GroupId, peer: &PeerId) -> Vec<R> {
        self.state
            .invites
            .remove(&(*group, *peer))
            .map(|p| p.replies)
            .unwrap_or_default()
    }

    fn add_member(
        &mut self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        peer: &PeerId,
        key_package: &[u8],
        now: Now,
    ) -> Result<(), NodeError> {
        let (name, created_ms) = {
            let s = self
                .state
                .owned_active(group, &ctx.me)
                .map_err(|e| refused(group, e))?;
            (s.record.name.clone(), s.record.created_ms)
        };
        let crate::mls::group::Added {
            commit,
            welcome,
            invite_key,
        } = ctx
            .mls
            .group_add(group.as_bytes(), peer, key_package)
            .map_err(dm_err)?;
        // The new epoch is on disk before anything leaves (no key reuse after a crash).
        self.write(Write::Mls);
        self.refresh_members(ctx, group);
        self.log_and_publish(group, commit, now);
        let invite = v1::GroupInvite {
            name,
            owner: ctx.me.to_bytes(),
            created_ms,
        };
        let sealed = seal_invite(&invite_key, group.as_bytes(), &invite).map_err(dm_err)?;
        self.out.push(Action::Envelope {
            peer: *peer,
            sent_ms: now.ms,
            mls_message: welcome,
            invite: sealed,
        });
        tracing::info!(group = %group, %peer, "member added");
        self.emit_changed(ctx, group);
        Ok(())
    }

    /// `group remove` (of a member, or of an invitation not yet answered).
    pub(crate) fn remove(
        &mut self,
        ctx: &Ctx<'_>,
        group: GroupId,
        peer: PeerId,
        now: Now,
    ) -> Result<GroupView, NodeError> {
        let s = self
            .state
            .owned_active(&group, &ctx.me)
            .map_err(|e| refused(&group, e))?;
        if !s.members.contains(&peer) {
            // Perhaps only invited: withdraw the invitation.
            if let Some(p) = self.state.invites.remove(&(group, peer)) {
                self.write(Write::RemoveInvite(group, peer));
                for r in p.replies {
                    self.out.push(Action::Answer(
                        r,
                        Err(NodeError::NotAllowed("invitation withdrawn".into())),
                    ));
                }
                self.emit_changed(ctx, &group);
                return self.view(ctx, &group);
            }
            return Err(NodeError::NotAllowed(format!(
                "{peer} is not a member of the group"
            )));
        }
        let commit = ctx
            .mls
            .group_remove(group.as_bytes(), &peer)
            .map_err(dm_err)?;
        self.write(Write::Mls);
        self.refresh_members(ctx, &group);
        self.log_and_publish(&group, commit.clone(), now);
        // The removed member is no longer served by catch-up: it learns of its removal from
        // the commit sent to it directly (or held for it), like a direct message.
        self.out.push(Action::Envelope {
            peer,
            sent_ms: now.ms,
            mls_message: commit,
            invite: Vec::new(),
        });
        tracing::info!(group = %group, %peer, "member removed");
        self.emit_changed(ctx, &group);
        self.view(ctx, &group)
    }

    /// `group post`.
    pub(crate) fn post(
        &mut self,
        ctx: &Ctx<'_>,
        group: GroupId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
        now: Now,
    ) -> Result<GroupMessageView, NodeError> {
        crate::dm::check_text_len(&text).map_err(NodeError::InvalidInput)?;
        let s = self
            .state
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
        let seq = s.record.next_seq.max(1);
        let body = v1::DmBody {
            id: crate::crypto::random_bytes::<16>().to_vec(),
            text,
            sent_ms: now.ms,
            seq,
            expires_at_ms: expires_in.map_or(0, |d| {
                now.ms
                    .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            attachment,
            conversation: Vec::new(),
        };
        let mls = ctx
            .mls
            .encrypt(group.as_bytes(), &body.encode_to_vec())
            .map_err(dm_err)?;
        s.record.next_seq = seq.saturating_add(1);
        self.write(Write::Mls);
        self.save_group(&group);
        let stored = v1::StoredGroupMessage {
            group_id: group.as_bytes().to_vec(),
            author: ctx.me.to_bytes(),
            body: Some(body),
            received_ms: now.ms,
        };
        self.store_message(stored.clone());
        self.log_and_publish(&group, mls, now);
        let view = GroupMessageView::of(&ctx.me, &stored)
            .ok_or_else(|| NodeError::InvalidInput("bad message".into()))?;
        self.out.push(Action::Emit(Event::GroupMessage {
            message: view.clone(),
        }));
        Ok(view)
    }

    /// `group history`, oldest first.
    pub(crate) fn history(
        &self,
        ctx: &Ctx<'_>,
        group: &GroupId,
        now: Now,
    ) -> Result<Vec<GroupMessageView>, NodeError> {
        if !self.state.groups.contains_key(group) {
            return Err(NodeError::UnknownGroup(group.to_string()));
        }
        Ok(ctx
            .store
            .private()
            .group_messages(group)?
            .iter()
            .filter_map(|s| GroupMessageView::of(&ctx.me, s))
            .filter(|v| v.expires_at.is_none_or(|t| t > now.ms))
            .collect())
    }

    /// A message of this node (a commit or a post): kept in the log for members that missed
    /// it, and gossiped once on disk; one too large for gossip reaches members when they
    /// catch up.
    fn log_and_publish(&mut self, group: &GroupId, mls_message: Vec<u8>, now: Now) {
        let wire = v1::GroupWire {
            sent_ms: now.ms,
            mls_message,
        };
        let id = wire_id(&wire);
        self.write(Write::Seen(id, now.ms));
        let data = wire.encode_to_vec();
        let topic = self.state.groups.get_mut(group).map(|s| {
            s.held_up_to(wire.sent_ms);
            s.topic.hash()
        });
        self.write(Write::Log(*group, wire, id));
        if data.len() > crate::net::MAX_GOSSIP_BYTES.saturating_sub(1024) {
            tracing::debug!(
                len = data.len(),
                "group message too large for gossip: members fetch it"
            );
            return;
        }
        if let Some(topic) = topic {
            self.out.push(Action::Publish { topic, data });
        }
    }

    /// Group invitations held as requests: (group id, owner, name, when).
    pub(crate) fn requests(&self) -> Vec<(GroupId, PeerId, String, u64)> {
        self.state.requests()
    }

    /// Accepts the group invitations `owner` sent: the groups are followed from now on.
    pub(crate) fn accept_from(&mut self, ctx: &Ctx<'_>, owner: &PeerId, now: Now) -> usize {
        let ids = self.state.requests_from(owner);
        for id in &ids {
            let Some(s) = self.state.groups.get_mut(id) else {
                continue;
            };
            s.record.request = false;
            let topic = s.topic.clone();
            self.save_group(id);
            self.out.push(Action::Subscribe(topic));
            self.emit_changed(ctx, id);
            self.ask(ctx, id, *owner, true, now);
        }
        ids.len()
    }

    /// Declines the group invitations `owner` sent: their state and record are dropped.
    pub(crate) fn decline_from(&mut self, ctx: &Ctx<'_>, owner: &PeerId) -> usize {
        let ids = self.state.requests_from(owner);
        for id in &ids {
            self.state.remove(id);
            if ctx.mls.forget(id.as_bytes()).is_ok() {
                self.write(Write::Mls);
            }
            self.write(Write::RemoveGroup(*id));
        }
        ids.len()
    }
}
