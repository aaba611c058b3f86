//! Contacts: `contacts`.

use super::{SledStore, first};
use crate::store::StoreError;

impl SledStore {
    pub(super) fn put_contact(&self, contact: &crate::contact::Contact) -> Result<(), StoreError> {
        let k = first::<16>(&self.h(b"contact", &contact.peer_id.to_bytes()));
        self.contacts.insert(&k, &contact.encode())?;
        self.wrote();
        Ok(())
    }

    pub(super) fn contacts(&self) -> Result<Vec<crate::contact::Contact>, StoreError> {
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
}
