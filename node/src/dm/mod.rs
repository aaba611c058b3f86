//! Direct messages: two-member MLS conversations ([`mls`]), the KeyPackage records that let a
//! conversation start while the other side is offline, and the mailbox that holds ciphertext
//! for offline peers ([`mailbox`]).

#![warn(clippy::arithmetic_side_effects)]

pub mod conversation;
pub mod held;
pub mod mailbox;
pub mod route;

use libp2p::PeerId;
use libp2p::kad::RecordKey;
use prost::Message as _;
use samizdat_proto::v1;

use samizdat_net::records::keypackage::{self, KEYPACKAGE_DOMAIN};
pub use samizdat_net::records::keypackage::{KeyPackageRecord, is_keypackage_key, keypackage_key};

use crate::channel::{now_ms, sign};

/// Most bytes of a message's text.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Refuses a text longer than [`MAX_TEXT_BYTES`], saying how long it is.
pub fn check_text_len(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "message too long: {} bytes (at most {MAX_TEXT_BYTES})",
            text.len()
        ));
    }
    Ok(())
}
/// Most bytes of a KeyPackage (about 300 bytes in practice). Envelopes may carry up to
/// [`crate::group::MAX_GROUP_MESSAGE_BYTES`] (a removal commit of a large group), or
/// [`crate::group::MAX_WELCOME_BYTES`] for a group's Welcome.
pub const MAX_MLS_BYTES: usize = 32 * 1024;
/// Most envelopes in one request.
pub const MAX_ENVELOPES_PER_REQUEST: usize = 64;
/// Most bytes of a `/samizdat/dm/1` request or response.
pub const MAX_DM_FRAME: usize = 3 * 1024 * 1024;
/// How long an envelope may be held for an offline recipient.
pub const MAX_HOLD_MS: u64 = 7 * 24 * 3600 * 1000;

