//! Which DHT records a peer agrees to store for others.

use libp2p::kad::Record;

use crate::channel::{Manifest, manifest_key};

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

/// Checks a record against the record types Samizdat defines: a channel's signed manifest
/// stored under `/samizdat/channel-manifest/<channel id>`, and a peer's signed KeyPackage
/// under `/samizdat/keypackage/<peer id>`. `existing` is what we already hold.
pub fn check_record(record: &Record, existing: Option<&Record>) -> RecordVerdict {
    if crate::dm::is_keypackage_key(&record.key) {
        return check_keypackage(record, existing);
    }
    let Ok(manifest) = Manifest::from_bytes(&record.value) else {
        return RecordVerdict::Invalid("not a signed channel manifest");
    };
    if record.key != manifest_key(&manifest.channel) {
        return RecordVerdict::Invalid("manifest stored under another channel's key");
    }
    if let Some(old) = existing.and_then(|r| Manifest::from_bytes(&r.value).ok())
        && old.version >= manifest.version
    {
        return RecordVerdict::Stale;
    }
    RecordVerdict::Store
}

/// A peer's KeyPackage record: signed by that peer, newest wins.
fn check_keypackage(record: &Record, existing: Option<&Record>) -> RecordVerdict {
    let Ok(new) = crate::dm::open_keypackage_record(&record.key, &record.value) else {
        return RecordVerdict::Invalid("not a signed key package record");
    };
    if let Some(old) =
        existing.and_then(|r| crate::dm::open_keypackage_record(&r.key, &r.value).ok())
        && old.created_ms >= new.created_ms
    {
        return RecordVerdict::Stale;
    }
    RecordVerdict::Store
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::ed25519;

    #[test]
    fn only_signed_manifests_under_their_own_key() {
        let k = ed25519::Keypair::generate();
        let m1 = Manifest::sign(&k, "a", "", 1, 1).expect("m1");
        let m2 = Manifest::sign(&k, "a", "", 1, 2).expect("m2");
        let r1 = Record::new(manifest_key(&m1.channel), m1.to_bytes());
        let r2 = Record::new(manifest_key(&m2.channel), m2.to_bytes());
        assert_eq!(check_record(&r1, None), RecordVerdict::Store);
        assert_eq!(check_record(&r2, Some(&r1)), RecordVerdict::Store);
        assert_eq!(check_record(&r1, Some(&r2)), RecordVerdict::Stale);
        let other = Manifest::sign(&ed25519::Keypair::generate(), "b", "", 1, 1).expect("o");
        let misplaced = Record::new(manifest_key(&other.channel), m1.to_bytes());
        assert!(matches!(
            check_record(&misplaced, None),
            RecordVerdict::Invalid(_)
        ));
        let junk = Record::new(manifest_key(&m1.channel), b"junk".to_vec());
        assert!(matches!(
            check_record(&junk, None),
            RecordVerdict::Invalid(_)
        ));
    }
}
