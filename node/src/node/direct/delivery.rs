//! Getting direct messages to their recipients: KeyPackage lookups and conversations started,
//! delivery attempts, mailbox holders, collecting this node's own mail, and the periodic work.

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;

use super::{
    Action, COLLECT_EVERY, COLLECT_LOOKUP_EVERY, Ctx, DELIVER_BYTES, Direct, HOLDERS,
    HOUSEKEEPING_EVERY, KP_LOOKUP_EVERY, MailboxQuery, Now, PROPOSAL_TIMEOUT, SEEN_FOR_MS, Sent,
};
use crate::dm::route::Step;
use crate::dm::{MAX_ENVELOPES_PER_REQUEST, sign_keypackage_record};
use crate::node::NodeError;
use crate::store::private::Outgoing;

/// The oldest envelopes that fit one request, bounded by count and by bytes (a group's
/// Welcome can be close to a megabyte; a frame over the peer's limit would be refused and
/// counted against this node). At least one, whatever its size.
fn batch(outbox: Vec<Outgoing>) -> Vec<Outgoing> {
    let mut bytes = 0usize;
    outbox
        .into_iter()
        .take(MAX_ENVELOPES_PER_REQUEST)
        .take_while(|o| {
            let len = o.envelope.encoded_len();
            bytes = len.saturating_add(bytes);
            bytes <= DELIVER_BYTES || bytes == len
        })
        .collect()
}

