//! Store-and-forward: ciphertext envelopes this node holds for offline recipients. Bounded per
//! (sender, recipient), per recipient and in total, by count and bytes, with an expiry. When a
//! recipient's share (or the whole mailbox) is full, the sender holding the most for it gives
//! way, oldest first, so one sender — or a crowd of fresh identities — cannot keep anyone
//! else's mail out. Only the recipient (as authenticated by its connection) can collect its
//! mail, and it gets it fairly: a turn per sender, in the order the envelopes arrived here
//! (not the order their senders claim).

#![warn(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, HashSet, VecDeque};
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
/// Most envelopes held from one sender for one recipient.
pub const PER_SENDER_ENVELOPES: usize = 64;
/// Most bytes held from one sender for one recipient (room for a group's Welcome).
pub const PER_SENDER_BYTES: usize = 3 * 1024 * 1024;
/// Most bytes held in total.
pub const TOTAL_BYTES: usize = 128 * 1024 * 1024;
/// Most envelopes held in total.
pub const TOTAL_ENVELOPES: usize = 65_536;
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
    /// The sender already has as much held for this recipient as it may.
    #[error("mailbox quota of this sender for this recipient reached")]
    SenderQuota,
    /// No room, and nobody holding more than this sender to make room.
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
    if env.sent_ms > now.saturating_add(CLOCK_SKEW_MS)
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

/// Keyed hashes of a recipient and of a sender (store keys reveal no peer ids).
type Pair = ([u8; 16], [u8; 16]);
/// Store key: recipient index, sender index, envelope id (16 bytes each).
type Key = [u8; 48];

/// One envelope held, as the index knows it.
#[derive(Debug, Clone, Copy)]
struct Held {
    key: Key,
    bytes: usize,
    expires_ms: u64,
}

/// What is held from one sender for one recipient, oldest first.
#[derive(Debug, Default)]
struct PairState {
    held: VecDeque<Held>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct RecipientState {
    senders: HashSet<[u8; 16]>,
    count: usize,
    bytes: usize,
}

/// Envelopes held for others.
pub struct Mailbox {
    store: Arc<dyn Store>,
    pairs: HashMap<Pair, PairState>,
    recipients: HashMap<[u8; 16], RecipientState>,
    keys: HashSet<Key>,
    total: usize,
    next_arrival: u64,
    /// Envelopes that made room for others, or expired, since start.
    evicted: u64,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("recipients", &self.recipients.len())
            .field("envelopes", &self.keys.len())
            .field("bytes", &self.total)
            .finish()
    }
}

