//! The event loop: the one task that owns the swarm. It answers commands, validates what
//! arrives from the network, hands writes to the group-commit writer, and publishes posts once
//! they are durable. History sync and files live in the child modules.

mod admins;
mod dm;
mod files;
mod group;
mod reach;
mod requests;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError, TopicHash};
use libp2p::kad::{self, QueryId, QueryResult, Quorum, Record};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use prost::Message;
use samizdat_proto::v1;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::NodeError;
use super::channels::{ChannelState, Head, Signer};
use super::command::{Command, FollowTarget};
use super::reputation::{CUT_OFF, Offence, Reputation};
use super::views::{ChannelView, Event, NodeInfo, PeerView, PostView};
use super::writer::{Item, Origin, Report, WriteDone, WriteRequest, Writer};
use crate::channel::{
    self, AdminCert, AdminRevocation, ChannelId, Invite, Manifest, Post, PostDraft, PostError,
    PostId, now_ms,
};
use crate::config::Config;
use crate::files::{BlobStore, Cid};
use crate::identity::Identity;
use crate::net::node_behaviour::{NodeBehaviour, NodeBehaviourEvent};
use crate::net::rate_limit::RateLimiter;
use crate::net::{
    RecordVerdict, accept_inbound_kad, build_node_swarm, check_record, is_loopback, is_unspecified,
    learn_from_identify, split_peer_addr, worth_dialing,
};
use crate::store::{ChannelRecord, InsertOutcome, PeerRecord, Role, Store};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};

type PostReply = oneshot::Sender<Result<PostView, NodeError>>;

/// How often housekeeping runs (outbox, discovery, reconnects).
const TICK: Duration = Duration::from_secs(1);
/// Malformed or oversized request frames a peer may send within `VIOLATION_WINDOW`.
const MAX_VIOLATIONS: u32 = 10;
const VIOLATION_WINDOW: Duration = Duration::from_secs(60);
/// Look for more topic peers this often at first while a channel has fewer than
/// [`WANT_TOPIC_PEERS`] (backing off to [`LOOKUP_WHEN_HEALTHY`] while lookups find nobody new).
const LOOKUP_WHEN_SPARSE: Duration = Duration::from_secs(10);
/// Look for topic peers this often otherwise.
const LOOKUP_WHEN_HEALTHY: Duration = Duration::from_secs(300);
/// Re-announce as provider this often while sparse (the first announcements may have gone
/// nowhere because the DHT was still empty).
const PROVIDE_WHEN_SPARSE: Duration = Duration::from_secs(30);
/// Direct peers wanted on each channel topic (gossipsub's mesh degree): enough that the
/// channel survives losing any few of them, or the bootstrap peers.
const WANT_TOPIC_PEERS: usize = 6;
/// How old a post arriving by gossip may be (its author's timestamp against this node's
/// clock); older ones come by history sync.
const LIVE_WINDOW_MS: u64 = 3600 * 1000;
/// Dial at most this many discovered providers per lookup.
const DIALS_PER_LOOKUP: usize = 8;
/// While no topic peer of a channel has brought anything valid, cached peers are dialed this
/// often, this many at a time, at most this many rounds.
const FALLBACK_EVERY: Duration = Duration::from_secs(30);
const FALLBACK_DIALS: usize = 3;
const FALLBACK_ROUNDS: u32 = 10;
/// Peers kept in the persistent peer cache.
const PEER_CACHE: usize = 500;
/// Most posts of an outbox published by gossip when a topic peer appears (older ones reach
/// peers by history sync).
const OUTBOX_GOSSIP: usize = 256;
/// Cached peers dialed at startup (most recent first).
const STARTUP_DIALS: usize = 20;

pub(crate) struct EventLoop {
    swarm: Swarm<NodeBehaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    store: Arc<dyn Store>,
    writer: Writer<PostReply>,
    written: mpsc::UnboundedReceiver<Report<PostReply>>,
    /// Results of work done off the loop.
    internal: mpsc::UnboundedReceiver<Internal>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    blobs: BlobStore,
    max_file_bytes: u64,
    /// Disk attachments fetched in advance may take in all.
    max_prefetch_bytes: u64,
    identity: Arc<Identity>,
    channels: HashMap<ChannelId, ChannelState>,
    topics: HashMap<TopicHash, ChannelId>,
    manifest_queries: HashMap<QueryId, ChannelId>,
    /// Follower lookups in flight, and whether each found someone new.
    provider_queries: HashMap<QueryId, (ChannelId, bool)>,
    /// Posts handed to the writer and not yet durable, by (channel, author, seq).
    in_flight: HashMap<(ChannelId, [u8; 32], u64), PostId>,
    /// Own posts stored but not yet published (no topic peer was there).
    unpublished: HashMap<ChannelId, Vec<Post>>,
    /// Admin certificates to publish once the channel has topic peers.
    unpublished_meta: HashMap<ChannelId, Vec<v1::channel_message::Kind>>,
    bootstrap: Vec<Multiaddr>,
    announce_listen: bool,
    external: Vec<Multiaddr>,
    peer_saved: HashMap<PeerId, Instant>,
    /// When each peer was last redialed after a wrong-peer-id failure.
    wrong_peer_redials: HashMap<PeerId, Instant>,
    agents: HashMap<PeerId, String>,
    /// Open connections and their remote addresses, for `peers`.
    connections: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    last_redial: Instant,
    redial_backoff: Duration,
    kad_bootstrapped: bool,
    /// History sync per channel.
    sync: HashMap<ChannelId, sync::SyncState>,
    sync_requests: HashMap<OutboundRequestId, ChannelId>,
    sync_limiter: RateLimiter,
    /// Downloads in progress.
    fetches: HashMap<Cid, files::Fetch>,
    file_requests: HashMap<OutboundRequestId, (Cid, crate::files::Ask)>,
    file_queries: HashMap<QueryId, Cid>,
    file_limiter: RateLimiter,
    provided: HashSet<Cid>,
    /// Final status of downloads finished since start.
    finished: HashMap<Cid, crate::files::DownloadStatus>,
    /// Reachability as AutoNAT judged it, and the DHT mode setting it drives.
    reachability: reach::Reachability,
    dht_mode: crate::config::DhtMode,
    use_relays: bool,
    /// Peers offering relay service, with addresses to reach them.
    relays: HashMap<PeerId, Vec<Multiaddr>>,
    /// Relay reservations held (relay → listener).
    relay_listeners: HashMap<PeerId, libp2p::core::transport::ListenerId>,
    /// Peers whose relayed connection was upgraded to a direct one.
    direct_upgrades: HashSet<PeerId>,
    /// When each peer was last asked for its peers.
    px_asked: HashMap<PeerId, Instant>,
    /// Direct messages: MLS state, conversations, delivery, mail held for others.
    dm: dm::Direct,
    /// Private groups: membership, delivery by gossip, catching up.
    groups: group::Groups,
    /// Peers disconnected for a low gossip score, and until when they are refused.
    penalty_box: HashMap<PeerId, Instant>,
    /// Offences outside gossip (bad sync answers, floods), decaying.
    reputation: Reputation,
    /// What the DHT store dropped at its bounds (read from it after each inbound request).
    dht_drops: crate::net::dht_store::DhtDrops,
    /// When tables keyed by peers that come and go were last pruned.
    last_prune: Instant,
    /// Drops at bounds as last logged, and when.
    drops_logged: (super::views::DroppedView, Option<Instant>),
    /// Peers graylisted since start (reported by `info`).
    graylisted_total: u64,
    /// Malformed or oversized requests per peer, counted since the first in the window.
    violations: HashMap<PeerId, (u32, Instant)>,
    /// Incoming connections refused at a limit since start, and when that was last logged.
    refused_connections: u64,
    last_refusal_log: Option<Instant>,
    shutdown: CancellationToken,
}

