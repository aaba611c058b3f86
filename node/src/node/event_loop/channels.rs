//! Channels: creating, following, posting, publishing, and validating what arrives on their topics.

use super::*;
use crate::channel::{ChainCheck, chain, gate};

/// The channels component's state in the event loop.
#[derive(Default)]
pub(super) struct Channels {
    /// Followed (and own) channels.
    pub(super) by_id: HashMap<ChannelId, ChannelState>,
    /// Which channel a gossip topic is.
    pub(super) topics: HashMap<TopicHash, ChannelId>,
    /// Manifest lookups in flight.
    pub(super) manifest_queries: HashMap<QueryId, ChannelId>,
    /// Follower lookups in flight, and whether each found someone new.
    pub(super) provider_queries: HashMap<QueryId, (ChannelId, bool)>,
    /// Posts handed to the writer and not yet durable, by (channel, author, seq).
    pub(super) in_flight: HashMap<(ChannelId, [u8; 32], u64), PostId>,
    /// The newest slot written per (channel, author): seq, id and predecessor. The chain
    /// check of an author's next live post reads its predecessor here instead of
    /// decrypting it from the store on the swarm task. One entry per author who posted.
    pub(super) heads: HashMap<(ChannelId, [u8; 32]), (u64, chain::Slot)>,
    /// Own posts stored but not yet published (no topic peer was there).
    pub(super) unpublished: HashMap<ChannelId, Vec<Post>>,
    /// Admin certificates to publish once the channel has topic peers.
    pub(super) unpublished_meta: HashMap<ChannelId, Vec<v1::channel_message::Kind>>,
}

impl Channels {
    /// Remembers a slot written, if it is its author's newest.
    fn note_head(
        &mut self,
        channel: ChannelId,
        author: [u8; 32],
        seq: u64,
        id: PostId,
        prev: Option<PostId>,
    ) {
        let head = self
            .heads
            .entry((channel, author))
            .or_insert((seq, (id, prev)));
        if head.0 <= seq {
            *head = (seq, (id, prev));
        }
    }

    /// Forgets what is remembered of a channel's chains (its slots were removed, or it was
    /// left).
    pub(super) fn forget_heads(&mut self, channel: &ChannelId) {
        self.heads.retain(|(c, _), _| c != channel);
    }
}

impl EventLoop {
    pub(crate) fn create_channel(
        &mut self,
        name: &str,
        description: &str,
    ) -> Result<ChannelId, NodeError> {
        let key = libp2p::identity::ed25519::Keypair::generate();
        let manifest = Manifest::sign(&key, name, description, now_ms(), 1)
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        let record = ChannelRecord {
            id: manifest.channel,
            role: Role::Owner,
            manifest: Some(manifest.to_bytes()),
            secret_key: Some(zeroize::Zeroizing::new(key.to_bytes().to_vec())),
            admin_cert: None,
            followed_at_ms: now_ms(),
            certs: Vec::new(),
            revocations: Vec::new(),
        };
        self.store.put_channel(&record)?;
        let id = record.id;
        self.install_channel(ChannelState::from_record(record));
        self.publish_manifest_record(&manifest);
        tracing::info!(channel = %id, "channel created");
        Ok(id)
    }

    pub(crate) fn follow(&mut self, target: FollowTarget) -> Result<ChannelView, NodeError> {
        let (id, manifest, addrs) = match target {
            FollowTarget::Invite(inv) => (inv.channel(), Some(inv.manifest), inv.bootstrap),
            FollowTarget::Id(id) => (id, None, Vec::new()),
        };
        self.add_bootstrap_addrs(&addrs);
        if let Some(state) = self.channels.by_id.get_mut(&id) {
            // Already here: adopt a newer manifest from the link, if any.
            if let Some(m) = manifest
                && state
                    .manifest
                    .as_ref()
                    .is_none_or(|o| o.version < m.version)
            {
                state.record.manifest = Some(m.to_bytes());
                state.manifest = Some(m);
                self.store.put_channel(&state.record)?;
            }
            return self.channel_view(&id, false);
        }
        let record = ChannelRecord {
            id,
            role: Role::Follower,
            manifest: manifest.as_ref().map(|m| m.to_bytes()),
            secret_key: None,
            admin_cert: None,
            followed_at_ms: now_ms(),
            certs: Vec::new(),
            revocations: Vec::new(),
        };
        self.store.put_channel(&record)?;
        self.install_channel(ChannelState::from_record(record));
        if manifest.is_none() {
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_record(channel::manifest_key(&id));
            self.channels.manifest_queries.insert(q, id);
        }
        tracing::info!(channel = %id, "following channel");
        self.channel_view(&id, false)
    }

