//! Getting direct messages to their recipients: KeyPackage lookups, delivery attempts, mailbox holders and collection.

#![warn(clippy::arithmetic_side_effects)]

use super::*;

impl EventLoop {
    pub(crate) fn lookup_keypackages(&mut self) {
        let due: Vec<PeerId> = self
            .dm
            .need_kp
            .iter()
            .filter(|(_, t)| t.is_none_or(|t| t.elapsed() >= KP_LOOKUP_EVERY))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.dm.kp_queries.values().any(|p| *p == peer) {
                continue;
            }
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_record(keypackage_key(&peer));
            self.dm.kp_queries.insert(q, peer);
            self.dm.need_kp.insert(peer, Some(Instant::now()));
        }
    }

    /// Housekeeping, once a second.
    pub(crate) fn dm_tick(&mut self) {
        let aged = self.dm.early.expire(Instant::now());
        if aged > 0 {
            tracing::debug!(
                aged,
                "messages that waited too long for their Welcome dropped"
            );
        }
        let peers: Vec<PeerId> = self.dm.waiting.keys().copied().collect();
        for p in peers {
            self.try_deliver(&p);
        }
        self.lookup_keypackages();
        // A proposal the committer did not commit in time is withdrawn, so this side can send
        // again (it proposes anew later).
        let stale: Vec<(PeerId, Vec<u8>)> = self
            .dm
            .proposed
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= PROPOSAL_TIMEOUT)
            .map(|(p, (g, _))| (*p, g.clone()))
            .collect();
        for (peer, group) in stale {
            self.dm.proposed.remove(&peer);
            if self.mls.client.clear_proposals(&group).is_ok() && self.save_mls().is_ok() {
                tracing::debug!(%peer, "key update withdrawn: the committer did not answer");
                let _ = self.flush_queued(&peer);
            }
        }
        if self.peers.kad_bootstrapped {
            if self.dm.next_publish.is_none_or(|t| t <= Instant::now()) {
                self.publish_keypackage();
            }
            if self
                .dm
                .last_collect
                .is_none_or(|t| t.elapsed() >= self.dm.collect_every)
            {
                self.collect_mail();
            }
        }
        self.expire_dms();
        if self.dm.last_housekeeping.elapsed() >= Duration::from_secs(600) {
            self.dm.last_housekeeping = Instant::now();
            self.group_housekeeping();
            let now = now_ms();
            let dropped = self.dm.mailbox.expire(now);
            if dropped > 0 {
                tracing::debug!(dropped, "expired mail dropped");
            }
            if let Err(e) = self
                .store
                .private()
                .forget_seen_before(now.saturating_sub(SEEN_FOR_MS))
            {
                tracing::warn!("cannot forget old message ids: {e}");
            }
        }
    }

    /// A connection to `peer` opened: deliver what waits for it.
    pub(crate) fn dm_on_connected(&mut self, peer: &PeerId) {
        if let Some(r) = self.dm.waiting.get_mut(peer) {
            r.connected();
            self.try_deliver(peer);
        }
    }

    /// A peer told what it speaks: a Samizdat node may hold mail for this one.
    pub(crate) fn dm_on_identified(&mut self, peer: PeerId, protocols: &[libp2p::StreamProtocol]) {
        if !protocols.contains(&crate::net::wire::DM_PROTOCOL) {
            return;
        }
        self.dm.capable.insert(peer);
        // Coming back online: ask each peer met for mail once, without waiting for the DHT.
        if self.dm.collected_from.insert(peer) {
            self.send_collect(peer);
        }
    }

    pub(crate) fn dm_on_disconnected(&mut self, peer: &PeerId) {
        self.dm.capable.remove(peer);
    }

    pub(crate) fn send_collect(&mut self, peer: PeerId) {
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Collect(v1::DmCollect {})),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(&peer, Frame::Valid(req));
        self.dm.requests.insert(id, Sent::Collect);
    }

    /// Where mail for `recipient` is left or looked for: the DHT peers closest to its mailbox
    /// key (which both sides find alike), then connected Samizdat peers (in a small network
    /// the DHT may not list them yet).
    pub(crate) fn holders(
        &self,
        closest: Vec<PeerId>,
        recipient: &PeerId,
        max: usize,
    ) -> Vec<PeerId> {
        let me = *self.swarm.local_peer_id();
        let mut out: Vec<PeerId> = Vec::new();
        let mut connected: Vec<PeerId> = self.dm.capable.iter().copied().collect();
        connected.sort();
        for p in closest.into_iter().chain(connected) {
            if p != me && p != *recipient && !out.contains(&p) && out.len() < max {
                out.push(p);
            }
        }
        out
    }

    pub(crate) fn publish_keypackage(&mut self) {
        // Retried soon if this attempt fails; pushed back on success.
        self.dm.next_publish = Instant::now().checked_add(Duration::from_secs(30));
        let record = match self.store.private().keypackage_record() {
            Ok(Some(r)) => r,
            _ => {
                let kp = match self.mls.client.key_package() {
                    Ok(kp) => kp,
                    Err(e) => {
                        tracing::warn!("key package: {e}");
                        return;
                    }
                };
                if self.save_mls().is_err() {
                    return;
                }
                let r = sign_keypackage_record(self.identity.signing(), kp);
                let _ = self.store.private().put_keypackage_record(&r);
                r
            }
        };
        let me = *self.swarm.local_peer_id();
        let mut rec = Record::new(keypackage_key(&me), record);
        rec.publisher = Some(me);
        match self.swarm.behaviour_mut().kad.put_record(rec, Quorum::One) {
            Ok(q) => self.dm.publish_query = Some(q),
            Err(e) => tracing::debug!("cannot publish key package: {e}"),
        }
    }

    /// Asks this node's mailbox holders for its mail. While the node starts (the DHT still
    /// fills) and every [`COLLECT_LOOKUP_EVERY`] after, the holders are found anew by a DHT
    /// lookup; in between, the ones found last are asked directly: a lookup contacts a score
    /// of peers, and one a minute per node was the largest source of connection churn in a
    /// 200-node mesh.
    pub(crate) fn collect_mail(&mut self) {
        let now = Instant::now();
        let starting = self.dm.collect_every < COLLECT_EVERY;
        self.dm.last_collect = Some(now);
        self.dm.collect_every = self.dm.collect_every.saturating_mul(2).min(COLLECT_EVERY);
        let stale = self
            .dm
            .last_holder_lookup
            .is_none_or(|t| now.saturating_duration_since(t) >= COLLECT_LOOKUP_EVERY);
        if starting || stale || self.dm.holders.len() < 2 {
            self.dm.last_holder_lookup = Some(now);
            let me = *self.swarm.local_peer_id();
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(mailbox_key(&me));
            self.dm.mailbox_queries.insert(q, MailboxQuery::Collect);
            return;
        }
        for p in self.dm.holders.clone() {
            self.send_collect(p);
        }
    }

    pub(crate) fn expire_dms(&mut self) {
        let now = now_ms();
        if self.dm.next_expiry.is_some_and(|t| t > now) {
            return;
        }
        self.dm.next_expiry = self.sweep_expired(false, now);
    }

    /// Deletes the direct (or group) messages whose expiries are due; returns when the next
    /// one is due.
    pub(crate) fn sweep_expired(&self, group: bool, now: u64) -> Option<u64> {
        match self.store.private().expire_messages(group, now) {
            Ok((removed, next)) => {
                if removed > 0 {
                    tracing::debug!(removed, group, "messages expired and deleted");
                }
                Some(next)
            }
            Err(e) => {
                tracing::warn!("cannot delete expired messages: {e}");
                None
            }
        }
    }

    /// A KeyPackage record or a closest-peers answer for direct messages.
    pub(crate) fn dm_on_kad(&mut self, id: QueryId, result: &kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                if let Some(peer) = self.dm.kp_queries.get(&id).copied() {
                    self.adopt_keypackage(&peer, &found.record);
                }
            }
            kad::QueryResult::PutRecord(r) if self.dm.publish_query == Some(id) => {
                self.dm.publish_query = None;
                match r {
                    Ok(_) => {
                        tracing::info!("key package published");
                        self.dm.next_publish = Instant::now().checked_add(KP_PUBLISH_EVERY);
                    }
                    Err(e) => tracing::debug!("key package not published yet: {e}"),
                }
            }
            kad::QueryResult::GetClosestPeers(Ok(ok)) => {
                if let Some(q) = self.dm.mailbox_queries.remove(&id) {
                    let peers: Vec<PeerId> = ok.peers.iter().map(|p| p.peer_id).collect();
                    self.on_mailbox_holders(q, peers);
                }
            }
            kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                peers,
                ..
            })) => {
                if let Some(q) = self.dm.mailbox_queries.remove(&id) {
                    let peers: Vec<PeerId> = peers.iter().map(|p| p.peer_id).collect();
                    self.on_mailbox_holders(q, peers);
                }
            }
            _ => {}
        }
        if last {
            self.dm.kp_queries.remove(&id);
            self.dm.mailbox_queries.remove(&id);
        }
    }

    pub(crate) fn dm_owns_query(&self, id: &QueryId) -> bool {
        self.dm.kp_queries.contains_key(id)
            || self.dm.mailbox_queries.contains_key(id)
            || self.dm.publish_query == Some(*id)
    }

    pub(crate) fn adopt_keypackage(&mut self, peer: &PeerId, record: &Record) {
        if !self.dm.need_kp.contains_key(peer) {
            return;
        }
        let wanted_by_groups = self.group_wants_keypackage(peer);
        let kp = match open_keypackage_record(&record.key, &record.value) {
            Ok(r) if r.peer == *peer => r,
            Ok(_) | Err(_) => {
                tracing::debug!(%peer, "invalid key package record ignored");
                return;
            }
        };
        if wanted_by_groups {
            self.groups_on_keypackage(peer, &kp.key_package);
        }
        // Only direct messages waiting for the peer start a conversation with it.
        if !self.dm_queued_for(peer) {
            self.dm.need_kp.remove(peer);
            return;
        }
        if let Err(e) = self.start_conversation(peer, &kp.key_package) {
            tracing::warn!(%peer, "cannot start a conversation: {e}");
        }
    }

    pub(crate) fn dm_queued_for(&self, peer: &PeerId) -> bool {
        self.store
            .private()
            .queued(Some(peer))
            .is_ok_and(|q| !q.is_empty())
    }

    pub(crate) fn start_conversation(
        &mut self,
        peer: &PeerId,
        key_package: &[u8],
    ) -> Result<(), NodeError> {
        let have_group = self
            .dm
            .conversations
            .get(peer)
            .is_some_and(|c| c.send_group().is_some());
        if !have_group {
            let (group, welcome) = self
                .mls
                .client
                .start(peer, key_package)
                .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
            self.save_mls()?;
            self.dm
                .conversations
                .entry(*peer)
                .or_default()
                .started(peer, group);
            self.save_conversation(peer)?;
            // The Welcome goes first (envelopes go out and are read in sent_ms order): before
            // the messages that waited for this KeyPackage, which keep their own times.
            let first_queued = self.store.private().first_queued_ms(peer)?;
            let t = self.next_sent_ms(peer);
            let t = first_queued.map_or(t, |q| q.saturating_sub(1).min(t));
            self.queue_envelope(peer, t, welcome, b"")?;
            tracing::info!(%peer, "conversation started");
        }
        self.dm.need_kp.remove(peer);
        self.flush_queued(peer)
    }

    /// Encrypts and sends the messages that waited (for a KeyPackage, or for a key update to be
    /// committed), oldest first; stops at the first that must wait again.
    pub(crate) fn flush_queued(&mut self, peer: &PeerId) -> Result<(), NodeError> {
        for q in self.store.private().queued(Some(peer))? {
            if let Some(body) = q.stored.body
                && !self.encrypt_and_queue(peer, &body, &q.message)?
            {
                break;
            }
            self.store.private().unqueue(&q.key)?;
        }
        self.try_deliver(peer);
        Ok(())
    }

    pub(super) fn on_mailbox_holders(&mut self, q: MailboxQuery, peers: Vec<PeerId>) {
        let me = *self.swarm.local_peer_id();
        match q {
            MailboxQuery::Deposit(recipient) => {
                // Bounded by count and by bytes, like a delivery: a frame over the holder's
                // limit would be refused (and counted against this node).
                let outbox = self
                    .store
                    .private()
                    .envelopes(Some(&recipient))
                    .unwrap_or_default();
                let envelopes: Vec<v1::DmEnvelope> =
                    batch(outbox).into_iter().map(|o| o.envelope).collect();
                if envelopes.is_empty() {
                    return;
                }
                let holders = self.holders(peers, &recipient, HOLDERS + 2);
                for p in &holders {
                    let req = v1::DmRequest {
                        kind: Some(v1::dm_request::Kind::Deposit(v1::DmDeposit {
                            envelopes: envelopes.clone(),
                        })),
                    };
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .dm
                        .send_request(p, Frame::Valid(req));
                    self.dm.requests.insert(id, Sent::Deposit);
                }
                tracing::debug!(%recipient, holders = holders.len(), "mail deposited for an offline peer");
            }
            MailboxQuery::Collect => {
                let holders = self.holders(peers, &me, HOLDERS * 2);
                for p in &holders {
                    self.dm.collected_from.insert(*p);
                    self.send_collect(*p);
                }
                self.dm.holders = holders;
            }
        }
    }
}
