//! What peers send on the DM protocol: requests answered, responses, envelopes received or held.

#![warn(clippy::arithmetic_side_effects)]

use super::*;

impl EventLoop {
    pub(crate) fn on_dm_event(
        &mut self,
        event: request_response::Event<Frame<v1::DmRequest>, v1::DmResponse>,
    ) {
        match self.dm.requests.on_event(event) {
            Exchange::Malformed { peer, why } => {
                self.protocol_violation(peer, "direct-message", &why)
            }
            Exchange::Request {
                peer,
                request,
                channel,
            } => self.answer_dm(peer, request, channel),
            Exchange::Response {
                peer,
                response,
                context,
                ..
            } => self.on_dm_response(peer, context, response),
            Exchange::Failed {
                peer,
                context,
                error,
                ..
            } => {
                tracing::debug!(%peer, "direct-message request failed: {error}");
                match context {
                    Sent::Deliver { peer, .. } => {
                        if let Some(r) = self.dm.waiting.get_mut(&peer) {
                            r.failed(Instant::now());
                        }
                    }
                    Sent::GroupSync(group) => self.on_group_sync_failed(&group),
                    Sent::Link => self.on_link_answer(
                        peer,
                        v1::DmResponse {
                            error: error.to_string(),
                            ..Default::default()
                        },
                    ),
                    Sent::Devices => self.device_push_failed(&peer),
                    // A holder that went away is not asked again; with fewer than two left,
                    // the next round looks the holders up anew.
                    Sent::Collect => self.dm.holders.retain(|h| *h != peer),
                    Sent::Deposit => {}
                }
            }
            Exchange::InboundFailed { peer, error } => {
                tracing::debug!(%peer, "direct-message request from peer failed: {error}");
            }
            Exchange::Nothing => {}
        }
    }

    pub(crate) fn answer_dm(
        &mut self,
        peer: PeerId,
        request: v1::DmRequest,
        channel: ResponseChannel<v1::DmResponse>,
    ) {
        let mut resp = v1::DmResponse::default();
        if !self.dm.limiter.allow(peer, Instant::now()) {
            resp.error = "rate limited".into();
            let _ = self.swarm.behaviour_mut().dm.send_response(channel, resp);
            return;
        }
        let now = now_ms();
        let me = *self.swarm.local_peer_id();
        match request.kind {
            Some(v1::dm_request::Kind::Deliver(d)) => {
                for env in d.envelopes.into_iter().take(MAX_ENVELOPES_PER_REQUEST) {
                    match check_envelope(&env, now) {
                        Ok((sender, recipient)) if sender == peer && recipient == me => {
                            match self.receive_envelope(&peer, &peer, env) {
                                // Not taken: the sender keeps it (and the rest) and tries
                                // again later. `accepted` counts a prefix.
                                Err(DmError::Busy) => {
                                    resp.error = DmError::Busy.to_string();
                                    break;
                                }
                                Err(e) => {
                                    tracing::debug!(%peer, "direct message refused: {e}");
                                    resp.error = e.to_string();
                                }
                                Ok(()) => {}
                            }
                        }
                        Ok(_) => resp.error = "envelope not from this peer to this node".into(),
                        Err(e) => resp.error = e.to_string(),
                    }
                    resp.accepted = resp.accepted.saturating_add(1);
                }
            }
            Some(v1::dm_request::Kind::Deposit(d)) => {
                let mut over_quota = false;
                for env in d.envelopes.iter().take(MAX_ENVELOPES_PER_REQUEST) {
                    match self.dm.mailbox.deposit(&peer, env, now) {
                        Ok(()) => resp.accepted = resp.accepted.saturating_add(1),
                        Err(e) => {
                            over_quota |= e == crate::dm::mailbox::Refused::SenderQuota;
                            resp.error = e.to_string();
                        }
                    }
                }
                // An honest sender re-deposits its outbox every few minutes and may meet its
                // quota now and then; one that keeps pushing past it is flooding.
                if over_quota {
                    self.penalise(peer, crate::node::reputation::Offence::MailOverQuota);
                }
                if resp.accepted > 0 {
                    let (envelopes, bytes) = self.dm.mailbox.totals();
                    tracing::debug!(%peer, accepted = resp.accepted, envelopes, bytes, "mail held for an offline peer");
                }
            }
            Some(v1::dm_request::Kind::GroupSync(q)) => {
                self.answer_group_sync(&peer, &q, &mut resp)
            }
            Some(v1::dm_request::Kind::Link(req)) => match self.answer_link(peer, req) {
                Ok(grant) => resp.link = Some(grant),
                Err(e) => {
                    tracing::info!(%peer, "device link refused: {e}");
                    resp.error = e;
                }
            },
            Some(v1::dm_request::Kind::Devices(push)) => {
                resp.error = self.answer_devices(peer, push)
            }
            Some(v1::dm_request::Kind::Collect(_)) => {
                resp.envelopes = self.dm.mailbox.collect(&peer, now);
                resp.accepted = resp.envelopes.len() as u32;
                if resp.accepted > 0 {
                    tracing::debug!(%peer, envelopes = resp.accepted, "mail handed over");
                }
            }
            None => resp.error = "empty request".into(),
        }
        // `accepted` hands the envelopes over (the sender or holder forgets them), and group
        // logs served may hold this node's newest ciphertexts: only once on disk.
        self.after_durable(move |el| {
            let _ = el.swarm.behaviour_mut().dm.send_response(channel, resp);
        });
    }

