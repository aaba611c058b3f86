//! A peer's KeyPackage record: the MLS KeyPackage others use to open a conversation with it,
//! signed by the peer's identity key, stored in the DHT under `/samizdat/keypackage/<peer id>`.

use libp2p::PeerId;
use libp2p::kad::RecordKey;
use prost::Message;
use samizdat_proto::v1;

use super::RecordError;
use super::signed::{ed25519_of, verify};

/// Signature domain of KeyPackage records.
pub const KEYPACKAGE_DOMAIN: &[u8] = b"samizdat/v1/keypackage";
/// Largest KeyPackage a record may carry.
pub const MAX_KEY_PACKAGE_BYTES: usize = 32 * 1024;

/// The DHT key of a peer's KeyPackage record.
pub fn keypackage_key(peer: &PeerId) -> RecordKey {
    RecordKey::new(&format!("/samizdat/keypackage/{peer}"))
}

/// Whether a DHT key is a KeyPackage record's.
pub fn is_keypackage_key(key: &RecordKey) -> bool {
    key.as_ref().starts_with(b"/samizdat/keypackage/")
}

/// A verified KeyPackage record.
#[derive(Debug, Clone)]
pub struct KeyPackageRecord {
    /// Whose it is.
    pub peer: PeerId,
    /// The KeyPackage (TLS bytes; MLS validates it again when it is used).
    pub key_package: Vec<u8>,
    /// When it was made.
    pub created_ms: u64,
}

/// Checks a KeyPackage record found under `key`.
pub fn open_keypackage_record(
    key: &RecordKey,
    bytes: &[u8],
) -> Result<KeyPackageRecord, RecordError> {
    let rec = v1::KeyPackageRecord::decode(bytes).map_err(|_| RecordError("not a record"))?;
    let body = v1::KeyPackageRecordBody::decode(rec.body.as_slice())
        .map_err(|_| RecordError("body does not decode"))?;
    let peer = PeerId::from_bytes(&body.peer_id).map_err(|_| RecordError("bad peer id"))?;
    if *key != keypackage_key(&peer) {
        return Err(RecordError("stored under another peer's key"));
    }
    let public = ed25519_of(&peer).ok_or(RecordError("peer id without ed25519 key"))?;
    if !verify(&public, KEYPACKAGE_DOMAIN, &rec.body, &rec.signature) {
        return Err(RecordError("bad signature"));
    }
    if body.key_package.len() > MAX_KEY_PACKAGE_BYTES {
        return Err(RecordError("key package too large"));
    }
    Ok(KeyPackageRecord {
        peer,
        key_package: body.key_package,
        created_ms: body.created_ms,
    })
}
