//! A hostile peer for tests: a libp2p swarm that speaks Samizdat's protocols badly on purpose.
//! It joins channel topics and publishes whatever bytes a test gives it (forged, replayed,
//! oversized), answers history sync with bad pages, and provides files with corrupted chunks.

// The NetworkBehaviour derive generates an event enum without doc comments.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, kad, noise, request_response, tcp, yamux};
use samizdat_node::net::wire::{
    DM_PROTOCOL, FILE_PROTOCOL, Frame, PX_PROTOCOL, ProtoCodec, SYNC_PROTOCOL,
};
use samizdat_proto::v1;
use tokio::sync::{mpsc, oneshot};

/// How the attacker answers history sync requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Refuses ("unknown channel"), like a peer that does not hold it.
    Refuse,
    /// Claims a long chain and sends posts it signed itself, claiming the channel's key.
    Forged,
    /// Sends genuine posts it captured, but says the range continues beyond what was asked.
    OutOfRange,
    /// Sends a frame larger than any peer accepts.
    Oversized,
    /// Sends bytes that are not protobuf.
    Garbage,
    /// Never answers (holds the stream open until the asker gives up).
    Stall,
}

/// A Samizdat request-response protocol, for sending raw frames on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `/samizdat/sync/1`
    Sync,
    /// `/samizdat/file/1`
    File,
    /// `/samizdat/px/1`
    Px,
    /// `/samizdat/dm/1`
    Dm,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    sync: request_response::Behaviour<ProtoCodec<v1::SyncRequest, v1::SyncResponse>>,
    files: request_response::Behaviour<ProtoCodec<v1::FileRequest, v1::FileResponse>>,
    dm: request_response::Behaviour<RawCodec>,
    raw_sync: request_response::Behaviour<RawCodec>,
    raw_file: request_response::Behaviour<RawCodec>,
    raw_px: request_response::Behaviour<RawCodec>,
}

/// Frames of arbitrary bytes: what a peer that does not follow the schema sends.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        samizdat_node::net::wire::read_frame(io, 64 << 20).await
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        samizdat_node::net::wire::read_frame(io, 64 << 20).await
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        samizdat_node::net::wire::write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        resp: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        samizdat_node::net::wire::write_frame(io, &resp).await
    }
}

enum Cmd {
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Listen(oneshot::Sender<Result<Multiaddr>>),
    Subscribe(String, oneshot::Sender<Result<()>>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<()>>),
    PublishMany(String, Vec<Vec<u8>>, oneshot::Sender<usize>),
    TopicPeers(String, oneshot::Sender<usize>),
    Received(oneshot::Sender<Vec<Vec<u8>>>),
    SetSync(SyncMode, oneshot::Sender<()>),
    SyncRequests(oneshot::Sender<usize>),
    JoinDht(Multiaddr, oneshot::Sender<Result<()>>),
    ProvideCorrupted {
        provider: PeerId,
        cid: [u8; 32],
        reply: oneshot::Sender<Result<()>>,
    },
    ChunksServed(oneshot::Sender<usize>),
    Raw(Proto, PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>>>),
    StallFiles(bool, oneshot::Sender<()>),
}

/// Handle to the hostile peer (its swarm runs on its own thread).
pub struct Attacker {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Its PeerId.
    pub peer_id: PeerId,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    received: Vec<Vec<u8>>,
    sync_mode: SyncMode,
    sync_requests: usize,
    manifests: HashMap<[u8; 32], Vec<u8>>,
    pending_manifest:
        HashMap<request_response::OutboundRequestId, ([u8; 32], oneshot::Sender<Result<()>>)>,
    chunks_served: usize,
    mallory: libp2p::identity::ed25519::Keypair,
    raw_pending: HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Vec<u8>>>>,
    /// Answers held back (stalling): dropped when the attacker stops.
    stalled_sync: Vec<request_response::ResponseChannel<v1::SyncResponse>>,
    stalled_files: Vec<request_response::ResponseChannel<v1::FileResponse>>,
    stall_files: bool,
}

