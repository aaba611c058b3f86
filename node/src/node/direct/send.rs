//! What the user does with direct messages: sending (to every device of a person, with copies
//! for this account's other devices), reading, and answering message requests; and how a
//! message becomes an envelope in the outbox.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;

use super::{Action, Ctx, Direct, HOLD_MS, Now, Reader};
use crate::dm::conversation::Conversation;
use crate::dm::mailbox::envelope_id;
use crate::dm::route::Route;
use crate::dm::{DmConversationView, DmView};
use crate::mls::MlsError;
use crate::node::NodeError;
use crate::node::views::Event;
use crate::store::StoreError;

impl Direct {
    /// Sends a direct message to a person: to every device of their account (when it is
    /// known; else to the peer named), and a copy to this account's other devices. Each is
    /// stored at once and delivered when a route exists.
    pub(crate) fn send(
        &mut self,
        ctx: &mut Ctx<'_>,
        target: PeerId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<v1::Attachment>,
        now: Now,
    ) -> Result<DmView, NodeError> {
        if text.trim().is_empty() {
            return Err(NodeError::InvalidInput("empty message".into()));
        }
        crate::dm::check_text_len(&text).map_err(NodeError::InvalidInput)?;
        let recipients = ctx.book.recipients(&target);
        let Some(first) = recipients.first().copied() else {
            return Err(NodeError::InvalidInput(
                "a direct message needs another peer".into(),
            ));
        };
        if first == ctx.me {
            return Err(NodeError::InvalidInput(
                "a direct message needs another peer".into(),
            ));
        }
        let copies: Vec<PeerId> = ctx
            .book
            .my_other_devices()
            .into_iter()
            .filter(|p| !recipients.contains(p))
            .collect();
        let id = crate::crypto::random_bytes::<16>().to_vec();
        let mut view = None;
        for r in &recipients {
            let v = self.send_one(
                ctx,
                *r,
                &id,
                &text,
                expires_in,
                &attachment,
                Vec::new(),
                now,
            )?;
            view.get_or_insert(v);
        }
        for o in copies {
            let conversation = first.to_bytes();
            if let Err(e) = self.send_one(
                ctx,
                o,
                &id,
                &text,
                expires_in,
                &attachment,
                conversation,
                now,
            ) {
                tracing::warn!(device = %o, "copy for another device of this account: {e}");
            }
        }
        let mut view = view.ok_or_else(|| NodeError::InvalidInput("bad message".into()))?;
        view.account = account_of(&ctx.reader(), &first);
        Ok(view)
    }

