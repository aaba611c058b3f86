//! The JSON shapes the node shows to its clients (API, CLI, UI). Part of the CLI contract:
//! fields are only ever added, never renamed.

use serde::{Deserialize, Serialize};

use crate::channel::Post;

/// A post as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PostView {
    /// Post id (base32 SHA-256 of the signed body).
    pub id: String,
    /// Channel id.
    pub channel: String,
    /// The channel id when the owner posted, else the admin's PeerId.
    pub author: String,
    /// Per-author sequence number.
    pub seq: u64,
    /// Author's timestamp, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The text.
    pub text: String,
    /// Expiry, milliseconds since the Unix epoch, or null.
    pub expires_at: Option<u64>,
    /// Attached file, or null.
    pub file: Option<FileView>,
}

/// A file attached to a post.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FileView {
    /// Content id (base32).
    pub cid: String,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type as the poster's node saw it (display only; may be empty).
    #[serde(default)]
    pub mime: String,
}

impl From<&Post> for PostView {
    fn from(p: &Post) -> Self {
        Self {
            id: p.id.to_string(),
            channel: p.channel.to_string(),
            author: p.author_string(),
            seq: p.seq,
            timestamp: p.timestamp_ms,
            text: p.text.clone(),
            expires_at: p.expires_at_ms,
            file: p.file.as_ref().map(|f| FileView {
                cid: data_encoding::BASE32_NOPAD
                    .encode(&f.cid)
                    .to_ascii_lowercase(),
                name: f.name.clone(),
                size: f.size,
                mime: f.mime.clone(),
            }),
        }
    }
}

/// A channel as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChannelView {
    /// Channel id.
    pub id: String,
    /// Name from the signed manifest; null until the manifest is known.
    pub name: Option<String>,
    /// Description from the manifest.
    pub description: Option<String>,
    /// "owner", "admin" or "follower".
    pub role: String,
    /// Invite link (`samizdat://channel/...`); null until the manifest is known. It names
    /// this node's bootstrap peers and relays as ways in, never this node's own addresses
    /// unless asked (`include_my_address`).
    pub link: Option<String>,
    /// What the link gives away or lacks, when it matters: it names no way into the network,
    /// or it carries this node's own addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_warning: Option<String>,
    /// Posts held locally.
    pub posts: u64,
    /// Peers currently connected on this channel's topic.
    pub peers: usize,
}

/// An admin of a channel as clients see it (`channel admin list`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AdminView {
    /// The admin's peer id.
    pub peer_id: String,
    /// When its current certificate expires (ms since the epoch); null: never (issued by an
    /// older version) or revoked.
    pub expires_at: Option<u64>,
    /// Whether the owner revoked it.
    pub revoked: bool,
    /// For a revoked admin: its posts up to this seq stay; later ones are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// This node's contact card as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ContactCardView {
    /// `samizdat://contact/...`
    pub link: String,
    /// The node's peer id.
    pub peer_id: String,
}

/// A contact as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ContactView {
    /// Its peer id.
    pub peer_id: String,
    /// The name given to it (may be empty).
    pub name: String,
    /// Its card, as a link; empty for a peer that became a contact by an accepted message
    /// request (until its card is added).
    pub link: String,
    /// When it was added (ms since the epoch).
    pub added_at: u64,
}

impl From<&crate::contact::Contact> for ContactView {
    fn from(c: &crate::contact::Contact) -> Self {
        Self {
            peer_id: c.peer_id.to_string(),
            name: c.name.clone(),
            link: c.card.as_ref().map(ToString::to_string).unwrap_or_default(),
            added_at: c.added_ms,
        }
    }
}

