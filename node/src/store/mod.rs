//! The node's history and state on disk: a narrow [`Store`] trait and its sled implementation.
//! Every value is sealed with the data key; keys are keyed hashes that reveal no names.

mod migrate;
pub mod private;
mod private_keys;
mod records;
mod sealed;
mod sled_store;

pub use records::{ChannelRecord, FileRecord, PeerRecord, Role};
pub use sled_store::SledStore;

use crate::channel::{ChannelId, Post, PostHeader, PostId};
use crate::contact::Contact;
use crate::crypto::OpenError;

/// A value to write under a key, or `None` to remove the key.
pub type Change = (Vec<u8>, Option<zeroize::Zeroizing<Vec<u8>>>);

tokio::task_local! {
    /// Set while the swarm task runs: that task must never wait for the disk.
    pub(crate) static SWARM_TASK: ();
}

/// Flags a flush made on the swarm task: it would stall every peer's traffic for a disk
/// round trip (a panic in debug builds, so every test run checks it; an error log otherwise).
pub(crate) fn check_may_wait_for_disk() {
    if SWARM_TASK.try_with(|_| ()).is_ok() {
        tracing::error!("a flush on the swarm task (a bug: it must go to the writer thread)");
        debug_assert!(false, "a flush on the swarm task");
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error(
        "the store is in use by another process (is a samizdat daemon already running on this home?)"
    )]
    Locked,
    /// sled reported an error.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A record failed authentication: wrong key or on-disk corruption.
    #[error("store record {tree}: {source}")]
    Sealed {
        /// Which tree.
        tree: &'static str,
        /// Why it failed.
        source: OpenError,
    },
    /// A record decrypted but does not decode.
    #[error("store record {0} is corrupt")]
    Corrupt(&'static str),
}

/// What inserting a post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Newly stored.
    Inserted,
    /// Already present (same id): nothing changed.
    Duplicate,
    /// Another post already holds this (author, seq): an equivocation, nothing changed.
    Conflict,
    /// Known to have existed and expired: not stored again.
    Expired,
}

/// An opaque position in a channel's history, for paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub [u8; 24]);

impl Cursor {
    /// Hex form for the API.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        data_encoding::HEXLOWER
            .decode(s.as_bytes())
            .ok()?
            .try_into()
            .ok()
            .map(Self)
    }
}

/// Per-author knowledge of a channel, for gap detection and sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorState {
    /// The author's public key.
    pub author: [u8; 32],
    /// Highest sequence number held (or known expired).
    pub max_seq: u64,
    /// How many sequence numbers in 1..=max_seq are held or known expired.
    pub held: u64,
    /// How many of those are known expired (deleted).
    pub expired: u64,
}

/// One slot of an author's chain: the post, or a note that it expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// The post is held.
    Post(Box<Post>),
    /// The post existed and has expired: its signed header proves it.
    Expired(Box<PostHeader>),
}

/// A post deleted because it expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredPost {
    /// Its channel.
    pub channel: ChannelId,
    /// Its id.
    pub id: PostId,
}

/// What removing a revoked admin's later posts removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retracted {
    /// Posts removed.
    pub posts: u64,
    /// Expiry proofs removed.
    pub tombstones: u64,
}

/// A key and its (opened) value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Trees of private-conversation state: maps of sealed values under keys the caller builds
/// (from [`Store::index`] hashes, so keys reveal no peer ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Private {
    /// Direct messages, by conversation, time and id.
    Messages,
    /// Ids of MLS messages already processed (duplicates are dropped).
    Seen,
    /// Envelopes not yet delivered to their recipient.
    Outbox,
    /// Envelopes held here for offline recipients.
    Mailbox,
    /// The MLS client state and conversation table.
    Mls,
    /// Private groups' messages (plaintext, sealed at rest), by group, time and id.
    GroupMessages,
    /// Private groups' MLS messages as received (ciphertext), served to members that missed them.
    GroupLog,
}

impl Private {
    /// Every private tree.
    pub const ALL: [Private; 7] = [
        Private::Messages,
        Private::Seen,
        Private::Outbox,
        Private::Mailbox,
        Private::Mls,
        Private::GroupMessages,
        Private::GroupLog,
    ];

    /// Its place in [`Private::ALL`].
    fn slot(self) -> usize {
        match self {
            Private::Messages => 0,
            Private::Seen => 1,
            Private::Outbox => 2,
            Private::Mailbox => 3,
            Private::Mls => 4,
            Private::GroupMessages => 5,
            Private::GroupLog => 6,
        }
    }

    /// The sled tree name.
    pub fn name(self) -> &'static str {
        match self {
            Private::Messages => "dm_messages",
            Private::Seen => "dm_seen",
            Private::Outbox => "dm_outbox",
            Private::Mailbox => "dm_mailbox",
            Private::Mls => "mls",
            Private::GroupMessages => "group_messages",
            Private::GroupLog => "group_log",
        }
    }
}