    /// Sends one device its copy of a message (`conversation` set on copies for this
    /// account's own devices).
    #[allow(clippy::too_many_arguments)]
    fn send_one(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: PeerId,
        id: &[u8],
        text: &str,
        expires_in: Option<Duration>,
        attachment: &Option<v1::Attachment>,
        conversation: Vec<u8>,
        now: Now,
    ) -> Result<DmView, NodeError> {
        if self.conversations.get(&peer).is_some_and(|c| c.request) {
            // Answering a message request accepts it.
            if self.accept(ctx, &peer)? {
                self.out.push(Action::Accepted(peer));
            }
        }
        let conv = self
            .conversations
            .entry(peer)
            .or_insert_with(|| Conversation::new(&peer));
        let (sent_ms, seq) = conv.next_message(now.ms);
        let body = v1::DmBody {
            id: id.to_vec(),
            text: text.to_string(),
            sent_ms,
            seq,
            expires_at_ms: expires_in.map_or(0, |d| {
                sent_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            attachment: attachment.clone(),
            conversation,
        };
        let has_group = conv.send_group().is_some();
        self.save_conversation(ctx, &peer)?;
        let stored = v1::StoredDm {
            peer: peer.to_bytes(),
            outgoing: true,
            body: Some(body.clone()),
            received_ms: 0,
        };
        let key = self.store_dm(ctx, &stored)?;
        if !has_group || !self.encrypt_and_queue(ctx, &peer, &body, &key, now)? {
            ctx.store.private().queue(&key, &stored)?;
            if !has_group {
                self.need_kp.entry(peer).or_insert(None);
                self.lookup_keypackages(now);
            }
        }
        self.try_deliver(ctx, &peer, now);
        DmView::of(&ctx.me, &stored).ok_or_else(|| NodeError::InvalidInput("bad message".into()))
    }

    /// Stores a message (either direction); returns its key.
    pub(super) fn store_dm(
        &mut self,
        ctx: &Ctx<'_>,
        stored: &v1::StoredDm,
    ) -> Result<Vec<u8>, NodeError> {
        let key = ctx.store.private().put_message(stored)?;
        let body = stored.body.as_ref().ok_or(StoreError::Corrupt("dm"))?;
        if body.expires_at_ms != 0 {
            // (None means "not known yet": the next pass looks at every entry anyway.)
            if let Some(next) = self.next_expiry
                && body.expires_at_ms < next
            {
                self.next_expiry = Some(body.expires_at_ms);
            }
        }
        Ok(key)
    }

    /// Encrypts a message into the outbox; false when it must wait (queued by the caller).
    pub(super) fn encrypt_and_queue(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: &PeerId,
        body: &v1::DmBody,
        message_key: &[u8],
        now: Now,
    ) -> Result<bool, NodeError> {
        let Some(conv) = self.conversations.get_mut(peer) else {
            return Ok(false);
        };
        let Some(group) = conv.send_group().cloned() else {
            return Ok(false);
        };
        let ct = match ctx.mls.client.encrypt(&group, &body.encode_to_vec()) {
            Ok(ct) => ct,
            Err(MlsError::PendingUpdate) => {
                // (After a restart the proposal's time is unknown: it gets a fresh timeout.)
                self.proposed
                    .entry(*peer)
                    .or_insert_with(|| (group.clone(), now.at));
                return Ok(false);
            }
            Err(e) => return Err(NodeError::InvalidInput(format!("encrypt: {e}"))),
        };
        let Some(conv) = self.conversations.get_mut(peer) else {
            return Ok(false);
        };
        let committer = conv.is_committer(&group);
        let update = conv.sealed(&group, ctx.facts.connected(peer));
        // The ratchet moved: the state must be on disk before the ciphertext leaves, or a
        // crash would make this node reuse a message key.
        ctx.mls.save(ctx.store)?;
        self.queue_envelope(ctx, peer, body.sent_ms, ct, message_key, Vec::new(), now)?;
        if update {
            // Post-compromise security: the conversation's committer renews its keys with a
            // commit; the other member proposes its renewal for the committer to commit (one
            // committer per group, so the two sides never fork it).
            let renewal = if committer {
                ctx.mls.client.update(&group)
            } else {
                ctx.mls.client.propose_update(&group)
            };
            match renewal {
                Ok(handshake) => {
                    ctx.mls.save(ctx.store)?;
                    let t = self.next_sent_ms(peer, now);
                    self.queue_envelope(ctx, peer, t, handshake, b"", Vec::new(), now)?;
                    if let Some(c) = self.conversations.get_mut(peer) {
                        c.renewed();
                    }
                    if !committer {
                        self.proposed.insert(*peer, (group.clone(), now.at));
                    }
                }
                Err(e) => tracing::warn!("key update: {e}"),
            }
        }
        self.save_conversation(ctx, peer)?;
        Ok(true)
    }

    pub(super) fn next_sent_ms(&mut self, peer: &PeerId, now: Now) -> u64 {
        self.conversations
            .entry(*peer)
            .or_insert_with(|| Conversation::new(peer))
            .next_sent_ms(now.ms)
    }

    /// Queues an envelope for `peer` in the outbox; `group_invite` is set on a private
    /// group's Welcome. Delivered by [`Direct::try_deliver`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn queue_envelope(
        &mut self,
        ctx: &Ctx<'_>,
        peer: &PeerId,
        sent_ms: u64,
        mls_message: Vec<u8>,
        message_key: &[u8],
        group_invite: Vec<u8>,
        now: Now,
    ) -> Result<(), NodeError> {
        let env = v1::DmEnvelope {
            sender: ctx.me.to_bytes(),
            recipient: peer.to_bytes(),
            sent_ms,
            expires_ms: sent_ms.saturating_add(HOLD_MS),
            mls_message,
            group_invite,
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&envelope_id(&env)[..8]);
        ctx.store
            .private()
            .put_envelope(peer, id, message_key, &env)?;
        let written = ctx.store.write_seq();
        self.waiting
            .entry(*peer)
            .or_insert_with(|| Route::new(now.at))
            .queued(written);
        Ok(())
    }

    /// Every conversation this node has, the most recently active first: one per person
    /// (all devices of a known account together), never this account's own devices.
    pub(crate) fn conversations(
        &self,
        ctx: &Reader<'_>,
    ) -> Result<Vec<DmConversationView>, NodeError> {
        let contacts = ctx.store.contacts()?;
        let names: HashMap<PeerId, String> = contacts
            .iter()
            .map(|c| (c.peer_id, c.name.clone()))
            .collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut list = Vec::with_capacity(self.conversations.len());
        let mut peers: Vec<PeerId> = self
            .conversations
            .iter()
            .filter(|(p, c)| !c.request && !ctx.book.is_my_device(p))
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        for peer in peers {
            let account = account_of(ctx, &peer);
            if !seen.insert(account.clone().unwrap_or_else(|| peer.to_string())) {
                continue;
            }
            // Shown under the contact's own peer id when one of the account's devices is one.
            let shown = ctx
                .book
                .conversation_peers(&peer)
                .into_iter()
                .find(|p| names.contains_key(p))
                .unwrap_or(peer);
            let mut history = self.history(ctx, &shown)?;
            list.push(DmConversationView {
                peer: shown.to_string(),
                name: names.get(&shown).filter(|n| !n.is_empty()).cloned(),
                count: history.len(),
                last: history.pop(),
                account,
            });
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(0, |m| m.timestamp)));
        Ok(list)
    }

