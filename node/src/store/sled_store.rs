//! [`Store`] on sled 0.34, with every value sealed by the data key.
//!
//! Trees and keys (`h16(x)` is the first 16 bytes of the data key's keyed hash of `x`):
//! - `channels`: h16(channel) → sealed ChannelRecord
//! - `posts`: h16(channel) | timestamp(8) | h8(channel, author) | seq(8) → sealed StoredPost
//! - `chain`: h16(channel) | h16(channel, author) | seq(8) → posts key (empty once expired)
//! - `tombstones`: chain key → sealed header of an expired post (the proof that it expired)
//! - `authors`: h16(channel) | h16(channel, author) → sealed author public key
//! - `ids`: h16(post id) → posts key
//! - `expiry`: expires_at(8) | posts key → chain key | ids key (the sweep's index)
//! - `outbox`: posts key → ()
//! - `peers`: h16(peer id) → sealed PeerRecord
//! - `files`: h16(cid) → sealed FileRecord
//! - `blocked`: h16(peer id) → sealed peer id
//!
//! Values are sealed with the tree name and key as associated data, so a record moved to
//! another key or tree fails to open instead of being silently misread.

#![warn(clippy::arithmetic_side_effects)]

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};

use super::records::StoredPostPb;
use super::{
    AuthorState, ChannelRecord, Cursor, ExpiredPost, FileRecord, InsertOutcome, PeerRecord,
    Private, Slot, Store, StoreError,
};
use crate::channel::{ChannelId, Post, PostHeader, PostId, now_ms};
use crate::crypto::DataKey;

/// Version 2: posts are signed headers with their content beside them (wire protocol 2), and
/// expired slots keep the header as proof.
const FORMAT_VERSION: &[u8] = b"2";
/// Trees of a channel's history: cleared when a store of format 1 is opened, since posts of
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

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    key: Arc<DataKey>,
    channels: Tree,
    posts: Tree,
    chain: Tree,
    tombstones: Tree,
    authors: Tree,
    ids: Tree,
    outbox: Tree,
    peers: Tree,
    expiry: Tree,
    files: Tree,
    blocked: Tree,
    contacts: Tree,
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

