//! The event loop: the one task that owns the swarm. It answers commands, validates what
//! arrives from the network, hands writes to the group-commit writer, and publishes posts once
//! they are durable. History sync and files live in the child modules.

mod admins;
mod channels;
mod commands;
pub(crate) mod devices;
mod dm;
mod files;
mod group;
mod peers;
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
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use prost::Message;
use samizdat_proto::v1;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::NodeError;
use super::channels::{ChannelState, Head, Signer};
use super::command::{Command, FollowTarget, Reply};
use super::connections::{Connections, Standing, Watermarks};
use super::durable::Durable;
use super::peer_book::PeerBook;
use super::police::{Action as PoliceAction, Police};
use super::reputation::Offence;
use super::views::{ChannelView, Event, NodeInfo, PeerView, PostView};
use super::writer::{Item, Origin, Report, WriteDone, WriteRequest, Writer};
use crate::channel::{
    self, AdminCert, AdminRevocation, ChannelId, Invite, Manifest, Post, PostDraft, PostId, now_ms,
};
use crate::config::Config;
use crate::files::{BlobStore, Cid};
use crate::identity::Identity;
use crate::net::node_behaviour::{NodeBehaviour, NodeBehaviourEvent};
use crate::net::requests::Requests;
use crate::net::{
    RecordVerdict, accept_inbound_kad, build_node_swarm, check_record, is_loopback, is_unspecified,
    learn_from_identify, split_peer_addr, worth_dialing,
};
use crate::store::{ChannelRecord, InsertOutcome, PeerRecord, Role, Store};
use libp2p::request_response::ResponseChannel;

type PostReply = oneshot::Sender<Result<PostView, NodeError>>;

/// How often housekeeping runs (outbox, discovery, reconnects).
const TICK: Duration = Duration::from_secs(1);
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
    /// Channels: followed ones, their topics and queries, posts not yet durable or published.
    channels: channels::Channels,
    /// Who this node knows and how it finds them: bootstrap peers, the peer cache, the DHT.
    peers: peers::Peers,
    /// Open connections, the connection manager, redialing.
    conns: Connections,
    /// History sync: each channel's state, requests out, limits on peers' requests.
    sync: sync::HistorySync,
    /// Files: downloads, requests out, provider lookups, what this node provides.
    files: files::Files,
    /// Reachability, the DHT role it drives, relay reservations, peer-exchange pacing.
    reach: super::reach::Reach,
    /// Direct messages: MLS state, conversations, delivery, mail held for others.
    dm: dm::Dm,
    /// The MLS client direct messages and groups share.
    mls: dm::Mls,
    /// Private groups: membership, delivery by gossip, catching up.
    groups: group::Groups,
    /// This node's account and its devices, contacts' accounts, linking.
    devices: devices::Devices,
    /// Which peers are refused, and until when (offences, malformed frames, gossip scores).
    police: Police,
    /// Peers the user blocked (mirrors the store; read every tick by the police).
    user_blocked: HashSet<PeerId>,
    /// What was dropped at bounds, and when peer tables were last pruned.
    upkeep: peers::Upkeep,
    /// What waits for this task's writes to reach the disk.
    durable: Durable<Deferred>,
    /// The store's write count when the command being handled arrived.
    command_seq: u64,
    shutdown: CancellationToken,
}

/// The peer that answered one of this node's requests. Only answers count as an exchange
/// in progress: a peer's own requests must not buy it protection from the connection manager
/// (a Sybil would send one every few seconds).
fn answered_us<Req, Resp>(event: &libp2p::request_response::Event<Req, Resp>) -> Option<PeerId> {
    use libp2p::request_response::{Event as E, Message as M};
    match event {
        E::Message {
            peer,
            message: M::Response { .. },
            ..
        } => Some(*peer),
        _ => None,
    }
}

