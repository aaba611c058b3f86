//! A hostile peer for tests: a libp2p swarm that speaks Samizdat's protocols badly on purpose.
//! It joins channel topics and publishes whatever bytes a test gives it (forged, replayed,
//! oversized), answers history sync with lies (unproven heads, expiry claims, withheld or
//! forged pages), provides files with corrupted chunks, floods direct messages for
//! conversations nobody is in, stuffs mailboxes and the DHT.

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
use sha2::Digest as _;
use tokio::sync::{mpsc, oneshot};

/// How the attacker answers history sync requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Refuses ("unknown channel"), like a peer that does not hold it.
    Refuse,
    /// Shows the genuine heads it captured, then sends posts it signed itself, claiming the
    /// channel's key.
    Forged,
    /// Sends genuine posts it captured, but says the range continues beyond what was asked.
    OutOfRange,
    /// Sends a frame larger than any peer accepts.
    Oversized,
    /// Sends bytes that are not protobuf.
    Garbage,
    /// Never answers (holds the stream open until the asker gives up).
    Stall,
    /// Claims every author's chain reaches `u64::MAX`, without proof.
    HugeHeads,
    /// Shows the genuine (signed) heads of what it captured, then answers ranges with the
    /// captured posts stripped to their headers: claims that posts which never expire have
    /// expired (to erase them from followers and lock their author out of those slots).
    ClaimExpired,
    /// Shows the genuine heads of what it captured, then serves nothing of them.
    Withhold,
}

/// A Samizdat request-response protocol, for sending raw frames on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `/samizdat/sync/2`
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
    kad: samizdat_node::net::Kademlia,
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
    SyncRequestsFrom(PeerId, oneshot::Sender<usize>),
    JoinDht(Multiaddr, oneshot::Sender<Result<()>>),
    ProvideCorrupted {
        provider: PeerId,
        cid: [u8; 32],
        reply: oneshot::Sender<Result<()>>,
    },
    ChunksServed(oneshot::Sender<usize>),
    Raw(Proto, PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>>>),
    StallFiles(bool, oneshot::Sender<()>),
    Provide(Vec<Vec<u8>>, oneshot::Sender<Result<()>>),
    PutRecords(Vec<(Vec<u8>, Vec<u8>)>, oneshot::Sender<usize>),
    Connected(PeerId, oneshot::Sender<bool>),
    Providing(oneshot::Sender<usize>),
    Providers(Vec<u8>, oneshot::Sender<Vec<PeerId>>),
}

/// Handle to the hostile peer (its swarm runs on its own thread).
pub struct Attacker {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Its identity key (the same as the swarm's), for messages it signs or encrypts itself.
    pub key: libp2p::identity::ed25519::Keypair,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    received: Vec<Vec<u8>>,
    sync_mode: SyncMode,
    sync_requests: usize,
    /// Sync requests received, per asking peer.
    sync_requests_by: HashMap<PeerId, usize>,
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
    /// Keys still to announce, and announcements in flight (a few hundred at a time: thousands
    /// of queries at once slow its own Kademlia to a crawl).
    provide_queue: std::collections::VecDeque<Vec<u8>>,
    providing: usize,
    /// Provider lookups in flight: what they found so far, and who waits for it.
    lookups: HashMap<kad::QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
}

/// Announcements in flight at once.
const PROVIDING_AT_ONCE: usize = 128;

fn pump_provide(swarm: &mut libp2p::Swarm<Behaviour>, st: &mut State) {
    while st.providing < PROVIDING_AT_ONCE {
        let Some(k) = st.provide_queue.pop_front() else {
            break;
        };
        if swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(&k))
            .is_ok()
        {
            st.providing += 1;
        }
    }
}

