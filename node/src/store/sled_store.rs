//! [`Store`] on sled 0.34, every tree sealed (see [`super::sealed`]): on disk, keys are keyed
//! hashes and values are sealed, so the files show no ids, times, sequence numbers or order.
//!
//! Trees and their (real, sealed) keys (`h16(x)` is the first 16 bytes of the data key's keyed
//! hash of `x`); trees marked *ordered* keep their keys in memory, rebuilt at open:
//! - `channels`: h16(channel) → ChannelRecord
//! - `posts` (ordered): h16(channel) | timestamp(8) | h8(channel, author) | seq(8) → StoredPost
//! - `chain` (ordered): h16(channel) | h16(channel, author) | seq(8) → posts key (empty once
//!   expired)
//! - `tombstones`: chain key → header of an expired post (the proof that it expired)
//! - `authors` (ordered): h16(channel) | h16(channel, author) → author public key
//! - `ids`: h16(post id) → posts key
//! - `expiry` (ordered): expires_at(8) | posts key → chain key | ids key (the sweep's index)
//! - `outbox` (ordered): posts key → ()
//! - `peers`: h16(peer id) → PeerRecord
//! - `files`: h16(cid) → FileRecord
//! - `blocked`: h16(peer id) → peer id
//! - `contacts`: h16(peer id) → Contact
//! - the private trees ([`Private`], ordered): keys chosen by their users.

#![warn(clippy::arithmetic_side_effects)]

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::records::StoredPostPb;
use super::sealed::{SealedTree, tx_result};
use super::{
    AuthorState, ChannelRecord, Cursor, ExpiredPost, FileRecord, InsertOutcome, PeerRecord,
    Private, Retracted, Slot, Store, StoreError,
};
use crate::channel::{ChannelId, Post, PostHeader, PostId, now_ms};
use crate::crypto::DataKey;

/// Version 3: every tree sealed, keys included. Version 2 had keys in the clear (times and
/// sequence numbers among them); version 1 also had posts of wire protocol 1.
const FORMAT_VERSION: &[u8] = b"3";
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

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    key: Arc<DataKey>,
    channels: SealedTree,
    posts: SealedTree,
    chain: SealedTree,
    tombstones: SealedTree,
    authors: SealedTree,
    ids: SealedTree,
    outbox: SealedTree,
    peers: SealedTree,
    expiry: SealedTree,
    files: SealedTree,
    blocked: SealedTree,
    contacts: SealedTree,
    private: [SealedTree; 7],
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn map_open_err(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked
        }
        _ => StoreError::Sled(e),
    }
}

