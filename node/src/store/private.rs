//! Direct and group messages, their outbox, the MLS state and the group records, by name:
//! typed methods over the private trees ([`Private`]), so the engine never builds a key or
//! decodes a value itself. Every write here is durable after the writer's next flush (the
//! engine defers what it promises until then).

use libp2p::PeerId;
use prost::Message;
use samizdat_proto::v1;
use serde::{Serialize, de::DeserializeOwned};

use super::private_keys::{
    INDEX_LEN, MLS_BLOB, MLS_ENTRY, MlsKey, MlsRecords, OutboxKey, message_key, message_sent_ms,
};
use super::{Change, Private, Store, StoreError};
use crate::group::GroupId;

/// The MLS client's state as stored.
pub enum MlsState {
    /// One sealed snapshot (stores written before entries were kept one by one).
    Blob(zeroize::Zeroizing<Vec<u8>>),
    /// openmls' storage entries, by openmls' own keys.
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
}

/// An envelope in the outbox.
pub struct Outgoing {
    /// Its outbox key (to remove it once delivered or deposited).
    pub key: Vec<u8>,
    /// The key of the message it carries (empty for a Welcome or a commit).
    pub message: Vec<u8>,
    /// The envelope.
    pub envelope: v1::DmEnvelope,
}

/// A direct message waiting to be sealed.
pub struct Queued {
    /// Its outbox key.
    pub key: Vec<u8>,
    /// The key of the message in `Messages`.
    pub message: Vec<u8>,
    /// The message.
    pub stored: v1::StoredDm,
}

/// The typed view of the private trees of a store.
pub struct PrivateRecords<'a>(&'a dyn Store);

impl dyn Store + '_ {
    /// Direct messages, groups and MLS state, by name.
    pub fn private(&self) -> PrivateRecords<'_> {
        PrivateRecords(self)
    }
}

