//! What the event loop knows about each channel: topic, role, signing rights, and this node's
//! own position in the channel's hash chain.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::gossipsub::IdentTopic;
use libp2p::identity::ed25519;

use crate::channel::{self, AdminCert, Admins, ChannelId, Manifest, PostId};
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
    /// Who may post besides the owner: certificates and revocations.
    pub admins: Admins,
    pub signer: Option<Signer>,
    /// Set once read from the store (lazily, on the first post).
    pub head: Option<Head>,
    pub last_provide: Option<Instant>,
    pub last_lookup: Option<Instant>,
    /// How long to wait between follower lookups while the channel has few topic peers:
    /// doubles when a lookup finds nobody new (a small channel), resets when it does.
    pub lookup_every: std::time::Duration,
    /// Topic peers that brought something valid (a first delivery of a post, a sync page with
    /// something new), and when: peers that merely subscribe may be Sybils that forward
    /// nothing, so only these count as the channel being well connected.
    pub useful: HashMap<PeerId, Instant>,
    /// Whether any peer ever brought something valid since start.
    pub ever_useful: bool,
    /// Rounds of dialing cached peers while no peer has been useful (an eclipse), and when.
    pub fallback_rounds: u32,
    pub last_fallback: Option<Instant>,
}

/// Most useful peers remembered per channel.
const MAX_USEFUL: usize = 64;
/// How long a peer counts as useful after it last brought something.
pub(crate) const USEFUL_FOR: std::time::Duration = std::time::Duration::from_secs(600);

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
        let admins = Admins::from_stored(record.id, &record.certs, &record.revocations);
        Self {
            id: record.id,
            topic: channel::topic(&record.id),
            record,
            manifest,
            admins,
            signer,
            head: None,
            last_provide: None,
            last_lookup: None,
            lookup_every: std::time::Duration::from_secs(10),
            useful: HashMap::new(),
            ever_useful: false,
            fallback_rounds: 0,
            last_fallback: None,
        }
    }

    /// `peer` brought something valid now.
    pub fn note_useful(&mut self, peer: PeerId, now: Instant) {
        self.ever_useful = true;
        if self.useful.len() >= MAX_USEFUL && !self.useful.contains_key(&peer) {
            self.useful
                .retain(|_, t| now.saturating_duration_since(*t) < USEFUL_FOR);
            if self.useful.len() >= MAX_USEFUL {
                return;
            }
        }
        self.useful.insert(peer, now);
    }

    /// How many of `peers` brought something valid lately.
    pub fn useful_among(&self, peers: &[PeerId], now: Instant) -> usize {
        peers
            .iter()
            .filter(|p| {
                self.useful
                    .get(p)
                    .is_some_and(|t| now.saturating_duration_since(*t) < USEFUL_FOR)
            })
            .count()
    }

    /// The `k` peers that brought something valid most recently (within [`USEFUL_FOR`]).
    pub fn most_useful(&self, k: usize, now: Instant) -> Vec<PeerId> {
        let mut recent: Vec<(&PeerId, &Instant)> = self
            .useful
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < USEFUL_FOR)
            .collect();
        recent.sort_by(|a, b| b.1.cmp(a.1));
        recent.into_iter().take(k).map(|(p, _)| *p).collect()
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
