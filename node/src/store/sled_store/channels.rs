//! Channel records: `channels`.

use super::SledStore;
use crate::channel::ChannelId;
use crate::store::{ChannelRecord, StoreError};

impl SledStore {
    pub(super) fn put_channel(&self, rec: &ChannelRecord) -> Result<(), StoreError> {
        self.channels.insert(&self.ch16(&rec.id), &rec.encode())?;
        self.wrote();
        Ok(())
    }

    pub(super) fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let Some(v) = self.channels.get(&self.ch16(id))? else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(v);
        ChannelRecord::decode(&plain)
            .map(Some)
            .ok_or(StoreError::Corrupt("channels"))
    }

    pub(super) fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        for (_, v) in self.channels.all()? {
            let plain = zeroize::Zeroizing::new(v);
            out.push(ChannelRecord::decode(&plain).ok_or(StoreError::Corrupt("channels"))?);
        }
        Ok(out)
    }
}