impl Attacker {
    /// Starts the peer (TCP + noise + yamux; gossipsub with a 1 MiB frame limit; the Samizdat
    /// DHT, sync and file protocols).
    pub fn spawn() -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel::<Cmd>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(run(rx, ready_tx));
        });
        let peer_id = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("attacker did not start")??;
        Ok(Self {
            tx,
            peer_id,
            thread: Some(thread),
        })
    }

    fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| anyhow!("attacker stopped"))?;
        rx.blocking_recv().map_err(|_| anyhow!("attacker stopped"))
    }

    /// Dials an address.
    pub fn dial(&self, addr: &str) -> Result<()> {
        let a: Multiaddr = addr.parse()?;
        self.call(|r| Cmd::Dial(a, r))?
    }

    /// Listens on 127.0.0.1 and announces that address; returns it.
    pub fn listen(&self) -> Result<Multiaddr> {
        self.call(Cmd::Listen)?
    }

    /// Joins a topic.
    pub fn subscribe(&self, topic: &str) -> Result<()> {
        self.call(|r| Cmd::Subscribe(topic.to_string(), r))?
    }

    /// Publishes raw bytes on a topic.
    pub fn publish(&self, topic: &str, data: Vec<u8>) -> Result<()> {
        self.call(|r| Cmd::Publish(topic.to_string(), data, r))?
    }

    /// Publishes a batch in one go (for floods); returns how many gossipsub accepted (it
    /// refuses once no peer on the topic is left).
    pub fn publish_many(&self, topic: &str, data: Vec<Vec<u8>>) -> Result<usize> {
        self.call(|r| Cmd::PublishMany(topic.to_string(), data, r))
    }

    /// Peers it knows on a topic.
    pub fn topic_peers(&self, topic: &str) -> Result<usize> {
        self.call(|r| Cmd::TopicPeers(topic.to_string(), r))
    }

    /// Every message it has received on its topics.
    pub fn received(&self) -> Result<Vec<Vec<u8>>> {
        self.call(Cmd::Received)
    }

    /// How it answers sync requests from now on.
    pub fn set_sync_mode(&self, mode: SyncMode) -> Result<()> {
        self.call(|r| Cmd::SetSync(mode, r))
    }

    /// How many sync requests it has answered.
    pub fn sync_requests(&self) -> Result<usize> {
        self.call(Cmd::SyncRequests)
    }

    /// Joins the DHT through a bootstrap peer (full multiaddr with /p2p/).
    pub fn join_dht(&self, bootstrap: &str) -> Result<()> {
        let a: Multiaddr = bootstrap.parse()?;
        self.call(|r| Cmd::JoinDht(a, r))?
    }

    /// Fetches the file's manifest from `provider`, then announces itself as a provider and
    /// serves that manifest with corrupted chunks.
    pub fn provide_corrupted(&self, provider: PeerId, cid: [u8; 32]) -> Result<()> {
        self.call(|reply| Cmd::ProvideCorrupted {
            provider,
            cid,
            reply,
        })?
    }

    /// How many (corrupted) chunks it has sent.
    pub fn chunks_served(&self) -> Result<usize> {
        self.call(Cmd::ChunksServed)
    }
}