    /// A conversation with a person (an account id or any of its devices), oldest first: the
    /// messages of all its devices, each once.
    pub(crate) fn history(
        &self,
        ctx: &Reader<'_>,
        target: &PeerId,
    ) -> Result<Vec<DmView>, NodeError> {
        let account = account_of(ctx, target);
        // Keyed by direction too: a message id is its sender's choice, so an incoming one must
        // never hide (or mark delivered) one of this account's own.
        let mut by_id: HashMap<(bool, String), DmView> = HashMap::new();
        for peer in ctx.book.conversation_peers(target) {
            for s in ctx.store.private().messages(&peer)? {
                let Some(mut v) = DmView::of(&ctx.me, &s) else {
                    continue;
                };
                v.account = account.clone();
                match by_id.get_mut(&(v.outgoing, v.id.clone())) {
                    // Sent to several devices: delivered once any has it.
                    Some(held) if v.outgoing => held.delivered |= v.delivered,
                    Some(_) => {}
                    None => {
                        by_id.insert((v.outgoing, v.id.clone()), v);
                    }
                }
            }
        }
        let mut out: Vec<DmView> = by_id.into_values().collect();
        out.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
        Ok(out)
    }

    /// Drops what waits to be delivered to `peer` (a revoked device): envelopes and messages
    /// not yet sealed. Holders keep what was deposited with them.
    pub(crate) fn forget_outbox(&mut self, ctx: &Ctx<'_>, peer: &PeerId) {
        self.waiting.remove(peer);
        self.need_kp.remove(peer);
        let records = ctx.store.private();
        for o in records.envelopes(Some(peer)).unwrap_or_default() {
            let _ = records.take_envelope(&o.key);
        }
        for q in records.queued(Some(peer)).unwrap_or_default() {
            let _ = records.unqueue(&q.key);
        }
    }

    /// Direct conversations held as requests: (peer, newest message, when it arrived).
    pub(crate) fn requests(&self, ctx: &Reader<'_>) -> Vec<(PeerId, Option<DmView>, u64)> {
        self.conversations
            .iter()
            .filter(|(_, c)| c.request)
            .filter_map(|(p, _)| {
                // A declined request keeps its conversation, empty, until the peer writes again.
                let last = self.history(ctx, p).ok().and_then(|mut h| h.pop())?;
                let at = last.timestamp;
                Some((*p, Some(last), at))
            })
            .collect()
    }

    /// Remembers that the user accepted `peer` (it is known from now on) and shows what its
    /// request held: its messages are announced and their attachments fetched.
    pub(crate) fn accept(&mut self, ctx: &Ctx<'_>, peer: &PeerId) -> Result<bool, NodeError> {
        if self.accepted.insert(*peer) {
            ctx.store.private().put_accepted(peer)?;
        }
        let Some(c) = self.conversations.get_mut(peer).filter(|c| c.request) else {
            return Ok(false);
        };
        c.request = false;
        self.save_conversation(ctx, peer)?;
        for stored in ctx.store.private().messages(peer)? {
            if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.clone()) {
                self.out.push(Action::Prefetch(a));
            }
            if let Some(view) = DmView::of(&ctx.me, &stored) {
                self.out
                    .push(Action::Emit(Event::DirectMessage { message: view }));
            }
        }
        Ok(true)
    }

    /// Declines `peer`'s direct-message request: its messages go. The conversation's keys
    /// stay (hidden), so that if the peer writes again its message is readable and asks
    /// again, as a new request.
    pub(crate) fn decline(&mut self, ctx: &Ctx<'_>, peer: &PeerId) -> Result<bool, NodeError> {
        if !self.conversations.get(peer).is_some_and(|c| c.request) {
            return Ok(false);
        }
        Ok(ctx.store.private().remove_messages(peer)? > 0)
    }
}

/// The account id (peer-id form) a peer is a device of, when known.
pub(crate) fn account_of(ctx: &Reader<'_>, peer: &PeerId) -> Option<String> {
    ctx.book.resolve(peer).map(|l| l.account().to_string())
}
