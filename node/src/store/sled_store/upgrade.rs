//! Upgrades of stores of formats 1 and 2.

use std::path::Path;
use std::sync::Arc;

use prost::Message;

use super::{SledStore, check_key, open_db, seq_of};
use crate::crypto::DataKey;
use crate::store::records::StoredPostPb;
use crate::store::{Private, StoreError};

/// Version 3: every tree sealed, keys included. Version 2 had keys in the clear (times and
/// sequence numbers among them); version 1 also had posts of wire protocol 1.
pub(super) const FORMAT_VERSION: &[u8] = b"3";

/// Trees of a channel's history: cleared when a store of format 1 is upgraded, since posts of
/// wire protocol 1 are not valid under protocol 2 (the history is synced again from peers).
const HISTORY_TREES: [&str; 7] = [
    "posts",
    "chain",
    "authors",
    "ids",
    "outbox",
    "expiry",
    "tombstones",
];

/// Every tree of formats 1 and 2 besides the private ones, and whether its values were sealed.
const LEGACY_TREES: [(&str, bool); 12] = [
    ("channels", true),
    ("posts", true),
    ("chain", false),
    ("tombstones", true),
    ("authors", true),
    ("ids", false),
    ("outbox", false),
    ("peers", true),
    ("expiry", false),
    ("files", true),
    ("blocked", true),
    ("contacts", true),
];