impl PrivateRecords<'_> {
    fn peer_index(&self, peer: &PeerId) -> [u8; INDEX_LEN] {
        self.0.index(b"dm", &peer.to_bytes())
    }

    fn group_index(&self, group: &GroupId) -> [u8; INDEX_LEN] {
        self.0.index(b"group", group.as_bytes())
    }

    // ----- direct messages ------------------------------------------------------------------

    /// Stores a direct message (either direction) and its expiry; returns its key.
    pub fn put_message(&self, stored: &v1::StoredDm) -> Result<Vec<u8>, StoreError> {
        let peer = PeerId::from_bytes(&stored.peer).map_err(|_| StoreError::Corrupt("dm peer"))?;
        let body = stored.body.as_ref().ok_or(StoreError::Corrupt("dm"))?;
        let key = message_key(&self.peer_index(&peer), body.sent_ms, &body.id);
        self.0
            .private_put(Private::Messages, &key, &stored.encode_to_vec())?;
        if body.expires_at_ms != 0 {
            let x = OutboxKey::DmExpiry {
                at: body.expires_at_ms,
                message: key.clone(),
            };
            self.0.private_put(Private::Outbox, &x.encode(), b"")?;
        }
        Ok(key)
    }

    /// The direct message under `key` (None if gone, expired or unreadable).
    pub fn message(&self, key: &[u8]) -> Result<Option<v1::StoredDm>, StoreError> {
        Ok(self
            .0
            .private_get(Private::Messages, key)?
            .and_then(|v| v1::StoredDm::decode(v.as_slice()).ok()))
    }

    /// Rewrites the direct message under `key` (its delivery time changed).
    pub fn update_message(&self, key: &[u8], stored: &v1::StoredDm) -> Result<(), StoreError> {
        self.0
            .private_put(Private::Messages, key, &stored.encode_to_vec())
    }

    /// A conversation's messages, oldest first.
    pub fn messages(&self, peer: &PeerId) -> Result<Vec<v1::StoredDm>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::Messages, &self.peer_index(peer))?
            .into_iter()
            .filter_map(|(_, v)| v1::StoredDm::decode(v.as_slice()).ok())
            .collect())
    }

    /// Deletes a conversation's messages; returns how many there were.
    pub fn remove_messages(&self, peer: &PeerId) -> Result<usize, StoreError> {
        let keys = self
            .0
            .private_scan(Private::Messages, &self.peer_index(peer))?;
        for (k, _) in &keys {
            self.0.private_remove(Private::Messages, k)?;
        }
        Ok(keys.len())
    }

    /// Every direct conversation's bookkeeping.
    pub fn conversations<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.0
            .private_scan(Private::Mls, MlsKey::prefix(MlsRecords::Conversations))?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt("conversations"))
            })
            .collect()
    }

    /// Stores a direct conversation's bookkeeping.
    pub fn put_conversation<T: Serialize>(&self, peer: &PeerId, c: &T) -> Result<(), StoreError> {
        let k = MlsKey::Conversation(self.peer_index(peer)).encode();
        let v = serde_json::to_vec(c).map_err(|_| StoreError::Corrupt("conversation"))?;
        self.0.private_put(Private::Mls, &k, &v)
    }

    /// The peers whose message requests the user accepted.
    pub fn accepted(&self) -> Result<Vec<PeerId>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::Mls, MlsKey::prefix(MlsRecords::Accepted))?
            .into_iter()
            .filter_map(|(_, v)| PeerId::from_bytes(&v).ok())
            .collect())
    }

    /// Remembers that the user accepted `peer`'s messages.
    pub fn put_accepted(&self, peer: &PeerId) -> Result<(), StoreError> {
        let k = MlsKey::Accepted(self.peer_index(peer)).encode();
        self.0.private_put(Private::Mls, &k, &peer.to_bytes())
    }

    // ----- the outbox -----------------------------------------------------------------------

    /// Keeps an envelope for `peer` until it is delivered or deposited; `id` tells envelopes
    /// of the same millisecond apart, `message` is the key of the message it carries.
    pub fn put_envelope(
        &self,
        peer: &PeerId,
        id: [u8; 8],
        message: &[u8],
        envelope: &v1::DmEnvelope,
    ) -> Result<(), StoreError> {
        let k = OutboxKey::Envelope {
            peer: self.peer_index(peer),
            sent_ms: envelope.sent_ms,
            id,
        };
        self.0.private_put(
            Private::Outbox,
            &k.encode(),
            &encode_outgoing(message, envelope),
        )
    }

    /// The envelopes waiting for `peer` (or for anyone), oldest first.
    pub fn envelopes(&self, peer: Option<&PeerId>) -> Result<Vec<Outgoing>, StoreError> {
        let index = peer.map(|p| self.peer_index(p));
        Ok(self
            .0
            .private_scan(Private::Outbox, &OutboxKey::envelopes(index.as_ref()))?
            .into_iter()
            .filter_map(|(key, v)| {
                let (message, envelope) = decode_outgoing(&v)?;
                Some(Outgoing {
                    key,
                    message,
                    envelope,
                })
            })
            .collect())
    }

    /// Takes an envelope out of the outbox; returns the key of the message it carried.
    pub fn take_envelope(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let message = self
            .0
            .private_get(Private::Outbox, key)?
            .and_then(|v| decode_outgoing(&v))
            .map(|(m, _)| m);
        self.0.private_remove(Private::Outbox, key)?;
        Ok(message)
    }

    /// Queues a direct message to be sealed later.
    pub fn queue(&self, message: &[u8], stored: &v1::StoredDm) -> Result<(), StoreError> {
        let q = OutboxKey::Queued {
            message: message.to_vec(),
        };
        self.0
            .private_put(Private::Outbox, &q.encode(), &stored.encode_to_vec())
    }

    /// The messages queued for `peer` (or for anyone), oldest first.
    pub fn queued(&self, peer: Option<&PeerId>) -> Result<Vec<Queued>, StoreError> {
        let index = peer.map(|p| self.peer_index(p));
        Ok(self
            .0
            .private_scan(Private::Outbox, &OutboxKey::queued(index.as_ref()))?
            .into_iter()
            .filter_map(|(key, v)| {
                let Some(OutboxKey::Queued { message }) = OutboxKey::decode(&key) else {
                    return None;
                };
                let stored = v1::StoredDm::decode(v.as_slice()).ok()?;
                Some(Queued {
                    key,
                    message,
                    stored,
                })
            })
            .collect())
    }

    /// When the oldest message queued for `peer` was sent.
    pub fn first_queued_ms(&self, peer: &PeerId) -> Result<Option<u64>, StoreError> {
        let prefix = OutboxKey::queued(Some(&self.peer_index(peer)));
        Ok(self
            .0
            .private_scan(Private::Outbox, &prefix)?
            .iter()
            .filter_map(|(k, _)| match OutboxKey::decode(k)? {
                OutboxKey::Queued { message } => message_sent_ms(&message),
                _ => None,
            })
            .min())
    }

    /// Removes a queued message from the queue (it was sealed, or is gone).
    pub fn unqueue(&self, key: &[u8]) -> Result<(), StoreError> {
        self.0.private_remove(Private::Outbox, key)
    }

    /// Deletes the direct (or group) messages whose expiry is due at `now`; returns when the
    /// Deletes the direct (or group) messages whose expiries are due, logging what went
    /// wrong; returns when the next one is due (None: not known, look again).
    pub fn expire_due(&self, group: bool, now: u64) -> Option<u64> {
        match self.expire_messages(group, now) {
            Ok((removed, next)) => {
                if removed > 0 {
                    tracing::debug!(removed, group, "messages expired and deleted");
                }
                Some(next)
            }
            Err(e) => {
                tracing::warn!("cannot delete expired messages: {e}");
                None
            }
        }
    }

    /// next one falls due (`u64::MAX`: none left).
    pub fn expire_messages(&self, group: bool, now: u64) -> Result<(usize, u64), StoreError> {
        let tree = if group {
            Private::GroupMessages
        } else {
            Private::Messages
        };
        let mut removed = 0usize;
        for (k, _) in self
            .0
            .private_scan(Private::Outbox, &OutboxKey::expiries(group))?
        {
            let (Some(OutboxKey::DmExpiry { at, message })
            | Some(OutboxKey::GroupExpiry { at, message })) = OutboxKey::decode(&k)
            else {
                continue;
            };
            if at > now {
                return Ok((removed, at)); // keys are in expiry order
            }
            self.0.private_remove(tree, &message)?;
            self.0.private_remove(Private::Outbox, &k)?;
            removed = removed.saturating_add(1);
        }
        Ok((removed, u64::MAX))
    }

    // ----- MLS message ids seen -------------------------------------------------------------

    /// Whether the MLS message (or envelope) with this id was processed already.
    pub fn seen(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.0.private_get(Private::Seen, &id[..16])?.is_some())
    }

    /// Remembers that the message with this id was processed at `now_ms`.
    pub fn mark_seen(&self, id: &[u8; 32], now_ms: u64) -> Result<(), StoreError> {
        self.0
            .private_put(Private::Seen, &id[..16], &now_ms.to_be_bytes())
    }

    /// Forgets the ids seen before `cutoff_ms`; returns how many.
    pub fn forget_seen_before(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0usize;
        for (k, v) in self.0.private_scan(Private::Seen, &[])? {
            let at = v.try_into().map(u64::from_be_bytes).unwrap_or(0);
            if at < cutoff_ms {
                self.0.private_remove(Private::Seen, &k)?;
                n = n.saturating_add(1);
            }
        }
        Ok(n)
    }

    // ----- MLS state ------------------------------------------------------------------------

    /// The MLS client's state (empty entries for a new node).
    pub fn mls_state(&self) -> Result<MlsState, StoreError> {
        // The plaintext state holds private keys: wiped once the caller has parsed it.
        if let Some(blob) = self.0.private_get(Private::Mls, MLS_BLOB)? {
            return Ok(MlsState::Blob(zeroize::Zeroizing::new(blob)));
        }
        Ok(MlsState::Entries(
            self.0
                .private_scan(Private::Mls, MLS_ENTRY)?
                .into_iter()
                .filter_map(|(k, v)| Some((k.get(MLS_ENTRY.len()..)?.to_vec(), v)))
                .collect(),
        ))
    }

    /// Stores the MLS state's changed entries at once (all or none after a crash);
    /// `drop_blob` removes the old snapshot in the same batch.
    pub fn save_mls(&self, changes: &[Change], drop_blob: bool) -> Result<(), StoreError> {
        let mut batch: Vec<Change> = changes
            .iter()
            .map(|(k, v)| {
                let mut key = MLS_ENTRY.to_vec();
                key.extend_from_slice(k);
                (key, v.clone())
            })
            .collect();
        if drop_blob {
            batch.push((MLS_BLOB.to_vec(), None));
        }
        self.0.private_apply(Private::Mls, &batch)
    }

    /// This node's signed KeyPackage record, as last published.
    pub fn keypackage_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .private_get(Private::Mls, &MlsKey::KeyPackage.encode())
    }

    /// Keeps this node's signed KeyPackage record.
    pub fn put_keypackage_record(&self, record: &[u8]) -> Result<(), StoreError> {
        self.0
            .private_put(Private::Mls, &MlsKey::KeyPackage.encode(), record)
    }

    // ----- accounts and devices --------------------------------------------------------------

    /// Every device list held (this node's account's and its contacts'), as stored.
    pub fn device_lists(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::Mls, MlsKey::prefix(MlsRecords::DeviceLists))?
            .into_iter()
            .filter(|(k, _)| matches!(MlsKey::decode(k), Some(MlsKey::DeviceList(_))))
            .map(|(_, v)| v)
            .collect())
    }

    /// Keeps an account's device list (replacing the one held).
    pub fn put_device_list(&self, account: &[u8; 32], list: &[u8]) -> Result<(), StoreError> {
        let key = MlsKey::DeviceList(self.0.index(b"account", account)).encode();
        self.0.private_put(Private::Mls, &key, list)
    }

    /// The key of this node's own account, once it has one.
    pub fn own_account(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .private_get(Private::Mls, &MlsKey::OwnAccount.encode())
    }

    /// Records this node's own account.
    pub fn set_own_account(&self, account: &[u8; 32]) -> Result<(), StoreError> {
        self.0
            .private_put(Private::Mls, &MlsKey::OwnAccount.encode(), account)
    }

    /// The device link this node joins its account by, until linking completes.
    pub fn joining(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.private_get(Private::Mls, &MlsKey::Joining.encode())
    }

    /// Keeps (or, with None, forgets) the device link this node joins its account by.
    pub fn set_joining(&self, link: Option<&[u8]>) -> Result<(), StoreError> {
        let key = MlsKey::Joining.encode();
        match link {
            Some(l) => self.0.private_put(Private::Mls, &key, l),
            None => self.0.private_remove(Private::Mls, &key),
        }
    }

    // ----- private groups -------------------------------------------------------------------

    /// Every group's record.
    pub fn groups<T: DeserializeOwned>(&self) -> Result<Vec<(GroupId, T)>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self
            .0
            .private_scan(Private::Mls, MlsKey::prefix(MlsRecords::GroupsAndInvites))?
        {
            if let Some(MlsKey::Group(id)) = MlsKey::decode(&k) {
                let record =
                    serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt("groups"))?;
                out.push((
                    GroupId::from_slice(&id).ok_or(StoreError::Corrupt("groups"))?,
                    record,
                ));
            }
        }
        Ok(out)
    }

    /// Stores a group's record.
    pub fn put_group<T: Serialize>(&self, group: &GroupId, record: &T) -> Result<(), StoreError> {
        let v = serde_json::to_vec(record).map_err(|_| StoreError::Corrupt("group"))?;
        self.0
            .private_put(Private::Mls, &MlsKey::Group(*group.as_bytes()).encode(), &v)
    }

    /// Deletes a group's record.
    pub fn remove_group(&self, group: &GroupId) -> Result<(), StoreError> {
        self.0
            .private_remove(Private::Mls, &MlsKey::Group(*group.as_bytes()).encode())
    }

    /// Every invitation waiting for the invitee's KeyPackage.
    pub fn invites(&self) -> Result<Vec<(GroupId, PeerId)>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::Mls, MlsKey::prefix(MlsRecords::GroupsAndInvites))?
            .into_iter()
            .filter_map(|(k, _)| match MlsKey::decode(&k)? {
                MlsKey::Invite { group, peer } => Some((
                    GroupId::from_slice(&group)?,
                    PeerId::from_bytes(&peer).ok()?,
                )),
                _ => None,
            })
            .collect())
    }

    /// Remembers an invitation waiting for the invitee's KeyPackage.
    pub fn put_invite(&self, group: &GroupId, peer: &PeerId) -> Result<(), StoreError> {
        self.0
            .private_put(Private::Mls, &invite_key(group, peer), b"")
    }

    /// Forgets an invitation (sent, or withdrawn).
    pub fn remove_invite(&self, group: &GroupId, peer: &PeerId) -> Result<(), StoreError> {
        self.0
            .private_remove(Private::Mls, &invite_key(group, peer))
    }

    /// Stores a group message (plaintext, sealed at rest) and its expiry; true if it expires.
    pub fn put_group_message(&self, stored: &v1::StoredGroupMessage) -> Result<bool, StoreError> {
        let Some(body) = stored.body.as_ref() else {
            return Ok(false);
        };
        let group =
            GroupId::from_slice(&stored.group_id).ok_or(StoreError::Corrupt("group message"))?;
        let key = message_key(&self.group_index(&group), body.sent_ms, &body.id);
        self.0
            .private_put(Private::GroupMessages, &key, &stored.encode_to_vec())?;
        if body.expires_at_ms == 0 {
            return Ok(false);
        }
        let x = OutboxKey::GroupExpiry {
            at: body.expires_at_ms,
            message: key,
        };
        self.0.private_put(Private::Outbox, &x.encode(), b"")?;
        Ok(true)
    }

    /// A group's messages, oldest first.
    pub fn group_messages(
        &self,
        group: &GroupId,
    ) -> Result<Vec<v1::StoredGroupMessage>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::GroupMessages, &self.group_index(group))?
            .into_iter()
            .filter_map(|(_, v)| v1::StoredGroupMessage::decode(v.as_slice()).ok())
            .collect())
    }

    /// Keeps a group's MLS message as received (ciphertext), for members that missed it.
    pub fn log_group_wire(
        &self,
        group: &GroupId,
        wire: &v1::GroupWire,
        id: &[u8; 32],
    ) -> Result<(), StoreError> {
        let mut k = self.group_index(group).to_vec();
        k.extend_from_slice(&wire.sent_ms.to_be_bytes());
        k.extend_from_slice(&id[..8]);
        self.0
            .private_put(Private::GroupLog, &k, &wire.encode_to_vec())
    }

    /// A group's logged messages sent at or after `since_ms`, oldest first (decoded as read).
    pub fn group_log(
        &self,
        group: &GroupId,
        since_ms: u64,
    ) -> Result<impl Iterator<Item = v1::GroupWire> + use<>, StoreError> {
        let log = self
            .0
            .private_scan(Private::GroupLog, &self.group_index(group))?;
        Ok(log
            .into_iter()
            .filter(move |(k, _)| log_sent_ms(k).is_some_and(|t| t >= since_ms))
            .filter_map(|(_, v)| v1::GroupWire::decode(v.as_slice()).ok()))
    }

    /// When the newest message of a group's log was sent.
    pub fn group_log_newest(&self, group: &GroupId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .0
            .private_scan(Private::GroupLog, &self.group_index(group))?
            .last()
            .and_then(|(k, _)| log_sent_ms(k)))
    }

    /// Drops a group's logged messages sent before `cutoff_ms`; returns how many.
    pub fn prune_group_log(&self, group: &GroupId, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0usize;
        for (k, _) in self
            .0
            .private_scan(Private::GroupLog, &self.group_index(group))?
        {
            match log_sent_ms(&k) {
                Some(t) if t < cutoff_ms => {
                    self.0.private_remove(Private::GroupLog, &k)?;
                    n = n.saturating_add(1);
                }
                _ => break, // keys are in time order
            }
        }
        Ok(n)
    }
}

