//! History sync, both sides: a request from a peer answered from a real (sealed, on-disk)
//! store, and a page from a peer checked before anything is stored.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_node::channel::ChannelId;
use samizdat_node::crypto::DataKey;
use samizdat_node::store::SledStore;
use samizdat_node::sync::{check_heads, check_page, serve};
use samizdat_proto::v1;

fn store() -> &'static SledStore {
    static STORE: OnceLock<(tempfile::TempDir, SledStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store =
                SledStore::open(dir.path(), Arc::new(DataKey::from_bytes([1; 32]))).expect("store");
            (dir, store)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000_000;
    if let Ok(req) = v1::SyncRequest::decode(data) {
        serve(store(), req, now).expect("serving from a healthy store does not fail");
    }
    if let Ok(heads) = v1::SyncHeadsResponse::decode(data) {
        let key = libp2p::identity::ed25519::Keypair::from(
            libp2p::identity::ed25519::SecretKey::try_from_bytes([9u8; 32]).expect("key"),
        );
        let channel = ChannelId::from_key(&key.public());
        if let Ok(proven) = check_heads(&channel, &heads, |_| 0, now) {
            // Every claim beyond what was known (here: nothing) carries its verified header.
            assert!(proven.iter().all(|h| h.proof.as_ref().is_some_and(|p| p.seq == h.max_seq)));
        }
    }
    if let Ok(page) = v1::SyncRangeResponse::decode(data) {
        let key = libp2p::identity::ed25519::Keypair::from(
            libp2p::identity::ed25519::SecretKey::try_from_bytes([9u8; 32]).expect("key"),
        );
        let channel = ChannelId::from_key(&key.public());
        let author = key.public().to_bytes();
        for (from, to) in [(1, 10), (1, u64::MAX), (u64::MAX, u64::MAX)] {
            if let Ok(entries) = check_page(&channel, &author, from, to, &page, now, None) {
                assert!(entries.iter().all(|e| e.seq() >= from && e.seq() <= to));
                // An expired slot is only ever proven by a header that has expired.
                assert!(entries.iter().all(|e| match e {
                    samizdat_node::sync::Entry::Expired(h) => h.is_expired(now),
                    samizdat_node::sync::Entry::Post(p) => !p.is_expired(now),
                }));
            }
        }
    }
});