/// An action that must not happen before the writes made before it are durable.
type Deferred = Box<dyn FnOnce(&mut EventLoop) + Send>;

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
            &config.tls,
            |key, relay| NodeBehaviour::new(key, relay, &cfg),
        )
        .await?;
        let mut listening = 0;
        for addr in &config.listen {
            match swarm.listen_on(addr.clone()) {
                Ok(_) => listening += 1,
                Err(e) => {
                    // A taken port must not stop the node: fall back to any free port.
                    let fallback = peers::with_port_zero(addr);
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
        let dm = dm::Dm::open(&store)?;
        let mls = dm::Mls::open(&*store, identity.signing().clone())?;
        let devices = devices::Devices::open(&store, &identity)?;
        let peer_book = PeerBook::new(
            PEER_CACHE,
            store.peers().unwrap_or_else(|e| {
                tracing::warn!("peer cache unreadable, starting without it: {e}");
                Vec::new()
            }),
        );

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
            channels: channels::Channels::default(),
            peers: peers::Peers::new(
                config.bootstrap.clone(),
                config.announce_listen_addresses,
                peer_book,
            ),
            conns: Connections::new(peers::watermarks(&config.connections), Instant::now()),
            sync: sync::HistorySync::new(),
            files: files::Files::new(),
            reach: super::reach::Reach::new(config.dht_mode, config.use_relays),
            dm,
            mls,
            groups: group::Groups::default(),
            devices,
            police: Police::default(),
            user_blocked: HashSet::new(),
            upkeep: peers::Upkeep::new(Instant::now()),
            durable: Durable::default(),
            command_seq: 0,
            shutdown,
        };
        for addr in listen_addrs {
            this.on_new_listen_addr(addr);
        }
        for addr in config.external_addresses.clone() {
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
            self.channels
                .unpublished
                .entry(post.channel)
                .or_default()
                .push(post);
        }
        for peer in self.store.blocked_peers()? {
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.user_blocked.insert(peer);
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

    /// Sends a command's answer: at once if the command wrote nothing, otherwise once its
    /// writes are durable (an answer is a promise that what it reports survives a crash).
    pub(super) fn answer<T: Send + 'static>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, NodeError>,
    ) {
        if self.store.write_seq() == self.command_seq {
            let _ = reply.send(result);
        } else {
            self.after_durable(move |_| {
                let _ = reply.send(result);
            });
        }
    }

    /// Runs `action` once everything this task has written so far is on disk: at once when it
    /// is, otherwise after the writer's next flush (which this asks for).
    pub(super) fn after_durable(&mut self, action: impl FnOnce(&mut EventLoop) + Send + 'static) {
        self.durable.push(self.store.write_seq(), Box::new(action));
        self.run_durable();
    }

    /// Runs what the disk has caught up with, and asks for the flush the rest waits for.
    fn run_durable(&mut self) {
        for action in self.durable.ready(self.store.durable_seq()) {
            action(self);
        }
        if self.durable.needs_flush() {
            let written = self.store.write_seq();
            // (A full queue: the tick asks again.)
            if self.writer.barrier() {
                self.durable.asked(written);
            }
        }
    }

    // ----- writes ---------------------------------------------------------------------------

    // ----- network --------------------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        // A peer answering this node's requests in a session of several (history pages, file
        // chunks) is kept by the connection manager a while. One-shot answers (mail
        // collection, peer exchange) end the exchange: counting them kept every peer met at
        // startup from being trimmed; peers direct messages wait for are protected apart.
        let exchanging = match &event {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Sync(ev)) => answered_us(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Files(ev)) => answered_us(ev),
            _ => None,
        };
        if let Some(peer) = exchanging {
            self.conns.exchanged(&peer, Instant::now());
        }
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
                let addr = endpoint.get_remote_address().clone();
                self.conns
                    .opened(peer_id, connection_id, addr.clone(), Instant::now());
                if endpoint.is_dialer() {
                    self.conns.dialed(&peer_id, addr);
                }
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
                self.conns.closed(&peer_id, connection_id);
                if num_established == 0 {
                    tracing::debug!(%peer_id, "disconnected");
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
                    if let Some(refused_total) = self.conns.refused(Instant::now()) {
                        tracing::warn!(
                            refused_total,
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
        self.conns.identified(&peer, &info.agent_version);
        self.dm_on_identified(peer, &info.protocols);
        if info.protocols.contains(&crate::net::wire::DM_PROTOCOL) {
            self.devices_on_identified(peer);
        }
        // The address this node reached the peer at comes first: behind a censor its listen
        // addresses may all be blocked while a web front's works.
        let dialed: Vec<Multiaddr> = self
            .conns
            .dialed_addr(&peer)
            .filter(|a| !crate::net::is_relayed(a))
            .map(|a| crate::net::split_peer_addr(a).1)
            .into_iter()
            .collect();
        if info.protocols.contains(&crate::net::RELAY_HOP_PROTOCOL) {
            let addrs: Vec<Multiaddr> = dialed.iter().chain(&info.listen_addrs).cloned().collect();
            self.note_relay(peer, &addrs);
        }
        let kad_server = learn_from_identify(&mut self.swarm.behaviour_mut().kad, &peer, &info);
        if kad_server && !self.peers.kad_bootstrapped {
            self.peers.kad_bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
            // The DHT just became reachable: announce and look up every channel now.
            let ids: Vec<ChannelId> = self.channels.by_id.keys().copied().collect();
            for id in ids {
                self.discover(&id, true);
            }
        }
        // Remember peers worth dialing after a restart (at most once a minute each).
        let recently = self
            .peers
            .saved
            .get(&peer)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        let speaks_samizdat = info.protocol_version == crate::net::IDENTIFY_PROTOCOL_VERSION;
        if speaks_samizdat && info.protocols.contains(&crate::net::wire::PX_PROTOCOL) {
            self.maybe_exchange_peers(peer);
        }
        if speaks_samizdat && !recently {
            let local = is_loopback(&info.observed_addr);
            let mut addrs: Vec<Multiaddr> = dialed;
            for a in info.listen_addrs {
                if worth_dialing(&a, local) && !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            addrs.truncate(16);
            if !addrs.is_empty() {
                let rec = PeerRecord {
                    peer_id: peer,
                    addrs,
                    last_seen_ms: now_ms(),
                };
                self.remember_peer(rec);
                self.peers.saved.insert(peer, Instant::now());
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                accept_inbound_kad(kad, request, &crate::net::SamizdatRecords);
                let drops = kad.store_mut().drops();
                if drops != self.upkeep.dht_drops {
                    tracing::debug!(?drops, "DHT store at a bound: records refused or evicted");
                }
                self.upkeep.dht_drops = drops;
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
                })) if self.files.queries.contains_key(&id) => {
                    if let Some(cid) = self.files.queries.get(&id).copied() {
                        self.on_file_providers(&cid, providers);
                    }
                }
                QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })) => {
                    let me = *self.swarm.local_peer_id();
                    let budget = self.provider_dial_budget(&id);
                    let mut dialed = 0;
                    for p in providers {
                        if p == me || self.swarm.is_connected(&p) || dialed >= budget {
                            continue;
                        }
                        // Addresses come from the still-running query's results.
                        if self.swarm.dial(p).is_ok() {
                            dialed += 1;
                        }
                    }
                    if dialed > 0
                        && let Some((_, found)) = self.channels.provider_queries.get_mut(&id)
                    {
                        *found = true;
                    }
                }
                QueryResult::GetProviders(_) if step.last => {
                    if let Some((ch, found)) = self.channels.provider_queries.remove(&id)
                        && let Some(state) = self.channels.by_id.get_mut(&ch)
                    {
                        // Nobody new: a small channel, look less often. Somebody: keep looking.
                        state.lookup_every = if found {
                            LOOKUP_WHEN_SPARSE
                        } else {
                            (state.lookup_every * 2).min(LOOKUP_WHEN_HEALTHY)
                        };
                    }
                    self.files.queries.remove(&id);
                }
                QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                    if let Some(channel) = self.channels.manifest_queries.get(&id).copied() {
                        self.adopt_manifest_record(&channel, &found.record);
                    }
                }
                QueryResult::GetRecord(_) if step.last => {
                    self.channels.manifest_queries.remove(&id);
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

    // ----- discovery and reconnection -------------------------------------------------------

    /// How many providers a channel lookup may dial: up to the connection manager's low
    /// watermark, and beyond it only what the channel's topic lacks (so that discovery does
    /// not reopen what the manager closes).
    fn provider_dial_budget(&self, query: &QueryId) -> usize {
        let Some(state) = self
            .channels
            .provider_queries
            .get(query)
            .and_then(|(ch, _)| self.channels.by_id.get(ch))
        else {
            return 0;
        };
        let lacking = WANT_TOPIC_PEERS.saturating_sub(self.topic_peers(&state.topic.hash()));
        self.conns.room_to_dial().max(lacking).min(DIALS_PER_LOOKUP)
    }

    fn on_tick(&mut self) {
        // (A barrier refused by a full queue is asked for again.)
        self.run_durable();
        let ids: Vec<ChannelId> = self.channels.by_id.keys().copied().collect();
        for id in &ids {
            if self.channels.unpublished.contains_key(id)
                || self.channels.unpublished_meta.contains_key(id)
            {
                self.flush_unpublished(id);
            }
            self.discover(id, false);
        }
        self.connect_to_network(false);
        self.sync_tick();
        self.files_tick();
        self.dm_tick();
        self.devices_tick();
        self.group_tick();
        self.police_scores();
        self.police.prune(Instant::now());
        self.trim_connections();
        if self.upkeep.last_prune.elapsed() >= Duration::from_secs(60) {
            self.upkeep.last_prune = Instant::now();
            self.prune_peer_tables();
            self.renew_certs();
        }
        self.log_drops();
    }
}
