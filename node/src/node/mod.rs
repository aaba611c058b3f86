//! The running node: startup, the handle clients use, and the event loop that owns the swarm.

mod channels;
mod command;
mod connections;
mod direct;
mod durable;
mod event_loop;
mod groups;
mod now;
mod peer_book;
mod police;
mod reach;
mod reputation;
pub mod views;
mod writer;

pub use command::{FollowTarget, RequestAction};

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelId, PostDraft, PostError};
use crate::config::{Config, ConfigError, default_listen};
use crate::crypto::{Keyring, KeyringError};
use crate::files::{BlobStore, Cid, DownloadStatus, ImportError, Importer, Manifest};
use crate::home::{Home, HomeError, write_public};
use crate::identity::{Identity, IdentityError};
use crate::net::NetError;
use crate::store::FileRecord;
use crate::store::{Cursor, SledStore, Store, StoreError};
use command::Command;
use event_loop::EventLoop;
use views::{ChannelView, Event, NodeInfo, PeerView, PostView, SyncStatus};

/// Errors of the node, as its clients see them.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `samizdat init` has not run in this home.
    #[error("no node in {0}: run `samizdat init` first")]
    NotInitialized(String),
    /// The channel is neither owned nor followed here.
    #[error("unknown channel {0} (follow it first)")]
    UnknownChannel(String),
    /// The group is not one this node belongs to.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// No file with this content id is held or being fetched here.
    #[error("file {0} is not held here (add or fetch it first)")]
    UnknownFile(String),
    /// The operation needs a right this node does not have.
    #[error("{0}")]
    NotAllowed(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// A post was refused.
    #[error("post refused: {0}")]
    Post(#[from] PostError),
    /// The node is overloaded; try again.
    #[error("the node is busy; try again")]
    Busy,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// Home directory problem.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// Configuration problem.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// Key problem (wrong passphrase, missing key file).
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Identity file problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Store problem reported by the writer task (shared among the posts of one batch).
    #[error(transparent)]
    SharedStore(Arc<StoreError>),
    /// Chunk storage problem (disk, or a chunk that fails authentication).
    #[error(transparent)]
    Blob(#[from] crate::files::BlobError),
    /// A record this node wrote does not encode or decode, or a stored file is incomplete:
    /// a fault of the node, not of the request.
    #[error("internal: {0}")]
    Internal(String),
    /// Network setup problem.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Other I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<Arc<StoreError>> for NodeError {
    fn from(e: Arc<StoreError>) -> Self {
        NodeError::SharedStore(e)
    }
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Passphrase for a passphrase-protected home.
    pub passphrase: Option<String>,
    /// Listen addresses replacing the configured ones.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap addresses added to the configured ones.
    pub bootstrap: Vec<Multiaddr>,
    /// Create the home if it has not been initialised.
    pub init_if_missing: bool,
    /// Overrides `mdns` from config.toml (benchmarks run many nodes on one host, where mDNS
    /// would connect every node to every other).
    pub mdns: Option<bool>,
}

/// What `init` produced.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The new node's PeerId.
    pub peer_id: PeerId,
    /// Whether the home already existed (then nothing was changed).
    pub already: bool,
}

/// Creates the identity, keyring, store and config in `home`. Does nothing if it exists.
pub fn init(home: &Home, passphrase: Option<&str>) -> Result<InitReport, NodeError> {
    if home.is_initialized() {
        let key = Keyring::unlock(home, passphrase)?;
        let id = Identity::load(home, &key)?;
        return Ok(InitReport {
            peer_id: id.peer_id(),
            already: true,
        });
    }
    home.create()?;
    let key = Arc::new(Keyring::create(home, passphrase)?);
    let identity = Identity::generate();
    identity.save(home, &key)?;
    drop(SledStore::open(&home.store_dir(), key)?);
    if !home.config_file().exists() {
        let config = Config {
            listen: default_listen(pick_port()),
            ..Config::default()
        };
        write_public(&home.config_file(), config.to_commented_toml().as_bytes())?;
    }
    Ok(InitReport {
        peer_id: identity.peer_id(),
        already: false,
    })
}

/// Creates a new node in `home` that joins an account by a device link (`samizdat://device/`)
/// when it next runs; `name` names this device (default: the machine's name). Returns the
/// report and the code to compare with the one the linking device shows.
pub fn init_linked(
    home: &Home,
    passphrase: Option<&str>,
    link: &str,
    name: Option<&str>,
) -> Result<(InitReport, String), NodeError> {
    let ticket: crate::account::link::Ticket = link
        .parse()
        .map_err(|e: crate::account::link::LinkError| NodeError::InvalidInput(e.to_string()))?;
    if home.is_initialized() {
        return Err(NodeError::InvalidInput(format!(
            "{} is already a node; a device joins an account from a new home",
            home.path().display()
        )));
    }
    if ticket.expires_ms <= crate::channel::now_ms() {
        return Err(NodeError::InvalidInput(
            crate::account::link::LinkError::Expired.to_string(),
        ));
    }
    let report = init(home, passphrase)?;
    let key = Arc::new(Keyring::unlock(home, passphrase)?);
    let store = SledStore::open(&home.store_dir(), key)?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(event_loop::devices::default_device_name);
    event_loop::devices::set_joining(&store, link, &name)?;
    store.flush()?;
    let code = ticket.code_for(&report.peer_id);
    Ok((report, code))
}

/// A random port free for both TCP and UDP now, so the node keeps one address across restarts.
fn pick_port() -> u16 {
    for _ in 0..32 {
        let [a, b] = crate::crypto::random_bytes::<2>();
        let port = 20_000 + (u16::from_be_bytes([a, b]) % 40_000);
        let tcp = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if tcp && udp {
            return port;
        }
    }
    0
}

/// A cheap, cloneable handle to a running node: what the API and the demo use.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    max_file_bytes: u64,
}