/// Opens the sled database at `dir`.
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        // Durability comes from explicit flushes (group commit in the writer); the
        // background flush only bounds what an idle node could lose.
        .flush_every_ms(Some(1000));
    // A store closed a moment ago in this process may still be locked by sled's flusher
    // thread, which lets go shortly after the last handle is dropped: retry briefly
    // before concluding that another process holds it.
    let mut attempts = 0u32;
    let db = loop {
        match config.open().map_err(map_open_err) {
            Err(StoreError::Locked) if attempts < 30 => {
                attempts = attempts.saturating_add(1);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break other?,
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Contents are sealed, but sizes and timing of files are nobody else's business.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(db)
}

/// The canary's associated data: a record sealed at creation that proves the key opens the
/// store before anything else is read.
const CANARY_AAD: &[u8] = b"meta/canary";

/// Checks that `key` opens `db` (creating the canary in a new store).
fn check_key(db: &sled::Db, key: &DataKey) -> Result<(), StoreError> {
    match db.get("canary")? {
        None => {
            db.insert("canary", key.seal(CANARY_AAD, b"samizdat"))?;
            db.flush()?;
            Ok(())
        }
        Some(v) => key
            .open(CANARY_AAD, &v)
            .map(|_| ())
            .map_err(|source| StoreError::Sealed {
                tree: "meta",
                source,
            }),
    }
}

/// `dir` with `suffix` added to its name.
fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

impl SledStore {
    /// Opens (or creates) the store at `dir`, sealed with `key`. A store of an older format
    /// is upgraded first: copied, record by record, into a new store of this format that
    /// then takes its place, so nothing of the old layout stays in the files.
    pub fn open(dir: &Path, key: Arc<DataKey>) -> Result<Self, StoreError> {
        Self::upgrade(dir, &key)?;
        let db = open_db(dir)?;
        match db.get("format")? {
            None => {
                db.insert("format", FORMAT_VERSION)?;
                db.flush()?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            Some(_) => return Err(StoreError::Corrupt("format version")),
        }
        check_key(&db, &key)?;
        Self::with_trees(db, key)
    }

    fn with_trees(db: sled::Db, key: Arc<DataKey>) -> Result<Self, StoreError> {
        let t =
            |name: &'static str, ordered: bool| SealedTree::open(&db, name, key.clone(), ordered);
        let private = [
            t(Private::ALL[0].name(), true)?,
            t(Private::ALL[1].name(), true)?,
            t(Private::ALL[2].name(), true)?,
            t(Private::ALL[3].name(), true)?,
            t(Private::ALL[4].name(), true)?,
            t(Private::ALL[5].name(), true)?,
            t(Private::ALL[6].name(), true)?,
        ];
        Ok(Self {
            channels: t("channels", false)?,
            posts: t("posts", true)?,
            chain: t("chain", true)?,
            tombstones: t("tombstones", false)?,
            authors: t("authors", true)?,
            ids: t("ids", false)?,
            outbox: t("outbox", true)?,
            peers: t("peers", false)?,
            expiry: t("expiry", true)?,
            files: t("files", false)?,
            blocked: t("blocked", false)?,
            contacts: t("contacts", false)?,
            private,
            db,
            key,
        })
    }

    fn tree(&self, name: &str) -> Option<&SealedTree> {
        Some(match name {
            "channels" => &self.channels,
            "posts" => &self.posts,
            "chain" => &self.chain,
            "tombstones" => &self.tombstones,
            "authors" => &self.authors,
            "ids" => &self.ids,
            "outbox" => &self.outbox,
            "peers" => &self.peers,
            "expiry" => &self.expiry,
            "files" => &self.files,
            "blocked" => &self.blocked,
            "contacts" => &self.contacts,
            _ => return None,
        })
    }

    fn private_tree(&self, tree: Private) -> &SealedTree {
        &self.private[tree.slot()]
    }

    /// Upgrades a store of format 1 or 2 at `dir` (see [`SledStore::open`]); finishes an
    /// upgrade a crash interrupted.
    fn upgrade(dir: &Path, key: &Arc<DataKey>) -> Result<(), StoreError> {
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
    fn resign_owner_posts(&self) -> Result<Vec<super::migrate::Resigned>, StoreError> {
        use super::migrate::{OldSlot, resign_owner_chain};
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

    fn h(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        self.key.index_hash(domain, data)
    }

    fn ch16(&self, channel: &ChannelId) -> [u8; 16] {
        first::<16>(&self.h(b"channel", channel.as_bytes()))
    }

    fn author_hash(&self, channel: &ChannelId, author: &[u8; 32]) -> [u8; 32] {
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(channel.as_bytes());
        data[32..].copy_from_slice(author);
        self.h(b"author", &data)
    }

    fn posts_key(&self, post: &Post) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..16].copy_from_slice(&self.ch16(&post.channel));
        k[16..24].copy_from_slice(&post.timestamp_ms.to_be_bytes());
        k[24..32]
            .copy_from_slice(&self.author_hash(&post.channel, &post.author_key.to_bytes())[..8]);
        k[32..].copy_from_slice(&post.seq.to_be_bytes());
        k
    }

    fn chain_prefix(&self, channel: &ChannelId, author: &[u8; 32]) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(&self.ch16(channel));
        k[16..].copy_from_slice(&self.author_hash(channel, author)[..16]);
        k
    }

    fn chain_key(&self, channel: &ChannelId, author: &[u8; 32], seq: u64) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..32].copy_from_slice(&self.chain_prefix(channel, author));
        k[32..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    fn id_key(&self, id: &PostId) -> [u8; 16] {
        first::<16>(&self.h(b"post", id.as_bytes()))
    }

    /// A channel's authors: each one's chain prefix (its `authors` key) and its key.
    fn channel_authors(&self, channel: &ChannelId) -> Result<Vec<AuthorEntry>, StoreError> {
        let mut out = Vec::new();
        for (k, plain) in self.authors.scan_prefix(&self.ch16(channel))? {
            let author: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("authors"))?;
            out.push((k, author));
        }
        Ok(out)
    }

    fn load_post(&self, posts_key: &[u8]) -> Result<Option<Post>, StoreError> {
        match self.posts.get(posts_key)? {
            Some(plain) => decode_post(&plain).map(Some),
            None => Ok(None),
        }
    }

    /// The header of the newest slot of a chain (its `authors` key) with something to show
    /// for it: a post, or a proven expiry.
    fn newest_slot(&self, chain_prefix: &[u8]) -> Result<Option<PostHeader>, StoreError> {
        for ck in self.chain.prefix_keys(chain_prefix, true, usize::MAX) {
            let Some(pk) = self.chain.get(&ck)? else {
                continue;
            };
            let header = if pk.is_empty() {
                self.load_tombstone(&ck)?
            } else {
                self.load_post(&pk)?.map(|p| p.header())
            };
            if header.is_some() {
                return Ok(header);
            }
        }
        Ok(None)
    }

    /// The header kept for an expired slot (none for slots expired before headers were kept).
    fn load_tombstone(&self, chain_key: &[u8]) -> Result<Option<PostHeader>, StoreError> {
        let Some(wire) = self.tombstones.get(chain_key)? else {
            return Ok(None);
        };
        PostHeader::from_store(wire)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("tombstones"))
    }

    /// Posts of a channel whose keys lie in `range`, in order (or reverse order).
    fn posts_in(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let mut out = Vec::new();
        for (k, plain) in self.posts.records(self.posts.keys(range, rev, limit))? {
            let post = decode_post(&plain)?;
            let c: [u8; 24] = k
                .get(16..40)
                .and_then(|c| c.try_into().ok())
                .ok_or(StoreError::Corrupt("posts"))?;
            out.push((Cursor(c), post));
        }
        Ok(out)
    }
}