    pub(crate) fn unfollow(&mut self, id: &ChannelId) -> Result<(), NodeError> {
        let state = self
            .channels
            .by_id
            .remove(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        self.channels.topics.remove(&state.topic.hash());
        self.channels.forget_heads(id);
        self.sync.channels.remove(id);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&state.topic);
        self.swarm
            .behaviour_mut()
            .kad
            .stop_providing(&channel::provider_key(id));
        Ok(())
    }

    /// Subscribes to the channel's topic and starts finding its other followers.
    pub(super) fn install_channel(&mut self, state: ChannelState) {
        let id = state.id;
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&state.topic) {
            tracing::error!(channel = %id, "cannot subscribe: {e:?}");
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .set_topic_params(state.topic.clone(), crate::net::scoring::topic_params());
        self.channels.topics.insert(state.topic.hash(), id);
        let owner = state.record.role == Role::Owner;
        self.channels.by_id.insert(id, state);
        self.sync_init(&id, owner);
        self.discover(&id, true);
        // Peers already on the topic sent their subscriptions before this node joined it:
        // no Subscribed event will come for them, so ask now.
        self.want_sync(&id, None);
    }

    pub(crate) fn post(&mut self, id: ChannelId, draft: PostDraft, reply: PostReply) {
        match self.sign_post(&id, draft) {
            Ok(post) => {
                let key = (post.channel, post.author_key.to_bytes(), post.seq);
                self.channels.in_flight.insert(key, post.id);
                if let Err(origin) = self
                    .writer
                    .submit(WriteRequest::post(post, Origin::Local(reply)))
                {
                    self.channels.in_flight.remove(&key);
                    if let Some(s) = self.channels.by_id.get_mut(&id) {
                        s.head = None; // re-read from the store next time
                    }
                    if let Origin::Local(reply) = origin {
                        let _ = reply.send(Err(NodeError::Busy));
                    }
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    pub(super) fn sign_post(
        &mut self,
        id: &ChannelId,
        draft: PostDraft,
    ) -> Result<Post, NodeError> {
        let identity = self.identity.clone();
        let state = self
            .channels
            .by_id
            .get_mut(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        let (key, cert) = match &state.signer {
            Some(Signer::Owner(k)) => (k.clone(), None),
            Some(Signer::Admin(c)) => {
                if !c.valid_at(now_ms()) {
                    return Err(NodeError::NotAllowed(format!(
                        "this node's admin certificate for channel {id} has expired; the \
                         owner's node renews it when it is online"
                    )));
                }
                (identity.signing().clone(), Some(c.clone()))
            }
            None => {
                return Err(NodeError::NotAllowed(format!(
                    "only the owner or an admin of channel {id} can post to it"
                )));
            }
        };
        let head = match state.head {
            Some(h) => h,
            None => {
                // The newest slot, expired or not: an expired post still holds its seq.
                let h = self.store.chain_head(id, &key.public().to_bytes())?;
                let h = h.map_or(
                    Head {
                        next_seq: 1,
                        prev: None,
                        last_ts: 0,
                    },
                    |p| Head {
                        next_seq: p.seq.saturating_add(1),
                        prev: Some(p.id),
                        last_ts: p.timestamp_ms,
                    },
                );
                // Posts of ours still in the writer are past the stored head.
                let mut h = h;
                while let Some(pid) =
                    self.channels
                        .in_flight
                        .get(&(*id, key.public().to_bytes(), h.next_seq))
                {
                    h.prev = Some(*pid);
                    h.next_seq += 1;
                }
                h
            }
        };
        // Never go back in time within one author's chain, so history order follows seq.
        let ts = now_ms().max(head.last_ts);
        let post = Post::sign(id, &key, cert.as_ref(), head.next_seq, head.prev, ts, draft)?;
        state.head = Some(Head {
            next_seq: head.next_seq + 1,
            prev: Some(post.id),
            last_ts: ts,
        });
        Ok(post)
    }

    pub(super) fn on_written(&mut self, batch: Vec<WriteDone<PostReply>>) {
        for done in batch {
            let post = match done.item {
                Item::Post(p) => p,
                Item::Tombstone(h) => {
                    self.channels
                        .in_flight
                        .remove(&(h.channel, h.author_key.to_bytes(), h.seq));
                    if matches!(done.result, Ok(InsertOutcome::Inserted)) {
                        self.channels.note_head(
                            h.channel,
                            h.author_key.to_bytes(),
                            h.seq,
                            h.id,
                            h.prev,
                        );
                        self.note_tombstone(&h.channel);
                    }
                    continue;
                }
            };
            self.channels
                .in_flight
                .remove(&(post.channel, post.author_key.to_bytes(), post.seq));
            if matches!(done.result, Ok(InsertOutcome::Inserted)) {
                self.channels.note_head(
                    post.channel,
                    post.author_key.to_bytes(),
                    post.seq,
                    post.id,
                    post.prev,
                );
            }
            match (done.result, done.origin) {
                (Ok(InsertOutcome::Inserted), origin) => {
                    self.note_seen(&post.channel, post.author_key.to_bytes(), post.seq);
                    self.note_inserted(&post.channel);
                    let view = PostView::from(&post);
                    let _ = self.events.send(Event::Post { post: view.clone() });
                    if let Origin::Local(reply) = origin {
                        let id = post.channel;
                        self.channels.unpublished.entry(id).or_default().push(post);
                        self.flush_unpublished(&id);
                        let _ = reply.send(Ok(view));
                    }
                }
                (Ok(outcome), Origin::Local(reply)) => {
                    // Our own chain disagrees with the store: re-read it on the next post.
                    if let Some(s) = self.channels.by_id.get_mut(&post.channel) {
                        s.head = None;
                    }
                    let _ = reply.send(Err(NodeError::InvalidInput(format!(
                        "post not stored ({outcome:?}); try again"
                    ))));
                }
                (Ok(_), Origin::Remote) => {}
                (Err(e), origin) => {
                    if let Some(s) = self.channels.by_id.get_mut(&post.channel) {
                        s.head = None;
                    }
                    if let Origin::Local(reply) = origin {
                        let _ = reply.send(Err(NodeError::from(e)));
                    }
                }
            }
        }
    }

    /// Publishes what is waiting for a channel; keeps what cannot go out yet.
    pub(super) fn flush_unpublished(&mut self, id: &ChannelId) {
        let Some(state) = self.channels.by_id.get(id) else {
            self.channels.unpublished.remove(id);
            self.channels.unpublished_meta.remove(id);
            return;
        };
        let topic = state.topic.clone();
        // Nobody to send to: trying would only sign and drop every message (gossipsub signs
        // before it looks for peers), which made a long outbox quadratic.
        if self.topic_peers(&topic.hash()) == 0 {
            return;
        }
        if let Some(meta) = self.channels.unpublished_meta.remove(id) {
            let mut keep = Vec::new();
            for kind in meta {
                let msg = v1::ChannelMessage {
                    kind: Some(kind.clone()),
                };
                if !self.publish(&topic, msg.encode_to_vec()) {
                    keep.push(kind);
                }
            }
            if !keep.is_empty() {
                self.channels.unpublished_meta.insert(*id, keep);
            }
        }
        let Some(mut posts) = self.channels.unpublished.remove(id) else {
            return;
        };
        // A long backlog is for history sync, which the new peer starts as soon as it sees
        // this node on the topic: flooding the mesh with it would cost every peer far more.
        if posts.len() > OUTBOX_GOSSIP {
            for p in posts.drain(..posts.len() - OUTBOX_GOSSIP) {
                if let Err(e) = self.store.outbox_remove(&p) {
                    tracing::warn!("outbox: {e}");
                }
            }
        }
        let mut sent = 0;
        for post in &posts {
            if !self.publish(&topic, channel::post_envelope(&post.wire)) {
                break; // the rest would fail the same way: keep them, in order
            }
            if let Err(e) = self.store.outbox_remove(post) {
                tracing::warn!("outbox: {e}");
            }
            sent += 1;
        }
        posts.drain(..sent);
        if !posts.is_empty() {
            self.channels.unpublished.insert(*id, posts);
        }
    }

    /// Publishes on a topic; false when it must be retried later.
    pub(super) fn publish(&mut self, topic: &gossipsub::IdentTopic, data: Vec<u8>) -> bool {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), data)
        {
            Ok(_) | Err(PublishError::Duplicate) => true,
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                false
            }
            Err(e) => {
                tracing::warn!("publish failed: {e}");
                true // not retryable
            }
        }
    }

    pub(super) fn adopt_manifest_record(&mut self, id: &ChannelId, record: &Record) {
        if check_record(record, None) != RecordVerdict::Store {
            return;
        }
        let Ok(m) = Manifest::from_bytes(&record.value) else {
            return;
        };
        if m.channel != *id {
            return;
        }
        self.adopt_manifest(m);
    }

    /// Adopts a verified manifest if it is newer than the one held; true if it was.
    pub(super) fn adopt_manifest(&mut self, m: Manifest) -> bool {
        let id = m.channel;
        let Some(state) = self.channels.by_id.get_mut(&id) else {
            return false;
        };
        if state
            .manifest
            .as_ref()
            .is_some_and(|o| o.version >= m.version)
        {
            return false;
        }
        state.record.manifest = Some(m.to_bytes());
        state.manifest = Some(m);
        if let Err(e) = self.store.put_channel(&state.record) {
            tracing::warn!("store: {e}");
        }
        if let Ok(view) = self.channel_view(&id, false) {
            let _ = self.events.send(Event::ChannelUpdated { channel: view });
        }
        true
    }

    pub(super) fn publish_manifest_record(&mut self, m: &Manifest) {
        let record = Record::new(channel::manifest_key(&m.channel), m.to_bytes());
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, Quorum::One)
        {
            tracing::debug!("manifest record not stored locally: {e}");
        }
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = self.validate(&message, propagation_source);
                let rejected = matches!(verdict, MessageAcceptance::Reject);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
                // The score changed just now: act before the peer can send much more.
                if rejected {
                    self.police_peer(propagation_source, Instant::now());
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.group_on_subscribed(peer_id, &topic);
                if let Some(id) = self.channels.topics.get(&topic).copied() {
                    self.flush_unpublished(&id);
                    // A peer joined: it may hold what this node missed, or miss what it holds
                    // (an admin appointed while it was away learns its certificate from the
                    // heads it asks for).
                    self.want_sync(&id, Some(peer_id));
                }
            }
            _ => {}
        }
    }

