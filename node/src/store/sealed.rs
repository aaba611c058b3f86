//! A sled tree that shows nothing on disk: each record's key is a keyed hash of its real key,
//! and its value carries the real key and value, sealed together with the data key. Whoever holds
//! the files sees random-looking keys in random order and sealed values: no timestamps, no
//! sequence numbers, no ids, no grouping by channel or conversation.
//!
//! Trees that are read in key order keep an index of their real keys in memory, rebuilt when
//! the store opens (by opening every record: one seal per record keeps writes cheap, and
//! opening is fast next to reading from disk).

#![warn(clippy::arithmetic_side_effects)]

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{KeyValue, StoreError};
use crate::crypto::DataKey;

/// Length of a record's key on disk.
const DISK_KEY_LEN: usize = 16;
/// Domain of the keyed hash that turns a real key into a disk key.
const KEY_DOMAIN: &[u8] = b"samizdat/store/3/key";

/// One tree, sealed.
pub(super) struct SealedTree {
    name: &'static str,
    tree: sled::Tree,
    key: Arc<DataKey>,
    /// The real keys, in order, for trees read in order; `None` for trees only read by key
    /// or as a whole.
    index: Option<RwLock<BTreeSet<Vec<u8>>>>,
}

/// A record made ready to be written (inside a transaction, which sled may run again).
#[derive(Clone)]
pub(super) struct Prepared {
    disk_key: [u8; DISK_KEY_LEN],
    sealed: Vec<u8>,
    key: Vec<u8>,
}

impl Prepared {
    /// The record's real key.
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Debug for SealedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTree")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SealedTree {
    /// Opens the tree `name` of `db`; `indexed` trees get their in-memory key index built.
    pub(super) fn open(
        db: &sled::Db,
        name: &'static str,
        key: Arc<DataKey>,
        indexed: bool,
    ) -> Result<Self, StoreError> {
        let tree = db.open_tree(name)?;
        let mut t = Self {
            name,
            tree,
            key,
            index: None,
        };
        if indexed {
            let mut index = BTreeSet::new();
            for item in t.tree.iter() {
                let (dk, v) = item?;
                index.insert(t.open_record(&dk, &v)?.0);
            }
            t.index = Some(RwLock::new(index));
        }
        Ok(t)
    }

    /// The sled tree underneath (for transactions across trees).
    pub(super) fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    fn disk_key(&self, key: &[u8]) -> [u8; DISK_KEY_LEN] {
        let mut data =
            Vec::with_capacity(self.name.len().saturating_add(key.len()).saturating_add(1));
        data.extend_from_slice(self.name.as_bytes());
        data.push(0);
        data.extend_from_slice(key);
        let h = self.key.index_hash(KEY_DOMAIN, &data);
        let mut out = [0u8; DISK_KEY_LEN];
        out.copy_from_slice(&h[..DISK_KEY_LEN]);
        out
    }

    fn aad(&self, disk_key: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(
            self.name
                .len()
                .saturating_add(disk_key.len())
                .saturating_add(1),
        );
        a.extend_from_slice(self.name.as_bytes());
        a.push(0);
        a.extend_from_slice(disk_key);
        a
    }

