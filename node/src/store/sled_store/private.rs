//! The private trees ([`Private`]): keys chosen by their users (direct messages, groups,
//! message requests, ...), and the keyed index they build them with.

use super::{SledStore, first};
use crate::store::{Private, StoreError};

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
        t.flush()?;
        Ok(())
    }

    pub(super) fn private_get(
        &self,
        tree: Private,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.private_tree(tree).get(key)
    }

    pub(super) fn private_remove(&self, tree: Private, key: &[u8]) -> Result<(), StoreError> {
        self.private_tree(tree).remove(key)
    }

    pub(super) fn private_scan(
        &self,
        tree: Private,
        prefix: &[u8],
    ) -> Result<Vec<crate::store::KeyValue>, StoreError> {
        self.private_tree(tree).scan_prefix(prefix)
    }
}