impl SledStore {
    /// Opens (or creates) the store at `dir`, sealed with `key`.
    pub fn open(dir: &Path, key: Arc<DataKey>) -> Result<Self, StoreError> {
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
        let store = Self {
            channels: db.open_tree("channels")?,
            posts: db.open_tree("posts")?,
            chain: db.open_tree("chain")?,
            tombstones: db.open_tree("tombstones")?,
            authors: db.open_tree("authors")?,
            ids: db.open_tree("ids")?,
            outbox: db.open_tree("outbox")?,
            peers: db.open_tree("peers")?,
            expiry: db.open_tree("expiry")?,
            files: db.open_tree("files")?,
            blocked: db.open_tree("blocked")?,
            contacts: db.open_tree("contacts")?,
            db,
            key,
        };
        match store.db.get("format")? {
            None => {
                store.db.insert("format", FORMAT_VERSION)?;
                store.db.flush()?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            Some(v) if v.as_ref() == b"1" => {
                store.check_key()?;
                let own = store.resign_owner_posts()?;
                for tree in HISTORY_TREES {
                    store.db.open_tree(tree)?.clear()?;
                }
                let mut carried = 0;
                for r in own {
                    store.insert_posts(&r.posts)?;
                    store.insert_tombstones(&r.tombstones)?;
                    carried = r.posts.len().saturating_add(carried);
                }
                store.db.insert("format", FORMAT_VERSION)?;
                store.db.flush()?;
                tracing::warn!(
                    carried,
                    "store of format 1 upgraded to protocol 2: the channels this node owns keep \
                     their posts, signed again; other posts of protocol 1 were dropped and are \
                     synced again from peers (channels, keys, contacts and private messages are \
                     kept)"
                );
            }
            Some(_) => return Err(StoreError::Corrupt("format version")),
        }
        store.check_key()?;
        Ok(store)
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
            for item in self
                .chain
                .scan_prefix(self.chain_prefix(&rec.id, rec.id.as_bytes()))
            {
                let (ck, pk) = item?;
                let slot = if pk.is_empty() {
                    OldSlot::Expired
                } else {
                    let Some(v) = self.posts.get(&pk)? else {
                        continue;
                    };
                    let plain = self.open_value("posts", &pk, &v)?;
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

    /// Confirms the data key opens this store (a canary sealed at creation).
    fn check_key(&self) -> Result<(), StoreError> {
        const AAD: &[u8] = b"meta/canary";
        match self.db.get("canary")? {
            None => {
                self.db.insert("canary", self.key.seal(AAD, b"samizdat"))?;
                self.db.flush()?;
                Ok(())
            }
            Some(v) => self
                .key
                .open(AAD, &v)
                .map(|_| ())
                .map_err(|source| StoreError::Sealed {
                    tree: "meta",
                    source,
                }),
        }
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

    fn seal(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        self.key.seal(&aad(tree, key), value)
    }

    fn open_value(
        &self,
        tree: &'static str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.key
            .open(&aad(tree, key), value)
            .map_err(|source| StoreError::Sealed { tree, source })
    }

    /// A channel's authors: each one's chain prefix (its `authors` key) and its key.
    fn channel_authors(
        &self,
        channel: &ChannelId,
    ) -> Result<Vec<(sled::IVec, [u8; 32])>, StoreError> {
        let mut out = Vec::new();
        for item in self.authors.scan_prefix(self.ch16(channel)) {
            let (k, v) = item?;
            let plain = self.open_value("authors", &k, &v)?;
            let author: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("authors"))?;
            out.push((k, author));
        }
        Ok(out)
    }

    fn load_post(&self, posts_key: &[u8]) -> Result<Option<Post>, StoreError> {
        let Some(v) = self.posts.get(posts_key)? else {
            return Ok(None);
        };
        decode_post(&self.open_value("posts", posts_key, &v)?).map(Some)
    }

    /// The header of the newest slot of a chain (its `authors` key) with something to show
    /// for it: a post, or a proven expiry.
    fn newest_slot(&self, chain_prefix: &[u8]) -> Result<Option<PostHeader>, StoreError> {
        for entry in self.chain.scan_prefix(chain_prefix).rev() {
            let (ck, pk) = entry?;
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
        let Some(v) = self.tombstones.get(chain_key)? else {
            return Ok(None);
        };
        let wire = self.open_value("tombstones", chain_key, &v)?;
        PostHeader::from_store(wire)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("tombstones"))
    }
}

fn decode_post(plain: &[u8]) -> Result<Post, StoreError> {
    let pb = StoredPostPb::decode(plain).map_err(|_| StoreError::Corrupt("posts"))?;
    Post::from_store(pb.wire).map_err(|_| StoreError::Corrupt("posts"))
}

/// An author's chain prefix in a channel, and its sealed `authors` value.
type AuthorKeys = ([u8; 32], Vec<u8>);

fn seq_of(chain_key: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    s.copy_from_slice(&chain_key[32..40]);
    u64::from_be_bytes(s)
}

fn first<const N: usize>(h: &[u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[..N]);
    out
}

fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(tree.len().saturating_add(key.len()).saturating_add(1));
    a.extend_from_slice(tree.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

impl Store for SledStore {
    fn put_channel(&self, rec: &ChannelRecord) -> Result<(), StoreError> {
        let k = self.ch16(&rec.id);
        self.channels
            .insert(k, self.seal("channels", &k, &rec.encode()))?;
        self.db.flush()?;
        Ok(())
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let k = self.ch16(id);
        let Some(v) = self.channels.get(k)? else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(self.open_value("channels", &k, &v)?);
        ChannelRecord::decode(&plain)
            .map(Some)
            .ok_or(StoreError::Corrupt("channels"))
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.channels.iter() {
            let (k, v) = item?;
            let plain = zeroize::Zeroizing::new(self.open_value("channels", &k, &v)?);
            out.push(ChannelRecord::decode(&plain).ok_or(StoreError::Corrupt("channels"))?);
        }
        Ok(out)
    }

    fn insert_posts(&self, posts: &[Post]) -> Result<Vec<InsertOutcome>, StoreError> {
        // Everything that needs the data key is computed before the transaction, which sled
        // may run more than once.
        struct Prepared {
            posts_key: [u8; 40],
            chain_key: [u8; 40],
            author_key: [u8; 32],
            author_value: Vec<u8>,
            id_key: [u8; 16],
            sealed: Vec<u8>,
            expiry: Option<([u8; 48], [u8; 56])>,
        }
        let received_at_ms = now_ms();
        // Keyed hashes of (channel, author) are the same for a whole batch of one author:
        // compute them once, not three times per post.
        let mut prefixes: std::collections::HashMap<(ChannelId, [u8; 32]), AuthorKeys> =
            std::collections::HashMap::new();
        let prepared: Vec<Prepared> = posts
            .iter()
            .map(|p| {
                let author = p.author_key.to_bytes();
                let (author_key, author_value) = prefixes
                    .entry((p.channel, author))
                    .or_insert_with(|| {
                        let k = self.chain_prefix(&p.channel, &author);
                        let v = self.seal("authors", &k, &author);
                        (k, v)
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
                    (k, v)
                });
                Prepared {
                    posts_key,
                    chain_key,
                    author_value,
                    author_key,
                    id_key,
                    sealed: self.seal("posts", &posts_key, &value),
                    expiry,
                }
            })
            .collect();

        let result = (
            &self.posts,
            &self.chain,
            &self.ids,
            &self.authors,
            &self.expiry,
        )
            .transaction(|(posts, chain, ids, authors, expiry)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = ids.get(p.id_key)? {
                        outcomes.push(if existing.is_empty() {
                            InsertOutcome::Expired
                        } else {
                            InsertOutcome::Duplicate
                        });
                        continue;
                    }
                    if chain.get(p.chain_key)?.is_some() {
                        outcomes.push(InsertOutcome::Conflict);
                        continue;
                    }
                    posts.insert(&p.posts_key[..], p.sealed.as_slice())?;
                    chain.insert(&p.chain_key[..], &p.posts_key[..])?;
                    ids.insert(&p.id_key[..], &p.posts_key[..])?;
                    if authors.get(p.author_key)?.is_none() {
                        authors.insert(&p.author_key[..], p.author_value.as_slice())?;
                    }
                    if let Some((k, v)) = &p.expiry {
                        expiry.insert(&k[..], &v[..])?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<()>>(outcomes)
            });
        match result {
            Ok(o) => Ok(o),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Corrupt("transaction")),
        }
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
        match self.chain.get(self.chain_key(channel, author, seq))? {
            Some(pk) if !pk.is_empty() => self.load_post(&pk),
            _ => Ok(None),
        }
    }

    fn contains(&self, id: &PostId) -> Result<bool, StoreError> {
        Ok(self.ids.contains_key(self.id_key(id))?)
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
        use std::ops::Bound;
        let start = match after {
            Some(c) => {
                let mut start = [0u8; 40];
                start[..16].copy_from_slice(&prefix);
                start[16..].copy_from_slice(&c.0);
                Bound::Excluded(start.to_vec())
            }
            None => Bound::Included(prefix.to_vec()),
        };
        let iter = self
            .posts
            .range::<Vec<u8>, _>((start, Bound::Included(end.to_vec())));
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            let post = decode_post(&self.open_value("posts", &k, &v)?)?;
            let mut c = [0u8; 24];
            c.copy_from_slice(&k[16..40]);
            out.push((Cursor(c), post));
        }
        Ok(out)
    }

    fn history_before(
        &self,
        channel: &ChannelId,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let prefix = self.ch16(channel);
        use std::ops::Bound;
        let end = match before {
            Some(c) => {
                let mut end = [0u8; 40];
                end[..16].copy_from_slice(&prefix);
                end[16..].copy_from_slice(&c.0);
                Bound::Excluded(end.to_vec())
            }
            None => {
                let mut end = [0xffu8; 40];
                end[..16].copy_from_slice(&prefix);
                Bound::Included(end.to_vec())
            }
        };
        let iter = self
            .posts
            .range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), end));
        let mut out = Vec::new();
        for item in iter.rev().take(limit) {
            let (k, v) = item?;
            let post = decode_post(&self.open_value("posts", &k, &v)?)?;
            let mut c = [0u8; 24];
            c.copy_from_slice(&k[16..40]);
            out.push((Cursor(c), post));
        }
        out.reverse();
        Ok(out)
    }

