//! Store-and-forward: ciphertext envelopes this node holds for offline recipients, with caps
//! per recipient and in total, and an expiry. Only the recipient (as authenticated by its
//! connection) can collect them; they are removed once handed over.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;
use sha2::Digest;

use super::MAX_HOLD_MS;
use crate::store::{Private, Store, StoreError};

/// Most envelopes held for one recipient.
pub const PER_RECIPIENT_ENVELOPES: usize = 512;
/// Most bytes held for one recipient.
pub const PER_RECIPIENT_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes held in total.
pub const TOTAL_BYTES: usize = 128 * 1024 * 1024;
/// Most bytes handed over in one collect response.
pub const COLLECT_BYTES: usize = 2 * 1024 * 1024;
/// How far in the future a sender's clock may be.
const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// Why an envelope was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Fields missing, wrong or too large.
    #[error("malformed envelope")]
    Malformed,
    /// Not sent by the peer that hands it over.
    #[error("envelope not from the depositing peer")]
    NotFromDepositor,
    /// Already expired, or asks to be held too long.
    #[error("envelope expired or held too long")]
    Expiry,
    /// A cap is reached.
    #[error("mailbox full")]
    Full,
}

/// Checks the fields every envelope must have right; returns its sender and recipient.
pub fn check_envelope(env: &v1::DmEnvelope, now: u64) -> Result<(PeerId, PeerId), Refused> {
    let sender = PeerId::from_bytes(&env.sender).map_err(|_| Refused::Malformed)?;
    let recipient = PeerId::from_bytes(&env.recipient).map_err(|_| Refused::Malformed)?;
    // A private group's Welcome carries the group's ratchet tree, and a removal commit sent to
    // the removed member grows with the group: both are larger than a direct message.
    let max = if env.group_invite.is_empty() {
        crate::group::MAX_GROUP_MESSAGE_BYTES
    } else {
        crate::group::MAX_WELCOME_BYTES
    };
    if env.mls_message.is_empty() || env.mls_message.len() > max || env.group_invite.len() > 1024 {
        return Err(Refused::Malformed);
    }
    if env.sent_ms > now + CLOCK_SKEW_MS
        || env.expires_ms <= now
        || env.expires_ms > env.sent_ms.saturating_add(MAX_HOLD_MS)
    {
        return Err(Refused::Expiry);
    }
    Ok((sender, recipient))
}

/// The id of an envelope: a hash of its MLS message (the same message is one envelope).
pub fn envelope_id(env: &v1::DmEnvelope) -> [u8; 32] {
    sha2::Sha256::digest(&env.mls_message).into()
}

/// Envelopes held for others.
pub struct Mailbox {
    store: Arc<dyn Store>,
    /// Per recipient index: envelopes and bytes held.
    held: HashMap<[u8; 16], (usize, usize)>,
    total: usize,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("recipients", &self.held.len())
            .field("bytes", &self.total)
            .finish()
    }
}