    fn on_dm_response(&mut self, peer: PeerId, sent: Sent, resp: v1::DmResponse) {
        match sent {
            Sent::Deliver { peer, keys } => {
                let taken = (resp.accepted as usize).min(keys.len());
                for k in &keys[..taken] {
                    if let Ok(Some(mk)) = self.store.private().take_envelope(k) {
                        self.mark_delivered(&mk);
                    }
                }
                if !resp.error.is_empty() {
                    tracing::debug!(%peer, "peer refused part of a delivery: {}", resp.error);
                }
                if let Some(r) = self.dm.waiting.get_mut(&peer) {
                    // Too much of ours waits there for a Welcome: give it time.
                    r.answered(Instant::now(), resp.error == DmError::Busy.to_string());
                }
                if taken > 0 {
                    self.try_deliver(&peer);
                }
            }
            Sent::GroupSync(group) => self.on_group_sync(peer, group, resp),
            Sent::Link => self.on_link_answer(peer, resp),
            Sent::Devices => {
                if !resp.error.is_empty() {
                    tracing::debug!(%peer, "device list refused: {}", resp.error);
                    if resp.error == "rate limited" {
                        self.device_push_failed(&peer);
                    }
                }
            }
            Sent::Deposit => {
                tracing::debug!(%peer, accepted = resp.accepted, error = %resp.error, "deposit answered");
            }
            Sent::Collect => {
                let me = *self.swarm.local_peer_id();
                let mut envs = resp.envelopes;
                envs.truncate(4 * MAX_ENVELOPES_PER_REQUEST);
                envs.sort_by_key(|e| e.sent_ms);
                let now = now_ms();
                let mut got = 0u32;
                for env in envs {
                    match check_envelope(&env, now) {
                        Ok((sender, recipient)) if recipient == me => {
                            match self.receive_envelope(&sender, &peer, env) {
                                Ok(()) => got = got.saturating_add(1),
                                Err(e) => tracing::debug!("collected mail refused: {e}"),
                            }
                        }
                        _ => tracing::debug!(%peer, "holder returned an envelope not for us"),
                    }
                }
                if got > 0 {
                    tracing::debug!(%peer, got, "mail collected");
                }
            }
        }
    }