/// Results of work the loop handed to blocking threads.
pub(super) enum Internal {
    SyncRespond(ResponseChannel<v1::SyncResponse>, v1::SyncResponse),
    FileRespond(ResponseChannel<v1::FileResponse>, v1::FileResponse),
    ChunkStored {
        cid: Cid,
        index: u32,
        peer: PeerId,
        ok: bool,
    },
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        config: &Config,
        identity: Arc<Identity>,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        events: broadcast::Sender<Event>,
        commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Result<(Self, NodeInfo), NodeError> {
        let cfg = config.clone();
        let mut swarm = build_node_swarm(
            identity.keypair(),
            config.idle_connection_timeout,
            |key, relay| NodeBehaviour::new(key, relay, &cfg),
        )
        .await?;
        let mut listening = 0;
        for addr in &config.listen {
            match swarm.listen_on(addr.clone()) {
                Ok(_) => listening += 1,
                Err(e) => {
                    // A taken port must not stop the node: fall back to any free port.
                    let fallback = with_port_zero(addr);
                    tracing::warn!(%addr, "cannot listen ({e}); trying {fallback}");
                    swarm.listen_on(fallback.clone()).map_err(|e| {
                        crate::net::NetError::Listen {
                            addr: fallback,
                            reason: e.to_string(),
                        }
                    })?;
                    listening += 1;
                }
            }
        }
        let listen_addrs =
            crate::net::bootstrap_peer::wait_for_listeners(&mut swarm, listening).await?;
        let (written_tx, written) = mpsc::unbounded_channel();
        let writer = Writer::spawn(store.clone(), written_tx);
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let dm = dm::Direct::open(&store, identity.signing().clone())?;

        let mut this = Self {
            swarm,
            commands,
            events,
            store,
            writer,
            written,
            internal,
            internal_tx,
            blobs,
            max_file_bytes: config.max_file_bytes,
            max_prefetch_bytes: config.max_prefetch_bytes,
            identity,
            channels: HashMap::new(),
            topics: HashMap::new(),
            manifest_queries: HashMap::new(),
            provider_queries: HashMap::new(),
            in_flight: HashMap::new(),
            unpublished: HashMap::new(),
            unpublished_meta: HashMap::new(),
            bootstrap: config.bootstrap.clone(),
            announce_listen: config.announce_listen_addresses,
            external: config.external_addresses.clone(),
            peer_saved: HashMap::new(),
            wrong_peer_redials: HashMap::new(),
            agents: HashMap::new(),
            connections: HashMap::new(),
            last_redial: Instant::now(),
            redial_backoff: Duration::from_secs(5),
            kad_bootstrapped: false,
            sync: HashMap::new(),
            sync_requests: HashMap::new(),
            // Per peer: 50 sync requests/s (a page each, up to 256 posts: 12,800 posts/s),
            // bursts of 100.
            sync_limiter: RateLimiter::new(50.0, 100.0),
            fetches: HashMap::new(),
            file_requests: HashMap::new(),
            file_queries: HashMap::new(),
            // Per peer: 256 chunk requests/s (256 MiB/s: bandwidth, not this, is the real
            // bound), bursts of 512.
            file_limiter: RateLimiter::new(256.0, 512.0),
            provided: HashSet::new(),
            finished: HashMap::new(),
            reachability: reach::Reachability::Unknown,
            dht_mode: config.dht_mode,
            use_relays: config.use_relays,
            relays: HashMap::new(),
            relay_listeners: HashMap::new(),
            direct_upgrades: HashSet::new(),
            px_asked: HashMap::new(),
            dm,
            groups: group::Groups::default(),
            penalty_box: HashMap::new(),
            reputation: Reputation::default(),
            dht_drops: Default::default(),
            last_prune: Instant::now(),
            drops_logged: Default::default(),
            graylisted_total: 0,
            violations: HashMap::new(),
            refused_connections: 0,
            last_refusal_log: None,
            shutdown,
        };
        for addr in listen_addrs {
            this.on_new_listen_addr(addr);
        }
        for addr in this.external.clone() {
            this.swarm.add_external_address(addr);
        }
        this.restore()?;
        this.groups_open()?;
        this.connect_to_network(true);
        let info = this.info();
        Ok((this, info))
    }

