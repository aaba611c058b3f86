//! What peers send: deliveries, deposits and collections answered, answers to this node's
//! own requests, and envelopes received, held for their Welcome, or handed to groups.

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;

use super::{Action, Ctx, Direct, Now, Routed, Sent};
use crate::dm::conversation::Conversation;
use crate::dm::held::NotHeld;
use crate::dm::mailbox::{Refused, check_envelope, envelope_id};
use crate::dm::{DmError, DmView, MAX_ENVELOPES_PER_REQUEST, check_body};
use crate::mls::{Incoming, MlsError};
use crate::node::reputation::Offence;
use crate::node::views::Event;

/// The envelopes a holder handed over that are for this node (`me`), oldest first, with
/// their senders: at most four requests' worth.
pub(crate) fn collected(
    me: &PeerId,
    holder: &PeerId,
    resp: v1::DmResponse,
    now: Now,
) -> Vec<(PeerId, v1::DmEnvelope)> {
    let mut envs = resp.envelopes;
    envs.truncate(MAX_ENVELOPES_PER_REQUEST.saturating_mul(4));
    envs.sort_by_key(|e| e.sent_ms);
    envs.into_iter()
        .filter_map(|env| match check_envelope(&env, now.ms) {
            Ok((sender, recipient)) if recipient == *me => Some((sender, env)),
            _ => {
                tracing::debug!(%holder, "holder returned an envelope not for us");
                None
            }
        })
        .collect()
}

/// What became of one envelope of a peer's delivery.
pub(crate) enum Taken {
    /// Taken (or held, or a duplicate).
    Yes,
    /// This node holds too much of the sender's already: not taken.
    Busy,
    /// Refused, for this reason.
    Refused(String),
}

/// The answer to a peer's delivery of its own envelopes, built envelope by envelope.
/// `accepted` counts a prefix that ends at the first `busy` (the sender keeps the rest and
/// tries again later); an envelope refused for anything else counts as handed over.
pub(crate) struct DeliveryAnswer {
    peer: PeerId,
    me: PeerId,
    resp: v1::DmResponse,
}

impl DeliveryAnswer {
    /// A delivery by `peer` to this node, `me`.
    pub(crate) fn new(peer: PeerId, me: PeerId) -> Self {
        Self {
            peer,
            me,
            resp: v1::DmResponse::default(),
        }
    }

    /// At most this many envelopes of one delivery are looked at.
    pub(crate) const MAX: usize = MAX_ENVELOPES_PER_REQUEST;

