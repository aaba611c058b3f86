//! Which DHT records a peer agrees to store for others: the [`RecordValidator`] the DHT asks,
//! and Samizdat's record types ([`SamizdatRecords`]).

pub mod keypackage;
pub mod manifest;
pub mod signed;

use libp2p::kad::Record;
use prost::Message;
use samizdat_proto::v1;

/// A record that fails its checks (the reason, for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid record: {0}")]
pub struct RecordError(pub &'static str);

/// What to do with a record someone asked us to store.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordVerdict {
    /// Valid: store it (replacing an older version).
    Store,
    /// Valid but not newer than what we hold: keep ours.
    Stale,
    /// Invalid: drop it.
    Invalid(&'static str),
}

/// Decides which records the DHT stores for others.
pub trait RecordValidator {
    /// Checks `record` against what we already hold under its key (`existing`).
    fn check(&self, record: &Record, existing: Option<&Record>) -> RecordVerdict;
}

/// Samizdat's record types: a channel's signed manifest under
/// `/samizdat/channel-manifest/<channel id>` and a peer's signed KeyPackage under
/// `/samizdat/keypackage/<peer id>`; newest wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamizdatRecords;

impl RecordValidator for SamizdatRecords {
    fn check(&self, record: &Record, existing: Option<&Record>) -> RecordVerdict {
        check_record(record, existing)
    }
}

/// Checks a record against the record types Samizdat defines ([`SamizdatRecords`]).
pub fn check_record(record: &Record, existing: Option<&Record>) -> RecordVerdict {
    if keypackage::is_keypackage_key(&record.key) {
        return check_keypackage(record, existing);
    }
    let Some(new) = open_manifest_bytes(&record.value) else {
        return RecordVerdict::Invalid("not a signed channel manifest");
    };
    if record.key != manifest::manifest_key(&new.channel_key) {
        return RecordVerdict::Invalid("manifest stored under another channel's key");
    }
    if let Some(old) = existing.and_then(|r| open_manifest_bytes(&r.value))
        && old.body.version >= new.body.version
    {
        return RecordVerdict::Stale;
    }
    RecordVerdict::Store
}

fn open_manifest_bytes(bytes: &[u8]) -> Option<manifest::OpenedManifest> {
    let signed = v1::ChannelManifest::decode(bytes).ok()?;
    manifest::open_manifest(&signed).ok()
}

/// A peer's KeyPackage record: signed by that peer, newest wins.
fn check_keypackage(record: &Record, existing: Option<&Record>) -> RecordVerdict {
    let Ok(new) = keypackage::open_keypackage_record(&record.key, &record.value) else {
        return RecordVerdict::Invalid("not a signed key package record");
    };
    if let Some(old) =
        existing.and_then(|r| keypackage::open_keypackage_record(&r.key, &r.value).ok())
        && old.created_ms >= new.created_ms
    {
        return RecordVerdict::Stale;
    }
    RecordVerdict::Store
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::PeerId;
    use libp2p::identity::{self, ed25519};

    fn manifest(k: &ed25519::Keypair, name: &str, version: u64) -> Record {
        let key: [u8; 32] = k.public().to_bytes();
        let body = v1::ChannelManifestBody {
            channel: key.to_vec(),
            name: name.into(),
            description: String::new(),
            created_at_ms: 1,
            version,
        }
        .encode_to_vec();
        let signature = signed::sign(k, manifest::MANIFEST_DOMAIN, &body);
        Record::new(
            manifest::manifest_key(&key),
            v1::ChannelManifest { body, signature }.encode_to_vec(),
        )
    }

    #[test]
    fn only_signed_manifests_under_their_own_key() {
        let k = ed25519::Keypair::generate();
        let r1 = manifest(&k, "a", 1);
        let r2 = manifest(&k, "a", 2);
        assert_eq!(check_record(&r1, None), RecordVerdict::Store);
        assert_eq!(check_record(&r2, Some(&r1)), RecordVerdict::Store);
        assert_eq!(check_record(&r1, Some(&r2)), RecordVerdict::Stale);
        let other = manifest(&ed25519::Keypair::generate(), "b", 1);
        let misplaced = Record::new(other.key.clone(), r1.value.clone());
        assert!(matches!(
            check_record(&misplaced, None),
            RecordVerdict::Invalid(_)
        ));
        let junk = Record::new(r1.key.clone(), b"junk".to_vec());
        assert!(matches!(
            check_record(&junk, None),
            RecordVerdict::Invalid(_)
        ));
        let empty_name = manifest(&k, " ", 3);
        assert!(matches!(
            check_record(&empty_name, None),
            RecordVerdict::Invalid(_)
        ));
    }

    fn keypackage(k: &ed25519::Keypair, created_ms: u64) -> Record {
        let peer = PeerId::from_public_key(&identity::PublicKey::from(k.public()));
        let body = v1::KeyPackageRecordBody {
            peer_id: peer.to_bytes(),
            key_package: vec![7; 16],
            created_ms,
        }
        .encode_to_vec();
        let signature = signed::sign(k, keypackage::KEYPACKAGE_DOMAIN, &body);
        Record::new(
            keypackage::keypackage_key(&peer),
            v1::KeyPackageRecord { body, signature }.encode_to_vec(),
        )
    }

    #[test]
    fn key_packages_signed_by_their_peer_newest_wins() {
        let k = ed25519::Keypair::generate();
        let old = keypackage(&k, 1);
        let new = keypackage(&k, 2);
        assert_eq!(check_record(&new, Some(&old)), RecordVerdict::Store);
        assert_eq!(check_record(&old, Some(&new)), RecordVerdict::Stale);
        let stranger = keypackage(&ed25519::Keypair::generate(), 3);
        let misplaced = Record::new(old.key.clone(), stranger.value);
        assert!(matches!(
            check_record(&misplaced, None),
            RecordVerdict::Invalid(_)
        ));
    }
}