    /// Decides what happens to a message on a channel topic; stores accepted posts.
    pub(super) fn validate(
        &mut self,
        message: &gossipsub::Message,
        source: PeerId,
    ) -> MessageAcceptance {
        if self.is_group_topic(&message.topic) {
            return self.validate_group(message, source);
        }
        let Some(id) = self.channels.topics.get(&message.topic).copied() else {
            return MessageAcceptance::Ignore;
        };
        let Ok(msg) = v1::ChannelMessage::decode(message.data.as_slice()) else {
            tracing::debug!(channel = %id, "malformed channel message rejected");
            return MessageAcceptance::Reject;
        };
        // One message, one encoding: a copy with padding, unknown fields or reordered fields
        // would be a new gossipsub message (ids hash the bytes) that every node forwards.
        if msg.encode_to_vec() != message.data {
            tracing::debug!(channel = %id, "non-canonical channel message rejected");
            return MessageAcceptance::Reject;
        }
        match msg.kind {
            Some(v1::channel_message::Kind::Post(sp)) => {
                let verdict = self.validate_post(&id, sp);
                if matches!(verdict, MessageAcceptance::Accept)
                    && let Some(state) = self.channels.by_id.get_mut(&id)
                {
                    state.note_useful(source, Instant::now());
                }
                verdict
            }
            Some(v1::channel_message::Kind::AdminCert(c)) => {
                // Replays of what is held are dropped before any signature is checked.
                if !self.cert_is_news(&id, &c) {
                    return MessageAcceptance::Ignore;
                }
                match AdminCert::verify(c, &id) {
                    Ok(cert) => {
                        self.adopt_cert(cert);
                        MessageAcceptance::Accept
                    }
                    Err(e) => {
                        tracing::debug!(channel = %id, "admin certificate rejected: {e}");
                        MessageAcceptance::Reject
                    }
                }
            }
            Some(v1::channel_message::Kind::Revocation(r)) => {
                if !self.revocation_is_news(&id, &r) {
                    return MessageAcceptance::Ignore;
                }
                match AdminRevocation::verify(r, &id) {
                    Ok(r) => {
                        self.adopt_revocation(r);
                        MessageAcceptance::Accept
                    }
                    Err(e) => {
                        tracing::debug!(channel = %id, "admin revocation rejected: {e}");
                        MessageAcceptance::Reject
                    }
                }
            }
            Some(v1::channel_message::Kind::Manifest(m)) => {
                if !self.manifest_is_news(&id, &m) {
                    return MessageAcceptance::Ignore;
                }
                match Manifest::verify(m) {
                    Ok(m) if m.channel == id => {
                        if self.adopt_manifest(m) {
                            MessageAcceptance::Accept
                        } else {
                            // Valid, but no newer than the one held: not forwarded.
                            MessageAcceptance::Ignore
                        }
                    }
                    _ => MessageAcceptance::Reject,
                }
            }
            None => MessageAcceptance::Reject,
        }
    }