    /// Whether an envelope may be taken: well formed, from the delivering peer, to this node.
    pub(crate) fn admit(&self, env: &v1::DmEnvelope, now: Now) -> Result<(), String> {
        match check_envelope(env, now.ms) {
            Ok((sender, recipient)) if sender == self.peer && recipient == self.me => Ok(()),
            Ok(_) => Err("envelope not from this peer to this node".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records what became of the next envelope; false: stop here.
    pub(crate) fn record(&mut self, taken: Taken) -> bool {
        match taken {
            Taken::Yes => {}
            Taken::Busy => {
                self.resp.error = DmError::Busy.to_string();
                return false;
            }
            Taken::Refused(why) => {
                tracing::debug!(peer = %self.peer, "direct message refused: {why}");
                self.resp.error = why;
            }
        }
        self.resp.accepted = self.resp.accepted.saturating_add(1);
        true
    }

    /// The answer.
    pub(crate) fn finish(self) -> v1::DmResponse {
        self.resp
    }
}

impl Direct {
    /// Holds envelopes a peer leaves for an offline recipient.
    pub(crate) fn answer_deposit(
        &mut self,
        peer: PeerId,
        d: &v1::DmDeposit,
        resp: &mut v1::DmResponse,
        now: Now,
    ) {
        let mut over_quota = false;
        for env in d.envelopes.iter().take(MAX_ENVELOPES_PER_REQUEST) {
            match self.mailbox.deposit(&peer, env, now.ms) {
                Ok(()) => resp.accepted = resp.accepted.saturating_add(1),
                Err(e) => {
                    over_quota |= e == Refused::SenderQuota;
                    resp.error = e.to_string();
                }
            }
        }
        // An honest sender re-deposits its outbox every few minutes and may meet its quota now
        // and then; one that keeps pushing past it is flooding.
        if over_quota {
            self.out
                .push(Action::Penalise(peer, Offence::MailOverQuota));
        }
        if resp.accepted > 0 {
            let (envelopes, bytes) = self.mailbox.totals();
            tracing::debug!(%peer, accepted = resp.accepted, envelopes, bytes, "mail held for an offline peer");
        }
    }

    /// Hands a peer the mail held for it.
    pub(crate) fn answer_collect(&mut self, peer: PeerId, resp: &mut v1::DmResponse, now: Now) {
        resp.envelopes = self.mailbox.collect(&peer, now.ms);
        resp.accepted = u32::try_from(resp.envelopes.len()).unwrap_or(u32::MAX);
        if resp.accepted > 0 {
            tracing::debug!(%peer, envelopes = resp.accepted, "mail handed over");
        }
    }

    /// A peer answered one of this node's requests. Collected envelopes that are a group's
    /// come back as [`Action::Route`].
    pub(super) fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: PeerId,
        sent: Sent,
        resp: v1::DmResponse,
        now: Now,
    ) {
        match sent {
            Sent::Deliver { peer, keys } => {
                let taken = (resp.accepted as usize).min(keys.len());
                for k in keys.iter().take(taken) {
                    if let Ok(Some(mk)) = ctx.store.private().take_envelope(k) {
                        self.mark_delivered(ctx, &mk, now);
                    }
                }
                if !resp.error.is_empty() {
                    tracing::debug!(%peer, "peer refused part of a delivery: {}", resp.error);
                }
                if let Some(r) = self.waiting.get_mut(&peer) {
                    // Too much of ours waits there for a Welcome: give it time.
                    r.answered(now.at, resp.error == DmError::Busy.to_string());
                }
                if taken > 0 {
                    self.try_deliver(ctx, &peer, now);
                }
            }
            Sent::Deposit => {
                tracing::debug!(%peer, accepted = resp.accepted, error = %resp.error, "deposit answered");
            }
            // Taken by the loop, envelope by envelope ([`collected`]): each may be a group's,
            // and must reach the group component before the next is looked at (a Welcome
            // and the commit that removes the member may come in one answer).
            Sent::Collect => {}
        }
    }

    fn route_later(&mut self, from: PeerId, via: PeerId, routed: Routed) {
        if !matches!(routed, Routed::Done) {
            self.out.push(Action::Route { from, via, routed });
        }
    }

    fn mark_delivered(&mut self, ctx: &Ctx<'_>, message_key: &[u8], now: Now) {
        if message_key.is_empty() {
            return;
        }
        if let Ok(Some(mut s)) = ctx.store.private().message(message_key) {
            s.received_ms = now.ms;
            let _ = ctx.store.private().update_message(message_key, &s);
            if let Some(view) = DmView::of(&ctx.me, &s) {
                self.out
                    .push(Action::Emit(Event::DirectMessage { message: view }));
            }
        }
    }

    /// Processes one envelope from `from` (already checked for form), handed over by `via`
    /// (`from` itself, or a mail holder): once, even if it comes again directly and from
    /// several holders. A group's envelope is not taken here: it is returned for the group
    /// component. `DmError::Busy`: `via` has too much waiting already; not taken.
    pub(crate) fn receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: &PeerId,
        via: &PeerId,
        env: v1::DmEnvelope,
        now: Now,
    ) -> Result<Routed, DmError> {
        let id = envelope_id(&env);
        if matches!(ctx.store.private().seen(&id), Ok(true)) {
            return Ok(Routed::Done);
        }
        if ctx.book.is_revoked(from) {
            // Its account revoked it: nothing it sends is taken.
            return Err(DmError::NotAllowed("a revoked device"));
        }
        if !env.group_invite.is_empty() {
            return Ok(Routed::Invite(id, env));
        }
        if let Some(group) = ctx.facts.group_of(&env.mls_message) {
            // A group's message sent straight to one member (the commit that removes it):
            // processed as the group's, never as a direct message.
            let wire = v1::GroupWire {
                sent_ms: env.sent_ms,
                mls_message: env.mls_message,
            };
            return Ok(Routed::Group(group, wire));
        }
        let incoming = match ctx.mls.client.receive(from, &env.mls_message) {
            Err(MlsError::UnknownGroup) => {
                return self
                    .hold_early(from, via, id, env, now)
                    .map(|()| Routed::Done);
            }
            other => other?,
        };
        let _ = ctx.mls.save(ctx.store);
        let _ = ctx.store.private().mark_seen(&id, now.ms);
        match incoming {
            Incoming::Joined { group } => {
                let stranger = !self.is_known(ctx.book, ctx.store, from);
                self.conversations
                    .entry(*from)
                    .or_default()
                    .joined(from, group.clone(), stranger);
                let _ = self.save_conversation(ctx, from);
                tracing::info!(peer = %from, "joined a conversation");
                // Messages that came before their Welcome.
                for (via, (p, e)) in self.early.release(&group, u64::MAX) {
                    if let Ok(routed) = self.receive(ctx, &p, &via, e, now) {
                        self.route_later(p, via, routed);
                    }
                }
                // Messages queued here for this peer can now go in the shared group.
                if self.need_kp.contains_key(from) {
                    let _ = self.start_conversation(ctx, from, &[], now);
                }
            }
            Incoming::Application { plaintext, .. } => {
                let body =
                    v1::DmBody::decode(plaintext.as_slice()).map_err(|_| DmError::Malformed)?;
                check_body(&body)?;
                // A copy of what another device of this account sent: stored as sent, in the
                // conversation it names. Taken from this account's own devices only.
                let copy_of = if body.conversation.is_empty() {
                    None
                } else if ctx.book.is_my_device(from) {
                    Some(PeerId::from_bytes(&body.conversation).map_err(|_| DmError::Malformed)?)
                } else {
                    return Err(DmError::NotAllowed(
                        "a sent copy from a device not of this account",
                    ));
                };
                if let Some(p) = copy_of {
                    self.conversations
                        .entry(p)
                        .or_insert_with(|| Conversation::new(&p));
                    let _ = self.save_conversation(ctx, &p);
                }
                let stored = v1::StoredDm {
                    peer: copy_of.unwrap_or(*from).to_bytes(),
                    outgoing: copy_of.is_some(),
                    body: Some(body),
                    received_ms: now.ms,
                };
                self.store_dm(ctx, &stored)
                    .map_err(|e| DmError::Store(e.to_string()))?;
                if self.conversations.get(from).is_some_and(|c| c.request) {
                    // A message request: kept, not announced, nothing fetched.
                    self.out.push(Action::RequestsChanged);
                    return Ok(Routed::Done);
                }
                if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.clone()) {
                    self.out.push(Action::Prefetch(a));
                }
                if let Some(view) = DmView::of(&ctx.me, &stored) {
                    self.out
                        .push(Action::Emit(Event::DirectMessage { message: view }));
                }
            }
            Incoming::Commit { group } => {
                tracing::debug!(peer = %from, "conversation keys renewed");
                if self.proposed.remove(from).is_some() {
                    let _ = self.flush_queued(ctx, from, now);
                }
                // Messages of the new epoch that came before its commit (only those).
                if let Ok((_, epoch, _)) = ctx.mls.client.group_state(&group) {
                    for (via, (p, e)) in self.early.release(&group, epoch) {
                        if let Ok(routed) = self.receive(ctx, &p, &via, e, now) {
                            self.route_later(p, via, routed);
                        }
                    }
                }
            }
            Incoming::UpdateProposal { group } => {
                let creator = self
                    .conversations
                    .get(from)
                    .is_some_and(|c| c.is_committer(&group));
                if creator {
                    match ctx.mls.client.commit_pending(&group) {
                        Ok(commit) => {
                            ctx.mls
                                .save(ctx.store)
                                .map_err(|e| DmError::Store(e.to_string()))?;
                            let t = self.next_sent_ms(from, now);
                            self.queue_envelope(ctx, from, t, commit, b"", Vec::new(), now)
                                .map_err(|e| DmError::Store(e.to_string()))?;
                            self.try_deliver(ctx, from, now);
                            tracing::debug!(peer = %from, "peer's key update committed");
                        }
                        Err(e) => tracing::warn!("cannot commit the peer's key update: {e}"),
                    }
                }
            }
        }
        Ok(Routed::Done)
    }

    /// Keeps a message of a conversation (or epoch) this node has not reached yet, within the
    /// bounds of the waiting room; a peer with too much waiting is refused and penalised.
    fn hold_early(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        id: [u8; 32],
        env: v1::DmEnvelope,
        now: Now,
    ) -> Result<(), DmError> {
        let header = crate::mls::group::header(&env.mls_message).ok_or(DmError::Malformed)?;
        let len = env.mls_message.len();
        // Charged to the sender the envelope names (for a direct delivery, the peer itself), not
        // to a mail holder that carries it for many senders.
        match self.early.hold(
            *from,
            header.group,
            header.epoch,
            id,
            len,
            (*from, env),
            now.at,
        ) {
            Ok(()) => Ok(()),
            Err(NotHeld::PeerQuota) => {
                tracing::debug!(peer = %from, "too many direct messages waiting for a Welcome");
                // One offence per delivery (`busy` ends it); an honest sender backs off.
                if from == via {
                    self.out
                        .push(Action::Penalise(*via, Offence::HeldOverQuota));
                }
                Err(DmError::Busy)
            }
            Err(NotHeld::TooLarge) => Err(DmError::NotAllowed(
                "a message of an unknown conversation is too large to wait for its Welcome",
            )),
        }
    }
}