/// Errors of direct messaging.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// What MLS refused or failed at (messages, Welcomes, KeyPackages, this node's MLS state).
    #[error(transparent)]
    Mls(#[from] crate::mls::MlsError),
    /// Bytes that are not a message, body or invitation of the expected shape.
    #[error("malformed message")]
    Malformed,
    /// A message for a conversation or group this node is not in.
    #[error("unknown conversation")]
    UnknownGroup,
    /// An invitation that does not open.
    #[error("cannot decrypt: {0}")]
    Undecryptable(String),
    /// Something a conversation or group does not allow.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A record that fails its checks.
    #[error("invalid record: {0}")]
    BadRecord(&'static str),
    /// A group message of an epoch this node has not reached (its commit has not arrived),
    /// as its header shows (MLS finding it says [`crate::mls::MlsError::FutureEpoch`]).
    #[error("message of a later epoch")]
    FutureEpoch,
    /// Too much from this peer is waiting already: not taken, to be sent again later.
    #[error("busy: too many messages waiting; try again later")]
    Busy,
    /// This node's store failed: not the message's fault.
    #[error("store: {0}")]
    Store(String),
    /// A fault of this node's own (sealing an invitation).
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl DmError {
    /// A group message of a later epoch, whoever noticed (the header check or MLS).
    pub fn is_future_epoch(&self) -> bool {
        matches!(
            self,
            Self::FutureEpoch | Self::Mls(crate::mls::MlsError::FutureEpoch)
        )
    }
}

/// The DHT key whose closest peers hold a peer's mail while it is offline.
pub fn mailbox_key(peer: &PeerId) -> Vec<u8> {
    RecordKey::new(&format!("/samizdat/mailbox/{peer}")).to_vec()
}

/// A KeyPackage record as published: signed by the peer's identity key.
pub fn sign_keypackage_record(
    key: &libp2p::identity::ed25519::Keypair,
    key_package: Vec<u8>,
) -> Vec<u8> {
    let body = v1::KeyPackageRecordBody {
        peer_id: crate::identity::peer_id_of(&key.public()).to_bytes(),
        key_package,
        created_ms: now_ms(),
    }
    .encode_to_vec();
    let signature = sign(key, KEYPACKAGE_DOMAIN, &body);
    v1::KeyPackageRecord { body, signature }.encode_to_vec()
}

/// Checks a KeyPackage record found under `key`.
pub fn open_keypackage_record(key: &RecordKey, bytes: &[u8]) -> Result<KeyPackageRecord, DmError> {
    keypackage::open_keypackage_record(key, bytes).map_err(|e| DmError::BadRecord(e.0))
}

/// A private attachment as clients see it (the key is theirs: it decrypts the file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AttachmentView {
    /// The sealed file's content id.
    pub cid: String,
    /// Its key (64 hex digits).
    pub key: String,
    /// File name.
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
}

impl AttachmentView {
    /// The view of an attachment in a message.
    pub fn of(a: &v1::Attachment) -> Self {
        Self {
            cid: a.cid.clone(),
            key: data_encoding::HEXLOWER.encode(&a.key),
            name: a.name.clone(),
            size: a.size,
            mime: a.mime.clone(),
        }
    }

    /// The attachment to put in a message, checked.
    pub fn to_wire(&self) -> Result<v1::Attachment, DmError> {
        let a = v1::Attachment {
            cid: self.cid.trim().to_string(),
            key: crate::files::sealed::parse_key(&self.key)
                .map_err(|_| DmError::NotAllowed("an attachment key is 64 hex digits"))?,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
        };
        check_attachment(&a)?;
        Ok(a)
    }
}

/// Checks an attachment's fields.
pub fn check_attachment(a: &v1::Attachment) -> Result<(), DmError> {
    if a.cid.parse::<crate::files::Cid>().is_err() {
        return Err(DmError::NotAllowed("attachment cid is not a file id"));
    }
    if a.key.len() != 32 {
        return Err(DmError::NotAllowed("attachment key must be 32 bytes"));
    }
    if a.name.len() > 200 || a.mime.len() > 100 {
        return Err(DmError::NotAllowed("attachment name or type too long"));
    }
    Ok(())
}

/// A direct-message conversation as clients list it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DmConversationView {
    /// The other side (peer id).
    pub peer: String,
    /// Its name in this node's contacts, if it is one.
    pub name: Option<String>,
    /// The newest message, if any is held.
    pub last: Option<DmView>,
    /// Messages held.
    pub count: usize,
    /// The account the other side is a device of (peer-id form), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// A direct message as clients see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DmView {
    /// Message id (hex).
    pub id: String,
    /// Who wrote it (peer id).
    pub from: String,
    /// The other side of the conversation (peer id).
    pub peer: String,
    /// When its author sent it (ms since the epoch).
    pub timestamp: u64,
    /// Its text.
    pub text: String,
    /// Whether this node wrote it.
    pub outgoing: bool,
    /// When it deletes itself (ms since the epoch), if it does.
    pub expires_at: Option<u64>,
    /// Whether it has reached the other side's node (outgoing messages only).
    pub delivered: bool,
    /// Its encrypted attachment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<AttachmentView>,
    /// The account of the other side (peer-id form), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl DmView {
    /// The view of a stored message.
    pub fn of(me: &PeerId, stored: &v1::StoredDm) -> Option<Self> {
        let peer = PeerId::from_bytes(&stored.peer).ok()?;
        let body = stored.body.as_ref()?;
        Some(Self {
            id: data_encoding::HEXLOWER.encode(&body.id),
            from: if stored.outgoing { *me } else { peer }.to_string(),
            peer: peer.to_string(),
            timestamp: body.sent_ms,
            text: body.text.clone(),
            outgoing: stored.outgoing,
            expires_at: (body.expires_at_ms != 0).then_some(body.expires_at_ms),
            delivered: !stored.outgoing || stored.received_ms != 0,
            file: body.attachment.as_ref().map(AttachmentView::of),
            account: None,
        })
    }
}

/// Checks a decrypted body: the limits a sender must respect.
pub fn check_body(body: &v1::DmBody) -> Result<(), DmError> {
    if body.id.len() != 16 {
        return Err(DmError::NotAllowed("message id must be 16 bytes"));
    }
    if body.text.len() > MAX_TEXT_BYTES {
        return Err(DmError::NotAllowed("text too long"));
    }
    if let Some(a) = &body.attachment {
        check_attachment(a)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use libp2p::identity::ed25519;

    #[test]
    fn keypackage_records_are_bound_to_their_peer() {
        let k = ed25519::Keypair::generate();
        let peer = crate::identity::peer_id_of(&k.public());
        let rec = sign_keypackage_record(&k, b"kp".to_vec());
        let ok = open_keypackage_record(&keypackage_key(&peer), &rec).expect("valid");
        assert_eq!(ok.peer, peer);
        assert_eq!(ok.key_package, b"kp");
        let other = crate::identity::peer_id_of(&ed25519::Keypair::generate().public());
        assert!(open_keypackage_record(&keypackage_key(&other), &rec).is_err());
        let mut forged = v1::KeyPackageRecord::decode(rec.as_slice()).expect("decode");
        forged.signature[0] ^= 1;
        assert!(open_keypackage_record(&keypackage_key(&peer), &forged.encode_to_vec()).is_err());
        assert!(open_keypackage_record(&keypackage_key(&peer), b"junk").is_err());
    }
}