/// An author of a channel: its chain prefix (its `authors` key) and its public key.
type AuthorEntry = (Vec<u8>, [u8; 32]);

fn decode_post(plain: &[u8]) -> Result<Post, StoreError> {
    let pb = StoredPostPb::decode(plain).map_err(|_| StoreError::Corrupt("posts"))?;
    Post::from_store(pb.wire).map_err(|_| StoreError::Corrupt("posts"))
}

fn seq_of(chain_key: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    if let Some(b) = chain_key.get(32..40) {
        s.copy_from_slice(b);
    }
    u64::from_be_bytes(s)
}

fn first<const N: usize>(h: &[u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[..N]);
    out
}

/// Associated data of a value sealed by formats 1 and 2 (for the upgrade).
fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(tree.len().saturating_add(key.len()).saturating_add(1));
    a.extend_from_slice(tree.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

impl Store for SledStore {
    fn put_channel(&self, rec: &ChannelRecord) -> Result<(), StoreError> {
        self.channels.insert(&self.ch16(&rec.id), &rec.encode())?;
        self.db.flush()?;
        Ok(())
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let Some(v) = self.channels.get(&self.ch16(id))? else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(v);
        ChannelRecord::decode(&plain)
            .map(Some)
            .ok_or(StoreError::Corrupt("channels"))
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        for (_, v) in self.channels.all()? {
            let plain = zeroize::Zeroizing::new(v);
            out.push(ChannelRecord::decode(&plain).ok_or(StoreError::Corrupt("channels"))?);
        }
        Ok(out)
    }

    fn insert_posts(&self, posts: &[Post]) -> Result<Vec<InsertOutcome>, StoreError> {
        use super::sealed::Prepared as Rec;
        // Everything that needs the data key is computed before the transaction, which sled
        // may run more than once.
        struct Prepared {
            post: Rec,
            chain: Rec,
            author: Rec,
            id: Rec,
            expiry: Option<Rec>,
        }
        let received_at_ms = now_ms();
        // Keyed hashes of (channel, author), and its `authors` record, are the same for a
        // whole batch of one author: computed once, not for every post.
        let mut prefixes: std::collections::HashMap<(ChannelId, [u8; 32]), ([u8; 32], Rec)> =
            std::collections::HashMap::new();
        let prepared: Vec<Prepared> = posts
            .iter()
            .map(|p| {
                let author = p.author_key.to_bytes();
                let (author_key, author_rec) = prefixes
                    .entry((p.channel, author))
                    .or_insert_with(|| {
                        let k = self.chain_prefix(&p.channel, &author);
                        let rec = self.authors.prepare(&k, &author);
                        (k, rec)
                    })
                    .clone();
                let mut posts_key = [0u8; 40];
                posts_key[..16].copy_from_slice(&author_key[..16]);
                posts_key[16..24].copy_from_slice(&p.timestamp_ms.to_be_bytes());
                posts_key[24..32].copy_from_slice(&author_key[16..24]);
                posts_key[32..].copy_from_slice(&p.seq.to_be_bytes());
                let value = StoredPostPb {
                    wire: p.wire.clone(),
                    received_at_ms,
                }
                .encode_to_vec();
                let mut chain_key = [0u8; 40];
                chain_key[..32].copy_from_slice(&author_key);
                chain_key[32..].copy_from_slice(&p.seq.to_be_bytes());
                let id_key = self.id_key(&p.id);
                let expiry = p.expires_at_ms.map(|at| {
                    let mut k = [0u8; 48];
                    k[..8].copy_from_slice(&at.to_be_bytes());
                    k[8..].copy_from_slice(&posts_key);
                    let mut v = [0u8; 56];
                    v[..40].copy_from_slice(&chain_key);
                    v[40..].copy_from_slice(&id_key);
                    self.expiry.prepare(&k, &v)
                });
                Prepared {
                    post: self.posts.prepare(&posts_key, &value),
                    chain: self.chain.prepare(&chain_key, &posts_key),
                    author: author_rec,
                    id: self.ids.prepare(&id_key, &posts_key),
                    expiry,
                }
            })
            .collect();

        let result = (
            self.posts.raw(),
            self.chain.raw(),
            self.ids.raw(),
            self.authors.raw(),
            self.expiry.raw(),
        )
            .transaction(|(posts, chain, ids, authors, expiry)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = self.ids.tx_get_at(ids, &p.id)? {
                        outcomes.push(if existing.is_empty() {
                            InsertOutcome::Expired
                        } else {
                            InsertOutcome::Duplicate
                        });
                        continue;
                    }
                    if SealedTree::tx_contains_at(chain, &p.chain)? {
                        outcomes.push(InsertOutcome::Conflict);
                        continue;
                    }
                    SealedTree::tx_insert(posts, &p.post)?;
                    SealedTree::tx_insert(chain, &p.chain)?;
                    SealedTree::tx_insert(ids, &p.id)?;
                    if !SealedTree::tx_contains_at(authors, &p.author)? {
                        SealedTree::tx_insert(authors, &p.author)?;
                    }
                    if let Some(e) = &p.expiry {
                        SealedTree::tx_insert(expiry, e)?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(outcomes)
            });
        let outcomes = tx_result(result)?;
        for (p, o) in prepared.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                self.posts.indexed(p.post.key());
                self.chain.indexed(p.chain.key());
                self.authors.indexed(p.author.key());
                if let Some(e) = &p.expiry {
                    self.expiry.indexed(e.key());
                }
            }
        }
        Ok(outcomes)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn post_at(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
    ) -> Result<Option<Post>, StoreError> {
        match self.chain.get(&self.chain_key(channel, author, seq))? {
            Some(pk) if !pk.is_empty() => self.load_post(&pk),
            _ => Ok(None),
        }
    }

    fn contains(&self, id: &PostId) -> Result<bool, StoreError> {
        self.ids.contains_key(&self.id_key(id))
    }

    fn history(
        &self,
        channel: &ChannelId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let prefix = self.ch16(channel);
        let mut end = [0xffu8; 40];
        end[..16].copy_from_slice(&prefix);
        let mut start = [0u8; 40];
        start[..16].copy_from_slice(&prefix);
        let lower = match after {
            Some(c) => {
                start[16..].copy_from_slice(&c.0);
                Bound::Excluded(&start[..])
            }
            None => Bound::Included(&prefix[..]),
        };
        self.posts_in((lower, Bound::Included(&end[..])), false, limit)
    }

    fn history_before(
        &self,
        channel: &ChannelId,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let prefix = self.ch16(channel);
        let mut end = [0xffu8; 40];
        end[..16].copy_from_slice(&prefix);
        let upper = match before {
            Some(c) => {
                end[16..].copy_from_slice(&c.0);
                Bound::Excluded(&end[..])
            }
            None => Bound::Included(&end[..]),
        };
        let mut out = self.posts_in((Bound::Included(&prefix[..]), upper), true, limit)?;
        out.reverse();
        Ok(out)
    }

    fn count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        Ok(self.posts.prefix_count(&self.ch16(channel)) as u64)
    }

    fn authors(&self, channel: &ChannelId) -> Result<Vec<AuthorState>, StoreError> {
        let mut out = Vec::new();
        for (k, author) in self.channel_authors(channel)? {
            let mut max_seq = 0;
            let mut held = 0u64;
            let mut expired = 0u64;
            for (key, value) in self.chain.scan_prefix(&k)? {
                max_seq = max_seq.max(seq_of(&key));
                held = held.saturating_add(1);
                if value.is_empty() {
                    expired = expired.saturating_add(1);
                }
            }
            out.push(AuthorState {
                author,
                max_seq,
                held,
                expired,
            });
        }
        Ok(out)
    }

    fn heads(&self, channel: &ChannelId) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let mut out = Vec::new();
        for (k, author) in self.channel_authors(channel)? {
            // Chain keys end in the big-endian seq: the last key is the head.
            let max_seq = self
                .chain
                .prefix_keys(&k, true, 1)
                .first()
                .map_or(0, |k| seq_of(k));
            out.push((author, max_seq));
        }
        Ok(out)
    }

    fn head_headers(
        &self,
        channel: &ChannelId,
        limit: usize,
    ) -> Result<Vec<PostHeader>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.channel_authors(channel)? {
            if out.len() >= limit {
                break;
            }
            if let Some(h) = self.newest_slot(&k)? {
                out.push(h);
            }
        }
        Ok(out)
    }

    fn chain_head(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
    ) -> Result<Option<PostHeader>, StoreError> {
        self.newest_slot(&self.chain_prefix(channel, author))
    }

    fn slots(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Slot)>, StoreError> {
        let start = self.chain_key(channel, author, from);
        let end = self.chain_key(channel, author, to);
        let keys = self.chain.keys(
            (Bound::Included(&start[..]), Bound::Included(&end[..])),
            false,
            limit,
        );
        let mut out = Vec::new();
        for (k, pk) in self.chain.records(keys)? {
            let seq = seq_of(&k);
            if pk.is_empty() {
                if let Some(h) = self.load_tombstone(&k)? {
                    out.push((seq, Slot::Expired(Box::new(h))));
                }
            } else if let Some(p) = self.load_post(&pk)? {
                out.push((seq, Slot::Post(Box::new(p))));
            }
        }
        Ok(out)
    }

    fn missing(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        upto: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        // None: past u64::MAX (a slot at the very end is held; nothing can follow it).
        let mut next = Some(1u64);
        for k in self
            .chain
            .prefix_keys(&self.chain_prefix(channel, author), false, usize::MAX)
        {
            let seq = seq_of(&k);
            if seq > upto {
                break;
            }
            if let Some(n) = next
                && seq > n
            {
                out.push((n, seq.saturating_sub(1)));
            }
            next = seq.checked_add(1);
        }
        if let Some(n) = next
            && n <= upto
        {
            out.push((n, upto));
        }
        Ok(out)
    }

    fn insert_tombstones(&self, headers: &[PostHeader]) -> Result<Vec<InsertOutcome>, StoreError> {
        use super::sealed::Prepared as Rec;
        struct Prepared {
            chain: Rec,
            author: Rec,
            id: Rec,
            tombstone: Rec,
        }
        let prepared: Vec<Prepared> = headers
            .iter()
            .map(|h| {
                let author = h.author_key.to_bytes();
                let author_key = self.chain_prefix(&h.channel, &author);
                let chain_key = self.chain_key(&h.channel, &author, h.seq);
                let id_key = self.id_key(&h.id);
                Prepared {
                    chain: self.chain.prepare(&chain_key, &[]),
                    author: self.authors.prepare(&author_key, &author),
                    id: self.ids.prepare(&id_key, &[]),
                    tombstone: self.tombstones.prepare(&chain_key, &h.wire),
                }
            })
            .collect();
        let result = (
            self.chain.raw(),
            self.ids.raw(),
            self.authors.raw(),
            self.tombstones.raw(),
        )
            .transaction(|(chain, ids, authors, tombstones)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = self.ids.tx_get_at(ids, &p.id)? {
                        // Held (its own expiry sweep turns it into a tombstone) or expired.
                        outcomes.push(if existing.is_empty() {
                            InsertOutcome::Expired
                        } else {
                            InsertOutcome::Duplicate
                        });
                        continue;
                    }
                    if SealedTree::tx_contains_at(chain, &p.chain)? {
                        outcomes.push(InsertOutcome::Conflict);
                        continue;
                    }
                    SealedTree::tx_insert(chain, &p.chain)?;
                    SealedTree::tx_insert(ids, &p.id)?;
                    SealedTree::tx_insert(tombstones, &p.tombstone)?;
                    if !SealedTree::tx_contains_at(authors, &p.author)? {
                        SealedTree::tx_insert(authors, &p.author)?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(outcomes)
            });
        let outcomes = tx_result(result)?;
        for (p, o) in prepared.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                self.chain.indexed(p.chain.key());
                self.authors.indexed(p.author.key());
            }
        }
        Ok(outcomes)
    }

    fn retract(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        after_seq: u64,
    ) -> Result<Retracted, StoreError> {
        let mut out = Retracted::default();
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        let start = self.chain_key(channel, author, from);
        let end = self.chain_key(channel, author, u64::MAX);
        let keys = self.chain.keys(
            (Bound::Included(&start[..]), Bound::Included(&end[..])),
            false,
            usize::MAX,
        );
        for (ck, pk) in self.chain.records(keys)? {
            if pk.is_empty() {
                if let Some(h) = self.load_tombstone(&ck)? {
                    self.ids.remove(&self.id_key(&h.id))?;
                }
                self.tombstones.remove(&ck)?;
                out.tombstones = out.tombstones.saturating_add(1);
            } else {
                if let Some(p) = self.load_post(&pk)? {
                    self.ids.remove(&self.id_key(&p.id))?;
                    if let Some(at) = p.expires_at_ms {
                        let mut k = at.to_be_bytes().to_vec();
                        k.extend_from_slice(&pk);
                        self.expiry.remove(&k)?;
                    }
                }
                self.posts.remove(&pk)?;
                self.outbox.remove(&pk)?;
                out.posts = out.posts.saturating_add(1);
            }
            self.chain.remove(&ck)?;
        }
        if out != Retracted::default() {
            self.db.flush()?;
        }
        Ok(out)
    }

    fn expire_due(&self, now_ms: u64) -> Result<Vec<ExpiredPost>, StoreError> {
        let mut end = [0xffu8; 48];
        end[..8].copy_from_slice(&now_ms.to_be_bytes());
        let mut out = Vec::new();
        let due = self.expiry.keys(
            (Bound::Unbounded, Bound::Included(&end[..])),
            false,
            usize::MAX,
        );
        for (k, v) in self.expiry.records(due)? {
            if v.len() != 56 || k.len() != 48 {
                self.expiry.remove(&k)?;
                continue;
            }
            let posts_key = &k[8..48];
            let post = self.load_post(posts_key)?;
            let (chain_key, id_key) = v.split_at(40);
            // What stays of the post: its signed header, served as the proof that it expired.
            let tombstone = post
                .as_ref()
                .map(|p| self.tombstones.prepare(chain_key, &p.header().wire));
            let chain_entry = self.chain.prepare(chain_key, &[]);
            let id_entry = self.ids.prepare(id_key, &[]);
            let r = (
                self.posts.raw(),
                self.chain.raw(),
                self.ids.raw(),
                self.expiry.raw(),
                self.outbox.raw(),
                self.tombstones.raw(),
            )
                .transaction(|(posts, chain, ids, expiry, outbox, tombstones)| {
                    self.posts.tx_remove(posts, posts_key)?;
                    SealedTree::tx_insert(chain, &chain_entry)?;
                    SealedTree::tx_insert(ids, &id_entry)?;
                    self.expiry.tx_remove(expiry, &k)?;
                    self.outbox.tx_remove(outbox, posts_key)?;
                    if let Some(t) = &tombstone {
                        SealedTree::tx_insert(tombstones, t)?;
                    }
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                });
            tx_result(r)?;
            self.posts.unindexed(posts_key);
            self.expiry.unindexed(&k);
            self.outbox.unindexed(posts_key);
            self.chain.indexed(chain_key);
            if let Some(p) = post {
                out.push(ExpiredPost {
                    channel: p.channel,
                    id: p.id,
                });
            }
        }
        if !out.is_empty() {
            self.db.flush()?;
        }
        Ok(out)
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .expiry
            .keys((Bound::Unbounded, Bound::Unbounded), false, 1)
            .first()
            .and_then(|k| {
                let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
                Some(u64::from_be_bytes(b))
            }))
    }

    fn put_file(&self, rec: &FileRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"file", &rec.cid));
        self.files.insert(&k, &rec.encode())?;
        self.db.flush()?;
        Ok(())
    }

    fn file(&self, cid: &[u8; 32]) -> Result<Option<FileRecord>, StoreError> {
        let k = first::<16>(&self.h(b"file", cid));
        let Some(v) = self.files.get(&k)? else {
            return Ok(None);
        };
        FileRecord::decode(&v)
            .map(Some)
            .ok_or(StoreError::Corrupt("files"))
    }

    fn files(&self) -> Result<Vec<FileRecord>, StoreError> {
        self.files
            .all()?
            .into_iter()
            .map(|(_, v)| FileRecord::decode(&v).ok_or(StoreError::Corrupt("files")))
            .collect()
    }

    fn set_blocked(&self, peer: &libp2p::PeerId, blocked: bool) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"blocked", &peer.to_bytes()));
        if blocked {
            self.blocked.insert(&k, &peer.to_bytes())?;
        } else {
            self.blocked.remove(&k)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn blocked_peers(&self) -> Result<Vec<libp2p::PeerId>, StoreError> {
        self.blocked
            .all()?
            .into_iter()
            .map(|(_, v)| {
                libp2p::PeerId::from_bytes(&v).map_err(|_| StoreError::Corrupt("blocked"))
            })
            .collect()
    }

    fn outbox_add(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.insert(&self.posts_key(post), &[])
    }

    fn outbox_remove(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.remove(&self.posts_key(post))
    }

    fn outbox(&self) -> Result<Vec<Post>, StoreError> {
        let mut out = Vec::new();
        for k in self
            .outbox
            .keys((Bound::Unbounded, Bound::Unbounded), false, usize::MAX)
        {
            match self.load_post(&k)? {
                Some(p) => out.push(p),
                // Expired or removed meanwhile: nothing left to publish.
                None => self.outbox.remove(&k)?,
            }
        }
        Ok(out)
    }

    fn put_peer(&self, rec: &PeerRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"peer", &rec.peer_id.to_bytes()));
        self.peers.insert(&k, &rec.encode())
    }

    fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        let mut out = Vec::new();
        for (_, plain) in self.peers.all()? {
            out.push(PeerRecord::decode(&plain).ok_or(StoreError::Corrupt("peers"))?);
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.last_seen_ms));
        Ok(out)
    }

    fn put_contact(&self, contact: &crate::contact::Contact) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"contact", &contact.peer_id.to_bytes()));
        self.contacts.insert(&k, &contact.encode())?;
        self.contacts.flush()?;
        Ok(())
    }

    fn contacts(&self) -> Result<Vec<crate::contact::Contact>, StoreError> {
        let mut out = Vec::new();
        for (_, plain) in self.contacts.all()? {
            out.push(
                crate::contact::Contact::decode(&plain)
                    .map_err(|_| StoreError::Corrupt("contacts"))?,
            );
        }
        out.sort_by_key(|c| c.added_ms);
        Ok(out)
    }

    fn index(&self, domain: &[u8], data: &[u8]) -> [u8; 16] {
        first::<16>(&self.h(domain, data))
    }

    fn private_put(&self, tree: Private, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let t = self.private_tree(tree);
        t.insert(key, value)?;
        t.flush()?;
        Ok(())
    }

    fn private_get(&self, tree: Private, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.private_tree(tree).get(key)
    }

    fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError> {
        self.private_tree(tree).remove(key)
    }

    fn private_scan(
        &self,
        tree: Private,
        prefix: &[u8],
    ) -> Result<Vec<super::KeyValue>, StoreError> {
        self.private_tree(tree).scan_prefix(prefix)
    }

    fn prune_peers(&self, keep: usize) -> Result<usize, StoreError> {
        let peers = self.peers()?;
        let mut removed = 0usize;
        for p in peers.iter().skip(keep) {
            let k = first::<16>(&self.h(b"peer", &p.peer_id.to_bytes()));
            self.peers.remove(&k)?;
            removed = removed.saturating_add(1);
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::channel::PostDraft;
    use crate::store::Role;
    use libp2p::identity::ed25519;

    fn open(dir: &Path, key: &Arc<DataKey>) -> SledStore {
        SledStore::open(dir, key.clone()).expect("open")
    }

    fn chain_of(n: u64, key: &ed25519::Keypair, text: &str) -> Vec<Post> {
        let id = ChannelId::from_key(&key.public());
        let mut prev = None;
        (1..=n)
            .map(|seq| {
                let p = Post::sign(
                    &id,
                    key,
                    None,
                    seq,
                    prev,
                    1_000 + seq,
                    PostDraft {
                        text: format!("{text} {seq}"),
                        ..Default::default()
                    },
                )
                .expect("sign");
                prev = Some(p.id);
                p
            })
            .collect()
    }

    #[test]
    fn posts_round_trip_in_order_with_paging() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let mut posts = chain_of(25, &ck, "hello");
        posts.reverse(); // insertion order must not matter
        let outcomes = s.insert_posts(&posts).expect("insert");
        assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));
        assert_eq!(
            s.insert_posts(&posts[..1]).expect("dup")[0],
            InsertOutcome::Duplicate
        );
        s.flush().expect("flush");

        let page1 = s.history(&id, None, 10).expect("page1");
        let page2 = s.history(&id, Some(&page1[9].0), 100).expect("page2");
        let seqs: Vec<u64> = page1
            .iter()
            .chain(page2.iter())
            .map(|(_, p)| p.seq)
            .collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
        assert_eq!(s.count(&id).expect("count"), 25);

        // Backwards, as a UI scrolls: the newest 10, the 10 before, the last 5.
        let mut back = Vec::new();
        let mut before = None;
        loop {
            let page = s.history_before(&id, before.as_ref(), 10).expect("back");
            let Some((first, _)) = page.first() else {
                break;
            };
            before = Some(first.clone());
            let seqs: Vec<u64> = page.iter().map(|(_, p)| p.seq).collect();
            back.push(seqs);
        }
        assert_eq!(
            back,
            vec![
                (16..=25).collect::<Vec<_>>(),
                (6..=15).collect(),
                (1..=5).collect()
            ]
        );
        let author = ck.public().to_bytes();
        assert_eq!(
            s.chain_head(&id, &author).expect("head").map(|p| p.seq),
            Some(25)
        );
        assert_eq!(
            s.post_at(&id, &author, 7).expect("at").map(|p| p.text),
            Some("hello 7".into())
        );
        assert_eq!(
            s.authors(&id).expect("authors"),
            vec![AuthorState {
                author,
                max_seq: 25,
                held: 25,
                expired: 0
            }]
        );
        assert!(s.contains(&posts[3].id).expect("contains"));
    }

    #[test]
    fn gaps_slots_and_expiry() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let author = ck.public().to_bytes();
        let mut posts = chain_of(10, &ck, "p");
        // Make seq 4 expire at t=50 (re-signed with an expiry), drop 6..=7 (a gap).
        let four = Post::sign(
            &id,
            &ck,
            None,
            4,
            Some(posts[2].id),
            posts[3].timestamp_ms,
            PostDraft {
                text: "short-lived".into(),
                expires_at_ms: Some(50),
                file: None,
            },
        )
        .expect("sign");
        posts[3] = four.clone();
        let keep: Vec<Post> = posts
            .iter()
            .filter(|p| p.seq != 6 && p.seq != 7)
            .cloned()
            .collect();
        s.insert_posts(&keep).expect("insert");
        assert_eq!(
            s.missing(&id, &author, 12).expect("missing"),
            vec![(6, 7), (11, 12)]
        );
        assert_eq!(s.next_expiry().expect("next"), Some(50));
        assert!(s.expire_due(49).expect("early").is_empty());
        let gone = s.expire_due(50).expect("due");
        assert_eq!(
            gone,
            vec![ExpiredPost {
                channel: id,
                id: four.id
            }]
        );
        assert_eq!(s.next_expiry().expect("next"), None);
        assert!(s.post_at(&id, &author, 4).expect("at").is_none());
        assert_eq!(s.count(&id).expect("count"), 7);
        // The slot is a tombstone: not missing, reported as expired, never re-inserted.
        assert_eq!(s.missing(&id, &author, 10).expect("missing"), vec![(6, 7)]);
        let slots = s.slots(&id, &author, 3, 5, 10).expect("slots");
        assert_eq!(
            slots.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(matches!(&slots[1].1, Slot::Expired(h) if h.id == four.id && h.seq == 4));
        assert_eq!(
            s.insert_posts(&[four]).expect("again")[0],
            InsertOutcome::Expired
        );
        // Expiry proofs learned from peers fill holes only: seq 6 expired (its header proves
        // it); a header for seq 8, which is held, is another post's and changes nothing.
        let expiring = |seq: u64, prev: PostId, text: &str| {
            Post::sign(
                &id,
                &ck,
                None,
                seq,
                Some(prev),
                2_000,
                PostDraft {
                    text: text.into(),
                    expires_at_ms: Some(60),
                    file: None,
                },
            )
            .expect("sign")
        };
        let six = expiring(6, posts[4].id, "six");
        let eight = expiring(8, posts[6].id, "eight");
        assert_eq!(
            s.insert_tombstones(&[six.header(), eight.header()])
                .expect("tombstones"),
            vec![InsertOutcome::Inserted, InsertOutcome::Conflict]
        );
        assert_eq!(
            s.insert_tombstones(&[six.header()]).expect("again"),
            vec![InsertOutcome::Expired]
        );
        assert_eq!(s.missing(&id, &author, 10).expect("missing"), vec![(7, 7)]);
        assert!(s.post_at(&id, &author, 8).expect("at").is_some());
        let st = &s.authors(&id).expect("authors")[0];
        assert_eq!((st.max_seq, st.held, st.expired), (10, 9, 2));
        // The cheap head lookup agrees with the full scan, and proves the head.
        assert_eq!(s.heads(&id).expect("heads"), vec![(author, 10)]);
        let proofs = s.head_headers(&id, 10).expect("head headers");
        assert_eq!(proofs.len(), 1);
        assert_eq!((proofs[0].seq, proofs[0].id), (10, posts[9].id));
        assert!(PostHeader::verify(&proofs[0].wire, &id, 0).is_ok());
        // The tombstone of seq 4 is served as its header.
        let slots = s.slots(&id, &author, 6, 6, 10).expect("slots");
        assert!(matches!(&slots[0].1, Slot::Expired(h) if h.id == six.id));
    }

    #[test]
    fn an_expired_newest_post_still_holds_its_place_in_the_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let first = chain_of(1, &ck, "stays").remove(0);
        let second = Post::sign(
            &id,
            &ck,
            None,
            2,
            Some(first.id),
            2_000,
            PostDraft {
                text: "goes".into(),
                expires_at_ms: Some(3_000),
                file: None,
            },
        )
        .expect("sign");
        s.insert_posts(&[first, second.clone()]).expect("insert");
        s.expire_due(3_000).expect("expire");
        // The author's next post goes after the expired one (seq 3), not into its slot.
        let head = s
            .chain_head(&id, &ck.public().to_bytes())
            .expect("head")
            .expect("a head");
        assert_eq!((head.seq, head.id), (2, second.id));
    }

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

    #[test]
    fn equivocation_is_a_conflict() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let a = chain_of(1, &ck, "first");
        let b = chain_of(1, &ck, "other");
        assert_eq!(s.insert_posts(&a).expect("a")[0], InsertOutcome::Inserted);
        assert_eq!(s.insert_posts(&b).expect("b")[0], InsertOutcome::Conflict);
    }

    #[test]
    fn nothing_readable_on_disk_and_wrong_key_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        {
            let s = open(dir.path(), &key);
            let ck = ed25519::Keypair::generate();
            s.insert_posts(&chain_of(3, &ck, "PLAINTEXT-MARKER"))
                .expect("insert");
            s.put_channel(&ChannelRecord {
                id: ChannelId::from_key(&ck.public()),
                role: Role::Owner,
                manifest: None,
                secret_key: Some(zeroize::Zeroizing::new(ck.to_bytes().to_vec())),
                admin_cert: None,
                followed_at_ms: 0,
                certs: Vec::new(),
                revocations: Vec::new(),
            })
            .expect("channel");
            s.flush().expect("flush");
        }
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).expect("read");
            assert!(
                !bytes.windows(16).any(|w| w == b"PLAINTEXT-MARKER"),
                "plaintext found in {}",
                entry.display()
            );
        }
        let wrong = Arc::new(DataKey::generate());
        assert!(matches!(
            SledStore::open(dir.path(), wrong),
            Err(StoreError::Sealed { .. })
        ));
        let s = open(dir.path(), &key);
        assert_eq!(s.channels().expect("channels").len(), 1);
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let _s = open(dir.path(), &key);
        // sled's lock is per process for the same path within one process too.
        let second = SledStore::open(dir.path(), key);
        assert!(second.is_err());
    }

    #[test]
    fn peers_sorted_and_pruned() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        for i in 0..5u64 {
            s.put_peer(&PeerRecord {
                peer_id: libp2p::PeerId::random(),
                addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().expect("addr")],
                last_seen_ms: i,
            })
            .expect("put");
        }
        let peers = s.peers().expect("peers");
        assert_eq!(
            peers.iter().map(|p| p.last_seen_ms).collect::<Vec<_>>(),
            vec![4, 3, 2, 1, 0]
        );
        assert_eq!(s.prune_peers(2).expect("prune"), 3);
        assert_eq!(s.peers().expect("peers").len(), 2);
    }

    pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("readdir").flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
