//! File records: `files`.

use super::{SledStore, first};
use crate::store::{FileRecord, StoreError};

impl SledStore {
    pub(super) fn put_file(&self, rec: &FileRecord) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"file", &rec.cid));
        self.files.insert(&k, &rec.encode())?;
        self.wrote();
        Ok(())
    }

    pub(super) fn file(&self, cid: &[u8; 32]) -> Result<Option<FileRecord>, StoreError> {
        let k = first::<16>(&self.h(b"file", cid));
        let Some(v) = self.files.get(&k)? else {
            return Ok(None);
        };
        FileRecord::decode(&v)
            .map(Some)
            .ok_or(StoreError::Corrupt("files"))
    }

    pub(super) fn files(&self) -> Result<Vec<FileRecord>, StoreError> {
        self.files
            .all()?
            .into_iter()
            .map(|(_, v)| FileRecord::decode(&v).ok_or(StoreError::Corrupt("files")))
            .collect()
    }
}
