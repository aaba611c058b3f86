//! What the event loop knows about each channel: topic, role, signing rights, and this node's
//! own position in the channel's hash chain.

use std::time::Instant;

use libp2p::gossipsub::IdentTopic;
use libp2p::identity::ed25519;

use crate::channel::{self, AdminCert, ChannelId, Manifest, PostId};
use crate::store::{ChannelRecord, Role};

/// How this node may sign posts in a channel.
pub(crate) enum Signer {
    /// With the channel key.
    Owner(ed25519::Keypair),
    /// With the node's identity key and this certificate.
    Admin(AdminCert),
}

/// Where this node's next post in a channel goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Head {
    pub next_seq: u64,
    pub prev: Option<PostId>,
    pub last_ts: u64,
}

/// Per-channel state of the event loop.
pub(crate) struct ChannelState {
    pub id: ChannelId,
    pub topic: IdentTopic,
    pub record: ChannelRecord,
    pub manifest: Option<Manifest>,
    pub signer: Option<Signer>,
    /// Set once read from the store (lazily, on the first post).
    pub head: Option<Head>,
    pub last_provide: Option<Instant>,
    pub last_lookup: Option<Instant>,
    /// How long to wait between follower lookups while the channel has few topic peers:
    /// doubles when a lookup finds nobody new (a small channel), resets when it does.
    pub lookup_every: std::time::Duration,
}

impl ChannelState {
    /// Rebuilds the state from a stored record.
    pub fn from_record(record: ChannelRecord) -> Self {
        let manifest = record
            .manifest
            .as_deref()
            .and_then(|m| Manifest::from_bytes(m).ok());
        let signer = match record.role {
            Role::Owner => record.secret_key.as_ref().and_then(|k| {
                let mut bytes = zeroize::Zeroizing::new(k.to_vec());
                ed25519::Keypair::try_from_bytes(bytes.as_mut_slice())
                    .ok()
                    .map(Signer::Owner)
            }),
            Role::Admin => record.admin_cert.as_ref().and_then(|c| {
                use prost::Message;
                samizdat_proto::v1::AdminCert::decode(c.as_slice())
                    .ok()
                    .and_then(|c| AdminCert::verify(c, &record.id).ok())
                    .map(Signer::Admin)
            }),
            Role::Follower => None,
        };
        Self {
            id: record.id,
            topic: channel::topic(&record.id),
            record,
            manifest,
            signer,
            head: None,
            last_provide: None,
            last_lookup: None,
            lookup_every: std::time::Duration::from_secs(10),
        }
    }

    /// The role string clients see.
    pub fn role_name(&self) -> &'static str {
        match self.record.role {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Follower => "follower",
        }
    }
}