    fn count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        Ok(self.posts.scan_prefix(self.ch16(channel)).keys().count() as u64)
    }

    fn authors(&self, channel: &ChannelId) -> Result<Vec<AuthorState>, StoreError> {
        let mut out = Vec::new();
        for (k, author) in self.channel_authors(channel)? {
            let mut max_seq = 0;
            let mut held = 0u64;
            let mut expired = 0u64;
            for entry in self.chain.scan_prefix(&k) {
                let (key, value) = entry?;
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
            let max_seq = match self.chain.scan_prefix(&k).next_back() {
                Some(entry) => seq_of(&entry?.0),
                None => 0,
            };
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
        let mut out = Vec::new();
        for item in self.chain.range(start..=end).take(limit) {
            let (k, pk) = item?;
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
            .scan_prefix(self.chain_prefix(channel, author))
            .keys()
        {
            let seq = seq_of(&k?);
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
        struct Prepared {
            chain_key: [u8; 40],
            author_key: [u8; 32],
            author_value: Vec<u8>,
            id_key: [u8; 16],
            sealed: Vec<u8>,
        }
        let prepared: Vec<Prepared> = headers
            .iter()
            .map(|h| {
                let author = h.author_key.to_bytes();
                let author_key = self.chain_prefix(&h.channel, &author);
                let chain_key = self.chain_key(&h.channel, &author, h.seq);
                Prepared {
                    author_value: self.seal("authors", &author_key, &author),
                    author_key,
                    id_key: self.id_key(&h.id),
                    sealed: self.seal("tombstones", &chain_key, &h.wire),
                    chain_key,
                }
            })
            .collect();
        let result = (&self.chain, &self.ids, &self.authors, &self.tombstones).transaction(
            |(chain, ids, authors, tombstones)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = ids.get(p.id_key)? {
                        // Held (its own expiry sweep turns it into a tombstone) or expired.
                        outcomes.push(if existing.is_empty() {
                            InsertOutcome::Expired
                        } else {
                            InsertOutcome::Duplicate
                        });
                        continue;
                    }
                    if chain.get(p.chain_key)?.is_some() {
                        outcomes.push(InsertOutcome::Conflict);
                        continue;
                    }
                    chain.insert(&p.chain_key[..], &[][..])?;
                    ids.insert(&p.id_key[..], &[][..])?;
                    tombstones.insert(&p.chain_key[..], p.sealed.as_slice())?;
                    if authors.get(p.author_key)?.is_none() {
                        authors.insert(&p.author_key[..], p.author_value.as_slice())?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<()>>(outcomes)
            },
        );
        match result {
            Ok(o) => Ok(o),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Corrupt("transaction")),
        }
    }

    fn expire_due(&self, now_ms: u64) -> Result<Vec<ExpiredPost>, StoreError> {
        let mut end = [0xffu8; 48];
        end[..8].copy_from_slice(&now_ms.to_be_bytes());
        let mut out = Vec::new();
        for item in self.expiry.range(..=end.to_vec()) {
            let (k, v) = item?;
            if v.len() != 56 || k.len() != 48 {
                self.expiry.remove(&k)?;
                continue;
            }
            let posts_key = &k[8..48];
            let post = self.load_post(posts_key)?;
            let (chain_key, id_key) = v.split_at(40);
            // What stays of the post: its signed header, served as the proof that it expired.
            let sealed_header = post
                .as_ref()
                .map(|p| self.seal("tombstones", chain_key, &p.header().wire));
            let r = (
                &self.posts,
                &self.chain,
                &self.ids,
                &self.expiry,
                &self.outbox,
                &self.tombstones,
            )
                .transaction(|(posts, chain, ids, expiry, outbox, tombstones)| {
                    posts.remove(posts_key)?;
                    chain.insert(chain_key, &[][..])?;
                    ids.insert(id_key, &[][..])?;
                    expiry.remove(&k)?;
                    outbox.remove(posts_key)?;
                    if let Some(h) = &sealed_header {
                        tombstones.insert(chain_key, h.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                });
            match r {
                Ok(()) => {}
                Err(TransactionError::Storage(e)) => return Err(e.into()),
                Err(TransactionError::Abort(())) => return Err(StoreError::Corrupt("expiry")),
            }
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
        Ok(self.expiry.first()?.and_then(|(k, _)| {
            let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
            Some(u64::from_be_bytes(b))
        }))
    }

    fn put_file(&self, rec: &FileRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"file", &rec.cid));
        self.files
            .insert(k, self.seal("files", &k, &rec.encode()))?;
        self.db.flush()?;
        Ok(())
    }

    fn file(&self, cid: &[u8; 32]) -> Result<Option<FileRecord>, StoreError> {
        let k = first::<16>(&self.h(b"file", cid));
        let Some(v) = self.files.get(k)? else {
            return Ok(None);
        };
        FileRecord::decode(&self.open_value("files", &k, &v)?)
            .map(Some)
            .ok_or(StoreError::Corrupt("files"))
    }

    fn files(&self) -> Result<Vec<FileRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.files.iter() {
            let (k, v) = item?;
            out.push(
                FileRecord::decode(&self.open_value("files", &k, &v)?)
                    .ok_or(StoreError::Corrupt("files"))?,
            );
        }
        Ok(out)
    }

    fn set_blocked(&self, peer: &libp2p::PeerId, blocked: bool) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"blocked", &peer.to_bytes()));
        if blocked {
            self.blocked
                .insert(k, self.seal("blocked", &k, &peer.to_bytes()))?;
        } else {
            self.blocked.remove(k)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn blocked_peers(&self) -> Result<Vec<libp2p::PeerId>, StoreError> {
        let mut out = Vec::new();
        for item in self.blocked.iter() {
            let (k, v) = item?;
            let bytes = self.open_value("blocked", &k, &v)?;
            out.push(
                libp2p::PeerId::from_bytes(&bytes).map_err(|_| StoreError::Corrupt("blocked"))?,
            );
        }
        Ok(out)
    }

    fn outbox_add(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.insert(self.posts_key(post), &[])?;
        Ok(())
    }

    fn outbox_remove(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.remove(self.posts_key(post))?;
        Ok(())
    }

    fn outbox(&self) -> Result<Vec<Post>, StoreError> {
        let mut out = Vec::new();
        for k in self.outbox.iter().keys() {
            let k = k?;
            match self.load_post(&k)? {
                Some(p) => out.push(p),
                // Expired or removed meanwhile: nothing left to publish.
                None => {
                    self.outbox.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    fn put_peer(&self, rec: &PeerRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"peer", &rec.peer_id.to_bytes()));
        self.peers
            .insert(k, self.seal("peers", &k, &rec.encode()))?;
        Ok(())
    }

    fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.peers.iter() {
            let (k, v) = item?;
            let plain = self.open_value("peers", &k, &v)?;
            out.push(PeerRecord::decode(&plain).ok_or(StoreError::Corrupt("peers"))?);
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.last_seen_ms));
        Ok(out)
    }

    fn put_contact(&self, contact: &crate::contact::Contact) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"contact", &contact.card.peer_id.to_bytes()));
        self.contacts
            .insert(k, self.seal("contacts", &k, &contact.encode()))?;
        self.contacts.flush()?;
        Ok(())
    }

    fn contacts(&self) -> Result<Vec<crate::contact::Contact>, StoreError> {
        let mut out = Vec::new();
        for item in self.contacts.iter() {
            let (k, v) = item?;
            let plain = self.open_value("contacts", &k, &v)?;
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
        let t = self.db.open_tree(tree.name())?;
        t.insert(key, self.seal(tree.name(), key, value))?;
        t.flush()?;
        Ok(())
    }

    fn private_get(&self, tree: Private, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.db.open_tree(tree.name())?;
        t.get(key)?
            .map(|v| self.open_value(tree.name(), key, &v))
            .transpose()
    }

    fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError> {
        self.db.open_tree(tree.name())?.remove(key)?;
        Ok(())
    }

    fn private_scan(
        &self,
        tree: Private,
        prefix: &[u8],
    ) -> Result<Vec<super::KeyValue>, StoreError> {
        let t = self.db.open_tree(tree.name())?;
        let mut out = Vec::new();
        for item in t.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((k.to_vec(), self.open_value(tree.name(), &k, &v)?));
        }
        Ok(out)
    }

    fn prune_peers(&self, keep: usize) -> Result<usize, StoreError> {
        let peers = self.peers()?;
        let mut removed = 0usize;
        for p in peers.iter().skip(keep) {
            let k = first::<16>(&self.h(b"peer", &p.peer_id.to_bytes()));
            self.peers.remove(k)?;
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
            })
            .expect("channel");
            s.db.insert("format", b"1").expect("format");
            s.flush().expect("flush");
        }
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
                s.posts
                    .insert(pk, s.seal("posts", &pk, &value))
                    .expect("post");
                s.chain
                    .insert(s.chain_key(&id, &author, seq), &pk[..])
                    .expect("chain");
            }
            s.chain
                .insert(s.chain_key(&id, &author, 2), &[][..])
                .expect("expired");
            s.db.insert("format", b"1").expect("format");
            s.flush().expect("flush");
        }
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