impl Attacker {
    /// Sends raw bytes as a `/samizdat/dm/1` request to a connected peer; returns the raw
    /// answer, or the failure (a peer that drops the stream answers nothing).
    pub fn dm_raw(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>> {
        self.raw(Proto::Dm, peer, bytes)
    }

    /// Sends raw bytes as one request frame on `proto` to a connected peer; returns the raw
    /// answer, or the failure.
    pub fn raw(&self, proto: Proto, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>> {
        self.call(|r| Cmd::Raw(proto, peer, bytes, r))?
    }

    /// Whether file chunk requests go unanswered (held until the asker gives up).
    pub fn stall_files(&self, stall: bool) -> Result<()> {
        self.call(|r| Cmd::StallFiles(stall, r))
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // Closing the command channel ends the swarm loop.
        let (tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build() -> Result<libp2p::Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| anyhow!("{e}"))?
        .with_behaviour(|key| {
            let cfg = gossipsub::ConfigBuilder::default()
                .max_transmit_size(1024 * 1024)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(|e| e.to_string())?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                cfg,
            )?;
            let peer_id = key.public().to_peer_id();
            let rr =
                request_response::Config::default().with_request_timeout(Duration::from_secs(30));
            Ok(Behaviour {
                gossipsub,
                identify: samizdat_node::net::identify(key, "attacker/0"),
                kad: samizdat_node::net::kademlia(peer_id, Some(kad::Mode::Server)),
                sync: request_response::Behaviour::with_codec(
                    // Its own limits are generous: it is the one sending oversized frames.
                    ProtoCodec::new(1 << 20, 64 << 20),
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    rr.clone(),
                ),
                files: request_response::Behaviour::with_codec(
                    ProtoCodec::new(1 << 20, 64 << 20),
                    [(FILE_PROTOCOL, request_response::ProtocolSupport::Full)],
                    rr.clone(),
                ),
                dm: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(DM_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                    rr.clone(),
                ),
                raw_sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                    rr.clone(),
                ),
                raw_file: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(FILE_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                    rr.clone(),
                ),
                raw_px: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(PX_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                    rr,
                ),
            })
        })
        .map_err(|e| anyhow!("{e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}

async fn run(mut rx: mpsc::UnboundedReceiver<Cmd>, ready: std_mpsc::Sender<Result<PeerId>>) {
    let mut swarm = match build() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(*swarm.local_peer_id()));
    let mut st = State {
        received: Vec::new(),
        sync_mode: SyncMode::Refuse,
        sync_requests: 0,
        manifests: HashMap::new(),
        pending_manifest: HashMap::new(),
        chunks_served: 0,
        mallory: libp2p::identity::ed25519::Keypair::generate(),
        raw_pending: HashMap::new(),
        stalled_sync: Vec::new(),
        stalled_files: Vec::new(),
        stall_files: false,
    };
    let mut pending_listen: Option<oneshot::Sender<Result<Multiaddr>>> = None;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(cmd) => on_command(&mut swarm, &mut st, cmd, &mut pending_listen),
            },
            ev = swarm.select_next_some() => on_event(&mut swarm, &mut st, ev, &mut pending_listen),
        }
    }
}