/// What the node needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Writes or replaces a channel's record.
    fn put_channel(&self, rec: &ChannelRecord) -> Result<(), StoreError>;
    /// The record of one channel.
    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError>;
    /// All channel records.
    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError>;

    /// Stores verified posts (not yet durable: call [`Store::flush`]).
    fn insert_posts(&self, posts: &[Post]) -> Result<Vec<InsertOutcome>, StoreError>;
    /// Makes everything written so far durable. Never called on the swarm task (a debug
    /// check enforces it): the writer thread flushes for it.
    fn flush(&self) -> Result<(), StoreError>;
    /// How many writes have been made outside the writer (private values, channel, file,
    /// contact and block records): each is durable once [`Store::durable_seq`] reaches its
    /// number. Those writes do not flush; whoever acts on one waits for a flush to cover it.
    fn write_seq(&self) -> u64;
    /// How many of the writes counted by [`Store::write_seq`] a flush has made durable.
    fn durable_seq(&self) -> u64;
    /// The post an author made at `seq` in a channel, if held.
    fn post_at(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
    ) -> Result<Option<Post>, StoreError>;
    /// Whether a post with this id is held (or was held and expired).
    fn contains(&self, id: &PostId) -> Result<bool, StoreError>;
    /// A channel's posts in order (timestamp, author, seq), after `after`, at most `limit`.
    fn history(
        &self,
        channel: &ChannelId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError>;
    /// The `limit` posts just before `before` (or the newest ones), oldest first.
    fn history_before(
        &self,
        channel: &ChannelId,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError>;
    /// How many posts of a channel are held.
    fn count(&self, channel: &ChannelId) -> Result<u64, StoreError>;
    /// Per-author sequence state of a channel (scans every slot: for startup, not per request).
    fn authors(&self, channel: &ChannelId) -> Result<Vec<AuthorState>, StoreError>;
    /// Each author's highest held sequence number in a channel (one seek per author).
    fn heads(&self, channel: &ChannelId) -> Result<Vec<([u8; 32], u64)>, StoreError>;
    /// The header of an author's newest slot held (a post or an expiry proof): where its
    /// chain continues.
    fn chain_head(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
    ) -> Result<Option<PostHeader>, StoreError>;
    /// For at most `limit` authors of a channel, the header of the newest slot held (a post or
    /// an expiry proof): what proves how far each author's chain reaches.
    fn head_headers(
        &self,
        channel: &ChannelId,
        limit: usize,
    ) -> Result<Vec<PostHeader>, StoreError>;

    /// An author's chain slots with `from <= seq <= to`, ascending, at most `limit`.
    fn slots(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Slot)>, StoreError>;
    /// Sequence numbers in `1..=upto` of an author's chain that are neither held nor known
    /// expired, as inclusive ranges.
    fn missing(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        upto: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Records expired slots from their verified headers (expiry proofs learned from peers):
    /// only into free slots, like posts (not yet durable: call [`Store::flush`]).
    fn insert_tombstones(&self, headers: &[PostHeader]) -> Result<Vec<InsertOutcome>, StoreError>;
    /// Removes an author's slots after `after_seq` (an admin the owner revoked: they were never
    /// valid) (durable after the next flush).
    fn retract(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        after_seq: u64,
    ) -> Result<Retracted, StoreError>;
    /// Deletes every post whose expiry is at or before `now_ms`; leaves tombstones so they are
    /// never accepted or fetched again.
    fn expire_due(&self, now_ms: u64) -> Result<Vec<ExpiredPost>, StoreError>;
    /// The earliest expiry still pending.
    fn next_expiry(&self) -> Result<Option<u64>, StoreError>;

    /// Records a file this node has or is fetching.
    fn put_file(&self, rec: &FileRecord) -> Result<(), StoreError>;
    /// One file's record.
    fn file(&self, cid: &[u8; 32]) -> Result<Option<FileRecord>, StoreError>;
    /// Every file record.
    fn files(&self) -> Result<Vec<FileRecord>, StoreError>;

    /// Blocks or unblocks a peer (persisted).
    fn set_blocked(&self, peer: &libp2p::PeerId, blocked: bool) -> Result<(), StoreError>;
    /// Every blocked peer.
    fn blocked_peers(&self) -> Result<Vec<libp2p::PeerId>, StoreError>;

    /// Remembers a posted-but-not-yet-published post (the outbox).
    fn outbox_add(&self, post: &Post) -> Result<(), StoreError>;
    /// Drops a post from the outbox once published.
    fn outbox_remove(&self, post: &Post) -> Result<(), StoreError>;
    /// Everything waiting in the outbox.
    fn outbox(&self) -> Result<Vec<Post>, StoreError>;

    /// Records or refreshes a known peer.
    fn put_peer(&self, rec: &PeerRecord) -> Result<(), StoreError>;
    /// Known peers, most recently seen first.
    fn peers(&self) -> Result<Vec<PeerRecord>, StoreError>;
    /// Forgets peers beyond the `keep` most recent.
    fn prune_peers(&self, keep: usize) -> Result<usize, StoreError>;
    /// Forgets these peers.
    fn forget_peers(&self, peers: &[libp2p::PeerId]) -> Result<(), StoreError>;

    /// Adds or replaces a contact (keyed by its peer id).
    fn put_contact(&self, contact: &Contact) -> Result<(), StoreError>;
    /// Every contact, oldest first.
    fn contacts(&self) -> Result<Vec<Contact>, StoreError>;

    /// A keyed hash (secret to this store) to build private keys from.
    fn index(&self, domain: &[u8], data: &[u8]) -> [u8; 16];
    /// Writes (sealed) one private value (durable after the next flush).
    fn private_put(&self, tree: Private, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Reads one private value.
    fn private_get(&self, tree: Private, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes and removes private values at once (all or none after a crash; durable after
    /// the next flush).
    fn private_apply(&self, tree: Private, changes: &[Change]) -> Result<(), StoreError>;
    /// Removes one private value.
    fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError>;
    /// Every private value whose key starts with `prefix`, in key order.
    fn private_scan(&self, tree: Private, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;
}
