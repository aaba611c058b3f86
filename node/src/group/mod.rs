//! Private groups: MLS groups ([`mls`]) whose owner invites and removes members, with messages
//! on a gossipsub topic named after a hash of the group id, and a sealed invitation (the name)
//! riding with the Welcome. Delivery and bookkeeping live in the node's event loop.

#![warn(clippy::arithmetic_side_effects)]

pub mod gate;
pub mod reach;
pub mod state;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;
use sha2::{Digest, Sha256};

use crate::dm::DmError;

/// Most bytes of a group's name.
pub const MAX_NAME_BYTES: usize = 100;
/// Most members of a group (the product's limit; MLS itself has none).
pub const MAX_MEMBERS: usize = 5000;
/// Most bytes of a group Welcome envelope (a 5,000-member Welcome is about 0.9 MB: it
/// carries the ratchet tree).
pub const MAX_WELCOME_BYTES: usize = 2 * 1024 * 1024;
/// Most bytes of one group MLS message (a commit in a 5,000-member group is about 0.4 MB).
pub const MAX_GROUP_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most messages in one GroupSync answer.
pub const SYNC_PAGE: usize = 256;
/// Most bytes of one GroupSync answer.
pub const SYNC_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// MLS exporter label of the key that seals an invitation.
pub const INVITE_LABEL: &str = "samizdat/v1/group-invite";

/// A private group's id: its MLS group id (16 random bytes), written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId([u8; 16]);

impl GroupId {
    /// The id in these bytes, if they are one (16 bytes).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The MLS group id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl std::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupId({self})")
    }
}

impl std::str::FromStr for GroupId {
    type Err = DmError;
    fn from_str(s: &str) -> Result<Self, DmError> {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.trim().as_bytes())
            .ok()
            .and_then(|id| Self::from_slice(&id))
            .ok_or(DmError::NotAllowed("a group id is 32 hex digits"))
    }
}

/// A group id's text form, from its bytes (hex).
pub fn group_hex(id: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(id)
}

/// The gossipsub topic of a group: a hash of its id, so the name says nothing about the
/// group's name or members (only members know the id).
pub fn topic(group: &GroupId) -> libp2p::gossipsub::IdentTopic {
    let mut h = Sha256::new();
    h.update(b"samizdat/v1/group-topic");
    h.update(group.as_bytes());
    libp2p::gossipsub::IdentTopic::new(format!(
        "samizdat/group/{}",
        data_encoding::HEXLOWER.encode(&h.finalize())
    ))
}

fn cipher(key: &[u8]) -> Result<ChaCha20Poly1305, DmError> {
    ChaCha20Poly1305::new_from_slice(key)
        .map_err(|_| DmError::Internal("invite key must be 32 bytes"))
}

/// Seals an invitation under the exporter key of the epoch the Welcome joins. The key is used
/// for this one message only (every add is a new epoch), so a fixed nonce is safe.
pub fn seal_invite(key: &[u8], group: &[u8], invite: &v1::GroupInvite) -> Result<Vec<u8>, DmError> {
    cipher(key)?
        .encrypt(
            &Nonce::from([0u8; 12]),
            Payload {
                msg: &invite.encode_to_vec(),
                aad: group,
            },
        )
        .map_err(|_| DmError::Internal("seal invite"))
}

/// Opens an invitation sealed by [`seal_invite`].
pub fn open_invite(key: &[u8], group: &[u8], sealed: &[u8]) -> Result<v1::GroupInvite, DmError> {
    let plain = cipher(key)?
        .decrypt(
            &Nonce::from([0u8; 12]),
            Payload {
                msg: sealed,
                aad: group,
            },
        )
        .map_err(|_| DmError::Undecryptable("invitation".into()))?;
    let invite = v1::GroupInvite::decode(plain.as_slice()).map_err(|_| DmError::Malformed)?;
    if invite.name.len() > MAX_NAME_BYTES {
        return Err(DmError::NotAllowed("group name too long"));
    }
    Ok(invite)
}

/// Checks a group name given by a user.
pub fn check_name(name: &str) -> Result<(), DmError> {
    if name.trim().is_empty() {
        return Err(DmError::NotAllowed("a group needs a name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(DmError::NotAllowed(
            "group name too long (at most 100 bytes)",
        ));
    }
    Ok(())
}

/// A group as clients see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GroupView {
    /// Group id (32 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The owner's peer id (the member that invites and removes).
    pub owner: String,
    /// This node's role: "owner" or "member".
    pub role: String,
    /// Current members' peer ids (empty once this node was removed).
    pub members: Vec<String>,
    /// Invitations not yet carried out (the invitee's key package not found yet); the owner's
    /// node only.
    #[serde(default)]
    pub invited: Vec<String>,
    /// Whether this node is still a member.
    pub active: bool,
    /// The MLS epoch this node is in.
    pub epoch: u64,
    /// When this node created or joined it (ms since the epoch).
    pub joined_at: u64,
}

/// A group message as clients see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GroupMessageView {
    /// Message id (hex).
    pub id: String,
    /// Its group (hex).
    pub group: String,
    /// Who wrote it (peer id).
    pub author: String,
    /// When its author sent it (ms since the epoch).
    pub timestamp: u64,
    /// Its text.
    pub text: String,
    /// Whether this node wrote it.
    pub outgoing: bool,
    /// When it deletes itself (ms since the epoch), if it does.
    pub expires_at: Option<u64>,
    /// Its encrypted attachment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<crate::dm::AttachmentView>,
}

impl GroupMessageView {
    /// The view of a stored message.
    pub fn of(me: &PeerId, stored: &v1::StoredGroupMessage) -> Option<Self> {
        let author = PeerId::from_bytes(&stored.author).ok()?;
        let body = stored.body.as_ref()?;
        Some(Self {
            id: data_encoding::HEXLOWER.encode(&body.id),
            group: group_hex(&stored.group_id),
            author: author.to_string(),
            timestamp: body.sent_ms,
            text: body.text.clone(),
            outgoing: author == *me,
            expires_at: (body.expires_at_ms != 0).then_some(body.expires_at_ms),
            file: body.attachment.as_ref().map(crate::dm::AttachmentView::of),
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn invitations_open_only_with_their_key_and_group() {
        let key = [7u8; 32];
        let inv = v1::GroupInvite {
            name: "friends".into(),
            owner: b"o".to_vec(),
            created_ms: 1,
        };
        let sealed = seal_invite(&key, b"g1", &inv).expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"friends"));
        assert_eq!(open_invite(&key, b"g1", &sealed).expect("open"), inv);
        assert!(open_invite(&[8u8; 32], b"g1", &sealed).is_err());
        assert!(open_invite(&key, b"g2", &sealed).is_err());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(open_invite(&key, b"g1", &bad).is_err());
    }

    #[test]
    fn topics_hide_the_group_id_and_ids_parse() {
        let id = GroupId::from_slice(&[0xabu8; 16]).expect("16 bytes");
        let t = topic(&id).to_string();
        assert!(t.starts_with("samizdat/group/"));
        assert!(!t.contains(&id.to_string()));
        assert_eq!(id.to_string(), group_hex(id.as_bytes()));
        assert_eq!(id.to_string().parse::<GroupId>().expect("parse"), id);
        assert_eq!(
            id.to_string()
                .to_uppercase()
                .parse::<GroupId>()
                .expect("parse"),
            id
        );
        assert!("xyz".parse::<GroupId>().is_err());
        assert!("abab".parse::<GroupId>().is_err());
        assert!(GroupId::from_slice(&[1; 32]).is_none());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
    }
}