/// A file held by this node, as clients see it after adding it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FileAdded {
    /// Content id.
    pub cid: String,
    /// Size in bytes.
    pub size: u64,
    /// Name.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// For a private attachment: the key that decrypts it (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// Runs `make`'s command on the event loop; its answer comes through the sender.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Runs `f` on the event loop and answers with its result, once what it wrote is on disk.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut EventLoop) -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        self.call(|reply| {
            Box::new(move |el: &mut EventLoop| {
                let result = f(el);
                el.answer(reply, result);
            })
        })
        .await
    }

    /// This node's identity and addresses.
    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        self.run(|el| Ok(el.info())).await
    }

    /// This node's contact card (to share as a link or QR code).
    pub async fn contact_card(&self) -> Result<crate::contact::ContactCard, NodeError> {
        self.run(|el| Ok(el.contact_card())).await
    }

    /// Adds a contact from its `samizdat://contact/...` link, after verifying its signatures.
    pub async fn add_contact(
        &self,
        link: &str,
        name: Option<String>,
    ) -> Result<crate::contact::Contact, NodeError> {
        let card: crate::contact::ContactCard = link
            .parse()
            .map_err(|e: crate::contact::ContactError| NodeError::InvalidInput(e.to_string()))?;
        if card.peer_id == self.contact_card().await?.peer_id {
            return Err(NodeError::InvalidInput(
                crate::contact::ContactError::OwnCard.to_string(),
            ));
        }
        // Re-adding keeps the first-added time; a new name (or card) replaces the old one.
        let existing = self
            .store
            .contacts()?
            .into_iter()
            .find(|c| c.peer_id == card.peer_id);
        let contact = crate::contact::Contact {
            peer_id: card.peer_id,
            name: name
                .filter(|n| !n.trim().is_empty())
                .or_else(|| existing.as_ref().map(|c| c.name.clone()))
                .unwrap_or_default(),
            added_ms: existing
                .map(|c| c.added_ms)
                .unwrap_or_else(crate::channel::now_ms),
            card: Some(card.clone()),
        };
        let store = self.store.clone();
        let record = contact.clone();
        tokio::task::spawn_blocking(move || {
            store.put_contact(&record)?;
            store.flush()
        })
        .await
        .map_err(|_| NodeError::Stopped)??;
        let _ = self
            .commands
            .send(Box::new(move |el: &mut EventLoop| el.learn_card(&card)))
            .await;
        Ok(contact)
    }

    /// A one-time link for a new device of this account.
    pub async fn device_link(&self) -> Result<views::DeviceLinkView, NodeError> {
        self.run(|el| el.device_link()).await
    }

    /// This account's devices.
    pub async fn devices(&self) -> Result<Vec<views::DeviceView>, NodeError> {
        self.run(|el| Ok(el.device_list())).await
    }

    /// Revokes a device of this account (it may be offline).
    pub async fn revoke_device(&self, peer: PeerId) -> Result<views::RevokeView, NodeError> {
        self.run(move |el| el.device_revoke(peer)).await
    }

    /// The removals of revoked devices from private groups, and which members hold them.
    pub async fn device_removals(&self) -> Result<Vec<views::RevokeGroupView>, NodeError> {
        self.run(|el| Ok(el.device_removals())).await
    }

    /// Every contact, oldest first.
    pub async fn contacts(&self) -> Result<Vec<crate::contact::Contact>, NodeError> {
        Ok(self.store.contacts()?)
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerView>, NodeError> {
        self.run(|el| Ok(el.peers())).await
    }

    /// Channels owned or followed.
    pub async fn channels(&self) -> Result<Vec<ChannelView>, NodeError> {
        self.run(|el| el.channel_list()).await
    }

    /// One channel.
    pub async fn channel(&self, id: ChannelId) -> Result<ChannelView, NodeError> {
        self.channel_with_link(id, false).await
    }

    /// One channel, its link carrying this node's own addresses if `include_my_address`.
    pub async fn channel_with_link(
        &self,
        id: ChannelId,
        include_my_address: bool,
    ) -> Result<ChannelView, NodeError> {
        self.run(move |el| el.channel_view(&id, include_my_address))
            .await
    }

    /// Creates a channel owned by this node (its link names bootstrap peers and relays).
    pub async fn create_channel(
        &self,
        name: String,
        description: String,
    ) -> Result<ChannelView, NodeError> {
        self.create_channel_with_link(name, description, false)
            .await
    }

    /// Creates a channel owned by this node, its link carrying this node's own addresses if
    /// `include_my_address` (whoever gets the link then learns where this node is).
    pub async fn create_channel_with_link(
        &self,
        name: String,
        description: String,
        include_my_address: bool,
    ) -> Result<ChannelView, NodeError> {
        self.run(move |el| {
            el.create_channel(&name, &description)
                .and_then(|id| el.channel_view(&id, include_my_address))
        })
        .await
    }

    /// Follows a channel by link or id.
    pub async fn follow(&self, target: FollowTarget) -> Result<ChannelView, NodeError> {
        self.run(move |el| el.follow(target)).await
    }

    /// Stops following a channel (its history stays in the store).
    pub async fn unfollow(&self, channel: ChannelId) -> Result<(), NodeError> {
        self.run(move |el| el.unfollow(&channel)).await
    }

    /// Posts to a channel this node owns or administers; returns once the post is durable.
    pub async fn post(&self, channel: ChannelId, draft: PostDraft) -> Result<PostView, NodeError> {
        self.call(|reply| Box::new(move |el: &mut EventLoop| el.post(channel, draft, reply)))
            .await
    }

    /// Lets another node post to a channel this node owns.
    pub async fn add_admin(&self, channel: ChannelId, peer: PeerId) -> Result<(), NodeError> {
        self.run(move |el| el.add_admin(&channel, peer)).await
    }

    /// Message requests waiting for the user.
    pub async fn requests(&self) -> Result<Vec<views::RequestView>, NodeError> {
        self.run(|el| Ok(el.requests())).await
    }

    /// Accepts, declines or blocks a peer's message requests; returns how many there were.
    pub async fn answer_requests(
        &self,
        peer: PeerId,
        action: RequestAction,
    ) -> Result<usize, NodeError> {
        self.run(move |el| el.answer_requests(peer, action)).await
    }

    /// Revokes an admin of a channel this node owns.
    pub async fn remove_admin(
        &self,
        channel: ChannelId,
        peer: PeerId,
    ) -> Result<views::AdminView, NodeError> {
        self.run(move |el| el.remove_admin(&channel, peer)).await
    }

    /// A channel's admins, current and revoked.
    pub async fn admins(&self, channel: ChannelId) -> Result<Vec<views::AdminView>, NodeError> {
        self.run(move |el| el.admin_list(&channel)).await
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.run(move |el| el.dial_addr(addr)).await
    }

    /// The `limit` posts just before `before` (or the newest), oldest first, and the cursor to
    /// pass as `before` for the page older than that (None when there is none).
    pub async fn history_before(
        &self,
        channel: ChannelId,
        before: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<PostView>, Option<Cursor>), NodeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if store.channel(&channel)?.is_none() {
                return Err(NodeError::UnknownChannel(channel.to_string()));
            }
            let page = store.history_before(&channel, before.as_ref(), limit)?;
            let prev = (page.len() == limit)
                .then(|| page.first().map(|(c, _)| c.clone()))
                .flatten();
            Ok((page.iter().map(|(_, p)| PostView::from(p)).collect(), prev))
        })
        .await
        .map_err(|_| NodeError::Stopped)?
    }

    /// A page of a channel's history, oldest first, after `after`.
    pub async fn history(
        &self,
        channel: ChannelId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<PostView>, Option<Cursor>), NodeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if store.channel(&channel)?.is_none() {
                return Err(NodeError::UnknownChannel(channel.to_string()));
            }
            let page = store.history(&channel, after.as_ref(), limit)?;
            let next = (page.len() == limit)
                .then(|| page.last().map(|(c, _)| c.clone()))
                .flatten();
            Ok((page.iter().map(|(_, p)| PostView::from(p)).collect(), next))
        })
        .await
        .map_err(|_| NodeError::Stopped)?
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends a direct message (end-to-end encrypted); returns once it is stored here.
    pub async fn dm_send(
        &self,
        peer: PeerId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<crate::dm::AttachmentView>,
    ) -> Result<crate::dm::DmView, NodeError> {
        let attachment = attachment
            .map(|a| a.to_wire())
            .transpose()
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        self.run(move |el| el.dm_send(peer, text, expires_in, attachment))
            .await
    }

    /// Every direct-message conversation, the most recently active first.
    pub async fn dm_conversations(&self) -> Result<Vec<crate::dm::DmConversationView>, NodeError> {
        self.run(|el| el.dm_conversations()).await
    }

    /// A conversation with a peer, oldest first.
    pub async fn dm_history(&self, peer: PeerId) -> Result<Vec<crate::dm::DmView>, NodeError> {
        self.run(move |el| el.dm_history(&peer)).await
    }

    /// Creates a private group owned by this node.
    pub async fn group_create(&self, name: String) -> Result<crate::group::GroupView, NodeError> {
        self.run(move |el| el.group_create(name)).await
    }

    /// Invites a peer (owner only); returns once it is added, or fails after about 45 s
    /// without its KeyPackage (the invitation then stays pending).
    pub async fn group_invite(
        &self,
        group: crate::group::GroupId,
        peer: PeerId,
    ) -> Result<crate::group::GroupView, NodeError> {
        self.call(|reply| {
            Box::new(move |el: &mut EventLoop| el.group_invite_person(group, peer, reply))
        })
        .await
    }

    /// Removes a member (owner only): a new epoch it cannot read.
    pub async fn group_remove(
        &self,
        group: crate::group::GroupId,
        peer: PeerId,
    ) -> Result<crate::group::GroupView, NodeError> {
        self.run(move |el| el.group_remove(group, peer)).await
    }

    /// Posts to a group (end-to-end encrypted to its current members).
    pub async fn group_post(
        &self,
        group: crate::group::GroupId,
        text: String,
        expires_in: Option<Duration>,
        attachment: Option<crate::dm::AttachmentView>,
    ) -> Result<crate::group::GroupMessageView, NodeError> {
        let attachment = attachment
            .map(|a| a.to_wire())
            .transpose()
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        self.run(move |el| el.group_post(group, text, expires_in, attachment))
            .await
    }

    /// A group's messages held here, oldest first.
    pub async fn group_history(
        &self,
        group: crate::group::GroupId,
    ) -> Result<Vec<crate::group::GroupMessageView>, NodeError> {
        self.run(move |el| el.group_history(&group)).await
    }

    /// The groups this node created or joined.
    pub async fn groups(&self) -> Result<Vec<crate::group::GroupView>, NodeError> {
        self.run(|el| Ok(el.group_list())).await
    }

    /// How far a channel's history sync has come.
    pub async fn sync_status(&self, channel: ChannelId) -> Result<SyncStatus, NodeError> {
        self.run(move |el| {
            el.sync_status(&channel)
                .ok_or_else(|| NodeError::UnknownChannel(channel.to_string()))
        })
        .await
    }

    /// Posts with an attached file this node holds (added or fetched before).
    pub async fn post_with_file(
        &self,
        channel: ChannelId,
        mut draft: PostDraft,
        file: Option<Cid>,
    ) -> Result<PostView, NodeError> {
        if let Some(cid) = file {
            let (rec, m) = self.file_manifest(cid).await?;
            draft.file = Some(crate::channel::FileRef {
                cid: cid.0,
                name: rec.name,
                size: m.size,
                mime: rec.mime,
            });
        }
        self.post(channel, draft).await
    }

    /// Adds a file from a stream of bytes: chunks, seals and stores it, then announces it.
    pub async fn add_file<S, B, E>(&self, name: String, body: S) -> Result<FileAdded, NodeError>
    where
        S: futures::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]> + Send + 'static,
        E: std::fmt::Display,
    {
        self.import_file(name, body, None).await
    }

    /// Adds a private attachment: encrypted under a new random key before it is chunked, so
    /// what providers store and serve is ciphertext; the key is returned (it travels only in
    /// the end-to-end encrypted message that carries the attachment).
    pub async fn add_private_file<S, B, E>(
        &self,
        name: String,
        body: S,
    ) -> Result<FileAdded, NodeError>
    where
        S: futures::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]> + Send + 'static,
        E: std::fmt::Display,
    {
        let key = zeroize::Zeroizing::new(crate::crypto::random_bytes::<32>().to_vec());
        self.import_file(name, body, Some(key)).await
    }

    async fn import_file<S, B, E>(
        &self,
        name: String,
        mut body: S,
        key: Option<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Result<FileAdded, NodeError>
    where
        S: futures::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]> + Send + 'static,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        let name = sanitize_name(&name);
        let (tx, mut rx) = mpsc::channel::<B>(8);
        let mut importer = Importer::new(self.blobs.clone(), self.max_file_bytes);
        let mut sealer = match &key {
            Some(k) => Some(
                crate::files::sealed::Sealer::new(k)
                    .map_err(|e| NodeError::InvalidInput(e.to_string()))?,
            ),
            None => None,
        };
        // Chunking, hashing, sealing and writing are blocking work: one thread per import,
        // fed through a small queue so memory stays bounded whatever the file size.
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(piece) = rx.blocking_recv() {
                match sealer.as_mut() {
                    Some(s) => {
                        for segment in s.feed(piece.as_ref()) {
                            importer.feed(&segment)?;
                        }
                    }
                    None => importer.feed(piece.as_ref())?,
                }
            }
            if let Some(s) = sealer {
                importer.feed(&s.finish())?;
            }
            importer.finish()
        });
        let mut failed = None;
        while let Some(piece) = body.next().await {
            match piece {
                Ok(b) => {
                    if tx.send(b).await.is_err() {
                        break; // the importer stopped: its error is reported below
                    }
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        drop(tx);
        let manifest = worker.await.map_err(|_| NodeError::Stopped)?;
        if let Some(e) = failed {
            return Err(NodeError::InvalidInput(format!("upload interrupted: {e}")));
        }
        let manifest = manifest.map_err(|e| match e {
            ImportError::Blob(e) => NodeError::Blob(e),
            e @ ImportError::TooLarge(_) => NodeError::InvalidInput(e.to_string()),
        })?;
        let mime = crate::files::mime_from_name(&name).to_string();
        let rec = FileRecord {
            cid: manifest.cid.0,
            manifest: manifest.encoded.clone(),
            name: name.clone(),
            mime: mime.clone(),
            complete: true,
            added_at_ms: crate::channel::now_ms(),
            prefetched: false,
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.put_file(&rec)?;
            store.flush()
        })
        .await
        .map_err(|_| NodeError::Stopped)??;
        let cid = manifest.cid;
        let _ = self
            .commands
            .send(Box::new(move |el: &mut EventLoop| el.announce_file(&cid)))
            .await;
        Ok(FileAdded {
            cid: manifest.cid.to_string(),
            size: if key.is_some() {
                crate::files::sealed::plain_size(manifest.size)
            } else {
                manifest.size
            },
            name,
            mime,
            key: key.map(|k| data_encoding::HEXLOWER.encode(&k)),
        })
    }

    /// Starts fetching a file from its providers (or reports it held).
    pub async fn fetch_file(&self, cid: Cid, name: String) -> Result<DownloadStatus, NodeError> {
        self.fetch_file_at_most(cid, name, None).await
    }

    /// Like [`NodeHandle::fetch_file`], but drops the fetch if the file turns out larger than
    /// `max_bytes` (for downloads nobody explicitly asked for, such as previews).
    pub async fn fetch_file_at_most(
        &self,
        cid: Cid,
        name: String,
        max_bytes: Option<u64>,
    ) -> Result<DownloadStatus, NodeError> {
        self.run(move |el| el.fetch_file(cid, name, max_bytes))
            .await
    }

    /// A file's download status.
    pub async fn file_status(&self, cid: Cid) -> Result<DownloadStatus, NodeError> {
        self.run(move |el| el.file_status(&cid)).await
    }

    /// A complete file's record and manifest (for reading it out).
    pub async fn file_manifest(&self, cid: Cid) -> Result<(FileRecord, Manifest), NodeError> {
        let store = self.store.clone();
        let rec = tokio::task::spawn_blocking(move || store.file(&cid.0))
            .await
            .map_err(|_| NodeError::Stopped)??
            .filter(|r| r.complete)
            .ok_or_else(|| NodeError::UnknownFile(cid.to_string()))?;
        // The record was verified when stored: a manifest that no longer verifies is corrupt.
        let m = Manifest::verify(&cid, &rec.manifest, u64::MAX)
            .map_err(|e| NodeError::Internal(format!("stored file {cid}: {e}")))?;
        Ok((rec, m))
    }

    /// Reads one verified chunk.
    pub async fn read_chunk(&self, hash: [u8; 32]) -> Result<Vec<u8>, NodeError> {
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.get(&hash))
            .await
            .map_err(|_| NodeError::Stopped)??
            .ok_or_else(|| NodeError::Internal("chunk missing".into()))
    }

    /// Blocks a peer (closes its connections, refuses new ones) or unblocks it.
    pub async fn block(&self, peer: PeerId, block: bool) -> Result<(), NodeError> {
        self.run(move |el| el.block_peer(peer, block)).await
    }
}