fn invite_key(group: &GroupId, peer: &PeerId) -> Vec<u8> {
    MlsKey::Invite {
        group: *group.as_bytes(),
        peer: peer.to_bytes(),
    }
    .encode()
}

/// When a group-log entry was sent: its key is group index (16) | sent_ms (8) | id (8).
fn log_sent_ms(key: &[u8]) -> Option<u64> {
    message_sent_ms(key)
}

/// An outbox envelope's value: the key of the message it carries (empty for a Welcome or a
/// commit), then the envelope.
fn encode_outgoing(message_key: &[u8], env: &v1::DmEnvelope) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        message_key
            .len()
            .saturating_add(env.encoded_len())
            .saturating_add(2),
    );
    v.extend_from_slice(&(message_key.len() as u16).to_be_bytes());
    v.extend_from_slice(message_key);
    env.encode(&mut v).ok();
    v
}

fn decode_outgoing(v: &[u8]) -> Option<(Vec<u8>, v1::DmEnvelope)> {
    let len = u16::from_be_bytes(v.get(..2)?.try_into().ok()?) as usize;
    let end = len.checked_add(2)?;
    let key = v.get(2..end)?.to_vec();
    let env = v1::DmEnvelope::decode(v.get(end..)?).ok()?;
    Some((key, env))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::DataKey;
    use crate::store::SledStore;

    fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(SledStore::open(dir, Arc::new(DataKey::generate())).expect("open"))
    }

    fn dm(peer: &PeerId, sent_ms: u64, text: &str, expires_at_ms: u64) -> v1::StoredDm {
        v1::StoredDm {
            peer: peer.to_bytes(),
            outgoing: true,
            body: Some(v1::DmBody {
                id: text.as_bytes().to_vec(),
                text: text.into(),
                sent_ms,
                expires_at_ms,
                ..Default::default()
            }),
            received_ms: 0,
        }
    }

    fn envelope(to: &PeerId, sent_ms: u64) -> v1::DmEnvelope {
        v1::DmEnvelope {
            recipient: to.to_bytes(),
            sent_ms,
            mls_message: vec![7; 10],
            ..Default::default()
        }
    }

    #[test]
    fn conversations_read_in_time_order_and_expire_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let p = s.private();
        p.put_message(&dm(&alice, 300, "third", 0)).unwrap();
        let first = p.put_message(&dm(&alice, 100, "first", 1_000)).unwrap();
        p.put_message(&dm(&alice, 200, "second", 5_000)).unwrap();
        p.put_message(&dm(&bob, 150, "other", 0)).unwrap();
        let texts = |peer| -> Vec<String> {
            p.messages(peer)
                .unwrap()
                .into_iter()
                .map(|m| m.body.unwrap().text)
                .collect()
        };
        assert_eq!(texts(&alice), ["first", "second", "third"]);
        assert_eq!(texts(&bob), ["other"]);

        let mut read = p.message(&first).unwrap().unwrap();
        read.received_ms = 42;
        p.update_message(&first, &read).unwrap();
        assert_eq!(p.message(&first).unwrap().unwrap().received_ms, 42);

        assert_eq!(p.expire_messages(false, 999).unwrap(), (0, 1_000));
        assert_eq!(p.expire_messages(false, 1_000).unwrap(), (1, 5_000));
        assert_eq!(texts(&alice), ["second", "third"]);
        assert_eq!(p.message(&first).unwrap(), None);
        assert_eq!(p.expire_messages(false, 9_999).unwrap(), (1, u64::MAX));
        assert_eq!(p.remove_messages(&alice).unwrap(), 1);
        assert!(p.messages(&alice).unwrap().is_empty());
        assert_eq!(texts(&bob), ["other"], "another conversation is untouched");
    }

    #[test]
    fn outbox_keeps_envelopes_per_peer_and_queued_messages_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let p = s.private();
        p.put_envelope(&alice, [2; 8], b"msg-2", &envelope(&alice, 20))
            .unwrap();
        p.put_envelope(&alice, [1; 8], b"", &envelope(&alice, 10))
            .unwrap();
        p.put_envelope(&bob, [3; 8], b"msg-3", &envelope(&bob, 5))
            .unwrap();
        let to_alice = p.envelopes(Some(&alice)).unwrap();
        let times: Vec<u64> = to_alice.iter().map(|o| o.envelope.sent_ms).collect();
        assert_eq!(times, [10, 20], "oldest first");
        assert_eq!(p.envelopes(None).unwrap().len(), 3);
        assert_eq!(
            p.take_envelope(&to_alice[1].key).unwrap().as_deref(),
            Some(&b"msg-2"[..])
        );
        assert_eq!(
            p.take_envelope(&to_alice[1].key).unwrap(),
            None,
            "taken once"
        );
        assert_eq!(p.envelopes(Some(&alice)).unwrap().len(), 1);

        let late = p.put_message(&dm(&alice, 700, "late", 0)).unwrap();
        let early = p.put_message(&dm(&alice, 600, "early", 0)).unwrap();
        p.queue(&late, &dm(&alice, 700, "late", 0)).unwrap();
        p.queue(&early, &dm(&alice, 600, "early", 0)).unwrap();
        assert_eq!(p.first_queued_ms(&alice).unwrap(), Some(600));
        assert_eq!(p.first_queued_ms(&bob).unwrap(), None);
        let q = p.queued(Some(&alice)).unwrap();
        assert_eq!(
            q.iter().map(|q| &q.message).collect::<Vec<_>>(),
            [&early, &late]
        );
        p.unqueue(&q[0].key).unwrap();
        assert_eq!(p.queued(None).unwrap().len(), 1);
    }

    #[test]
    fn seen_ids_conversations_and_groups_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(DataKey::generate());
        let (alice, group) = (PeerId::random(), GroupId::from_slice(&[9; 16]).unwrap());
        let wire = |t: u64| v1::GroupWire {
            sent_ms: t,
            mls_message: t.to_be_bytes().to_vec(),
        };
        {
            let sled = SledStore::open(dir.path(), key.clone()).unwrap();
            let p = (&sled as &dyn Store).private();
            p.mark_seen(&[1; 32], 1_000).unwrap();
            p.mark_seen(&[2; 32], 5_000).unwrap();
            p.put_conversation(&alice, &vec!["state"]).unwrap();
            p.put_accepted(&alice).unwrap();
            p.put_group(&group, &"record").unwrap();
            p.put_invite(&group, &alice).unwrap();
            for t in [100, 200, 300] {
                p.log_group_wire(&group, &wire(t), &[t as u8; 32]).unwrap();
            }
            p.save_mls(&[(b"k".to_vec(), Some(b"v".to_vec().into()))], false)
                .unwrap();
        }
        let s: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), key).unwrap());
        let p = s.private();
        assert!(p.seen(&[1; 32]).unwrap() && !p.seen(&[3; 32]).unwrap());
        assert_eq!(p.forget_seen_before(2_000).unwrap(), 1);
        assert!(!p.seen(&[1; 32]).unwrap() && p.seen(&[2; 32]).unwrap());
        assert_eq!(p.conversations::<Vec<String>>().unwrap(), [vec!["state"]]);
        assert_eq!(p.accepted().unwrap(), [alice]);
        assert_eq!(p.groups::<String>().unwrap(), [(group, "record".into())]);
        assert_eq!(
            p.invites().unwrap(),
            [(group, alice)],
            "told from the group record"
        );
        let since =
            |t| -> Vec<u64> { p.group_log(&group, t).unwrap().map(|w| w.sent_ms).collect() };
        assert_eq!(since(150), [200, 300]);
        assert_eq!(p.group_log_newest(&group).unwrap(), Some(300));
        assert_eq!(p.prune_group_log(&group, 250).unwrap(), 2);
        assert_eq!(since(0), [300]);
        match p.mls_state().unwrap() {
            MlsState::Entries(e) => assert_eq!(e, [(b"k".to_vec(), b"v".to_vec())]),
            MlsState::Blob(_) => panic!("entries were saved"),
        }
        p.remove_invite(&group, &alice).unwrap();
        p.remove_group(&group).unwrap();
        assert!(p.invites().unwrap().is_empty() && p.groups::<String>().unwrap().is_empty());
    }

    #[test]
    fn an_old_mls_snapshot_wins_until_the_first_save_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.private_put(Private::Mls, MLS_BLOB, b"old state").unwrap();
        let p = s.private();
        p.save_mls(&[(b"k".to_vec(), Some(b"v".to_vec().into()))], false)
            .unwrap();
        assert!(
            matches!(p.mls_state().unwrap(), MlsState::Blob(b) if b.as_slice() == b"old state")
        );
        p.save_mls(&[], true).unwrap();
        assert!(matches!(p.mls_state().unwrap(), MlsState::Entries(e) if e.len() == 1));
    }
}