    pub(crate) fn mark_delivered(&mut self, message_key: &[u8]) {
        if message_key.is_empty() {
            return;
        }
        if let Ok(Some(mut s)) = self.store.private().message(message_key) {
            s.received_ms = now_ms();
            let _ = self.store.private().update_message(message_key, &s);
            if let Some(view) = DmView::of(self.swarm.local_peer_id(), &s) {
                let _ = self.events.send(Event::DirectMessage { message: view });
            }
        }
    }

    /// Processes one envelope from `from` (already checked for form), handed over by `via`
    /// (`from` itself, or a mail holder): once, even if it comes again directly and from
    /// several holders. `DmError::Busy`: `via` has too much waiting already; not taken.
    pub(crate) fn receive_envelope(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        env: v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let id = envelope_id(&env);
        if matches!(self.store.private().seen(&id), Ok(true)) {
            return Ok(());
        }
        if self.is_revoked_device(from) {
            // Its account revoked it: nothing it sends is taken.
            return Err(DmError::NotAllowed("a revoked device"));
        }
        if !env.group_invite.is_empty() {
            self.receive_group_invite(from, &env)?;
            let _ = self.store.private().mark_seen(&id, now_ms());
            return Ok(());
        }
        if let Some(group) = self.group_of_message(&env.mls_message) {
            // A group's message sent straight to one member (the commit that removes it):
            // processed as the group's, never as a direct message.
            let wire = v1::GroupWire {
                sent_ms: env.sent_ms,
                mls_message: env.mls_message,
            };
            return self.receive_group_direct(&group, wire, *via);
        }
        let incoming = match self.mls.client.receive(from, &env.mls_message) {
            Err(MlsError::UnknownGroup) => return self.hold_early(from, via, id, env),
            other => other?,
        };
        let _ = self.save_mls();
        let _ = self.store.private().mark_seen(&id, now_ms());
        match incoming {
            Incoming::Joined { group } => {
                let stranger = !self.is_known_peer(from);
                self.dm.conversations.entry(*from).or_default().joined(
                    from,
                    group.clone(),
                    stranger,
                );
                let _ = self.save_conversation(from);
                tracing::info!(peer = %from, "joined a conversation");
                // Messages that came before their Welcome.
                for (via, (p, e)) in self.dm.early.release(&group, u64::MAX) {
                    let _ = self.receive_envelope(&p, &via, e);
                }
                // Messages queued here for this peer can now go in the shared group.
                if self.dm.need_kp.contains_key(from) {
                    let _ = self.start_conversation(from, &[]);
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
                } else if self.devices.book.is_my_device(from) {
                    Some(PeerId::from_bytes(&body.conversation).map_err(|_| DmError::Malformed)?)
                } else {
                    return Err(DmError::NotAllowed(
                        "a sent copy from a device not of this account",
                    ));
                };
                if let Some(p) = copy_of {
                    self.dm
                        .conversations
                        .entry(p)
                        .or_insert_with(|| Conversation::new(&p));
                    let _ = self.save_conversation(&p);
                }
                let stored = v1::StoredDm {
                    peer: copy_of.unwrap_or(*from).to_bytes(),
                    outgoing: copy_of.is_some(),
                    body: Some(body),
                    received_ms: now_ms(),
                };
                self.store_dm(&stored)
                    .map_err(|e| DmError::Store(e.to_string()))?;
                if self.dm.conversations.get(from).is_some_and(|c| c.request) {
                    // A message request: kept, not announced, nothing fetched.
                    self.requests_changed();
                    return Ok(());
                }
                if let Some(a) = stored.body.as_ref().and_then(|b| b.attachment.as_ref()) {
                    self.prefetch_attachment(a);
                }
                if let Some(view) = DmView::of(self.swarm.local_peer_id(), &stored) {
                    let _ = self.events.send(Event::DirectMessage { message: view });
                }
            }
            Incoming::Commit { group } => {
                tracing::debug!(peer = %from, "conversation keys renewed");
                if self.dm.proposed.remove(from).is_some() {
                    let _ = self.flush_queued(from);
                }
                // Messages of the new epoch that came before its commit (only those).
                if let Ok((_, epoch, _)) = self.mls.client.group_state(&group) {
                    for (via, (p, e)) in self.dm.early.release(&group, epoch) {
                        let _ = self.receive_envelope(&p, &via, e);
                    }
                }
            }
            Incoming::UpdateProposal { group } => {
                let creator = self
                    .dm
                    .conversations
                    .get(from)
                    .is_some_and(|c| c.is_committer(&group));
                if creator {
                    match self.mls.client.commit_pending(&group) {
                        Ok(commit) => {
                            self.save_mls().map_err(|e| DmError::Store(e.to_string()))?;
                            let t = self.next_sent_ms(from);
                            self.queue_envelope(from, t, commit, b"")
                                .map_err(|e| DmError::Store(e.to_string()))?;
                            self.try_deliver(from);
                            tracing::debug!(peer = %from, "peer's key update committed");
                        }
                        Err(e) => tracing::warn!("cannot commit the peer's key update: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps a message of a conversation (or epoch) this node has not reached yet, within the
    /// bounds of the waiting room; a peer with too much waiting is refused and penalised.
    pub(crate) fn hold_early(
        &mut self,
        from: &PeerId,
        via: &PeerId,
        id: [u8; 32],
        env: v1::DmEnvelope,
    ) -> Result<(), DmError> {
        let header = crate::mls::group::header(&env.mls_message).ok_or(DmError::Malformed)?;
        let len = env.mls_message.len();
        // Charged to the sender the envelope names (for a direct delivery, the peer itself), not
        // to a mail holder that carries it for many senders.
        match self.dm.early.hold(
            *from,
            header.group,
            header.epoch,
            id,
            len,
            (*from, env),
            Instant::now(),
        ) {
            Ok(()) => Ok(()),
            Err(NotHeld::PeerQuota) => {
                tracing::debug!(peer = %from, "too many direct messages waiting for a Welcome");
                // One offence per delivery (`busy` ends it); an honest sender backs off.
                if from == via {
                    self.penalise(*via, crate::node::reputation::Offence::HeldOverQuota);
                }
                Err(DmError::Busy)
            }
            Err(NotHeld::TooLarge) => Err(DmError::NotAllowed(
                "a message of an unknown conversation is too large to wait for its Welcome",
            )),
        }
    }

    /// Direct and group messages dropped while waiting, since start.
    pub(crate) fn held_dropped(&self) -> u64 {
        self.dm
            .early
            .dropped()
            .saturating_add(self.groups_early_dropped())
    }

    /// Mail held for others that made room for other mail or expired, since start.
    pub(crate) fn dm_mail_evicted(&self) -> u64 {
        self.dm.mailbox.evicted()
    }

    /// Bounds the set of peers asked for mail since start (asking one again is harmless).
    pub(crate) fn dm_prune(&mut self) {
        if self.dm.collected_from.len() > 4096 {
            self.dm.collected_from.clear();
        }
    }

    /// Whether `peer` is someone this node knows: a contact, a peer whose request the user
    /// accepted, or one it has written to.
    pub(crate) fn is_known_peer(&self, peer: &PeerId) -> bool {
        // A device of a held account (this one's, or a contact's) is known: adding someone's
        // new device needs no new contact exchange.
        (self.devices.book.resolve(peer).is_some() && !self.devices.book.is_revoked(peer))
            || self.dm.accepted.contains(peer)
            || self
                .dm
                .conversations
                .get(peer)
                .is_some_and(Conversation::written_to)
            || self
                .store
                .contacts()
                .map(|cs| cs.iter().any(|c| c.peer_id == *peer))
                .unwrap_or(false)
    }
}
