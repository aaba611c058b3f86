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

mod chains;
mod channels;
mod contacts;
mod expiry;
mod files;
mod peers;
mod posts;
mod private;
mod upgrade;

use std::path::Path;
use std::sync::Arc;

use super::sealed::SealedTree;
use super::{
    AuthorState, Change, ChannelRecord, Cursor, ExpiredPost, FileRecord, InsertOutcome, PeerRecord,
    Private, Retracted, Slot, Store, StoreError,
};
use crate::channel::{ChannelId, Post, PostHeader, PostId};
use crate::crypto::DataKey;
use upgrade::FORMAT_VERSION;

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
    /// Writes made outside the group-commit writer (see [`Store::write_seq`]).
    written: std::sync::atomic::AtomicU64,
    /// Of those, how many the last flush covered.
    durable: std::sync::atomic::AtomicU64,
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
        // Durability comes from explicit flushes only: group commit in the writer, which also
        // flushes what was written without waiting at least once a second
        // (`node::writer::FLUSH_EVERY`). sled's own timer beside it doubled the flushes.
        .flush_every_ms(None);
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
            written: std::sync::atomic::AtomicU64::new(0),
            durable: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Counts a write that a later flush makes durable (call after the write is made, so a
    /// flush that reads the count covers it).
    fn wrote(&self) {
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Flushes everything written so far: never on the swarm task, which must not wait for
    /// the disk (its writes are made durable by the writer thread; see [`Store::write_seq`]).
    fn sync(&self) -> Result<(), StoreError> {
        crate::store::check_may_wait_for_disk();
        let upto = self.written.load(std::sync::atomic::Ordering::Acquire);
        self.db.flush()?;
        self.durable
            .fetch_max(upto, std::sync::atomic::Ordering::AcqRel);
        Ok(())
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

impl Store for SledStore {
    fn put_channel(&self, rec: &ChannelRecord) -> Result<(), StoreError> {
        SledStore::put_channel(self, rec)
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        SledStore::channel(self, id)
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        SledStore::channels(self)
    }

    fn insert_posts(&self, posts: &[Post]) -> Result<Vec<InsertOutcome>, StoreError> {
        SledStore::insert_posts(self, posts)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.sync()
    }

    fn write_seq(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }

    fn durable_seq(&self) -> u64 {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    fn post_at(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
    ) -> Result<Option<Post>, StoreError> {
        SledStore::post_at(self, channel, author, seq)
    }

    fn contains(&self, id: &PostId) -> Result<bool, StoreError> {
        SledStore::contains(self, id)
    }

    fn history(
        &self,
        channel: &ChannelId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        SledStore::history(self, channel, after, limit)
    }

    fn history_before(
        &self,
        channel: &ChannelId,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        SledStore::history_before(self, channel, before, limit)
    }

    fn count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        SledStore::count(self, channel)
    }

    fn authors(&self, channel: &ChannelId) -> Result<Vec<AuthorState>, StoreError> {
        SledStore::authors(self, channel)
    }

    fn heads(&self, channel: &ChannelId) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        SledStore::heads(self, channel)
    }

    fn head_headers(
        &self,
        channel: &ChannelId,
        limit: usize,
    ) -> Result<Vec<PostHeader>, StoreError> {
        SledStore::head_headers(self, channel, limit)
    }

    fn chain_head(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
    ) -> Result<Option<PostHeader>, StoreError> {
        SledStore::chain_head(self, channel, author)
    }

    fn slots(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Slot)>, StoreError> {
        SledStore::slots(self, channel, author, from, to, limit)
    }

    fn missing(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        upto: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        SledStore::missing(self, channel, author, upto)
    }

    fn insert_tombstones(&self, headers: &[PostHeader]) -> Result<Vec<InsertOutcome>, StoreError> {
        SledStore::insert_tombstones(self, headers)
    }

    fn retract(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        after_seq: u64,
    ) -> Result<Retracted, StoreError> {
        SledStore::retract(self, channel, author, after_seq)
    }

    fn expire_due(&self, now_ms: u64) -> Result<Vec<ExpiredPost>, StoreError> {
        SledStore::expire_due(self, now_ms)
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        SledStore::next_expiry(self)
    }

    fn put_file(&self, rec: &FileRecord) -> Result<(), StoreError> {
        SledStore::put_file(self, rec)
    }

    fn file(&self, cid: &[u8; 32]) -> Result<Option<FileRecord>, StoreError> {
        SledStore::file(self, cid)
    }

    fn files(&self) -> Result<Vec<FileRecord>, StoreError> {
        SledStore::files(self)
    }

    fn set_blocked(&self, peer: &libp2p::PeerId, blocked: bool) -> Result<(), StoreError> {
        SledStore::set_blocked(self, peer, blocked)
    }

    fn blocked_peers(&self) -> Result<Vec<libp2p::PeerId>, StoreError> {
        SledStore::blocked_peers(self)
    }

    fn outbox_add(&self, post: &Post) -> Result<(), StoreError> {
        SledStore::outbox_add(self, post)
    }

    fn outbox_remove(&self, post: &Post) -> Result<(), StoreError> {
        SledStore::outbox_remove(self, post)
    }

    fn outbox(&self) -> Result<Vec<Post>, StoreError> {
        SledStore::outbox(self)
    }

    fn put_peer(&self, rec: &PeerRecord) -> Result<(), StoreError> {
        SledStore::put_peer(self, rec)
    }

    fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        SledStore::peers(self)
    }

    fn put_contact(&self, contact: &crate::contact::Contact) -> Result<(), StoreError> {
        SledStore::put_contact(self, contact)
    }

    fn contacts(&self) -> Result<Vec<crate::contact::Contact>, StoreError> {
        SledStore::contacts(self)
    }

    fn index(&self, domain: &[u8], data: &[u8]) -> [u8; 16] {
        SledStore::index(self, domain, data)
    }

    fn private_put(&self, tree: Private, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        SledStore::private_put(self, tree, key, value)
    }

    fn private_get(&self, tree: Private, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        SledStore::private_get(self, tree, key)
    }

    fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError> {
        SledStore::private_remove(self, tree, key)
    }

    fn private_apply(&self, tree: Private, changes: &[Change]) -> Result<(), StoreError> {
        SledStore::private_apply(self, tree, changes)
    }

    fn private_scan(
        &self,
        tree: Private,
        prefix: &[u8],
    ) -> Result<Vec<super::KeyValue>, StoreError> {
        SledStore::private_scan(self, tree, prefix)
    }

    fn prune_peers(&self, keep: usize) -> Result<usize, StoreError> {
        SledStore::prune_peers(self, keep)
    }

    fn forget_peers(&self, peers: &[libp2p::PeerId]) -> Result<(), StoreError> {
        SledStore::forget_peers(self, peers)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use libp2p::identity::ed25519;

    use super::*;
    use crate::channel::{ChannelId, Post, PostDraft};
    use crate::store::Role;

    pub(super) fn open(dir: &Path, key: &Arc<DataKey>) -> SledStore {
        SledStore::open(dir, key.clone()).expect("open")
    }

    pub(super) fn chain_of(n: u64, key: &ed25519::Keypair, text: &str) -> Vec<Post> {
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
}