/// A display name safe to show and to use as a download file name.
fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() || clean == "." || clean == ".." {
        "file".to_string()
    } else {
        clean
    }
}

/// A running node.
pub struct Node {
    handle: NodeHandle,
    info: NodeInfo,
    config: Config,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.info.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the home, unlocks keys and store, starts listening, and runs the event loop until
    /// `shutdown` fires.
    pub async fn start(
        home: &Home,
        opts: NodeOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, NodeError> {
        if !home.is_initialized() {
            if opts.init_if_missing {
                init(home, opts.passphrase.as_deref())?;
            } else {
                return Err(NodeError::NotInitialized(home.path().display().to_string()));
            }
        }
        let mut config = Config::load(&home.config_file())?;
        if !opts.listen.is_empty() {
            config.listen = opts.listen.clone();
        }
        config.bootstrap.extend(opts.bootstrap.iter().cloned());
        // A fronted address's name must survive DNS resolution (TLS sends it as SNI).
        for a in config
            .bootstrap
            .iter_mut()
            .chain(config.external_addresses.iter_mut())
        {
            *a = samizdat_net::web::keep_name(a);
        }
        if let Some(m) = opts.mdns {
            config.mdns = m;
        }
        let key = Arc::new(Keyring::unlock(home, opts.passphrase.as_deref())?);
        let identity = Arc::new(Identity::load(home, &key)?);
        let store: Arc<dyn Store> = {
            let dir = home.store_dir();
            let key = key.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || SledStore::open(&dir, key))
                    .await
                    .map_err(|_| NodeError::Stopped)??,
            )
        };
        let blobs = crate::files::BlobStore::open(&home.blobs_dir(), key.clone())?;
        let (events, _) = broadcast::channel(1024);
        let (commands, cmd_rx) = mpsc::channel(256);
        let (event_loop, info) = event_loop::EventLoop::new(
            &config,
            identity,
            store.clone(),
            blobs.clone(),
            events.clone(),
            cmd_rx,
            shutdown,
        )
        .await?;
        // The swarm task never waits for the disk: a flush on it fails a debug check.
        let task = tokio::spawn(crate::store::SWARM_TASK.scope((), event_loop.run()));
        Ok(Self {
            handle: NodeHandle {
                commands,
                events,
                store,
                blobs,
                max_file_bytes: config.max_file_bytes,
            },
            info,
            config,
            task,
        })
    }

    /// The handle for clients.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Identity and listen addresses at startup.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The effective configuration (file plus options).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Waits for the event loop to finish (after shutdown), with the store flushed.
    pub async fn stopped(self) {
        drop(self.handle);
        if tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .is_err()
        {
            tracing::warn!("node did not stop within 30 s");
        }
    }
}
