//! Records the store keeps besides posts. Internal (never on the wire), encoded with prost.

use prost::Message;

use crate::channel::ChannelId;

/// This node's relation to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the channel key.
    Owner,
    /// Holds an admin certificate.
    Admin,
    /// Reads only.
    Follower,
}

/// A channel this node owns or follows.
#[derive(Clone, PartialEq)]
pub struct ChannelRecord {
    /// The channel.
    pub id: ChannelId,
    /// This node's role.
    pub role: Role,
    /// The signed manifest, once known.
    pub manifest: Option<Vec<u8>>,
    /// The channel's secret key (owner only).
    pub secret_key: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// This node's admin certificate (admin only).
    pub admin_cert: Option<Vec<u8>>,
    /// When this node started following (ms).
    pub followed_at_ms: u64,
    /// Admin certificates of the channel this node knows (issued here, or learned from peers and
    /// verified), the newest per admin: served with sync heads, so an admin appointed while
    /// away learns it.
    pub certs: Vec<Vec<u8>>,
    /// Revocations of admins (signed by the channel key), served with sync heads.
    pub revocations: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Message)]
struct ChannelRecordPb {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    role: u32,
    #[prost(bytes = "vec", optional, tag = "3")]
    manifest: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    secret_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    admin_cert: Option<Vec<u8>>,
    #[prost(uint64, tag = "6")]
    followed_at_ms: u64,
    #[prost(bytes = "vec", repeated, tag = "7")]
    certs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    revocations: Vec<Vec<u8>>,
}

impl ChannelRecord {
    pub(crate) fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let pb = ChannelRecordPb {
            id: self.id.as_bytes().to_vec(),
            role: match self.role {
                Role::Owner => 0,
                Role::Admin => 1,
                Role::Follower => 2,
            },
            manifest: self.manifest.clone(),
            secret_key: self.secret_key.as_ref().map(|k| k.to_vec()),
            admin_cert: self.admin_cert.clone(),
            followed_at_ms: self.followed_at_ms,
            certs: self.certs.clone(),
            revocations: self.revocations.clone(),
        };
        let out = zeroize::Zeroizing::new(pb.encode_to_vec());
        if let Some(mut k) = pb.secret_key {
            zeroize::Zeroize::zeroize(&mut k);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut pb = ChannelRecordPb::decode(bytes).ok()?;
        let role = match pb.role {
            0 => Role::Owner,
            1 => Role::Admin,
            2 => Role::Follower,
            _ => return None,
        };
        Some(Self {
            id: ChannelId::from_slice(&pb.id)?,
            role,
            manifest: pb.manifest.take(),
            secret_key: pb.secret_key.take().map(zeroize::Zeroizing::new),
            admin_cert: pb.admin_cert.take(),
            followed_at_ms: pb.followed_at_ms,
            certs: std::mem::take(&mut pb.certs),
            revocations: std::mem::take(&mut pb.revocations),
        })
    }
}

/// A peer worth dialing again after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer.
    pub peer_id: libp2p::PeerId,
    /// Its listen addresses as it reported them.
    pub addrs: Vec<libp2p::Multiaddr>,
    /// Last time a connection to it was established (ms).
    pub last_seen_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
struct PeerRecordPb {
    #[prost(bytes = "vec", tag = "1")]
    peer_id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    addrs: Vec<Vec<u8>>,
    #[prost(uint64, tag = "3")]
    last_seen_ms: u64,
}

impl PeerRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        PeerRecordPb {
            peer_id: self.peer_id.to_bytes(),
            addrs: self.addrs.iter().map(|a| a.to_vec()).collect(),
            last_seen_ms: self.last_seen_ms,
        }
        .encode_to_vec()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let pb = PeerRecordPb::decode(bytes).ok()?;
        Some(Self {
            peer_id: libp2p::PeerId::from_bytes(&pb.peer_id).ok()?,
            addrs: pb
                .addrs
                .into_iter()
                .filter_map(|a| libp2p::Multiaddr::try_from(a).ok())
                .map(|a| samizdat_net::web::keep_name(&a))
                .collect(),
            last_seen_ms: pb.last_seen_ms,
        })
    }
}

/// How a post is kept: the wire bytes plus local metadata.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StoredPostPb {
    #[prost(bytes = "vec", tag = "1")]
    pub wire: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub received_at_ms: u64,
}

/// A file this node holds (whole or in part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Content id: SHA-256 of the encoded manifest.
    pub cid: [u8; 32],
    /// The encoded `FileManifest`.
    pub manifest: Vec<u8>,
    /// Display name.
    pub name: String,
    /// MIME type, if known.
    pub mime: String,
    /// Every chunk is held and verified.
    pub complete: bool,
    /// When added or first requested (ms).
    pub added_at_ms: u64,
    /// Fetched by the node itself (an attachment nobody opened yet): counts against the
    /// prefetch quota.
    pub prefetched: bool,
}

#[derive(Clone, PartialEq, Message)]
struct FileRecordPb {
    #[prost(bytes = "vec", tag = "1")]
    cid: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    manifest: Vec<u8>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    mime: String,
    #[prost(bool, tag = "5")]
    complete: bool,
    #[prost(uint64, tag = "6")]
    added_at_ms: u64,
    #[prost(bool, tag = "7")]
    prefetched: bool,
}

impl FileRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        FileRecordPb {
            cid: self.cid.to_vec(),
            manifest: self.manifest.clone(),
            name: self.name.clone(),
            mime: self.mime.clone(),
            complete: self.complete,
            added_at_ms: self.added_at_ms,
            prefetched: self.prefetched,
        }
        .encode_to_vec()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let pb = FileRecordPb::decode(bytes).ok()?;
        Some(Self {
            cid: pb.cid.as_slice().try_into().ok()?,
            manifest: pb.manifest,
            name: pb.name,
            mime: pb.mime,
            complete: pb.complete,
            added_at_ms: pb.added_at_ms,
            prefetched: pb.prefetched,
        })
    }
}