    /// The record for (key, value): its disk key, and the key and value sealed together.
    pub(super) fn prepare(&self, key: &[u8], value: &[u8]) -> Prepared {
        let disk_key = self.disk_key(key);
        // Real keys are short (at most a few dozen bytes): two bytes hold their length.
        let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(
            2usize.saturating_add(key.len()).saturating_add(value.len()),
        ));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(value);
        Prepared {
            disk_key,
            sealed: self.key.seal(&self.aad(&disk_key), &plain),
            key: key.to_vec(),
        }
    }

    fn open_record(&self, disk_key: &[u8], stored: &[u8]) -> Result<KeyValue, StoreError> {
        let mut plain = self
            .key
            .open(&self.aad(disk_key), stored)
            .map_err(|source| StoreError::Sealed {
                tree: self.name,
                source,
            })?;
        let len_bytes: [u8; 2] = plain
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt(self.name))?;
        let len = usize::from(u16::from_be_bytes(len_bytes));
        let key = plain
            .get(2..len.saturating_add(2))
            .ok_or(StoreError::Corrupt(self.name))?
            .to_vec();
        let value = plain.split_off(len.saturating_add(2));
        Ok((key, value))
    }

    /// Opens a stored record found under `key`'s disk key, checking it is `key`'s.
    fn open_for(&self, key: &[u8], disk_key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (k, v) = self.open_record(disk_key, stored)?;
        if k != key {
            return Err(StoreError::Corrupt(self.name));
        }
        Ok(v)
    }

    fn read_index(&self) -> Option<RwLockReadGuard<'_, BTreeSet<Vec<u8>>>> {
        // A panic while holding the lock cannot leave a set half-changed.
        self.index
            .as_ref()
            .map(|i| i.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn write_index(&self) -> Option<RwLockWriteGuard<'_, BTreeSet<Vec<u8>>>> {
        self.index
            .as_ref()
            .map(|i| i.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// The value under `key`.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let dk = self.disk_key(key);
        match self.tree.get(dk)? {
            Some(stored) => self.open_for(key, &dk, &stored).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` is held.
    pub(super) fn contains_key(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(self.disk_key(key))?)
    }

    /// Writes `value` under `key`.
    pub(super) fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let p = self.prepare(key, value);
        self.tree.insert(p.disk_key, p.sealed)?;
        self.indexed(&p.key);
        Ok(())
    }

    /// Writes and removes several keys at once: after a crash, all of them or none.
    pub(super) fn apply(&self, changes: &[super::Change]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in changes {
            match value {
                Some(v) => {
                    let p = self.prepare(key, v);
                    batch.insert(&p.disk_key[..], p.sealed);
                }
                None => batch.remove(&self.disk_key(key)[..]),
            }
        }
        self.tree.apply_batch(batch)?;
        for (key, value) in changes {
            match value {
                Some(_) => self.indexed(key),
                None => self.unindexed(key),
            }
        }
        Ok(())
    }

    /// Removes `key` (if held).
    pub(super) fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(self.disk_key(key))?;
        self.unindexed(key);
        Ok(())
    }

    /// Removes everything.
    pub(super) fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear()?;
        if let Some(mut i) = self.write_index() {
            i.clear();
        }
        Ok(())
    }

    /// Notes in the index a key written by a committed transaction.
    pub(super) fn indexed(&self, key: &[u8]) {
        if let Some(mut i) = self.write_index()
            && !i.contains(key)
        {
            i.insert(key.to_vec());
        }
    }

    /// Drops from the index a key removed by a committed transaction.
    pub(super) fn unindexed(&self, key: &[u8]) {
        if let Some(mut i) = self.write_index() {
            i.remove(key);
        }
    }

    /// Every record, in no particular order (for trees read as a whole).
    pub(super) fn all(&self) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (dk, stored) = item?;
            out.push(self.open_record(&dk, &stored)?);
        }
        Ok(out)
    }

    /// Keys in `range`, in order (or reverse order), at most `limit`. Indexed trees only:
    /// an unindexed one answers with nothing.
    pub(super) fn keys(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        rev: bool,
        limit: usize,
    ) -> Vec<Vec<u8>> {
        let Some(index) = self.read_index() else {
            debug_assert!(false, "ordered read of the unindexed tree {}", self.name);
            return Vec::new();
        };
        let range = (range.0.map(<[u8]>::to_vec), range.1.map(<[u8]>::to_vec));
        if !range_is_valid(&range) {
            return Vec::new();
        }
        let it = index.range::<Vec<u8>, _>(range);
        if rev {
            it.rev().take(limit).cloned().collect()
        } else {
            it.take(limit).cloned().collect()
        }
    }

    /// Keys that start with `prefix`, in order.
    pub(super) fn prefix_keys(&self, prefix: &[u8], rev: bool, limit: usize) -> Vec<Vec<u8>> {
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.keys((Bound::Included(prefix), upper), rev, limit)
    }

    /// How many keys start with `prefix`.
    pub(super) fn prefix_count(&self, prefix: &[u8]) -> usize {
        let Some(index) = self.read_index() else {
            return 0;
        };
        let upper = match prefix_end(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        index
            .range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper))
            .count()
    }

    /// Records for `keys` (those still held), in the same order.
    pub(super) fn records(&self, keys: Vec<Vec<u8>>) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(v) = self.get(&k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Records whose keys start with `prefix`, in order.
    pub(super) fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.records(self.prefix_keys(prefix, false, usize::MAX))
    }

    /// The value of a prepared record's key as held now, within a transaction.
    pub(super) fn tx_get_at(
        &self,
        tx: &TransactionalTree,
        p: &Prepared,
    ) -> Result<Option<Vec<u8>>, ConflictableTransactionError<StoreError>> {
        match tx.get(p.disk_key)? {
            Some(stored) => self
                .open_for(&p.key, &p.disk_key, &stored)
                .map(Some)
                .map_err(ConflictableTransactionError::Abort),
            None => Ok(None),
        }
    }

    /// Whether a prepared record's key is held now, within a transaction.
    pub(super) fn tx_contains_at(
        tx: &TransactionalTree,
        p: &Prepared,
    ) -> Result<bool, ConflictableTransactionError<StoreError>> {
        Ok(tx.get(p.disk_key)?.is_some())
    }

    /// Writes a prepared record within a transaction (index it once the transaction commits).
    pub(super) fn tx_insert(
        tx: &TransactionalTree,
        p: &Prepared,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        tx.insert(&p.disk_key[..], p.sealed.as_slice())?;
        Ok(())
    }

    /// Removes `key` within a transaction (drop it from the index once it commits).
    pub(super) fn tx_remove(
        &self,
        tx: &TransactionalTree,
        key: &[u8],
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        tx.remove(&self.disk_key(key)[..])?;
        Ok(())
    }
}

/// The first key after every key that starts with `prefix` (None: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last.saturating_add(1));
            return Some(end);
        }
    }
    None
}

/// Whether BTreeSet::range would accept these bounds (it panics on an inverted range).
fn range_is_valid(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    match range {
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b))
            if a > b =>
        {
            false
        }
        (Bound::Excluded(a), Bound::Excluded(b)) if a == b => false,
        _ => true,
    }
}

/// Maps a transaction's result to the store's error.
pub(super) fn tx_result<T>(
    r: Result<T, sled::transaction::TransactionError<StoreError>>,
) -> Result<T, StoreError> {
    match r {
        Ok(t) => Ok(t),
        Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        Err(sled::transaction::TransactionError::Abort(e)) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn tree(indexed: bool) -> (tempfile::TempDir, sled::Db, SealedTree) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let key = Arc::new(DataKey::from_bytes([7u8; 32]));
        let t = SealedTree::open(&db, "t", key, indexed).expect("open");
        (dir, db, t)
    }

    #[test]
    fn ordered_reads_come_from_the_index_and_disk_shows_no_key() {
        let (_dir, _db, t) = tree(true);
        for i in [5u64, 1, 9, 3] {
            let mut k = b"chan".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            t.insert(&k, &i.to_le_bytes()).expect("insert");
        }
        t.insert(b"other", b"x").expect("insert");
        let keys = t.prefix_keys(b"chan", false, usize::MAX);
        let seqs: Vec<u64> = keys
            .iter()
            .map(|k| u64::from_be_bytes(k[4..].try_into().expect("8")))
            .collect();
        assert_eq!(seqs, [1, 3, 5, 9]);
        assert_eq!(t.prefix_keys(b"chan", true, 2).len(), 2);
        assert_eq!(t.prefix_count(b"chan"), 4);
        for item in t.raw().iter() {
            let (k, v) = item.expect("item");
            assert_eq!(k.len(), DISK_KEY_LEN);
            assert!(!v.windows(4).any(|w| w == b"chan"), "a key in the clear");
        }
        let mut k = b"chan".to_vec();
        k.extend_from_slice(&3u64.to_be_bytes());
        assert_eq!(t.get(&k).expect("get"), Some(3u64.to_le_bytes().to_vec()));
        t.remove(&k).expect("remove");
        assert_eq!(t.get(&k).expect("get"), None);
        assert_eq!(t.prefix_count(b"chan"), 3);
    }

    #[test]
    fn the_index_is_rebuilt_on_open() {
        let (dir, db, t) = tree(true);
        t.insert(b"b", b"2").expect("insert");
        t.insert(b"a", b"1").expect("insert");
        drop(t);
        let key = Arc::new(DataKey::from_bytes([7u8; 32]));
        let t = SealedTree::open(&db, "t", key, true).expect("open");
        assert_eq!(
            t.prefix_keys(b"", false, 10),
            [b"a".to_vec(), b"b".to_vec()]
        );
        drop(dir);
    }

    #[test]
    fn a_record_moved_to_another_key_or_a_wrong_key_fails_to_open() {
        let (_dir, _db, t) = tree(false);
        t.insert(b"a", b"1").expect("insert");
        t.insert(b"b", b"2").expect("insert");
        let a = t.raw().get(t.disk_key(b"a")).expect("get").expect("a");
        t.raw().insert(t.disk_key(b"b"), a).expect("swap");
        assert!(t.get(b"b").is_err());
        let db2 = sled::Config::new().temporary(true).open().expect("sled");
        let other = SealedTree::open(&db2, "t", Arc::new(DataKey::from_bytes([8u8; 32])), false)
            .expect("open");
        let stored = t.raw().get(t.disk_key(b"a")).expect("get").expect("a");
        assert!(other.open_record(&t.disk_key(b"a"), &stored).is_err());
    }

    #[test]
    fn inverted_and_empty_ranges_are_empty() {
        let (_dir, _db, t) = tree(true);
        t.insert(b"k", b"v").expect("insert");
        assert!(
            t.keys((Bound::Included(b"z"), Bound::Included(b"a")), false, 10)
                .is_empty()
        );
        assert!(
            t.keys((Bound::Excluded(b"k"), Bound::Excluded(b"k")), false, 10)
                .is_empty()
        );
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(t.prefix_keys(&[], false, 10).len(), 1);
    }
}
