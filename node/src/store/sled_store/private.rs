//! The private trees ([`Private`]): keys chosen by their users (direct messages, groups,
//! message requests, ...), and the keyed index they build them with.

use super::{SledStore, first};
use crate::store::{Change, Private, StoreError};

impl SledStore {
    pub(super) fn index(&self, domain: &[u8], data: &[u8]) -> [u8; 16] {
        first::<16>(&self.h(domain, data))
    }

    pub(super) fn private_put(
        &self,
        tree: Private,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let t = self.private_tree(tree);
        t.insert(key, value)?;
        self.wrote();
        Ok(())
    }

    pub(super) fn private_get(
        &self,
        tree: Private,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.private_tree(tree).get(key)
    }

    pub(super) fn private_apply(
        &self,
        tree: Private,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        self.private_tree(tree).apply(changes)?;
        self.wrote();
        Ok(())
    }

    pub(super) fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError> {
        self.private_tree(tree).remove(key)?;
        self.wrote();
        Ok(())
    }

    pub(super) fn private_scan(
        &self,
        tree: Private,
        prefix: &[u8],
    ) -> Result<Vec<crate::store::KeyValue>, StoreError> {
        self.private_tree(tree).scan_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::crypto::DataKey;
    use crate::store::{Private, SWARM_TASK, SledStore, Store};

    #[test]
    fn private_writes_wait_for_a_flush_and_count_what_it_covers() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("open");
        let (w0, d0) = (s.write_seq(), s.durable_seq());
        // On the swarm task: a write must not reach for the disk (the debug check would
        // panic if it flushed).
        SWARM_TASK.sync_scope((), || {
            s.private_put(Private::Messages, b"k", b"hello")
                .expect("put");
            s.private_remove(Private::Messages, b"gone")
                .expect("remove");
        });
        assert_eq!(s.write_seq(), w0 + 2);
        assert_eq!(s.durable_seq(), d0, "not durable before a flush");
        s.flush().expect("flush");
        assert_eq!(s.durable_seq(), w0 + 2);
        assert_eq!(
            s.private_get(Private::Messages, b"k").expect("get"),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a flush on the swarm task")]
    fn a_flush_on_the_swarm_task_fails_the_debug_check() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("open");
        SWARM_TASK.sync_scope((), || {
            let _ = s.flush();
        });
    }
}