    pub(super) fn validate_post(
        &mut self,
        id: &ChannelId,
        sp: v1::SignedPost,
    ) -> MessageAcceptance {
        let post = match gate::admit(id, &sp, now_ms(), &GateLookups { el: self, id }) {
            gate::Verdict::Take(post) => *post,
            gate::Verdict::Reject(e) => {
                tracing::debug!(channel = %id, "post rejected: {e}");
                return MessageAcceptance::Reject;
            }
            gate::Verdict::Drop(why) => {
                match why {
                    gate::Drop::Conflict => {
                        // An author signed two different posts for one place in its chain.
                        tracing::warn!(channel = %id, "conflicting post ignored")
                    }
                    why => tracing::trace!(channel = %id, ?why, "post dropped"),
                }
                return MessageAcceptance::Ignore;
            }
        };
        let author = post.author_key.to_bytes();
        // An admin's post carries its certificate: learn it (it is verified already).
        if let Some(c) = v1::SignedPost::decode(post.wire.as_slice())
            .ok()
            .and_then(|sp| sp.cert)
            && self.cert_is_news(id, &c)
            && let Ok(cert) = AdminCert::verify(c, id)
        {
            self.adopt_cert(cert);
        }
        self.note_seen(id, author, post.seq);
        let key = (post.channel, author, post.seq);
        self.channels.in_flight.insert(key, post.id);
        if self
            .writer
            .submit(WriteRequest::post(post, Origin::Remote))
            .is_err()
        {
            // Writer saturated: drop without forwarding; history sync fills the gap later.
            self.channels.in_flight.remove(&key);
            return MessageAcceptance::Ignore;
        }
        MessageAcceptance::Accept
    }