impl Mailbox {
    /// The mailbox kept in `store`, indexed (and entries of the earlier layout moved).
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let mut this = Self {
            store,
            pairs: HashMap::new(),
            recipients: HashMap::new(),
            keys: HashSet::new(),
            total: 0,
            next_arrival: 0,
            evicted: 0,
        };
        let mut found: Vec<(u64, Held)> = Vec::new();
        for (k, v) in this.store.private_scan(Private::Mailbox, &[])? {
            if let (Ok(key), Some((arrival, env))) = (Key::try_from(k.as_slice()), split_value(&v))
            {
                found.push((
                    arrival,
                    Held {
                        key,
                        bytes: env.encoded_len(),
                        expires_ms: env.expires_ms,
                    },
                ));
                continue;
            }
            // The earlier layout: recipient (16) || envelope id (16) → envelope.
            this.store.private_remove(Private::Mailbox, &k)?;
            if let Ok(env) = v1::DmEnvelope::decode(v.as_slice())
                && let (Ok(sender), Ok(recipient)) = (
                    PeerId::from_bytes(&env.sender),
                    PeerId::from_bytes(&env.recipient),
                )
            {
                let key = this.key(&recipient, &sender, &env);
                let arrival = found.len() as u64;
                this.store
                    .private_put(Private::Mailbox, &key, &join_value(arrival, &env))?;
                found.push((
                    arrival,
                    Held {
                        key,
                        bytes: env.encoded_len(),
                        expires_ms: env.expires_ms,
                    },
                ));
            }
        }
        found.sort_by_key(|(arrival, _)| *arrival);
        for (arrival, held) in found {
            this.next_arrival = this.next_arrival.max(arrival.saturating_add(1));
            this.index(held);
        }
        Ok(this)
    }

    fn key(&self, recipient: &PeerId, sender: &PeerId, env: &v1::DmEnvelope) -> Key {
        let mut k = [0u8; 48];
        k[..16].copy_from_slice(&self.store.index(b"mailbox", &recipient.to_bytes()));
        k[16..32].copy_from_slice(&self.store.index(b"mailbox-sender", &sender.to_bytes()));
        k[32..].copy_from_slice(&envelope_id(env)[..16]);
        k
    }

    /// Envelopes and bytes held in total.
    pub fn totals(&self) -> (usize, usize) {
        (self.keys.len(), self.total)
    }

    /// Envelopes dropped to make room for others or because they expired, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
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
        let key = self.key(&recipient, &sender, env);
        if self.keys.contains(&key) {
            return Ok(()); // held already
        }
        let bytes = env.encoded_len();
        let pair = pair_of(&key);
        let (count, held) = self
            .pairs
            .get(&pair)
            .map_or((0, 0), |p| (p.held.len(), p.bytes));
        if count >= PER_SENDER_ENVELOPES || held.saturating_add(bytes) > PER_SENDER_BYTES {
            return Err(Refused::SenderQuota);
        }
        // Room for this recipient: the sender holding the most for it gives way.
        loop {
            let r = self.recipients.get(&pair.0);
            let full = r.is_some_and(|r| {
                r.count >= PER_RECIPIENT_ENVELOPES
                    || r.bytes.saturating_add(bytes) > PER_RECIPIENT_BYTES
            });
            if !full {
                break;
            }
            let largest = r.and_then(|r| {
                r.senders
                    .iter()
                    .map(|s| (pair.0, *s))
                    .max_by_key(|p| self.pairs.get(p).map_or(0, |s| s.bytes))
            });
            match largest {
                Some(p) if p != pair => self.evict_oldest(&p),
                _ => return Err(Refused::Full),
            }
        }
        // Room in all: the largest (sender, recipient) pair anywhere gives way.
        while self.keys.len() >= TOTAL_ENVELOPES || self.total.saturating_add(bytes) > TOTAL_BYTES {
            let largest = self
                .pairs
                .iter()
                .max_by_key(|(_, s)| s.bytes)
                .map(|(p, _)| *p);
            match largest {
                Some(p) if p != pair => self.evict_oldest(&p),
                _ => return Err(Refused::Full),
            }
        }
        let arrival = self.next_arrival;
        self.next_arrival = self.next_arrival.saturating_add(1);
        self.store
            .private_put(Private::Mailbox, &key, &join_value(arrival, env))
            .map_err(|e| {
                tracing::warn!("mailbox: {e}");
                Refused::Full
            })?;
        self.index(Held {
            key,
            bytes,
            expires_ms: env.expires_ms,
        });
        Ok(())
    }

    /// Hands over (and forgets) what is held for `recipient`, up to a size cap: one envelope
    /// per sender in turn, each sender's in the order they arrived.
    pub fn collect(&mut self, recipient: &PeerId, now: u64) -> Vec<v1::DmEnvelope> {
        let r = self.store.index(b"mailbox", &recipient.to_bytes());
        let Some(rs) = self.recipients.get(&r) else {
            return Vec::new();
        };
        let mut senders: Vec<[u8; 16]> = rs.senders.iter().copied().collect();
        senders.sort();
        let mut queues: Vec<VecDeque<Held>> = senders
            .iter()
            .filter_map(|s| self.pairs.get(&(r, *s)).map(|p| p.held.clone()))
            .collect();
        let mut out = Vec::new();
        let mut size = 0usize;
        'turns: loop {
            let mut any = false;
            for q in &mut queues {
                let Some(h) = q.pop_front() else {
                    continue;
                };
                any = true;
                if h.expires_ms <= now {
                    self.forget(&h.key);
                    continue;
                }
                if size.saturating_add(h.bytes) > COLLECT_BYTES && !out.is_empty() {
                    break 'turns;
                }
                let env = match self.store.private_get(Private::Mailbox, &h.key) {
                    Ok(Some(v)) => split_value(&v).map(|(_, e)| e),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!("mailbox: {e}");
                        break 'turns;
                    }
                };
                self.forget(&h.key);
                if let Some(env) = env {
                    size = size.saturating_add(h.bytes);
                    out.push(env);
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    /// Drops every expired envelope; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let due: Vec<Key> = self
            .pairs
            .values()
            .flat_map(|p| p.held.iter())
            .filter(|h| h.expires_ms <= now)
            .map(|h| h.key)
            .collect();
        for k in &due {
            self.forget(k);
        }
        self.evicted = self.evicted.saturating_add(due.len() as u64);
        due.len()
    }

    fn index(&mut self, held: Held) {
        let pair = pair_of(&held.key);
        self.keys.insert(held.key);
        self.total = self.total.saturating_add(held.bytes);
        let r = self.recipients.entry(pair.0).or_default();
        r.senders.insert(pair.1);
        r.count = r.count.saturating_add(1);
        r.bytes = r.bytes.saturating_add(held.bytes);
        let p = self.pairs.entry(pair).or_default();
        p.bytes = p.bytes.saturating_add(held.bytes);
        p.held.push_back(held);
    }

    fn evict_oldest(&mut self, pair: &Pair) {
        if let Some(key) = self
            .pairs
            .get(pair)
            .and_then(|p| p.held.front())
            .map(|h| h.key)
        {
            self.forget(&key);
            self.evicted = self.evicted.saturating_add(1);
        } else {
            // An empty pair left behind: drop it so it is never chosen again.
            self.pairs.remove(pair);
        }
    }

    fn forget(&mut self, key: &Key) {
        if let Err(e) = self.store.private_remove(Private::Mailbox, key) {
            tracing::warn!("mailbox: {e}");
        }
        if !self.keys.remove(key) {
            return;
        }
        let pair = pair_of(key);
        let mut bytes = 0;
        if let Some(p) = self.pairs.get_mut(&pair) {
            if let Some(i) = p.held.iter().position(|h| h.key == *key) {
                bytes = p.held.remove(i).map_or(0, |h| h.bytes);
            }
            p.bytes = p.bytes.saturating_sub(bytes);
            if p.held.is_empty() {
                self.pairs.remove(&pair);
                if let Some(r) = self.recipients.get_mut(&pair.0) {
                    r.senders.remove(&pair.1);
                }
            }
        }
        self.total = self.total.saturating_sub(bytes);
        if let Some(r) = self.recipients.get_mut(&pair.0) {
            r.count = r.count.saturating_sub(1);
            r.bytes = r.bytes.saturating_sub(bytes);
            if r.count == 0 {
                self.recipients.remove(&pair.0);
            }
        }
    }
}