fn on_command(
    swarm: &mut libp2p::Swarm<Behaviour>,
    st: &mut State,
    cmd: Cmd,
    pending_listen: &mut Option<oneshot::Sender<Result<Multiaddr>>>,
) {
    match cmd {
        Cmd::Dial(a, r) => {
            let _ = r.send(swarm.dial(a).map_err(|e| anyhow!("{e}")));
        }
        Cmd::Listen(r) => {
            match swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")) {
                Ok(_) => *pending_listen = Some(r),
                Err(e) => {
                    let _ = r.send(Err(anyhow!("{e}")));
                }
            }
        }
        Cmd::Subscribe(t, r) => {
            let _ = r.send(
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&IdentTopic::new(t))
                    .map(|_| ())
                    .map_err(|e| anyhow!("{e:?}")),
            );
        }
        Cmd::Publish(t, data, r) => {
            let _ = r.send(
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(t), data)
                    .map(|_| ())
                    .map_err(|e| anyhow!("{e:?}")),
            );
        }
        Cmd::PublishMany(t, batch, r) => {
            let topic = IdentTopic::new(t);
            let sent = batch
                .into_iter()
                .filter(|d| {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), d.clone())
                        .is_ok()
                })
                .count();
            let _ = r.send(sent);
        }
        Cmd::TopicPeers(t, r) => {
            let h = IdentTopic::new(t).hash();
            let n = swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, ts)| ts.contains(&&h))
                .count();
            let _ = r.send(n);
        }
        Cmd::Received(r) => {
            let _ = r.send(st.received.clone());
        }
        Cmd::SetSync(m, r) => {
            st.sync_mode = m;
            let _ = r.send(());
        }
        Cmd::Raw(proto, peer, bytes, r) => {
            let b = swarm.behaviour_mut();
            let id = match proto {
                Proto::Sync => b.raw_sync.send_request(&peer, bytes),
                Proto::File => b.raw_file.send_request(&peer, bytes),
                Proto::Px => b.raw_px.send_request(&peer, bytes),
                Proto::Dm => b.dm.send_request(&peer, bytes),
            };
            st.raw_pending.insert(id, r);
        }
        Cmd::StallFiles(stall, r) => {
            st.stall_files = stall;
            let _ = r.send(());
        }
        Cmd::SyncRequests(r) => {
            let _ = r.send(st.sync_requests);
        }
        Cmd::JoinDht(addr, r) => {
            let (peer, base) = samizdat_node::net::split_peer_addr(&addr);
            let res = match peer {
                Some(p) => {
                    swarm.behaviour_mut().kad.add_address(&p, base);
                    let _ = swarm.dial(addr);
                    swarm
                        .behaviour_mut()
                        .kad
                        .bootstrap()
                        .map(|_| ())
                        .map_err(|e| anyhow!("{e:?}"))
                }
                None => Err(anyhow!("bootstrap address needs /p2p/")),
            };
            let _ = r.send(res);
        }
        Cmd::ProvideCorrupted {
            provider,
            cid,
            reply,
        } => {
            let req = v1::FileRequest {
                cid: cid.to_vec(),
                kind: Some(v1::file_request::Kind::Manifest(true)),
            };
            let rid = swarm
                .behaviour_mut()
                .files
                .send_request(&provider, Frame::Valid(req));
            st.pending_manifest.insert(rid, (cid, reply));
        }
        Cmd::ChunksServed(r) => {
            let _ = r.send(st.chunks_served);
        }
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<Behaviour>,
    st: &mut State,
    ev: SwarmEvent<BehaviourEvent>,
    pending_listen: &mut Option<oneshot::Sender<Result<Multiaddr>>>,
) {
    use request_response::{Event as E, Message as M};
    match ev {
        SwarmEvent::NewListenAddr { address, .. } => {
            swarm.add_external_address(address.clone());
            if let Some(r) = pending_listen.take() {
                let _ = r.send(Ok(address));
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
            message,
            ..
        })) => st.received.push(message.data),
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => {
            samizdat_node::net::learn_from_identify(
                &mut swarm.behaviour_mut().kad,
                &peer_id,
                &info,
            );
        }
        SwarmEvent::Behaviour(
            BehaviourEvent::Dm(ev)
            | BehaviourEvent::RawSync(ev)
            | BehaviourEvent::RawFile(ev)
            | BehaviourEvent::RawPx(ev),
        ) => match ev {
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(r) = st.raw_pending.remove(&request_id) {
                    let _ = r.send(Ok(response));
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(r) = st.raw_pending.remove(&request_id) {
                    let _ = r.send(Err(anyhow!("{error}")));
                }
            }
            _ => {}
        },
        SwarmEvent::Behaviour(BehaviourEvent::Sync(E::Message {
            message: M::Request {
                request, channel, ..
            },
            ..
        })) => {
            st.sync_requests += 1;
            let Frame::Valid(request) = request else {
                return;
            };
            if st.sync_mode == SyncMode::Stall {
                st.stalled_sync.push(channel);
            } else {
                let resp = hostile_sync_answer(st, request);
                let _ = swarm.behaviour_mut().sync.send_response(channel, resp);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Files(E::Message {
            message:
                M::Response {
                    request_id,
                    response,
                },
            ..
        })) => {
            if let Some((cid, reply)) = st.pending_manifest.remove(&request_id) {
                let res = match response.kind {
                    Some(v1::file_response::Kind::Manifest(m)) => {
                        st.manifests.insert(cid, m);
                        let key =
                            samizdat_node::files::provider_key(&samizdat_node::files::Cid(cid));
                        swarm
                            .behaviour_mut()
                            .kad
                            .start_providing(key)
                            .map(|_| ())
                            .map_err(|e| anyhow!("{e:?}"))
                    }
                    other => Err(anyhow!("provider did not send a manifest: {other:?}")),
                };
                let _ = reply.send(res);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Files(E::Message {
            message: M::Request {
                request, channel, ..
            },
            ..
        })) => {
            let Frame::Valid(request) = request else {
                return;
            };
            let cid: [u8; 32] = request.cid.as_slice().try_into().unwrap_or([0; 32]);
            if st.stall_files && matches!(request.kind, Some(v1::file_request::Kind::Chunk(_))) {
                st.chunks_served += 1;
                st.stalled_files.push(channel);
                return;
            }
            let kind = match (request.kind, st.manifests.get(&cid)) {
                (Some(v1::file_request::Kind::Manifest(_)), Some(m)) => {
                    v1::file_response::Kind::Manifest(m.clone())
                }
                (Some(v1::file_request::Kind::Chunk(i)), Some(m)) => {
                    // The right length, the wrong bytes.
                    let man = samizdat_node::files::Manifest::verify(
                        &samizdat_node::files::Cid(cid),
                        m,
                        u64::MAX,
                    );
                    let len = man.map(|m| m.chunk_len(i as usize)).unwrap_or(1024);
                    st.chunks_served += 1;
                    v1::file_response::Kind::Chunk(vec![0x5a; len])
                }
                _ => v1::file_response::Kind::Error("not found".into()),
            };
            let _ = swarm
                .behaviour_mut()
                .files
                .send_response(channel, v1::FileResponse { kind: Some(kind) });
        }
        _ => {}
    }
}

fn hostile_sync_answer(st: &State, req: v1::SyncRequest) -> v1::SyncResponse {
    use prost::Message;
    use v1::sync_response::Kind as R;
    let kind = match (st.sync_mode, req.kind) {
        (SyncMode::Refuse | SyncMode::Stall, _) | (_, None) => R::Error("unknown channel".into()),
        (_, Some(v1::sync_request::Kind::Heads(h))) => R::Heads(v1::SyncHeadsResponse {
            authors: vec![v1::AuthorHead {
                author: h.channel,
                max_seq: 1000,
            }],
        }),
        (SyncMode::Forged, Some(v1::sync_request::Kind::Range(r))) => {
            let body = v1::PostBody {
                channel: r.channel.clone(),
                author: r.channel,
                seq: r.from_seq,
                prev: if r.from_seq > 1 {
                    vec![0; 32]
                } else {
                    Vec::new()
                },
                timestamp_ms: samizdat_node::channel::now_ms(),
                text: "FORGED via sync".into(),
                ..Default::default()
            }
            .encode_to_vec();
            let mut msg = b"samizdat/v1/post".to_vec();
            msg.extend_from_slice(&body);
            let sp = v1::SignedPost {
                signature: st.mallory.sign(&msg),
                body,
                cert: None,
            };
            R::Range(v1::SyncRangeResponse {
                posts: vec![sp.encode_to_vec()],
                expired: Vec::new(),
                next_seq: 0,
            })
        }
        (SyncMode::OutOfRange, Some(v1::sync_request::Kind::Range(r))) => {
            let posts: Vec<Vec<u8>> = st
                .received
                .iter()
                .filter_map(
                    |m| match v1::ChannelMessage::decode(m.as_slice()).ok()?.kind {
                        Some(v1::channel_message::Kind::Post(p)) => Some(p.encode_to_vec()),
                        _ => None,
                    },
                )
                .take(1)
                .collect();
            R::Range(v1::SyncRangeResponse {
                posts,
                expired: Vec::new(),
                next_seq: r.to_seq + 10,
            })
        }
        (SyncMode::Oversized, Some(v1::sync_request::Kind::Range(_))) => {
            R::Range(v1::SyncRangeResponse {
                posts: vec![vec![0u8; 1024 * 1024]; 6],
                expired: Vec::new(),
                next_seq: 0,
            })
        }
        (SyncMode::Garbage, Some(v1::sync_request::Kind::Range(_))) => {
            R::Range(v1::SyncRangeResponse {
                posts: vec![b"\xff\xfe not a post".to_vec(); 3],
                expired: vec![u64::MAX],
                next_seq: 0,
            })
        }
    };
    v1::SyncResponse { kind: Some(kind) }
}