    /// Where a verified slot (a post or an expiry proof) stands against the chain held.
    pub(super) fn chain_check(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
        id: PostId,
        prev: Option<PostId>,
    ) -> Result<ChainCheck, crate::store::StoreError> {
        crate::channel::chain::check(
            seq,
            id,
            prev,
            |seq| {
                if let Some(id) = self.channels.in_flight.get(&(*channel, *author, seq)) {
                    return Ok(Some((*id, None)));
                }
                if let Some((head, slot)) = self.channels.heads.get(&(*channel, *author))
                    && *head == seq
                {
                    return Ok(Some(*slot));
                }
                Ok(self
                    .store
                    .post_at(channel, author, seq)?
                    .map(|p| (p.id, p.prev)))
            },
            |id| self.store.contains(id),
        )
    }
}

/// The node's state as the post gate reads it.
struct GateLookups<'a> {
    el: &'a EventLoop,
    id: &'a ChannelId,
}

impl gate::Lookups for GateLookups<'_> {
    fn held(&self, id: &PostId) -> bool {
        self.el.store.contains(id).unwrap_or(false)
    }

    fn revoked(&self, author: &[u8; 32], seq: u64) -> bool {
        self.el.revoked_post(self.id, author, seq)
    }

    fn known_cert(&self, cert: &v1::AdminCert) -> Option<&AdminCert> {
        self.el.channels.by_id.get(self.id)?.admins.held(cert)
    }

    fn chain(&self, post: &Post) -> Option<ChainCheck> {
        let author = post.author_key.to_bytes();
        match self
            .el
            .chain_check(self.id, &author, post.seq, post.id, post.prev)
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("store read failed during validation: {e}");
                None
            }
        }
    }
}