fn pair_of(key: &Key) -> Pair {
    let mut r = [0u8; 16];
    let mut s = [0u8; 16];
    r.copy_from_slice(&key[..16]);
    s.copy_from_slice(&key[16..32]);
    (r, s)
}

/// A held envelope's value: when it arrived here (a counter, for fair collection), then the
/// envelope.
fn join_value(arrival: u64, env: &v1::DmEnvelope) -> Vec<u8> {
    let mut v = Vec::with_capacity(env.encoded_len().saturating_add(8));
    v.extend_from_slice(&arrival.to_be_bytes());
    v.extend_from_slice(&env.encode_to_vec());
    v
}

fn split_value(v: &[u8]) -> Option<(u64, v1::DmEnvelope)> {
    let arrival = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let env = v1::DmEnvelope::decode(v.get(8..)?).ok()?;
    Some((arrival, env))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
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

    fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("store"));
        (dir, store)
    }

    #[test]
    fn holds_for_the_recipient_only_and_within_caps() {
        let (_dir, store) = open();
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
        // A sender's quota for one recipient.
        for i in 0..PER_SENDER_ENVELOPES {
            mb.deposit(&a, &env(&a, &b, format!("m{i}").as_bytes(), now), now)
                .expect("within quota");
        }
        assert_eq!(
            mb.deposit(&a, &env(&a, &b, b"over", now), now),
            Err(Refused::SenderQuota)
        );
        // Expiry empties it.
        assert_eq!(mb.expire(now + 60_001), PER_SENDER_ENVELOPES);
        assert_eq!(mb.totals(), (0, 0));
    }

    #[test]
    fn fresh_identities_cannot_keep_a_contacts_mail_out_or_ahead() {
        let (_dir, store) = open();
        let mut mb = Mailbox::open(store).expect("open");
        let now = 1_800_000_000_000;
        let (victim, friend) = (peer(), peer());
        // Sybils fill the victim's share with back-dated junk first.
        let mut sybils = 0;
        'fill: for _ in 0..10 {
            let s = peer();
            sybils += 1;
            for i in 0..PER_SENDER_ENVELOPES {
                let mut e = env(&s, &victim, format!("junk {sybils} {i}").as_bytes(), now);
                e.sent_ms = now - 6 * 24 * 3600 * 1000; // "older" than anything real
                if mb.deposit(&s, &e, now).is_err() {
                    break 'fill;
                }
            }
        }
        assert_eq!(mb.totals().0, PER_RECIPIENT_ENVELOPES);
        // The friend's mail still gets in: the largest holder gives way.
        for i in 0..3 {
            mb.deposit(
                &friend,
                &env(&friend, &victim, format!("hi {i}").as_bytes(), now),
                now,
            )
            .expect("room is made");
        }
        assert!(mb.totals().0 <= PER_RECIPIENT_ENVELOPES);
        assert!(mb.evicted() >= 3);
        // Collection takes one per sender in turn: the friend's first message comes in the
        // first round, not after thousands of back-dated ones.
        let got = mb.collect(&victim, now);
        let first_friend = got
            .iter()
            .position(|e| e.sender == friend.to_bytes())
            .expect("friend's mail collected");
        assert!(
            first_friend < 16,
            "friend's first message at {first_friend}"
        );
        let senders: HashSet<Vec<u8>> = got.iter().take(8).map(|e| e.sender.clone()).collect();
        assert_eq!(senders.len(), 8, "one per sender per turn");
    }
}