impl Direct {
    /// Looks up the KeyPackages wanted and not looked up lately.
    pub(crate) fn lookup_keypackages(&mut self, now: Now) {
        let due: Vec<PeerId> = self
            .need_kp
            .iter()
            .filter(|(p, _)| !self.looking_up.contains(*p))
            .filter(|(_, t)| {
                t.is_none_or(|t| now.at.saturating_duration_since(t) >= KP_LOOKUP_EVERY)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.looking_up.insert(peer);
            self.need_kp.insert(peer, Some(now.at));
            self.out.push(Action::LookupKeyPackage(peer));
        }
    }

    /// Once a second: deliveries retried, KeyPackages looked up, proposals withdrawn, the own
    /// KeyPackage published, mail collected, messages expired, and now and then old mail and
    /// message ids dropped.
    pub(super) fn tick(&mut self, ctx: &mut Ctx<'_>, now: Now) {
        let aged = self.early.expire(now.at);
        if aged > 0 {
            tracing::debug!(
                aged,
                "messages that waited too long for their Welcome dropped"
            );
        }
        let peers: Vec<PeerId> = self.waiting.keys().copied().collect();
        for p in peers {
            self.try_deliver(ctx, &p, now);
        }
        self.lookup_keypackages(now);
        // A proposal the committer did not commit in time is withdrawn, so this side can send
        // again (it proposes anew later).
        let stale: Vec<(PeerId, Vec<u8>)> = self
            .proposed
            .iter()
            .filter(|(_, (_, t))| now.at.saturating_duration_since(*t) >= PROPOSAL_TIMEOUT)
            .map(|(p, (g, _))| (*p, g.clone()))
            .collect();
        for (peer, group) in stale {
            self.proposed.remove(&peer);
            if ctx.mls.client.clear_proposals(&group).is_ok() && ctx.mls.save(ctx.store).is_ok() {
                tracing::debug!(%peer, "key update withdrawn: the committer did not answer");
                let _ = self.flush_queued(ctx, &peer, now);
            }
        }
        if ctx.dht_ready {
            if self.next_publish.is_none_or(|t| t <= now.at) {
                self.publish_keypackage(ctx, now);
            }
            if self
                .last_collect
                .is_none_or(|t| now.at.saturating_duration_since(t) >= self.collect_every)
            {
                self.collect_mail(ctx, now);
            }
        }
        if self.next_expiry.is_none_or(|t| t <= now.ms) {
            self.next_expiry = ctx.store.private().expire_due(false, now.ms);
        }
        if now.at.saturating_duration_since(self.last_housekeeping) >= HOUSEKEEPING_EVERY {
            self.last_housekeeping = now.at;
            let dropped = self.mailbox.expire(now.ms);
            if dropped > 0 {
                tracing::debug!(dropped, "expired mail dropped");
            }
            if let Err(e) = ctx
                .store
                .private()
                .forget_seen_before(now.ms.saturating_sub(SEEN_FOR_MS))
            {
                tracing::warn!("cannot forget old message ids: {e}");
            }
        }
    }

    pub(super) fn send_collect(&mut self, peer: PeerId) {
        let request = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Collect(v1::DmCollect {})),
        };
        self.out.push(Action::Request {
            peer,
            request,
            sent: Sent::Collect,
        });
    }

    /// Where mail for `recipient` is left or looked for: the DHT peers closest to its mailbox
    /// key (which both sides find alike), then connected Samizdat peers (in a small network
    /// the DHT may not list them yet).
    fn holders(
        &self,
        me: &PeerId,
        closest: Vec<PeerId>,
        recipient: &PeerId,
        max: usize,
    ) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = Vec::new();
        let mut connected: Vec<PeerId> = self.capable.iter().copied().collect();
        connected.sort();
        for p in closest.into_iter().chain(connected) {
            if p != *me && p != *recipient && !out.contains(&p) && out.len() < max {
                out.push(p);
            }
        }
        out
    }

    fn publish_keypackage(&mut self, ctx: &mut Ctx<'_>, now: Now) {
        // Retried soon if this attempt fails; pushed back on success.
        self.next_publish = now.at.checked_add(std::time::Duration::from_secs(30));
        let record = match ctx.store.private().keypackage_record() {
            Ok(Some(r)) => r,
            _ => {
                let kp = match ctx.mls.client.key_package() {
                    Ok(kp) => kp,
                    Err(e) => {
                        tracing::warn!("key package: {e}");
                        return;
                    }
                };
                if ctx.mls.save(ctx.store).is_err() {
                    return;
                }
                let r = sign_keypackage_record(ctx.identity.signing(), kp);
                let _ = ctx.store.private().put_keypackage_record(&r);
                r
            }
        };
        self.out.push(Action::PublishKeyPackage(record));
    }

    /// Asks this node's mailbox holders for its mail. While the node starts (the DHT still
    /// fills) and every [`COLLECT_LOOKUP_EVERY`] after, the holders are found anew by a DHT
    /// lookup; in between, the ones found last are asked directly: a lookup contacts a score
    /// of peers, and one a minute per node was the largest source of connection churn in a
    /// 200-node mesh.
    fn collect_mail(&mut self, _ctx: &Ctx<'_>, now: Now) {
        let starting = self.collect_every < COLLECT_EVERY;
        self.last_collect = Some(now.at);
        self.collect_every = self.collect_every.saturating_mul(2).min(COLLECT_EVERY);
        let stale = self
            .last_holder_lookup
            .is_none_or(|t| now.at.saturating_duration_since(t) >= COLLECT_LOOKUP_EVERY);
        if starting || stale || self.holders.len() < 2 {
            self.last_holder_lookup = Some(now.at);
            self.out.push(Action::FindHolders(MailboxQuery::Collect));
            return;
        }
        for p in self.holders.clone() {
            self.send_collect(p);
        }
    }

    /// A verified KeyPackage of `peer`: starts the conversation its waiting messages need.
    pub(super) fn on_keypackage(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: &PeerId,
        key_package: &[u8],
        now: Now,
    ) {
        if !self.need_kp.contains_key(peer) {
            return;
        }
        // Only direct messages waiting for the peer start a conversation with it.
        let queued = ctx
            .store
            .private()
            .queued(Some(peer))
            .is_ok_and(|q| !q.is_empty());
        if !queued {
            self.need_kp.remove(peer);
            return;
        }
        if let Err(e) = self.start_conversation(ctx, peer, key_package, now) {
            tracing::warn!(%peer, "cannot start a conversation: {e}");
        }
    }

    pub(super) fn start_conversation(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: &PeerId,
        key_package: &[u8],
        now: Now,
    ) -> Result<(), NodeError> {
        let have_group = self
            .conversations
            .get(peer)
            .is_some_and(|c| c.send_group().is_some());
        if !have_group {
            let (group, welcome) = ctx
                .mls
                .client
                .start(peer, key_package)
                .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
            ctx.mls.save(ctx.store)?;
            self.conversations
                .entry(*peer)
                .or_default()
                .started(peer, group);
            self.save_conversation(ctx, peer)?;
            // The Welcome goes first (envelopes go out and are read in sent_ms order): before
            // the messages that waited for this KeyPackage, which keep their own times.
            let first_queued = ctx.store.private().first_queued_ms(peer)?;
            let t = self.next_sent_ms(peer, now);
            let t = first_queued.map_or(t, |q| q.saturating_sub(1).min(t));
            self.queue_envelope(ctx, peer, t, welcome, b"", Vec::new(), now)?;
            tracing::info!(%peer, "conversation started");
        }
        self.need_kp.remove(peer);
        self.flush_queued(ctx, peer, now)
    }

    /// Encrypts and sends the messages that waited (for a KeyPackage, or for a key update to be
    /// committed), oldest first; stops at the first that must wait again.
    pub(super) fn flush_queued(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: &PeerId,
        now: Now,
    ) -> Result<(), NodeError> {
        for q in ctx.store.private().queued(Some(peer))? {
            if let Some(body) = q.stored.body
                && !self.encrypt_and_queue(ctx, peer, &body, &q.message, now)?
            {
                break;
            }
            ctx.store.private().unqueue(&q.key)?;
        }
        self.try_deliver(ctx, peer, now);
        Ok(())
    }

    /// Moves what waits for `peer` one step: delivered if connected, else dialed and left
    /// with holders as its route decides.
    pub(crate) fn try_deliver(&mut self, ctx: &Ctx<'_>, peer: &PeerId, now: Now) {
        let connected = ctx.facts.connected(peer);
        let durable = ctx.store.durable_seq();
        let Some(route) = self.waiting.get_mut(peer) else {
            return;
        };
        let (dial, deposit) = match route.step(now.at, connected, durable) {
            Step::Wait => return,
            Step::AwaitDisk => {
                self.out.push(Action::WhenDurable(*peer));
                return;
            }
            Step::Deliver => (false, false),
            Step::Reach { dial, deposit } => (dial, deposit),
        };
        let outbox = ctx
            .store
            .private()
            .envelopes(Some(peer))
            .unwrap_or_default();
        if outbox.is_empty() {
            self.waiting.remove(peer);
            return;
        }
        if connected {
            let batch = batch(outbox);
            let keys = batch.iter().map(|o| o.key.clone()).collect();
            let envelopes = batch.into_iter().map(|o| o.envelope).collect();
            let request = v1::DmRequest {
                kind: Some(v1::dm_request::Kind::Deliver(v1::DmDeliver { envelopes })),
            };
            self.out.push(Action::Request {
                peer: *peer,
                request,
                sent: Sent::Deliver { peer: *peer, keys },
            });
            if let Some(r) = self.waiting.get_mut(peer) {
                r.sent();
            }
            return;
        }
        if dial {
            // Addresses come from the contact card, the DHT and the peer cache.
            self.out.push(Action::Dial(*peer));
        }
        if deposit {
            self.out
                .push(Action::FindHolders(MailboxQuery::Deposit(*peer)));
        }
    }

    /// The peers closest to a mailbox key: mail is left with them, or asked of them.
    pub(super) fn on_holders(&mut self, ctx: &Ctx<'_>, q: MailboxQuery, peers: Vec<PeerId>) {
        match q {
            MailboxQuery::Deposit(recipient) => {
                // Bounded by count and by bytes, like a delivery: a frame over the holder's
                // limit would be refused (and counted against this node).
                let outbox = ctx
                    .store
                    .private()
                    .envelopes(Some(&recipient))
                    .unwrap_or_default();
                let envelopes: Vec<v1::DmEnvelope> =
                    batch(outbox).into_iter().map(|o| o.envelope).collect();
                if envelopes.is_empty() {
                    return;
                }
                let holders = self.holders(&ctx.me, peers, &recipient, HOLDERS + 2);
                for p in &holders {
                    let request = v1::DmRequest {
                        kind: Some(v1::dm_request::Kind::Deposit(v1::DmDeposit {
                            envelopes: envelopes.clone(),
                        })),
                    };
                    self.out.push(Action::Request {
                        peer: *p,
                        request,
                        sent: Sent::Deposit,
                    });
                }
                tracing::debug!(%recipient, holders = holders.len(), "mail deposited for an offline peer");
            }
            MailboxQuery::Collect => {
                let holders = self.holders(&ctx.me, peers, &ctx.me, HOLDERS * 2);
                for p in &holders {
                    self.collected_from.insert(*p);
                    self.send_collect(*p);
                }
                self.holders = holders;
            }
        }
    }
}