    /// Loads followed channels and the outbox from the store.
    fn restore(&mut self) -> Result<(), NodeError> {
        for record in self.store.channels()? {
            self.install_channel(ChannelState::from_record(record));
        }
        for post in self.store.outbox()? {
            self.unpublished.entry(post.channel).or_default().push(post);
        }
        for peer in self.store.blocked_peers()? {
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
        self.announce_files();
        Ok(())
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(report) = self.written.recv() => self.on_report(report),
                Some(msg) = self.internal.recv() => self.on_internal(msg),
                _ = tick.tick() => self.on_tick(),
            }
        }
        // Finish and flush every queued write before the store is dropped.
        self.writer.close();
        while let Ok(report) = self.written.try_recv() {
            self.on_report(report);
        }
        tracing::info!("node stopped");
    }

    // ----- commands -------------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ContactCard(reply) => {
                let card = crate::contact::ContactCard::own(&self.identity, self.own_addrs());
                let _ = reply.send(Ok(card));
            }
            Command::LearnContact(card) => {
                for a in &card.addrs {
                    let (_, base) = split_peer_addr(a);
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&card.peer_id, base);
                }
            }
            Command::Info(reply) => {
                let _ = reply.send(Ok(self.info()));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peers()));
            }
            Command::Channels(reply) => {
                let mut ids: Vec<ChannelId> = self.channels.keys().copied().collect();
                ids.sort_by_key(|id| self.channels[id].record.followed_at_ms);
                let views = ids.iter().map(|id| self.channel_view(id, false)).collect();
                let _ = reply.send(views);
            }
            Command::Channel(id, include_my_address, reply) => {
                let _ = reply.send(self.channel_view(&id, include_my_address));
            }
            Command::CreateChannel {
                include_my_address,
                name,
                description,
                reply,
            } => {
                let _ = reply.send(
                    self.create_channel(&name, &description)
                        .and_then(|id| self.channel_view(&id, include_my_address)),
                );
            }
            Command::Follow { target, reply } => {
                let _ = reply.send(self.follow(target));
            }
            Command::Unfollow { channel, reply } => {
                let _ = reply.send(self.unfollow(&channel));
            }
            Command::Post {
                channel,
                draft,
                reply,
            } => self.post(channel, draft, reply),
            Command::AddAdmin {
                channel,
                peer,
                reply,
            } => {
                let _ = reply.send(self.add_admin(&channel, peer));
            }
            Command::RemoveAdmin {
                channel,
                peer,
                reply,
            } => {
                let _ = reply.send(self.remove_admin(&channel, peer));
            }
            Command::Admins(channel, reply) => {
                let _ = reply.send(self.admin_list(&channel));
            }
            Command::Requests(reply) => {
                let _ = reply.send(Ok(self.requests()));
            }
            Command::AnswerRequests {
                peer,
                action,
                reply,
            } => {
                let _ = reply.send(self.answer_requests(peer, action));
            }
            Command::Dial { addr, reply } => {
                let r = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NodeError::InvalidInput(format!("cannot dial: {e}")));
                let _ = reply.send(r);
            }
            Command::SyncStatus(id, reply) => {
                let _ = reply.send(
                    self.sync_status(&id)
                        .ok_or_else(|| NodeError::UnknownChannel(id.to_string())),
                );
            }
            Command::AnnounceFile(cid) => self.announce_file(&cid),
            Command::FetchFile {
                cid,
                name,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.fetch_file(cid, name, max_bytes));
            }
            Command::FileStatus(cid, reply) => {
                let _ = reply.send(self.file_status(&cid));
            }
            Command::Block { peer, block, reply } => {
                let _ = reply.send(self.block_peer(peer, block));
            }
            Command::DmSend {
                peer,
                text,
                expires_in,
                attachment,
                reply,
            } => {
                let _ = reply.send(self.dm_send(peer, text, expires_in, attachment));
            }
            Command::DmHistory(peer, reply) => {
                let _ = reply.send(self.dm_history(&peer));
            }
            Command::DmConversations(reply) => {
                let _ = reply.send(self.dm_conversations());
            }
            Command::GroupCreate { name, reply } => {
                let _ = reply.send(self.group_create(name));
            }
            Command::GroupInvite { group, peer, reply } => self.group_invite(group, peer, reply),
            Command::GroupRemove { group, peer, reply } => {
                let _ = reply.send(self.group_remove(group, peer));
            }
            Command::GroupPost {
                group,
                text,
                expires_in,
                attachment,
                reply,
            } => {
                let _ = reply.send(self.group_post(group, text, expires_in, attachment));
            }
            Command::GroupHistory(group, reply) => {
                let _ = reply.send(self.group_history(&group));
            }
            Command::GroupList(reply) => {
                let _ = reply.send(Ok(self.group_list()));
            }
        }
    }

    fn block_peer(&mut self, peer: PeerId, block: bool) -> Result<(), NodeError> {
        if peer == *self.swarm.local_peer_id() {
            return Err(NodeError::InvalidInput("a node cannot block itself".into()));
        }
        self.store.set_blocked(&peer, block)?;
        let b = &mut self.swarm.behaviour_mut().blocked;
        if block {
            b.block_peer(peer);
            tracing::info!(%peer, "peer blocked");
        } else {
            b.unblock_peer(peer);
            tracing::info!(%peer, "peer unblocked");
        }
        Ok(())
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::SyncRespond(channel, resp) => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
            }
            Internal::FileRespond(channel, resp) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .files
                    .send_response(channel, resp);
            }
            Internal::ChunkStored {
                cid,
                index,
                peer,
                ok,
            } => self.on_chunk_stored(cid, index, peer, ok),
        }
    }

    fn on_report(&mut self, report: Report<PostReply>) {
        match report {
            Report::Written(batch) => self.on_written(batch),
            Report::Expired(gone) => {
                for e in gone {
                    self.note_expired(&e.channel);
                    tracing::debug!(channel = %e.channel, post = %e.id, "post expired and deleted");
                    let _ = self.events.send(Event::PostExpired {
                        channel: e.channel.to_string(),
                        id: e.id.to_string(),
                    });
                }
            }
        }
    }

    fn info(&self) -> NodeInfo {
        let peer_id = *self.swarm.local_peer_id();
        let listen: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        NodeInfo {
            peer_id: peer_id.to_string(),
            listen_addrs: listen.iter().map(|a| a.to_string()).collect(),
            addrs: listen
                .iter()
                .map(|a| a.clone().with(Protocol::P2p(peer_id)).to_string())
                .collect(),
            connected_peers: self.swarm.connected_peers().count(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            reachability: match self.reachability {
                reach::Reachability::Public => "public",
                reach::Reachability::Private => "private",
                reach::Reachability::Unknown => "unknown",
            }
            .to_string(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            relays: self.relay_listeners.keys().map(|p| p.to_string()).collect(),
            graylisted_peers: self.graylisted_total,
            refused_connections: self.refused_connections,
            dropped: self.dropped(),
            bootstrap: self
                .bootstrap
                .iter()
                .map(|a| super::views::BootstrapView {
                    addr: a.to_string(),
                    connected: match a.iter().last() {
                        Some(Protocol::P2p(p)) => self.swarm.is_connected(&p),
                        _ => false,
                    },
                })
                .collect(),
        }
    }

    fn dropped(&self) -> super::views::DroppedView {
        super::views::DroppedView {
            dht: self
                .dht_drops
                .records
                .saturating_add(self.dht_drops.providers),
            held_messages: self.held_dropped(),
            mail: self.dm_mail_evicted(),
        }
    }

    fn peers(&self) -> Vec<PeerView> {
        let mut out: Vec<PeerView> = self
            .connections
            .iter()
            .map(|(p, conns)| PeerView {
                peer_id: p.to_string(),
                addrs: conns.iter().map(|(_, a)| a.to_string()).collect(),
                agent: self.agents.get(p).cloned(),
                relayed: conns.iter().all(|(_, a)| crate::net::is_relayed(a)),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn channel_view(
        &self,
        id: &ChannelId,
        include_my_address: bool,
    ) -> Result<ChannelView, NodeError> {
        let state = self
            .channels
            .get(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        let posts = self.store.count(id)?;
        let peers = self.topic_peers(&state.topic.hash());
        let link = state
            .manifest
            .as_ref()
            .map(|m| self.invite_link(m, include_my_address));
        Ok(ChannelView {
            id: id.to_string(),
            name: state.manifest.as_ref().map(|m| m.name.clone()),
            description: state.manifest.as_ref().map(|m| m.description.clone()),
            role: state.role_name().to_string(),
            link: link.as_ref().map(|(l, _)| l.clone()),
            link_warning: link.and_then(|(_, w)| w),
            posts,
            peers,
        })
    }

    /// This node's own reachable addresses for links and cards: confirmed external ones, else
    /// listen addresses; non-loopback first, so a link works from other machines, then
    /// loopback for peers on this one.
    fn own_addrs(&self) -> Vec<Multiaddr> {
        let mut own: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        if own.is_empty() {
            own = self
                .swarm
                .listeners()
                .filter(|a| !is_unspecified(a))
                .cloned()
                .collect();
        }
        own.sort_by_key(is_loopback);
        own
    }

    /// An invite link: the manifest and ways into the network — the bootstrap peers this node
    /// knows and the relays it holds reservations on, and this node's own addresses only when
    /// asked. With what it gives away or lacks, as a warning.
    fn invite_link(
        &self,
        manifest: &Manifest,
        include_my_address: bool,
    ) -> (String, Option<String>) {
        let me = *self.swarm.local_peer_id();
        let mut addrs: Vec<Multiaddr> = Vec::new();
        let mut push = |a: Multiaddr| {
            if addrs.len() < crate::channel::MAX_LINK_ADDRS && !addrs.contains(&a) {
                addrs.push(a);
            }
        };
        if include_my_address {
            for a in self.own_addrs() {
                push(a.with(Protocol::P2p(me)));
            }
        }
        for a in &self.bootstrap {
            if split_peer_addr(a).0 != Some(me) {
                push(a.clone());
            }
        }
        for (relay, addrs) in &self.relays {
            if self.relay_listeners.contains_key(relay)
                && let Some(a) = addrs.first()
            {
                push(a.clone().with(Protocol::P2p(*relay)));
            }
        }
        let warning = if include_my_address {
            Some(
                "this link carries your node's own addresses: whoever gets it learns where \
                 your node is (its IP addresses)"
                    .to_string(),
            )
        } else if addrs.is_empty() {
            Some(
                "this link names no bootstrap peer or relay: whoever opens it needs another way \
                 into the network (a bootstrap address of their own, or a peer on their LAN)"
                    .to_string(),
            )
        } else {
            None
        };
        let link = Invite {
            manifest: manifest.clone(),
            bootstrap: addrs,
        }
        .to_string();
        (link, warning)
    }

    fn topic_peers(&self, topic: &TopicHash) -> usize {
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&topic))
            .count()
    }

    fn create_channel(&mut self, name: &str, description: &str) -> Result<ChannelId, NodeError> {
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

    fn follow(&mut self, target: FollowTarget) -> Result<ChannelView, NodeError> {
        let (id, manifest, addrs) = match target {
            FollowTarget::Invite(inv) => (inv.channel(), Some(inv.manifest), inv.bootstrap),
            FollowTarget::Id(id) => (id, None, Vec::new()),
        };
        self.add_bootstrap_addrs(&addrs);
        if let Some(state) = self.channels.get_mut(&id) {
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
            self.manifest_queries.insert(q, id);
        }
        tracing::info!(channel = %id, "following channel");
        self.channel_view(&id, false)
    }

    fn unfollow(&mut self, id: &ChannelId) -> Result<(), NodeError> {
        let state = self
            .channels
            .remove(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        self.topics.remove(&state.topic.hash());
        self.sync.remove(id);
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
    fn install_channel(&mut self, state: ChannelState) {
        let id = state.id;
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&state.topic) {
            tracing::error!(channel = %id, "cannot subscribe: {e:?}");
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .set_topic_params(state.topic.clone(), crate::net::scoring::topic_params());
        self.topics.insert(state.topic.hash(), id);
        let owner = state.record.role == Role::Owner;
        self.channels.insert(id, state);
        self.sync_init(&id, owner);
        self.discover(&id, true);
        // Peers already on the topic sent their subscriptions before this node joined it:
        // no Subscribed event will come for them, so ask now.
        self.want_sync(&id, None);
    }

    fn post(&mut self, id: ChannelId, draft: PostDraft, reply: PostReply) {
        match self.sign_post(&id, draft) {
            Ok(post) => {
                let key = (post.channel, post.author_key.to_bytes(), post.seq);
                self.in_flight.insert(key, post.id);
                if let Err(origin) = self
                    .writer
                    .submit(WriteRequest::post(post, Origin::Local(reply)))
                {
                    self.in_flight.remove(&key);
                    if let Some(s) = self.channels.get_mut(&id) {
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

    fn sign_post(&mut self, id: &ChannelId, draft: PostDraft) -> Result<Post, NodeError> {
        let identity = self.identity.clone();
        let state = self
            .channels
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
                    self.in_flight
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

    // ----- writes ---------------------------------------------------------------------------

    fn on_written(&mut self, batch: Vec<WriteDone<PostReply>>) {
        for done in batch {
            let post = match done.item {
                Item::Post(p) => p,
                Item::Tombstone(h) => {
                    self.in_flight
                        .remove(&(h.channel, h.author_key.to_bytes(), h.seq));
                    if matches!(done.result, Ok(InsertOutcome::Inserted)) {
                        self.note_tombstone(&h.channel);
                    }
                    continue;
                }
            };
            self.in_flight
                .remove(&(post.channel, post.author_key.to_bytes(), post.seq));
            match (done.result, done.origin) {
                (Ok(InsertOutcome::Inserted), origin) => {
                    self.note_seen(&post.channel, post.author_key.to_bytes(), post.seq);
                    self.note_inserted(&post.channel);
                    let view = PostView::from(&post);
                    let _ = self.events.send(Event::Post { post: view.clone() });
                    if let Origin::Local(reply) = origin {
                        let id = post.channel;
                        self.unpublished.entry(id).or_default().push(post);
                        self.flush_unpublished(&id);
                        let _ = reply.send(Ok(view));
                    }
                }
                (Ok(outcome), Origin::Local(reply)) => {
                    // Our own chain disagrees with the store: re-read it on the next post.
                    if let Some(s) = self.channels.get_mut(&post.channel) {
                        s.head = None;
                    }
                    let _ = reply.send(Err(NodeError::InvalidInput(format!(
                        "post not stored ({outcome:?}); try again"
                    ))));
                }
                (Ok(_), Origin::Remote) => {}
                (Err(e), origin) => {
                    if let Some(s) = self.channels.get_mut(&post.channel) {
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
    fn flush_unpublished(&mut self, id: &ChannelId) {
        let Some(state) = self.channels.get(id) else {
            self.unpublished.remove(id);
            self.unpublished_meta.remove(id);
            return;
        };
        let topic = state.topic.clone();
        // Nobody to send to: trying would only sign and drop every message (gossipsub signs
        // before it looks for peers), which made a long outbox quadratic.
        if self.topic_peers(&topic.hash()) == 0 {
            return;
        }
        if let Some(meta) = self.unpublished_meta.remove(id) {
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
                self.unpublished_meta.insert(*id, keep);
            }
        }
        let Some(mut posts) = self.unpublished.remove(id) else {
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
            self.unpublished.insert(*id, posts);
        }
    }

    /// Publishes on a topic; false when it must be retried later.
    fn publish(&mut self, topic: &gossipsub::IdentTopic, data: Vec<u8>) -> bool {
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

    // ----- network --------------------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Sync(ev)) => self.on_sync_event(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Files(ev)) => self.on_file_event(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identified(peer_id, info),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Px(ev)) => self.on_px_event(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Dm(ev)) => self.on_dm_event(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Autonat(ev)) => self.on_autonat(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Dcutr(ev)) => self.on_dcutr(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Mdns(ev)) => self.on_mdns(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Relay(ev)) => {
                tracing::debug!(?ev, "relay client");
            }
            SwarmEvent::NewListenAddr { address, .. } => self.on_new_listen_addr(address),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => self.on_listener_closed(listener_id),
            SwarmEvent::ExternalAddrConfirmed { address } => self.on_external_confirmed(&address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .push((connection_id, endpoint.get_remote_address().clone()));
                self.redial_backoff = Duration::from_secs(5);
                if num_established.get() == 1 {
                    tracing::debug!(%peer_id, "connected");
                    let _ = self.events.send(Event::PeerConnected {
                        peer_id: peer_id.to_string(),
                    });
                    self.dm_on_connected(&peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.retain(|(c, _)| *c != connection_id);
                }
                if num_established == 0 {
                    self.connections.remove(&peer_id);
                    tracing::debug!(%peer_id, "disconnected");
                    self.agents.remove(&peer_id);
                    self.dm_on_disconnected(&peer_id);
                    let _ = self.events.send(Event::PeerDisconnected {
                        peer_id: peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
                if let (Some(peer), DialError::WrongPeerId { address, .. }) = (peer_id, &error) {
                    self.redial_after_wrong_peer(peer, address);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if let libp2p::swarm::ListenError::Denied { cause } = &error {
                    // A limit was hit (connections, pending handshakes, memory): say so, but
                    // at most every 10 s, so a flood cannot flood the log too.
                    self.refused_connections += 1;
                    if self
                        .last_refusal_log
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                    {
                        self.last_refusal_log = Some(Instant::now());
                        tracing::warn!(
                            refused_total = self.refused_connections,
                            "incoming connection refused at a limit: {}",
                            crate::net::denial_reason(cause)
                        );
                    }
                } else {
                    tracing::debug!("incoming connection failed: {error}");
                }
            }
            _ => {}
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        self.agents.insert(peer, info.agent_version.clone());
        self.dm_on_identified(peer, &info.protocols);
        if info.protocols.contains(&crate::net::RELAY_HOP_PROTOCOL) {
            self.note_relay(peer, &info.listen_addrs);
        }
        let kad_server = learn_from_identify(&mut self.swarm.behaviour_mut().kad, &peer, &info);
        if kad_server && !self.kad_bootstrapped {
            self.kad_bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
            // The DHT just became reachable: announce and look up every channel now.
            let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
            for id in ids {
                self.discover(&id, true);
            }
        }
        // Remember peers worth dialing after a restart (at most once a minute each).
        let recently = self
            .peer_saved
            .get(&peer)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        let speaks_samizdat = info.protocol_version == crate::net::IDENTIFY_PROTOCOL_VERSION;
        if speaks_samizdat && info.protocols.contains(&crate::net::wire::PX_PROTOCOL) {
            self.maybe_exchange_peers(peer);
        }
        if speaks_samizdat && !recently {
            let local = is_loopback(&info.observed_addr);
            let addrs: Vec<Multiaddr> = info
                .listen_addrs
                .into_iter()
                .filter(|a| worth_dialing(a, local))
                .take(16)
                .collect();
            if !addrs.is_empty() {
                let rec = PeerRecord {
                    peer_id: peer,
                    addrs,
                    last_seen_ms: now_ms(),
                };
                if let Err(e) = self.store.put_peer(&rec) {
                    tracing::warn!("peer cache: {e}");
                }
                self.peer_saved.insert(peer, Instant::now());
                if self.peer_saved.len().is_multiple_of(50) {
                    let _ = self.store.prune_peers(PEER_CACHE);
                }
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                accept_inbound_kad(kad, request, &crate::net::SamizdatRecords);
                let drops = kad.store_mut().drops();
                if drops != self.dht_drops {
                    tracing::debug!(?drops, "DHT store at a bound: records refused or evicted");
                }
                self.dht_drops = drops;
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } if self.dm_owns_query(&id) => self.dm_on_kad(id, &result, step.last),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })) if self.file_queries.contains_key(&id) => {
                    if let Some(cid) = self.file_queries.get(&id).copied() {
                        self.on_file_providers(&cid, providers);
                    }
                }
                QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })) => {
                    let me = *self.swarm.local_peer_id();
                    let mut dialed = 0;
                    for p in providers {
                        if p == me || self.swarm.is_connected(&p) || dialed >= DIALS_PER_LOOKUP {
                            continue;
                        }
                        // Addresses come from the still-running query's results.
                        if self.swarm.dial(p).is_ok() {
                            dialed += 1;
                        }
                    }
                    if dialed > 0
                        && let Some((_, found)) = self.provider_queries.get_mut(&id)
                    {
                        *found = true;
                    }
                }
                QueryResult::GetProviders(_) if step.last => {
                    if let Some((ch, found)) = self.provider_queries.remove(&id)
                        && let Some(state) = self.channels.get_mut(&ch)
                    {
                        // Nobody new: a small channel, look less often. Somebody: keep looking.
                        state.lookup_every = if found {
                            LOOKUP_WHEN_SPARSE
                        } else {
                            (state.lookup_every * 2).min(LOOKUP_WHEN_HEALTHY)
                        };
                    }
                    self.file_queries.remove(&id);
                }
                QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                    if let Some(channel) = self.manifest_queries.get(&id).copied() {
                        self.adopt_manifest_record(&channel, &found.record);
                    }
                }
                QueryResult::GetRecord(_) if step.last => {
                    self.manifest_queries.remove(&id);
                }
                QueryResult::Bootstrap(Ok(_))
                | QueryResult::StartProviding(_)
                | QueryResult::PutRecord(_) => {
                    tracing::trace!(?result, "kad query progressed");
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn adopt_manifest_record(&mut self, id: &ChannelId, record: &Record) {
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
    fn adopt_manifest(&mut self, m: Manifest) -> bool {
        let id = m.channel;
        let Some(state) = self.channels.get_mut(&id) else {
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

    fn publish_manifest_record(&mut self, m: &Manifest) {
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

    fn on_gossip(&mut self, event: gossipsub::Event) {
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
                if let Some(id) = self.topics.get(&topic).copied() {
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
    fn validate(&mut self, message: &gossipsub::Message, source: PeerId) -> MessageAcceptance {
        if self.is_group_topic(&message.topic) {
            return self.validate_group(message, source);
        }
        let Some(id) = self.topics.get(&message.topic).copied() else {
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
                    && let Some(state) = self.channels.get_mut(&id)
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

    fn validate_post(&mut self, id: &ChannelId, sp: v1::SignedPost) -> MessageAcceptance {
        // A replay of a post held is dropped before its signature is checked: replays cost a
        // hash and a lookup, not a verification.
        if self
            .store
            .contains(&PostId::of_body(&sp.body))
            .unwrap_or(false)
        {
            return MessageAcceptance::Ignore;
        }
        let wire = sp.encode_to_vec();
        let post = match Post::verify(&wire, Some(id), now_ms()) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(channel = %id, "post rejected: {e}");
                return match e {
                    // Clock skew is not proof of malice: drop without penalty.
                    PostError::FromFuture => MessageAcceptance::Ignore,
                    _ => MessageAcceptance::Reject,
                };
            }
        };
        let now = now_ms();
        if post.is_expired(now) {
            return MessageAcceptance::Ignore;
        }
        // Live posts come from now: an old timestamp on gossip is either a post that waited in
        // an outbox (history sync brings it) or one back-dated into an admin certificate's
        // lifetime; neither is taken live.
        if post.timestamp_ms.saturating_add(LIVE_WINDOW_MS) < now {
            return MessageAcceptance::Ignore;
        }
        let author = post.author_key.to_bytes();
        // A revoked admin's later posts are never taken (the forwarder may not know yet).
        if self.revoked_post(id, &author, post.seq) {
            return MessageAcceptance::Ignore;
        }
        match self.chain_check(id, &author, post.seq, post.id, post.prev) {
            Ok(ChainCheck::New) => {}
            Ok(ChainCheck::Duplicate) => return MessageAcceptance::Ignore,
            Ok(ChainCheck::Conflict) => {
                // An author signed two different posts for one place in its chain. The
                // forwarder may be honest (it saw only one), so no penalty; keep the first.
                tracing::warn!(channel = %id, author = %post.author_string(), seq = post.seq, "conflicting post ignored");
                return MessageAcceptance::Ignore;
            }
            Err(e) => {
                tracing::warn!("store read failed during validation: {e}");
                return MessageAcceptance::Ignore;
            }
        }
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
        self.in_flight.insert(key, post.id);
        if self
            .writer
            .submit(WriteRequest::post(post, Origin::Remote))
            .is_err()
        {
            // Writer saturated: drop without forwarding; history sync fills the gap later.
            self.in_flight.remove(&key);
            return MessageAcceptance::Ignore;
        }
        MessageAcceptance::Accept
    }

    /// Where a verified slot (a post or an expiry proof) stands against the chain held.
    fn chain_check(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
        id: PostId,
        prev: Option<PostId>,
    ) -> Result<ChainCheck, crate::store::StoreError> {
        let slot =
            |seq: u64| -> Result<Option<(PostId, Option<PostId>)>, crate::store::StoreError> {
                if let Some(id) = self.in_flight.get(&(*channel, *author, seq)) {
                    return Ok(Some((*id, None)));
                }
                Ok(self
                    .store
                    .post_at(channel, author, seq)?
                    .map(|p| (p.id, p.prev)))
            };
        if let Some((existing, _)) = slot(seq)? {
            return Ok(if existing == id {
                ChainCheck::Duplicate
            } else {
                ChainCheck::Conflict
            });
        }
        if self.store.contains(&id)? {
            return Ok(ChainCheck::Duplicate);
        }
        if let Some(prev) = prev
            && let Some(before) = seq.checked_sub(1)
            && let Some((held, _)) = slot(before)?
            && held != prev
        {
            return Ok(ChainCheck::Conflict);
        }
        if let Some(after) = seq.checked_add(1)
            && let Some((_, Some(next_prev))) = slot(after)?
            && next_prev != id
        {
            return Ok(ChainCheck::Conflict);
        }
        Ok(ChainCheck::New)
    }

    /// Records an offence of `peer` outside gossip: its gossipsub standing falls with it, and
    /// at [`CUT_OFF`] points it is disconnected and refused for a while.
    pub(super) fn penalise(&mut self, peer: PeerId, offence: Offence) {
        let now = Instant::now();
        let points = self.reputation.offend(peer, offence, now);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, -points);
        if points >= CUT_OFF && !self.penalty_box.contains_key(&peer) {
            tracing::warn!(%peer, ?offence, "peer refused (repeated offences): disconnected and refused for 10 minutes");
            self.cut_off(peer, now);
        } else {
            self.police_peer(peer, now);
        }
    }

    /// Forgets what tables keyed by peer no longer need: a stream of fresh identities must not
    /// grow them without bound. Once a minute.
    fn prune_peer_tables(&mut self) {
        let now = Instant::now();
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .prune_expired(now);
        self.peer_saved
            .retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(60));
        self.px_asked
            .retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(600));
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        self.direct_upgrades.retain(|p| connected.contains(p));
        // Relays: those connected, and a few more to come back to.
        if self.relays.len() > 64 {
            let keep: Vec<PeerId> = self
                .relays
                .keys()
                .filter(|p| !connected.contains(p))
                .skip(32)
                .copied()
                .collect();
            for p in keep {
                self.relays.remove(&p);
            }
        }
        self.dm_prune();
    }

    /// Logs what was dropped at the bounds on what peers may make this node keep, as a
    /// warning at most every 10 s (a flood must not flood the log too).
    fn log_drops(&mut self) {
        let now = self.dropped();
        let (last, at) = &self.drops_logged;
        if now == *last || at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        tracing::warn!(
            dht = now.dht.saturating_sub(last.dht),
            held_messages = now.held_messages.saturating_sub(last.held_messages),
            mail = now.mail.saturating_sub(last.mail),
            "dropped at a bound since the last report (peers sent more than they may make this node keep)"
        );
        self.drops_logged = (now, Some(Instant::now()));
    }

    /// Disconnects and refuses `peer` for [`crate::net::scoring::PENALTY_BOX`].
    fn cut_off(&mut self, peer: PeerId, now: Instant) {
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.penalty_box
            .insert(peer, now + crate::net::scoring::PENALTY_BOX);
        self.graylisted_total += 1;
    }

    // ----- discovery and reconnection -------------------------------------------------------

    fn on_tick(&mut self) {
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in &ids {
            if self.unpublished.contains_key(id) || self.unpublished_meta.contains_key(id) {
                self.flush_unpublished(id);
            }
            self.discover(id, false);
        }
        self.connect_to_network(false);
        self.sync_tick();
        self.files_tick();
        self.dm_tick();
        self.group_tick();
        self.police_scores();
        self.prune_violations(Instant::now());
        if self.last_prune.elapsed() >= Duration::from_secs(60) {
            self.last_prune = Instant::now();
            self.prune_peer_tables();
            self.renew_certs();
        }
        self.log_drops();
    }

    /// Disconnects peers whose gossip score fell below the graylist (invalid messages,
    /// protocol abuse) and refuses them for a while; lets them back in afterwards.
    fn police_scores(&mut self) {
        let now = Instant::now();
        // Gossipsub keeps an application score as it was set: hand it the decayed points, so
        // that an offence fades from a peer's standing as it fades here.
        for (peer, points) in self.reputation.all(now) {
            let score = if points < 0.5 { 0.0 } else { -points };
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, score);
        }
        let released: Vec<PeerId> = self
            .penalty_box
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        self.reputation.prune(now);
        let user_blocked = self.store.blocked_peers().unwrap_or_default();
        for p in released {
            self.penalty_box.remove(&p);
            if !user_blocked.contains(&p) {
                self.swarm.behaviour_mut().blocked.unblock_peer(p);
                tracing::info!(peer = %p, "graylisted peer let back in");
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            self.police_peer(p, now);
        }
    }

    /// A peer sent a request frame that is oversized or not the protocol's message: after
    /// `MAX_VIOLATIONS` within `VIOLATION_WINDOW`, it is disconnected and refused for 10
    /// minutes, like a graylisted gossip peer (an honest peer never sends one).
    pub(super) fn protocol_violation(&mut self, peer: PeerId, protocol: &str, why: &str) {
        tracing::debug!(%peer, "malformed {protocol} request: {why}");
        let now = Instant::now();
        let entry = self.violations.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) > VIOLATION_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < MAX_VIOLATIONS || self.penalty_box.contains_key(&peer) {
            return;
        }
        self.violations.remove(&peer);
        tracing::warn!(
            %peer,
            "peer refused ({MAX_VIOLATIONS} malformed or oversized requests): disconnected and \
             refused for 10 minutes"
        );
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.penalty_box
            .insert(peer, now + crate::net::scoring::PENALTY_BOX);
        self.graylisted_total += 1;
    }

    /// Forgets violation counts whose window has passed (one bad frame per fresh identity must
    /// not grow the table without bound).
    fn prune_violations(&mut self, now: Instant) {
        self.violations
            .retain(|_, (_, since)| now.duration_since(*since) <= VIOLATION_WINDOW);
    }

    /// Disconnects and refuses `peer` if its gossip score is below the graylist.
    fn police_peer(&mut self, peer: PeerId, now: Instant) {
        let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&peer) else {
            return;
        };
        if score >= crate::net::scoring::GRAYLIST || self.penalty_box.contains_key(&peer) {
            return;
        }
        tracing::warn!(
            %peer,
            score,
            "peer graylisted (invalid gossip): disconnected and refused for 10 minutes"
        );
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.penalty_box
            .insert(peer, now + crate::net::scoring::PENALTY_BOX);
        self.graylisted_total += 1;
    }

    /// Announces this node as a follower of the channel and looks up the others. Lookups go
    /// on while fewer than two topic peers have brought anything valid lately (Sybils that
    /// subscribe and forward nothing do not make a channel healthy); a node that no topic peer
    /// has ever brought anything tries peers from its cache too (peer exchange), in case every
    /// provider record it finds is hostile.
    fn discover(&mut self, id: &ChannelId, now: bool) {
        let Some(state) = self.channels.get(id) else {
            return;
        };
        let topic = state.topic.hash();
        let topic_peers: Vec<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, t)| t.contains(&&topic))
            .map(|(p, _)| *p)
            .collect();
        let peers = topic_peers.len();
        let useful = state.useful_among(&topic_peers, Instant::now());
        let sparse = peers < WANT_TOPIC_PEERS;
        let lookup_every = if sparse || useful < 2 {
            state.lookup_every
        } else {
            LOOKUP_WHEN_HEALTHY
        };
        let due =
            |t: Option<Instant>, every: Duration| now || t.is_none_or(|t| t.elapsed() >= every);
        let provide_due = due(
            state.last_provide,
            if sparse {
                PROVIDE_WHEN_SPARSE
            } else {
                Duration::from_secs(3600)
            },
        );
        let lookup_due = due(state.last_lookup, lookup_every);
        let fallback_due = !state.ever_useful
            && state.record.role != Role::Owner
            && state.fallback_rounds < FALLBACK_ROUNDS
            && now_ms().saturating_sub(state.record.followed_at_ms) >= 60_000
            && state
                .last_fallback
                .is_none_or(|t| t.elapsed() >= FALLBACK_EVERY);
        let key = channel::provider_key(id);
        let kad = &mut self.swarm.behaviour_mut().kad;
        if provide_due && let Err(e) = kad.start_providing(key.clone()) {
            tracing::debug!("cannot announce: {e}");
        }
        let mut lookup = None;
        if lookup_due && !self.provider_queries.values().any(|(c, _)| c == id) {
            lookup = Some(kad.get_providers(key));
        }
        if let Some(state) = self.channels.get_mut(id) {
            if provide_due {
                state.last_provide = Some(Instant::now());
            }
            if lookup_due {
                state.last_lookup = Some(Instant::now());
            }
            if fallback_due {
                state.last_fallback = Some(Instant::now());
                state.fallback_rounds = state.fallback_rounds.saturating_add(1);
            }
        }
        if let Some(q) = lookup {
            self.provider_queries.insert(q, (*id, false));
        }
        if fallback_due {
            self.dial_cached_peers(FALLBACK_DIALS);
        }
    }

    /// Dials up to `n` peers of the peer cache that are not connected, at random.
    fn dial_cached_peers(&mut self, n: usize) {
        use rand::seq::SliceRandom;
        let me = *self.swarm.local_peer_id();
        let mut cached: Vec<PeerRecord> = self
            .store
            .peers()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.peer_id != me && !self.swarm.is_connected(&r.peer_id))
            .collect();
        cached.shuffle(&mut rand::rng());
        for rec in cached.into_iter().take(n) {
            tracing::debug!(peer = %rec.peer_id, "no topic peer has brought anything: trying a cached peer");
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(rec.peer_id)
                .addresses(rec.addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    /// Remembers addresses (from an invite link) as bootstrap addresses and dials them.
    fn add_bootstrap_addrs(&mut self, addrs: &[Multiaddr]) {
        let me = *self.swarm.local_peer_id();
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| split_peer_addr(a).0 != Some(me))
            .cloned()
            .collect();
        self.dial_addrs(&addrs);
        for addr in addrs {
            if !self.bootstrap.contains(&addr) {
                self.bootstrap.push(addr);
            }
        }
    }

    /// Dials addresses: one dial per peer carrying all of that peer's addresses, so that a
    /// transport the censor blackholes (a dial that can only time out) races the ones that
    /// work instead of holding them up. Peers already connected or being dialed are skipped;
    /// addresses with a /p2p/ id also go to Kademlia (bootstrap peers serve the DHT).
    fn dial_addrs(&mut self, addrs: &[Multiaddr]) {
        use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
        let me = *self.swarm.local_peer_id();
        let mut by_peer: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for addr in addrs {
            match split_peer_addr(addr) {
                (Some(p), _) if p == me => {}
                (Some(p), base) => {
                    self.swarm.behaviour_mut().kad.add_address(&p, base.clone());
                    match by_peer.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) => v.push(base),
                        None => by_peer.push((p, vec![base])),
                    }
                }
                (None, base) => {
                    if let Err(e) = self
                        .swarm
                        .dial(DialOpts::unknown_peer_id().address(base).build())
                    {
                        tracing::debug!(%addr, "not dialing: {e}");
                    }
                }
            }
        }
        for (peer, addrs) in by_peer {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::trace!(%peer, "not dialing: {e}");
            }
        }
    }

    /// Dials a peer again after one of its addresses answered with another peer's key.
    ///
    /// libp2p fails the whole dial on the first wrong peer id (a stale or foreign address
    /// reached somebody else, e.g. a remote peer's `127.0.0.1` reaching ourselves) even while
    /// the peer's other addresses were still being tried. The bad address is forgotten and a
    /// second dial uses the rest; at most once a minute per peer, so it cannot loop.
    fn redial_after_wrong_peer(&mut self, peer: PeerId, bad: &Multiaddr) {
        use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
        let (_, bad) = split_peer_addr(bad);
        self.swarm.behaviour_mut().kad.remove_address(&peer, &bad);
        self.bootstrap
            .retain(|a| split_peer_addr(a) != (Some(peer), bad.clone()));
        if self.swarm.is_connected(&peer)
            || self
                .wrong_peer_redials
                .get(&peer)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        if self.wrong_peer_redials.len() > 1024 {
            self.wrong_peer_redials
                .retain(|_, t| t.elapsed() < Duration::from_secs(60));
        }
        self.wrong_peer_redials.insert(peer, Instant::now());
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if self.swarm.dial(opts).is_ok() {
            tracing::debug!(%peer, "redialing after a wrong peer id");
        }
    }

    /// Whether a connected peer reaches us over loopback (so its loopback addresses are real).
    pub(super) fn over_loopback(&self, peer: &PeerId) -> bool {
        self.connections
            .get(peer)
            .is_some_and(|c| c.iter().any(|(_, a)| is_loopback(a)))
    }

    /// Dials the peer cache and the bootstrap peers: at startup, and with backoff whenever
    /// the node has no connection at all.
    fn connect_to_network(&mut self, startup: bool) {
        if !startup {
            if self.swarm.connected_peers().next().is_some()
                || self.last_redial.elapsed() < self.redial_backoff
            {
                return;
            }
            self.redial_backoff = (self.redial_backoff * 2).min(Duration::from_secs(60));
            tracing::info!("no connections; redialing cached and bootstrap peers");
        }
        self.last_redial = Instant::now();
        let me = *self.swarm.local_peer_id();
        let cached = self.store.peers().unwrap_or_else(|e| {
            tracing::warn!("peer cache unreadable: {e}");
            Vec::new()
        });
        // The peer cache first: it holds peers that worked before, and survives the bootstrap
        // peers being blocked.
        let mut seen = HashSet::new();
        for rec in cached.into_iter().take(STARTUP_DIALS) {
            if rec.peer_id == me || !seen.insert(rec.peer_id) {
                continue;
            }
            for a in &rec.addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&rec.peer_id, a.clone());
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(rec.peer_id)
                .addresses(rec.addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
        let bootstrap: Vec<Multiaddr> = self
            .bootstrap
            .iter()
            .filter(|a| split_peer_addr(a).0.is_none_or(|p| !seen.contains(&p)))
            .cloned()
            .collect();
        self.dial_addrs(&bootstrap);
    }
}

enum ChainCheck {
    New,
    Duplicate,
    Conflict,
}

fn with_port_zero(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(0),
            Protocol::Udp(_) => Protocol::Udp(0),
            other => other,
        })
        .collect()
}