/// The signed posts among what it received on its topics, for `channel`.
fn captured(st: &State, channel: &[u8]) -> Vec<(v1::PostBody, v1::SignedPost)> {
    use prost::Message;
    let mut out: Vec<(v1::PostBody, v1::SignedPost)> = st
        .received
        .iter()
        .filter_map(
            |m| match v1::ChannelMessage::decode(m.as_slice()).ok()?.kind {
                Some(v1::channel_message::Kind::Post(p)) => {
                    let body = v1::PostBody::decode(p.body.as_slice()).ok()?;
                    (body.channel == channel).then_some((body, p))
                }
                _ => None,
            },
        )
        .collect();
    out.sort_by_key(|(b, _)| (b.author.clone(), b.seq));
    out.dedup_by_key(|(b, _)| (b.author.clone(), b.seq));
    out
}

/// A post without its content: its header.
fn header_of(p: &v1::SignedPost) -> Vec<u8> {
    use prost::Message;
    let mut h = p.clone();
    h.content = Vec::new();
    h.encode_to_vec()
}

impl Attacker {
    /// Starts the peer (TCP + noise + yamux; gossipsub with a 1 MiB frame limit; the Samizdat
    /// DHT, sync and file protocols).
    pub fn spawn() -> Result<Self> {
        let key = libp2p::identity::ed25519::Keypair::generate();
        let swarm_key = key.clone();
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
            rt.block_on(run(swarm_key, rx, ready_tx));
        });
        let peer_id = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("attacker did not start")??;
        Ok(Self {
            tx,
            peer_id,
            key,
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

    /// How many sync requests `peer` sent it.
    pub fn sync_requests_from(&self, peer: PeerId) -> Result<usize> {
        self.call(|r| Cmd::SyncRequestsFrom(peer, r))
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

    /// Announces itself in the DHT as a provider of each of these keys (in the background, a
    /// batch at a time).
    pub fn provide(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        self.call(|r| Cmd::Provide(keys, r))?
    }

    /// Looks up the providers of a DHT key, as any node would.
    pub fn providers(&self, key: &[u8]) -> Result<Vec<PeerId>> {
        self.call(|r| Cmd::Providers(key.to_vec(), r))
    }

    /// Announcements still queued or in flight.
    pub fn providing(&self) -> Result<usize> {
        self.call(Cmd::Providing)
    }

    /// Stores these (key, value) records in the DHT as their publisher; returns how many
    /// queries started.
    pub fn put_records(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<usize> {
        self.call(|r| Cmd::PutRecords(records, r))
    }

    /// Whether it is connected to `peer` (a peer that cut it off is not).
    pub fn is_connected(&self, peer: PeerId) -> Result<bool> {
        self.call(|r| Cmd::Connected(peer, r))
    }

    /// Sends `peer` direct messages for a conversation `peer` is not in: `count` real MLS
    /// ciphertexts of a group only this attacker knows, each about `size` bytes, two per
    /// request (the frame limit is 3 MiB). Returns how many `peer` said it took, and the
    /// errors it gave.
    pub fn dm_junk(&self, peer: PeerId, count: usize, size: usize) -> Result<(usize, Vec<String>)> {
        use prost::Message;
        let mls = samizdat_node::mls::MlsClient::new(self.key.clone(), None)
            .map_err(|e| anyhow!("mls: {e}"))?;
        let group = mls.group_create().map_err(|e| anyhow!("mls: {e}"))?;
        let now = samizdat_node::channel::now_ms();
        let mut taken = 0;
        let mut errors = Vec::new();
        let envelopes: Vec<v1::DmEnvelope> = (0..count)
            .map(|i| {
                let mut text = vec![b'j'; size];
                text[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Ok(v1::DmEnvelope {
                    sender: self.peer_id.to_bytes(),
                    recipient: peer.to_bytes(),
                    sent_ms: now,
                    expires_ms: now + 3_600_000,
                    mls_message: mls.encrypt(&group, &text).map_err(|e| anyhow!("{e}"))?,
                    group_invite: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        for pair in envelopes.chunks(2) {
            // Paced under the per-peer rate limit (20 requests/s): a flood that gets through.
            std::thread::sleep(Duration::from_millis(55));
            let req = v1::DmRequest {
                kind: Some(v1::dm_request::Kind::Deliver(v1::DmDeliver {
                    envelopes: pair.to_vec(),
                })),
            };
            match self.dm_raw(peer, req.encode_to_vec()) {
                Ok(answer) => {
                    let resp = v1::DmResponse::decode(answer.as_slice()).unwrap_or_default();
                    taken += resp.accepted as usize;
                    if !resp.error.is_empty() {
                        errors.push(resp.error);
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Ok((taken, errors))
    }

    /// Deposits `count` envelopes of `size` random bytes for `recipient` with `holder`, as
    /// their sender, claiming they were sent `age_ms` ago. Returns how many were taken.
    pub fn deposit_junk(
        &self,
        holder: PeerId,
        recipient: PeerId,
        count: usize,
        size: usize,
        age_ms: u64,
    ) -> Result<usize> {
        use prost::Message;
        let now = samizdat_node::channel::now_ms();
        let mut taken = 0;
        let envelopes: Vec<v1::DmEnvelope> = (0..count)
            .map(|i| {
                // Distinct per attacker and per envelope (holders keep one copy of each).
                let mut junk = self.peer_id.to_bytes();
                junk.extend_from_slice(&(i as u64).to_be_bytes());
                junk.resize(size.max(junk.len()), 0x4a);
                v1::DmEnvelope {
                    sender: self.peer_id.to_bytes(),
                    recipient: recipient.to_bytes(),
                    sent_ms: now - age_ms,
                    expires_ms: now - age_ms + 7 * 24 * 3_600_000 - 60_000,
                    mls_message: junk,
                    group_invite: Vec::new(),
                }
            })
            .collect();
        for batch in envelopes.chunks(32) {
            std::thread::sleep(Duration::from_millis(55));
            let req = v1::DmRequest {
                kind: Some(v1::dm_request::Kind::Deposit(v1::DmDeposit {
                    envelopes: batch.to_vec(),
                })),
            };
            if let Ok(answer) = self.dm_raw(holder, req.encode_to_vec()) {
                taken += v1::DmResponse::decode(answer.as_slice())
                    .map(|r| r.accepted as usize)
                    .unwrap_or(0);
            }
        }
        Ok(taken)
    }
}

impl Attacker {
    /// A channel post signed with this peer's key, as an admin holding `cert` (or as anyone,
    /// without one): the `ChannelMessage` bytes to publish, and the post's id.
    #[allow(clippy::too_many_arguments)]
    pub fn signed_post(
        &self,
        channel: &[u8; 32],
        cert: Option<v1::AdminCert>,
        seq: u64,
        prev: Option<[u8; 32]>,
        timestamp_ms: u64,
        text: &str,
    ) -> (Vec<u8>, [u8; 32]) {
        use prost::Message;
        use sha2::Digest;
        let content = v1::PostContent {
            text: text.into(),
            file: None,
        }
        .encode_to_vec();
        let body = v1::PostBody {
            channel: channel.to_vec(),
            author: self.key.public().to_bytes().to_vec(),
            seq,
            prev: prev.map(|p| p.to_vec()).unwrap_or_default(),
            timestamp_ms,
            content_hash: sha2::Sha256::digest(&content).to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let id: [u8; 32] = sha2::Sha256::digest(&body).into();
        let mut msg = b"samizdat/v2/post".to_vec();
        msg.extend_from_slice(&body);
        let sp = v1::SignedPost {
            signature: self.key.sign(&msg),
            body,
            cert,
            content,
        };
        let bytes = v1::ChannelMessage {
            kind: Some(v1::channel_message::Kind::Post(sp)),
        }
        .encode_to_vec();
        (bytes, id)
    }
}

/// The bytes of an MLS `PrivateMessage` (RFC 9420, TLS encoding) of `group` claiming `epoch`,
/// with a ciphertext that decrypts under no key: what anyone can put on a group's topic once
/// it knows the group id.
pub fn forged_private_message(group: &[u8], epoch: u64) -> Vec<u8> {
    fn vec(out: &mut Vec<u8>, bytes: &[u8]) {
        // Variable-length vectors: a QUIC-style varint length (1 byte below 64, 2 below 16384).
        if bytes.len() < 64 {
            out.push(bytes.len() as u8);
        } else {
            out.extend_from_slice(&(0x4000u16 | bytes.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(bytes);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&1u16.to_be_bytes()); // mls10
    m.extend_from_slice(&2u16.to_be_bytes()); // mls_private_message
    vec(&mut m, group);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(1); // application
    vec(&mut m, &[]); // authenticated_data
    vec(&mut m, &[0x5a; 32]); // encrypted_sender_data
    vec(&mut m, &[0xa5; 96]); // ciphertext
    m
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

fn build(key: libp2p::identity::ed25519::Keypair) -> Result<libp2p::Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.into())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| anyhow!("{e}"))?
        .with_behaviour(|key| {
            // Anonymous, like the nodes (they drop messages that name their publisher).
            let cfg = gossipsub::ConfigBuilder::default()
                .max_transmit_size(1024 * 1024)
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                })
                .build()
                .map_err(|e| e.to_string())?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, cfg)?;
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

async fn run(
    key: libp2p::identity::ed25519::Keypair,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    ready: std_mpsc::Sender<Result<PeerId>>,
) {
    let mut swarm = match build(key) {
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
        sync_requests_by: HashMap::new(),
        manifests: HashMap::new(),
        pending_manifest: HashMap::new(),
        chunks_served: 0,
        mallory: libp2p::identity::ed25519::Keypair::generate(),
        raw_pending: HashMap::new(),
        stalled_sync: Vec::new(),
        stalled_files: Vec::new(),
        stall_files: false,
        provide_queue: Default::default(),
        providing: 0,
        lookups: HashMap::new(),
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
        Cmd::SyncRequestsFrom(peer, r) => {
            let _ = r.send(st.sync_requests_by.get(&peer).copied().unwrap_or(0));
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
        Cmd::Provide(keys, r) => {
            st.provide_queue.extend(keys);
            pump_provide(swarm, st);
            let _ = r.send(Ok(()));
        }
        Cmd::PutRecords(records, r) => {
            let kad = &mut swarm.behaviour_mut().kad;
            let n = records
                .into_iter()
                .filter(|(k, v)| {
                    kad.put_record(
                        kad::Record::new(kad::RecordKey::new(k), v.clone()),
                        kad::Quorum::One,
                    )
                    .is_ok()
                })
                .count();
            let _ = r.send(n);
        }
        Cmd::Connected(p, r) => {
            let _ = r.send(swarm.is_connected(&p));
        }
        Cmd::Providing(r) => {
            let _ = r.send(st.provide_queue.len().saturating_add(st.providing));
        }
        Cmd::Providers(key, r) => {
            let q = swarm
                .behaviour_mut()
                .kad
                .get_providers(kad::RecordKey::new(&key));
            st.lookups.insert(q, (Vec::new(), r));
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
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::StartProviding(_),
            step,
            ..
        })) if step.last => {
            st.providing = st.providing.saturating_sub(1);
            pump_provide(swarm, st);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetProviders(res),
            step,
            ..
        })) => {
            if let (Some((found, _)), Ok(kad::GetProvidersOk::FoundProviders { providers, .. })) =
                (st.lookups.get_mut(&id), res)
            {
                found.extend(providers);
            }
            if step.last
                && let Some((found, reply)) = st.lookups.remove(&id)
            {
                let _ = reply.send(found);
            }
        }
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
            peer,
            message: M::Request {
                request, channel, ..
            },
            ..
        })) => {
            st.sync_requests += 1;
            *st.sync_requests_by.entry(peer).or_default() += 1;
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
    let heads_of = |channel: &[u8]| -> Vec<v1::AuthorHead> {
        let posts = captured(st, channel);
        let mut heads: Vec<v1::AuthorHead> = Vec::new();
        for (b, p) in posts.iter().rev() {
            if !heads.iter().any(|h| h.author == b.author) {
                heads.push(v1::AuthorHead {
                    author: b.author.clone(),
                    max_seq: b.seq,
                    head: header_of(p),
                });
            }
        }
        heads
    };
    let kind = match (st.sync_mode, req.kind) {
        (SyncMode::Refuse | SyncMode::Stall, _) | (_, None) => R::Error("unknown channel".into()),
        (SyncMode::HugeHeads, Some(v1::sync_request::Kind::Heads(h))) => {
            R::Heads(v1::SyncHeadsResponse {
                authors: vec![v1::AuthorHead {
                    author: h.channel,
                    max_seq: u64::MAX,
                    head: Vec::new(),
                }],
                ..Default::default()
            })
        }
        (SyncMode::ClaimExpired | SyncMode::Withhold, Some(v1::sync_request::Kind::Heads(h))) => {
            R::Heads(v1::SyncHeadsResponse {
                authors: heads_of(&h.channel),
                ..Default::default()
            })
        }
        // The other modes lie in their pages: their heads are the genuine (proven) ones of
        // what they captured, so that a follower goes on to ask for ranges.
        (_, Some(v1::sync_request::Kind::Heads(h))) => R::Heads(v1::SyncHeadsResponse {
            authors: heads_of(&h.channel),
            ..Default::default()
        }),
        (SyncMode::ClaimExpired, Some(v1::sync_request::Kind::Range(r))) => {
            let posts = captured(st, &r.channel)
                .into_iter()
                .filter(|(b, _)| b.author == r.author && b.seq >= r.from_seq && b.seq <= r.to_seq)
                .map(|(_, p)| header_of(&p))
                .collect();
            R::Range(v1::SyncRangeResponse { posts, next_seq: 0 })
        }
        (SyncMode::Withhold | SyncMode::HugeHeads, Some(v1::sync_request::Kind::Range(_))) => {
            R::Range(v1::SyncRangeResponse::default())
        }
        (SyncMode::Forged, Some(v1::sync_request::Kind::Range(r))) => {
            let content = v1::PostContent {
                text: "FORGED via sync".into(),
                file: None,
            }
            .encode_to_vec();
            use sha2::Digest;
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
                content_hash: sha2::Sha256::digest(&content).to_vec(),
                ..Default::default()
            }
            .encode_to_vec();
            let mut msg = b"samizdat/v2/post".to_vec();
            msg.extend_from_slice(&body);
            let sp = v1::SignedPost {
                signature: st.mallory.sign(&msg),
                body,
                cert: None,
                content,
            };
            R::Range(v1::SyncRangeResponse {
                posts: vec![sp.encode_to_vec()],
                next_seq: 0,
            })
        }
        (SyncMode::OutOfRange, Some(v1::sync_request::Kind::Range(r))) => {
            let posts: Vec<Vec<u8>> = captured(st, &r.channel)
                .into_iter()
                .map(|(_, p)| p.encode_to_vec())
                .take(1)
                .collect();
            R::Range(v1::SyncRangeResponse {
                posts,
                next_seq: r.to_seq.saturating_add(10),
            })
        }
        (SyncMode::Oversized, Some(v1::sync_request::Kind::Range(_))) => {
            R::Range(v1::SyncRangeResponse {
                posts: vec![vec![0u8; 1024 * 1024]; 6],
                next_seq: 0,
            })
        }
        (SyncMode::Garbage, Some(v1::sync_request::Kind::Range(_))) => {
            R::Range(v1::SyncRangeResponse {
                posts: vec![b"\xff\xfe not a post".to_vec(); 3],
                next_seq: 0,
            })
        }
    };
    v1::SyncResponse { kind: Some(kind) }
}