impl Mailbox {
    /// The mailbox kept in `store`, with its totals counted.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let mut this = Self {
            store,
            held: HashMap::new(),
            total: 0,
        };
        for (k, v) in this.store.private_scan(Private::Mailbox, &[])? {
            if let Some(r) = k.get(..16).and_then(|r| <[u8; 16]>::try_from(r).ok()) {
                let e = this.held.entry(r).or_default();
                e.0 += 1;
                e.1 += v.len();
                this.total += v.len();
            }
        }
        Ok(this)
    }

    fn recipient_index(&self, peer: &PeerId) -> [u8; 16] {
        self.store.index(b"mailbox", &peer.to_bytes())
    }

    /// Envelopes and bytes held in total.
    pub fn totals(&self) -> (usize, usize) {
        (self.held.values().map(|h| h.0).sum(), self.total)
    }

    /// Holds an envelope that `from` hands over for its recipient.
    pub fn deposit(
        &mut self,
        from: &PeerId,
        env: &v1::DmEnvelope,
        now: u64,
    ) -> Result<(), Refused> {
        let (sender, recipient) = check_envelope(env, now)?;
        if sender != *from {
            return Err(Refused::NotFromDepositor);
        }
        let r = self.recipient_index(&recipient);
        let mut key = r.to_vec();
        key.extend_from_slice(&envelope_id(env)[..16]);
        if matches!(self.store.private_get(Private::Mailbox, &key), Ok(Some(_))) {
            return Ok(()); // held already
        }
        let bytes = env.encode_to_vec();
        let (count, held) = self.held.get(&r).copied().unwrap_or_default();
        if count >= PER_RECIPIENT_ENVELOPES
            || held + bytes.len() > PER_RECIPIENT_BYTES
            || self.total + bytes.len() > TOTAL_BYTES
        {
            return Err(Refused::Full);
        }
        self.store
            .private_put(Private::Mailbox, &key, &bytes)
            .map_err(|e| {
                tracing::warn!("mailbox: {e}");
                Refused::Full
            })?;
        let e = self.held.entry(r).or_default();
        e.0 += 1;
        e.1 += bytes.len();
        self.total += bytes.len();
        Ok(())
    }

    /// Hands over (and forgets) what is held for `recipient`, oldest first, up to a size cap.
    pub fn collect(&mut self, recipient: &PeerId, now: u64) -> Vec<v1::DmEnvelope> {
        let r = self.recipient_index(recipient);
        let items = match self.store.private_scan(Private::Mailbox, &r) {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("mailbox: {e}");
                return Vec::new();
            }
        };
        let mut envs: Vec<(Vec<u8>, v1::DmEnvelope)> = items
            .into_iter()
            .filter_map(|(k, v)| Some((k, v1::DmEnvelope::decode(v.as_slice()).ok()?)))
            .collect();
        envs.sort_by_key(|(_, e)| e.sent_ms);
        let mut out = Vec::new();
        let mut size = 0;
        for (k, env) in envs {
            let len = env.encoded_len();
            if size + len > COLLECT_BYTES {
                break;
            }
            self.forget(&r, &k, len);
            if env.expires_ms > now {
                size += len;
                out.push(env);
            }
        }
        out
    }

    fn forget(&mut self, r: &[u8; 16], key: &[u8], len: usize) {
        if self.store.private_remove(Private::Mailbox, key).is_ok()
            && let Some(h) = self.held.get_mut(r)
        {
            h.0 = h.0.saturating_sub(1);
            h.1 = h.1.saturating_sub(len);
            self.total = self.total.saturating_sub(len);
            if h.0 == 0 {
                self.held.remove(r);
            }
        }
    }

    /// Drops every expired envelope; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let Ok(items) = self.store.private_scan(Private::Mailbox, &[]) else {
            return 0;
        };
        let mut dropped = 0;
        for (k, v) in items {
            let expired =
                v1::DmEnvelope::decode(v.as_slice()).map_or(true, |e| e.expires_ms <= now);
            if expired && let Some(r) = k.get(..16).and_then(|r| <[u8; 16]>::try_from(r).ok()) {
                self.forget(&r, &k, v.len());
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;
    use crate::store::SledStore;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn env(from: &PeerId, to: &PeerId, msg: &[u8], now: u64) -> v1::DmEnvelope {
        v1::DmEnvelope {
            sender: from.to_bytes(),
            recipient: to.to_bytes(),
            sent_ms: now,
            expires_ms: now + 60_000,
            mls_message: msg.to_vec(),
            group_invite: Vec::new(),
        }
    }

    #[test]
    fn holds_for_the_recipient_only_and_within_caps() {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("store"));
        let mut mb = Mailbox::open(store.clone()).expect("open");
        let (a, b, c) = (peer(), peer(), peer());
        let now = 1_000_000;
        mb.deposit(&a, &env(&a, &b, b"one", now), now).expect("one");
        mb.deposit(&a, &env(&a, &b, b"one", now), now)
            .expect("same again");
        mb.deposit(&a, &env(&a, &b, b"two", now + 1), now)
            .expect("two");
        assert_eq!(mb.totals().0, 2);
        // Forged sender, expired, held too long, oversized.
        assert_eq!(
            mb.deposit(&c, &env(&a, &b, b"x", now), now),
            Err(Refused::NotFromDepositor)
        );
        let mut old = env(&a, &b, b"y", now);
        old.expires_ms = now;
        assert_eq!(mb.deposit(&a, &old, now), Err(Refused::Expiry));
        let mut long = env(&a, &b, b"z", now);
        long.expires_ms = now + MAX_HOLD_MS + 1;
        assert_eq!(mb.deposit(&a, &long, now), Err(Refused::Expiry));
        let big = env(
            &a,
            &b,
            &vec![0u8; crate::group::MAX_GROUP_MESSAGE_BYTES + 1],
            now,
        );
        assert_eq!(mb.deposit(&a, &big, now), Err(Refused::Malformed));
        // The count survives a reopen; only the recipient's collect returns them, in order.
        let mut mb = Mailbox::open(store.clone()).expect("reopen");
        assert_eq!(mb.totals().0, 2);
        assert!(mb.collect(&c, now).is_empty());
        let got = mb.collect(&b, now);
        assert_eq!(
            got.iter()
                .map(|e| e.mls_message.as_slice())
                .collect::<Vec<_>>(),
            vec![b"one".as_slice(), b"two".as_slice()]
        );
        assert!(mb.collect(&b, now).is_empty(), "handed over once");
        // A recipient's cap.
        for i in 0..PER_RECIPIENT_ENVELOPES {
            mb.deposit(&a, &env(&a, &b, format!("m{i}").as_bytes(), now), now)
                .expect("within cap");
        }
        assert_eq!(
            mb.deposit(&a, &env(&a, &b, b"over", now), now),
            Err(Refused::Full)
        );
        // Expiry empties it.
        assert_eq!(mb.expire(now + 60_001), PER_RECIPIENT_ENVELOPES);
        assert_eq!(mb.totals(), (0, 0));
    }
}