/// A peer as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PeerView {
    /// Its PeerId.
    pub peer_id: String,
    /// Addresses of the open connections.
    pub addrs: Vec<String>,
    /// What it calls itself (identify agent version), if known.
    pub agent: Option<String>,
    /// Every connection to it goes through a relay.
    #[serde(default)]
    pub relayed: bool,
    /// The transport of each open connection, in the order of `addrs` (`tcp`, `quic`, `ws`,
    /// `tls-ws`, `relay`).
    #[serde(default)]
    pub transports: Vec<String>,
}

/// One open connection and the transport it runs on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConnectionView {
    /// The peer.
    pub peer_id: String,
    /// `tcp`, `quic`, `ws`, `tls-ws` (WebSocket inside TLS) or `relay`.
    pub transport: String,
    /// The connection's remote address.
    pub addr: String,
}

/// One device of this node's account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeviceView {
    /// Its peer id.
    pub peer_id: String,
    /// Its name.
    pub name: String,
    /// When it was linked (ms since the epoch).
    pub linked_at: u64,
    /// Whether it is this node.
    pub this: bool,
    /// Whether this node is connected to it now.
    pub connected: bool,
    /// The code shown when this device linked it (since this node started): compare it with
    /// the one the new device showed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A one-time link for a new device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeviceLinkView {
    /// `samizdat://device/...`: give it to `samizdat init --link` on the new device.
    pub link: String,
    /// When the link stops working (ms since the epoch).
    pub expires_at: u64,
    /// The link as a QR code (SVG), from the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
}

/// What revoking a device did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RevokeView {
    /// The revoked device.
    pub revoked: String,
    /// The version of the account's device list that revokes it.
    pub version: u64,
    /// Each private group the device was a member of.
    pub groups: Vec<RevokeGroupView>,
}

/// The revocation in one private group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RevokeGroupView {
    /// The group.
    pub group: String,
    /// The device removed.
    pub device: String,
    /// Whether the removal commit is made and this node holds it (at once when this node owns
    /// the group; when the owner's commit arrives otherwise).
    pub removed: bool,
    /// What happened, or who removes it.
    pub note: String,
    /// Members (other than this node) known to hold the removal: their catch-up requests or
    /// messages name its epoch or a later one. The owner hears from every member.
    #[serde(default)]
    pub reached: Vec<String>,
    /// Members not known to hold it yet (offline, or not heard from).
    #[serde(default)]
    pub pending: Vec<String>,
}

impl RevokeGroupView {
    /// The view of one removal's reach.
    pub fn of(
        group: &crate::group::GroupId,
        r: &crate::group::reach::RemovalReach,
        owner: bool,
    ) -> Self {
        let note = match (r.removed, owner) {
            (true, true) => "removal commit sent to the group",
            (true, false) => "the owner's removal commit reached this node",
            (false, true) => "removal commit not made",
            (false, false) => "the group's owner removes it when it learns of the revocation",
        };
        Self {
            group: group.to_string(),
            device: r.device.to_string(),
            removed: r.removed,
            note: note.to_string(),
            reached: r.reached.iter().map(ToString::to_string).collect(),
            pending: r.pending.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The node's own identity and addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NodeInfo {
    /// This node's PeerId.
    pub peer_id: String,
    /// The account this node is a device of (in peer-id form); null while it is being linked.
    #[serde(default)]
    pub account: Option<String>,
    /// Addresses it listens on (without /p2p/).
    pub listen_addrs: Vec<String>,
    /// Full dialable addresses (with /p2p/<peer id>), to give to others.
    pub addrs: Vec<String>,
    /// Connected peers.
    pub connected_peers: usize,
    /// Open connections (a peer may hold two); the connection manager keeps them under its
    /// high watermark.
    #[serde(default)]
    pub connections: usize,
    /// Most connections open at once since start.
    #[serde(default)]
    pub connections_peak: usize,
    /// Each open connection with its transport.
    #[serde(default)]
    pub connection_transports: Vec<ConnectionView>,
    /// Peers closed by the connection manager since start.
    #[serde(default)]
    pub connections_trimmed: u64,
    /// Software version.
    pub version: String,
    /// Whether others can dial this node: "public", "private" (behind NAT) or "unknown".
    pub reachability: String,
    /// Addresses confirmed reachable (direct, or through a relay).
    pub external_addrs: Vec<String>,
    /// Relays this node holds a reservation on.
    pub relays: Vec<String>,
    /// Peers disconnected and refused since start: their gossip score fell below the graylist,
    /// or they sent 10 malformed or oversized requests within a minute.
    #[serde(default)]
    pub graylisted_peers: u64,
    /// Incoming connections refused since start because a limit was reached.
    #[serde(default)]
    pub refused_connections: u64,
    /// The bootstrap peers this node knows, and whether it is connected to each.
    #[serde(default)]
    pub bootstrap: Vec<BootstrapView>,
    /// What peers sent that was dropped at a bound since start (each bound is per peer and in
    /// total; a rising count means someone is flooding).
    #[serde(default)]
    pub dropped: DroppedView,
}

/// Counts of what was dropped at the bounds on what peers may make a node keep.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DroppedView {
    /// DHT value records and provider records refused or evicted (per source, in total).
    pub dht: u64,
    /// Direct and group messages that could not wait for their Welcome or commit.
    pub held_messages: u64,
    /// Mail held for others that made room for other senders' mail, or expired.
    pub mail: u64,
}

/// A bootstrap address and whether this node is connected to its peer now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BootstrapView {
    /// Its multiaddr.
    pub addr: String,
    /// Connected to the peer of that address (false when the address names no peer id).
    pub connected: bool,
}