/// `dir` with `suffix` added to its name.
fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Associated data of a value sealed by formats 1 and 2 (for the upgrade).
fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(tree.len().saturating_add(key.len()).saturating_add(1));
    a.extend_from_slice(tree.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

impl SledStore {
    /// Upgrades a store of format 1 or 2 at `dir` (see [`SledStore::open`]); finishes an
    /// upgrade a crash interrupted.
    pub(super) fn upgrade(dir: &Path, key: &Arc<DataKey>) -> Result<(), StoreError> {
        let new = sibling(dir, ".upgrading");
        let old = sibling(dir, ".old");
        if !dir.exists() && new.join("db").exists() {
            // Crashed between the two renames: the new store is complete.
            std::fs::rename(&new, dir).map_err(sled::Error::Io)?;
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(sled::Error::Io)?;
        }
        if !dir.join("db").exists() {
            return Ok(());
        }
        let legacy = open_db(dir)?;
        let format = match legacy.get("format")? {
            None => return Ok(()),
            Some(v) if v.as_ref() == FORMAT_VERSION => return Ok(()),
            Some(v) if v.as_ref() == b"1" || v.as_ref() == b"2" => v,
            Some(_) => return Err(StoreError::Corrupt("format version")),
        };
        // A wrong key must not get as far as writing anything.
        check_key(&legacy, key)?;
        if new.exists() {
            std::fs::remove_dir_all(&new).map_err(sled::Error::Io)?;
        }
        let mut copied = 0usize;
        {
            let db = open_db(&new)?;
            check_key(&db, key)?;
            let store = Self::with_trees(db, key.clone())?;
            let names = LEGACY_TREES
                .iter()
                .copied()
                .chain(Private::ALL.iter().map(|p| (p.name(), true)));
            for (name, sealed) in names {
                let target = match store.tree(name) {
                    Some(t) => t,
                    None => Private::ALL
                        .iter()
                        .find(|p| p.name() == name)
                        .map(|p| store.private_tree(*p))
                        .ok_or(StoreError::Corrupt("tree"))?,
                };
                for item in legacy.open_tree(name)?.iter() {
                    let (k, v) = item?;
                    let plain = if sealed {
                        key.open(&aad(name, &k), &v)
                            .map_err(|source| StoreError::Sealed { tree: name, source })?
                    } else {
                        v.to_vec()
                    };
                    target.insert(&k, &plain)?;
                    copied = copied.saturating_add(1);
                }
            }
            if format.as_ref() == b"1" {
                store.upgrade_protocol_1()?;
            }
            store.db.insert("format", FORMAT_VERSION)?;
            store.db.flush()?;
        }
        drop(legacy);
        std::fs::rename(dir, &old).map_err(sled::Error::Io)?;
        std::fs::rename(&new, dir).map_err(sled::Error::Io)?;
        std::fs::remove_dir_all(&old).map_err(sled::Error::Io)?;
        tracing::info!(
            copied,
            "store upgraded to format 3: every key sealed (the old files are removed)"
        );
        Ok(())
    }

    /// Drops posts of wire protocol 1, keeping the channels this node owns signed again.
    fn upgrade_protocol_1(&self) -> Result<(), StoreError> {
        let own = self.resign_owner_posts()?;
        for tree in HISTORY_TREES {
            if let Some(t) = self.tree(tree) {
                t.clear()?;
            }
        }
        let mut carried = 0;
        for r in own {
            self.insert_posts(&r.posts)?;
            self.insert_tombstones(&r.tombstones)?;
            carried = r.posts.len().saturating_add(carried);
        }
        tracing::warn!(
            carried,
            "store of format 1 upgraded to protocol 2: the channels this node owns keep \
             their posts, signed again; other posts of protocol 1 were dropped and are \
             synced again from peers (channels, keys, contacts and private messages are \
             kept)"
        );
        Ok(())
    }

    /// The protocol-1 chains of the channels this node owns, signed again (see `migrate`).
    fn resign_owner_posts(&self) -> Result<Vec<crate::store::migrate::Resigned>, StoreError> {
        use crate::store::migrate::{OldSlot, resign_owner_chain};
        let mut out = Vec::new();
        for rec in self.channels()? {
            let Some(secret) = rec.secret_key.as_ref() else {
                continue;
            };
            let mut bytes = zeroize::Zeroizing::new(secret.to_vec());
            let Ok(key) = libp2p::identity::ed25519::Keypair::try_from_bytes(bytes.as_mut_slice())
            else {
                continue;
            };
            let mut slots = Vec::new();
            for (ck, pk) in self
                .chain
                .scan_prefix(&self.chain_prefix(&rec.id, rec.id.as_bytes()))?
            {
                let slot = if pk.is_empty() {
                    OldSlot::Expired
                } else {
                    let Some(plain) = self.posts.get(&pk)? else {
                        continue;
                    };
                    let wire = StoredPostPb::decode(plain.as_slice())
                        .map_err(|_| StoreError::Corrupt("posts"))?
                        .wire;
                    OldSlot::Post(wire)
                };
                slots.push((seq_of(&ck), slot));
            }
            out.push(resign_owner_chain(&rec.id, &key, slots));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use libp2p::identity::ed25519;

    use super::super::CANARY_AAD;
    use super::super::tests::{chain_of, open, walk};
    use super::*;
    use crate::channel::{ChannelId, Post, PostDraft};
    use crate::crypto::DataKey;
    use crate::store::records::StoredPostPb;
    use crate::store::{ChannelRecord, Private, Role, Slot, Store};

    #[test]
    fn a_store_of_format_1_keeps_everything_but_protocol_1_posts() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        {
            let s = open(dir.path(), &key);
            s.insert_posts(&chain_of(3, &ck, "old")).expect("insert");
            s.put_channel(&ChannelRecord {
                id,
                role: Role::Follower,
                manifest: None,
                secret_key: None,
                admin_cert: None,
                followed_at_ms: 0,
                certs: Vec::new(),
                revocations: Vec::new(),
            })
            .expect("channel");
            s.flush().expect("flush");
        }
        downgrade(dir.path(), &key, b"1");
        let s = open(dir.path(), &key);
        assert_eq!(
            s.count(&id).expect("count"),
            0,
            "posts of protocol 1 dropped"
        );
        assert!(s.authors(&id).expect("authors").is_empty());
        assert_eq!(
            s.channels().expect("channels").len(),
            1,
            "the channel is kept"
        );
        drop(s);
        // And it stays upgraded.
        let s = open(dir.path(), &key);
        assert_eq!(s.channels().expect("channels").len(), 1);
    }

    #[test]
    fn an_owner_keeps_its_channel_history_across_the_upgrade() {
        use prost::Message as _;
        // Protocol 1's post: the text inside the signed body (fields 3, 5, 6).
        #[derive(Clone, PartialEq, prost::Message)]
        struct V1Body {
            #[prost(uint64, tag = "3")]
            seq: u64,
            #[prost(uint64, tag = "5")]
            timestamp_ms: u64,
            #[prost(string, tag = "6")]
            text: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct V1Signed {
            #[prost(bytes = "vec", tag = "1")]
            body: Vec<u8>,
            #[prost(bytes = "vec", tag = "2")]
            signature: Vec<u8>,
        }
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let author = ck.public().to_bytes();
        {
            let s = open(dir.path(), &key);
            s.put_channel(&ChannelRecord {
                id,
                role: Role::Owner,
                manifest: None,
                secret_key: Some(zeroize::Zeroizing::new(ck.to_bytes().to_vec())),
                admin_cert: None,
                followed_at_ms: 0,
                certs: Vec::new(),
                revocations: Vec::new(),
            })
            .expect("channel");
            // Seq 1 and 3 held, seq 2 expired (protocol 1 kept an empty chain entry).
            for seq in [1u64, 3] {
                let body = V1Body {
                    seq,
                    timestamp_ms: 1_000 * seq,
                    text: format!("old post {seq}"),
                }
                .encode_to_vec();
                let wire = V1Signed {
                    body,
                    signature: vec![9; 64],
                }
                .encode_to_vec();
                let mut pk = [0u8; 40];
                pk[..8].copy_from_slice(&seq.to_be_bytes());
                let value = StoredPostPb {
                    wire,
                    received_at_ms: 0,
                }
                .encode_to_vec();
                s.posts.insert(&pk, &value).expect("post");
                s.chain
                    .insert(&s.chain_key(&id, &author, seq), &pk[..])
                    .expect("chain");
            }
            s.chain
                .insert(&s.chain_key(&id, &author, 2), &[][..])
                .expect("expired");
            s.flush().expect("flush");
        }
        downgrade(dir.path(), &key, b"1");
        let s = open(dir.path(), &key);
        let h = s.history(&id, None, 10).expect("history");
        assert_eq!(
            h.iter().map(|(_, p)| p.text.as_str()).collect::<Vec<_>>(),
            vec!["old post 1", "old post 3"]
        );
        // Signed again under protocol 2, linked through the expired slot's new proof.
        let p3 = &h[1].1;
        assert!(Post::verify(&p3.wire, Some(&id), u64::MAX / 2).is_ok());
        let slots = s.slots(&id, &author, 1, 3, 10).expect("slots");
        assert!(matches!(&slots[1].1, Slot::Expired(t) if Some(t.id) == p3.prev));
        assert_eq!(
            s.chain_head(&id, &author).expect("head").map(|p| p.seq),
            Some(3)
        );
    }

    /// Writes the store at `dir` again in the layout of format 1 or 2: keys in the clear,
    /// values sealed with (tree, key) as associated data, chain/ids/outbox/expiry values plain.
    fn downgrade(dir: &Path, key: &Arc<DataKey>, format: &[u8]) {
        let legacy_dir = sibling(dir, ".legacy");
        {
            let s = open(dir, key);
            let db = sled::Config::new()
                .path(&legacy_dir)
                .open()
                .expect("legacy");
            let names = LEGACY_TREES
                .iter()
                .copied()
                .chain(Private::ALL.iter().map(|p| (p.name(), true)));
            for (name, sealed) in names {
                let t = s.tree(name).unwrap_or_else(|| {
                    let p = Private::ALL
                        .iter()
                        .find(|p| p.name() == name)
                        .expect("tree");
                    s.private_tree(*p)
                });
                let raw = db.open_tree(name).expect("tree");
                for (k, v) in t.all().expect("all") {
                    let v = if sealed {
                        key.seal(&aad(name, &k), &v)
                    } else {
                        v
                    };
                    raw.insert(k, v).expect("insert");
                }
            }
            db.insert("format", format).expect("format");
            db.insert("canary", key.seal(CANARY_AAD, b"samizdat"))
                .expect("canary");
            db.flush().expect("flush");
        }
        std::fs::remove_dir_all(dir).expect("rm");
        std::fs::rename(&legacy_dir, dir).expect("rename");
    }

    #[test]
    fn a_store_of_format_2_is_upgraded_and_then_shows_no_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("store");
        let key = Arc::new(DataKey::generate());
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        // Times a real clock would give: their big-endian bytes are what format 2 showed.
        let base = 1_764_000_000_000u64;
        let posts: Vec<Post> = {
            let mut prev = None;
            (1..=20u64)
                .map(|seq| {
                    let p = Post::sign(
                        &id,
                        &ck,
                        None,
                        seq,
                        prev,
                        base + seq * 1000,
                        PostDraft {
                            text: format!("post {seq}"),
                            ..Default::default()
                        },
                    )
                    .expect("sign");
                    prev = Some(p.id);
                    p
                })
                .collect()
        };
        {
            let s = open(&home, &key);
            s.insert_posts(&posts).expect("insert");
            for i in [3u64, 1, 2] {
                let mut k = b"conv".to_vec();
                k.extend_from_slice(&(base + i).to_be_bytes());
                s.private_put(Private::Messages, &k, &i.to_le_bytes())
                    .expect("private");
            }
            s.flush().expect("flush");
        }
        downgrade(&home, &key, b"2");
        let stamp = (base + 5000).to_be_bytes();
        let shows = |dir: &Path| {
            walk(dir).iter().any(|f| {
                std::fs::read(f)
                    .expect("read")
                    .windows(8)
                    .any(|w| w == stamp)
            })
        };
        assert!(shows(&home), "the format-2 copy shows its timestamps");
        // A wrong key refuses, and leaves the old store as it was.
        assert!(SledStore::open(&home, Arc::new(DataKey::generate())).is_err());
        assert!(shows(&home));
        let s = open(&home, &key);
        let h = s.history(&id, None, 100).expect("history");
        assert_eq!(h.len(), 20);
        assert!(h.windows(2).all(|w| w[0].1.seq < w[1].1.seq), "in order");
        assert_eq!(s.heads(&id).expect("heads"), [(ck.public().to_bytes(), 20)]);
        let msgs = s.private_scan(Private::Messages, b"conv").expect("scan");
        assert_eq!(
            msgs.iter().map(|(_, v)| v[0]).collect::<Vec<_>>(),
            [1, 2, 3],
            "private records kept, in order"
        );
        drop(s);
        assert!(!shows(&home), "a timestamp in the upgraded files");
        assert!(!sibling(&home, ".old").exists() && !sibling(&home, ".upgrading").exists());
        // And it stays upgraded.
        let s = open(&home, &key);
        assert_eq!(s.count(&id).expect("count"), 20);
    }

    #[test]
    fn an_upgrade_cut_between_its_renames_is_finished() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("store");
        let key = Arc::new(DataKey::generate());
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        {
            let s = open(&home, &key);
            s.insert_posts(&chain_of(3, &ck, "kept")).expect("insert");
            s.flush().expect("flush");
        }
        // The state after `store → store.old`, before `store.upgrading → store`.
        std::fs::rename(&home, sibling(&home, ".upgrading")).expect("rename");
        std::fs::create_dir_all(sibling(&home, ".old")).expect("old");
        let s = open(&home, &key);
        assert_eq!(s.count(&id).expect("count"), 3);
        assert!(!sibling(&home, ".old").exists());
    }
}