/// How far a channel's history sync has come.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SyncStatus {
    /// Channel id.
    pub channel: String,
    /// This node has everything its peers know of (and a sync has succeeded at least once).
    pub complete: bool,
    /// Posts held.
    pub have: u64,
    /// Posts known to exist (held or not), excluding expired ones.
    pub known: u64,
    /// A sync session is running now.
    pub syncing: bool,
}

/// Something that happened, pushed to clients over Server-Sent Events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A post was durably stored (made here or received).
    Post {
        /// The post.
        post: PostView,
    },
    /// A connection to a peer was established.
    PeerConnected {
        /// The peer.
        peer_id: String,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer_id: String,
    },
    /// A channel's manifest or role changed.
    ChannelUpdated {
        /// The channel.
        channel: ChannelView,
    },
    /// History sync progressed.
    SyncProgress {
        /// Where it stands.
        status: SyncStatus,
    },
    /// A post expired and was deleted.
    PostExpired {
        /// Its channel.
        channel: String,
        /// Its id.
        id: String,
    },
    /// A file download progressed.
    FileProgress {
        /// Where it stands.
        status: crate::files::DownloadStatus,
    },
    /// A direct message was stored (sent or received), or reached its recipient.
    DirectMessage {
        /// The message.
        message: crate::dm::DmView,
    },
    /// An account's device list changed (this node's own, or a contact's).
    DevicesChanged {
        /// The account.
        account: String,
    },
    /// A group message was stored (sent or received).
    GroupMessage {
        /// The message.
        message: crate::group::GroupMessageView,
    },
    /// This node created or joined a group, or its membership changed.
    GroupChanged {
        /// The group now.
        group: crate::group::GroupView,
    },
    /// The number of pending message requests changed (nothing of them is told here).
    RequestsChanged {
        /// Requests waiting for the user.
        pending: usize,
    },
}

/// A message request as clients see it (`samizdat requests list`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RequestView {
    /// Who asked (peer id).
    pub peer_id: String,
    /// "dm" (a direct message) or "group" (an invitation to a group).
    pub kind: String,
    /// When it arrived (ms since the epoch): the newest message's time, or when the
    /// invitation came.
    pub received_at: u64,
    /// The start of the newest message, or the group's name.
    pub preview: String,
    /// For a group invitation, the group's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}
